"""`kerbside source add|list|remove` (issue 14), driven as a shell user would: stdin PIN and
secret, exit codes, one-line errors. The OS keyring is the in-memory backend of
tests/conftest.py (the CLI runs in this process); tests/integration/test_source_cli.py runs the
same commands as separate processes, and test_real_keychain.py against GNOME Keyring."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

import app.security._profile as profile_module
from app.cli import main
from app.cli._source_cmds import ROLES
from app.security import SOURCE_ROLES, Profile, client_secret
from app.services.session import unlock
from app.services.syncing import build_client
from app.store import HOME_SOURCE
from sync.reference import ReferenceServer
from tests.conftest import TABLET_CLIENT, TEST_KDF, TEST_PIN, MemoryKeyring

OTHER_PIN = "975310"
NEIGHBOUR_URL = "https://fhir.salford.example.nhs.uk/R4"
NEIGHBOUR_TOKEN = "https://fhir.salford.example.nhs.uk/oauth/token"


@pytest.fixture(autouse=True)
def cheap_kdf(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(profile_module, "KdfParams", lambda: TEST_KDF)


def run(
    args: list[str], stdin: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> tuple[int, str, str]:
    monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
    code = main(args)
    out, err = capsys.readouterr()
    return code, out, err


class Tablet:
    """A profile enrolled through the CLI (admin pc101) and the commands run against it."""

    def __init__(
        self,
        path: Path,
        monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str],
    ) -> None:
        self.path = path
        self.monkeypatch, self.capsys = monkeypatch, capsys

    def __call__(self, args: list[str], stdin: str = "") -> tuple[int, str, str]:
        return run(args, stdin, self.monkeypatch, self.capsys)

    def who(self, user: str = "pc101") -> list[str]:
        return ["--profile", str(self.path), "--user", user, "--pin-stdin"]

    def add(self, *extra: str, name: str = "trust-2", stdin: str | None = None) -> tuple:  # type: ignore[type-arg]
        args = ["source", "add", *self.who(), "--name", name, "--server", NEIGHBOUR_URL]
        args += ["--client-id", "kerbside-salford", "--token-url", NEIGHBOUR_TOKEN, *extra]
        return self(args, f"{TEST_PIN}\nsalford-secret\n" if stdin is None else stdin)

    def listed(self) -> list[dict]:  # type: ignore[type-arg]
        code, out, err = self(["source", "list", "--profile", str(self.path), "--json"])
        assert code == 0, err
        return list(json.loads(out))

    @property
    def profile(self) -> Profile:
        return Profile.load(self.path)


@pytest.fixture
def tablet(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    reference: ReferenceServer,
) -> Tablet:
    """Enrolled against the reference server (token URL discovered), as a Trust would."""
    t = Tablet(tmp_path / "prof", monkeypatch, capsys)
    code, _, err = t(
        ["enrol", *t.who(), "--server", reference.base_url, "--client-id", TABLET_CLIENT[0]],
        f"{TEST_PIN}\n{TABLET_CLIENT[1]}\n",
    )
    assert code == 0, err
    return t


def _one_line_error(code: int, err: str, text: str) -> None:
    assert code == 1, err
    assert err.count("\n") == 1 and err.startswith("kerbside: ") and text in err, err
    assert "Traceback" not in err


def test_the_cli_offers_the_profiles_roles() -> None:
    assert set(ROLES) == set(SOURCE_ROLES)


def test_add_list_and_remove_a_read_only_source(
    tablet: Tablet, reference: ReferenceServer, memory_keyring: MemoryKeyring
) -> None:
    code, out, err = tablet.add("--display-name", "Salford Care Trust", "--ods-code", "rxy")
    assert code == 0, err
    assert out == f"added source trust-2 (read-only): {NEIGHBOUR_URL}\n"

    home, neighbour = tablet.listed()
    assert home["name"] == "home" and home["role"] == "home"
    assert home["base_url"] == reference.base_url and home["token_url"] == reference.token_url
    assert neighbour == {
        "name": "trust-2",
        "role": "read-only",
        "base_url": NEIGHBOUR_URL,
        "client_id": "kerbside-salford",
        "token_url": NEIGHBOUR_TOKEN,
        "ca_bundle": None,
        "display_name": "Salford Care Trust",
        "ods_code": "RXY",
        "last_sync": None,
        "patients": None,
        "resources": None,
        "state": None,
        "error": None,
        "revoked_at": None,
    }
    pid = tablet.profile.profile_id
    assert client_secret(pid, "trust-2") == "salford-secret"
    with unlock(tablet.path, "pc101", TEST_PIN) as session:  # the cache numbered it
        assert [(s.sid, s.name, s.role) for s in session.store.sources()] == [
            (HOME_SOURCE, "home", "home"),
            (HOME_SOURCE + 1, "trust-2", "read-only"),
        ]
        # What a sync of it would bring (the multi-source run is another slice).
        neighbour_patient = {"resourceType": "Patient", "id": "p1", "meta": {"versionId": "1"}}
        session.store.put_resources(HOME_SOURCE + 1, [neighbour_patient])
        session.store.put_resources(HOME_SOURCE, [{**neighbour_patient, "id": "h1"}])
    assert client_secret(pid) == TABLET_CLIENT[1]  # home's, untouched
    code, out, _ = tablet(["source", "list", "--profile", str(tablet.path)])
    assert code == 0 and "salford-secret" not in out and TABLET_CLIENT[1] not in out
    assert out.splitlines()[1].startswith("trust-2\tread-only\thttps://fhir.salford")

    code, out, err = tablet(["source", "remove", *tablet.who(), "trust-2"], f"{TEST_PIN}\n")
    assert code == 0, err
    assert out == "removed source trust-2; what it brought is erased\n"
    assert [s["name"] for s in tablet.listed()] == ["home"]
    assert client_secret(pid, "trust-2") is None
    assert not any(":source:" in account for _, account in memory_keyring.secrets)

    with unlock(tablet.path, "pc101", TEST_PIN) as session:
        trail = [(e.user_id, e.action, e.reason) for e in session.store.audit_entries()]
        assert session.audit_problems() == []
        assert session.store.source_id("trust-2") is None  # erased and its number forgotten
        assert session.store.count_by_type(source=HOME_SOURCE + 1) == {}
        assert session.store.count_by_type() == {"Patient": 1}  # home's stays
    assert trail == [
        ("pc101", "source-add", "trust-2 fhir.salford.example.nhs.uk"),
        ("pc101", "source-remove", "trust-2 fhir.salford.example.nhs.uk"),
    ]


def test_a_source_added_without_a_token_url_finds_it_and_its_client_gets_a_token(
    tablet: Tablet, reference: ReferenceServer
) -> None:
    """Discovery as enrol does it; the secret from the second stdin line is the one sync uses
    (here a second source on the same test server, under its own name)."""
    code, _, err = tablet(
        [
            "source",
            "add",
            *tablet.who(),
            "--name",
            "regional",
            "--server",
            reference.base_url + "/",
            "--client-id",
            TABLET_CLIENT[0],
        ],
        f"{TEST_PIN}\n{TABLET_CLIENT[1]}\n",
    )
    assert code == 0, err
    source = tablet.profile.source("regional")
    assert source.base_url == reference.base_url and source.token_url == reference.token_url
    client = build_client(tablet.profile, source="regional")
    answer = client.get(client.url("Patient"), params={"_count": "1"}, label="a page")
    assert answer.body["resourceType"] == "Bundle"
    assert client.base_url == reference.base_url


def test_list_shows_the_home_sources_last_sync_and_counts_without_a_pin(
    tablet: Tablet,
) -> None:
    code, _, err = tablet(["sync", *tablet.who(), "--quiet"], f"{TEST_PIN}\n")
    assert code == 0, err
    tablet.add()
    home, neighbour = tablet.listed()
    assert home["last_sync"] and home["patients"] > 0 and home["resources"]["Patient"] > 0
    assert neighbour["last_sync"] is None and neighbour["patients"] is None


def test_status_text_gives_each_source_a_line_of_its_state(tablet: Tablet) -> None:
    code, _, err = tablet(["sync", *tablet.who(), "--quiet"], f"{TEST_PIN}\n")
    assert code == 0, err
    tablet.add()
    home, _neighbour = tablet.listed()
    code, out, err = tablet(["status", "--profile", str(tablet.path)])
    assert code == 0, err
    lines = out.splitlines()
    assert lines[3].startswith("outbox: ")  # the lines it always had come first
    assert lines[4:] == [
        f"source home (home): ok, last sync {home['last_sync']}, patients {home['patients']}",
        "source trust-2 (read-only): never, last sync never, patients -",
    ]


def test_the_home_source_is_added_only_to_a_profile_without_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    t = Tablet(tmp_path / "prof", monkeypatch, capsys)
    assert t(["enrol", *t.who()], f"{TEST_PIN}\n")[0] == 0
    assert t.listed() == []
    code, _, err = t.add("--role", "home", name="bolton")
    assert code == 0, err
    assert t.profile.server is not None and t.profile.server.base_url == NEIGHBOUR_URL
    assert client_secret(t.profile.profile_id) == "salford-secret"  # the home account
    with unlock(t.path, "pc101", TEST_PIN) as session:  # sid 1 takes the profile's name
        assert [(s.sid, s.name) for s in session.store.sources()] == [(HOME_SOURCE, "bolton")]
    code, _, err = t.add("--role", "home", name="other")
    _one_line_error(code, err, "already has a home source (bolton); re-enrol")


@pytest.mark.parametrize(
    "extra, stdin, text",
    [
        (["--name", "Trust 2"], None, "a source name is 1-32 lower-case letters"),
        (["--name", "home"], None, "the name 'home' is kept for the home source"),
        (["--server", "http://fhir.example.nhs.uk/R4"], None, "must be reached over https"),
        (["--server", "ftp://fhir.example.nhs.uk"], None, "must be an https:// URL"),
        (["--token-url", "http://evil.example/token"], None, "token endpoint must be reached"),
        (["--ca-bundle", "/no/such/ca.pem"], None, "the CA bundle file does not exist"),
        (["--ods-code", "R!"], None, "the ODS code must be 3 to 10 letters and digits"),
        (["--display-name", "Two\nlines"], None, "display name must be one line"),
        (["--client-id", " "], None, "the client id must not be empty"),
        ([], f"{TEST_PIN}\n", "stdin ended before the client secret was given"),
        ([], f"{OTHER_PIN}\nsalford-secret\n", "wrong user or PIN"),
    ],
)
def test_a_refused_add_is_one_line_and_adds_nothing(
    tablet: Tablet,
    memory_keyring: MemoryKeyring,
    extra: list[str],
    stdin: str | None,
    text: str,
) -> None:
    before = dict(memory_keyring.secrets)
    base = ["--name", "trust-2", "--server", NEIGHBOUR_URL, "--client-id", "kerbside-salford"]
    base += ["--token-url", NEIGHBOUR_TOKEN]
    args = ["source", "add", *tablet.who(), *base, *extra]  # a later flag wins
    code, out, err = tablet(args, f"{TEST_PIN}\nsalford-secret\n" if stdin is None else stdin)
    _one_line_error(code, err, text)
    assert out == "" and [s["name"] for s in tablet.listed()] == ["home"]
    secrets_now = {k: v for k, v in memory_keyring.secrets.items() if "client-secret" in k[1]}
    assert secrets_now == {k: v for k, v in before.items() if "client-secret" in k[1]}
    assert "salford-secret" not in err and OTHER_PIN not in err


def test_a_second_source_of_the_same_name_is_refused_before_the_pin(tablet: Tablet) -> None:
    assert tablet.add()[0] == 0
    code, _, err = tablet.add(stdin=f"{OTHER_PIN}\nanother\n")  # a wrong PIN, never tried
    _one_line_error(code, err, "already has a source named trust-2")
    assert tablet.profile.failures == 0
    assert client_secret(tablet.profile.profile_id, "trust-2") == "salford-secret"


def test_the_home_source_cannot_be_removed_and_unknown_names_are_clear(tablet: Tablet) -> None:
    code, _, err = tablet(["source", "remove", *tablet.who(), "home"], f"{TEST_PIN}\n")
    _one_line_error(code, err, "the home source cannot be removed; re-enrol the tablet")
    code, _, err = tablet(["source", "remove", *tablet.who(), "trust-9"], f"{TEST_PIN}\n")
    _one_line_error(code, err, "no source named trust-9 on this profile (kerbside source list)")
    assert tablet.profile.failures == 0  # neither asked for the PIN
    assert [s["name"] for s in tablet.listed()] == ["home"]


def test_only_an_admin_adds_or_removes_sources(tablet: Tablet) -> None:
    code, _, err = tablet(
        ["add-user", *tablet.who(), "--new-user", "pc202"], f"{TEST_PIN}\n{OTHER_PIN}\n"
    )
    assert code == 0, err
    code, _, err = tablet.add(*tablet.who("pc202"), stdin=f"{OTHER_PIN}\nsalford-secret\n")
    _one_line_error(code, err, "only an admin user may add sources")
    assert tablet.add()[0] == 0
    code, _, err = tablet(["source", "remove", *tablet.who("pc202"), "trust-2"], f"{OTHER_PIN}\n")
    _one_line_error(code, err, "only an admin user may remove sources")
    assert [s["name"] for s in tablet.listed()] == ["home", "trust-2"]


def test_sources_locked_by_the_site_configuration_are_refused(
    tablet: Tablet, tmp_path: Path
) -> None:
    site = tmp_path / "site.toml"
    site.write_text(
        'locked = ["sources"]\n[central_record]\nurl = "https://fhir.example.nhs.uk/R4"\n'
        'client_id = "kerbside-bolton"\n'
    )
    code, _, err = tablet.add("--site-config", str(site))
    _one_line_error(code, err, "sources are set by the site configuration")
    code, _, err = tablet(
        ["source", "remove", *tablet.who(), "--site-config", str(site), "home"], f"{TEST_PIN}\n"
    )
    _one_line_error(code, err, "and locked; ask Trust IT")


def test_list_of_a_missing_profile_is_a_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run(
        ["source", "list", "--profile", str(tmp_path / "none"), "--json"], "", monkeypatch, capsys
    )
    _one_line_error(code, err, "no Kerbside profile here")
