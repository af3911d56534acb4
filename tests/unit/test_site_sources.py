"""Sources in the site configuration (issue 14): [[sources]] tables loaded strictly, one secret
per central record through `kerbside provision --secret-stdin`, copied into the profile at
enrolment. The OS keyring is the in-memory backend of tests/conftest.py."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

import app.security._profile as profile_module
from app.cli import main
from app.security import (
    HOME,
    READ_ONLY,
    Profile,
    SourceSettings,
    client_secret,
    store_site_client_secret,
)
from app.services.doctor import _Failed, check_site
from app.services.session import unlock
from app.services.site import SITE_ENV, SiteConfigError, load_site_config
from app.store import HOME_SOURCE
from sync.reference import ReferenceServer
from tests.conftest import TABLET_CLIENT, TEST_KDF, TEST_PIN, MemoryKeyring

SITE = """\
[central_record]
url = "{url}"
client_id = "{client}"
display_name = "Bolton NHS Foundation Trust"
ods_code = "rmc"

[[sources]]
name = "trust-2"
url = "https://fhir.trust2.example.nhs.uk/R4/"
client_id = "kerbside-bolton"
display_name = "Neighbouring NHS Trust"
ods_code = "rxy"

[[sources]]
name = "shared"
url = "https://shared.example.nhs.uk/fhir"
client_id = "kerbside-bolton"
token_url = "https://shared.example.nhs.uk/token"
role = "read-only"
"""
TRUST_2 = SourceSettings(
    "trust-2",
    "https://fhir.trust2.example.nhs.uk/R4",
    "kerbside-bolton",
    display_name="Neighbouring NHS Trust",
    ods_code="RXY",
    role=READ_ONLY,
)
SHARED = SourceSettings(
    "shared",
    "https://shared.example.nhs.uk/fhir",
    "kerbside-bolton",
    "https://shared.example.nhs.uk/token",
    role=READ_ONLY,
)


@pytest.fixture(autouse=True)
def cheap_kdf(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(profile_module, "KdfParams", lambda: TEST_KDF)
    monkeypatch.delenv(SITE_ENV, raising=False)


def write_site(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "site.toml"
    path.write_text(text, encoding="utf-8")
    return path


def run(
    args: list[str], stdin: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> tuple[int, str, str]:
    monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
    code = main(args)
    out, err = capsys.readouterr()
    return code, out, err


def _site_secrets(keyring: MemoryKeyring) -> dict[str, str]:
    return {a: v for (_, a), v in keyring.secrets.items() if a.startswith("site-client-secret/")}


def test_sources_load_in_file_order_beside_the_home_labels(tmp_path: Path) -> None:
    site = load_site_config(
        write_site(tmp_path, SITE.format(url="https://fhir.bolton.example/R4", client="t1"))
    )
    assert site is not None
    assert (site.display_name, site.ods_code) == ("Bolton NHS Foundation Trust", "RMC")
    assert site.sources == (TRUST_2, SHARED)


MINIMAL = '[central_record]\nurl = "https://fhir.example.org"\nclient_id = "t1"\n'
ONE = '[[sources]]\nname = "trust-2"\nurl = "https://t2.example.org"\nclient_id = "c"\n'


@pytest.mark.parametrize(
    ("text", "key", "expected"),
    [
        ("sources = 5\n" + MINIMAL, "sources", "an array of tables [[sources]]"),
        (MINIMAL + ONE + "colour = 1\n", "sources[1].colour", "expected a known key"),
        (MINIMAL + ONE.replace('url = "https://t2.example.org"\n', ""), "sources[1].url", "text"),
        (MINIMAL + ONE.replace("https:", "http:"), "sources[1].url", "https"),
        (MINIMAL + ONE + ONE.replace("trust-2", "Trust 3"), "sources[2].name", "lower-case"),
        (MINIMAL + ONE.replace("trust-2", "home"), "sources[1].name", "[central_record]'s"),
        (MINIMAL + ONE + ONE, "sources[2].name", "a name no other [[sources]] entry has"),
        (MINIMAL + ONE + 'role = "home"\n', "sources[1].role", "the home source is [central"),
        (MINIMAL + ONE + 'ods_code = "R!"\n', "sources[1].ods_code", "ODS code"),
        (MINIMAL + ONE + 'display_name = "a\\nb"\n', "sources[1].display_name", "one line"),
        (MINIMAL + ONE + 'ca_bundle = "/no/ca.pem"\n', "sources[1].ca_bundle", "CA certif"),
        (
            MINIMAL + ONE + 'token_url = "http://evil.example/t"\n',
            "sources[1].token_url",
            "https",
        ),
        (MINIMAL + 'ods_code = "R!"\n', "central_record.ods_code", "ODS code"),
    ],
)
def test_a_bad_source_names_the_file_the_entry_and_what_is_expected(
    tmp_path: Path, text: str, key: str, expected: str
) -> None:
    path = write_site(tmp_path, text)
    with pytest.raises(SiteConfigError) as err:
        load_site_config(path)
    message = str(err.value)
    assert message.startswith(f"site configuration {path}: ")
    assert key in message and expected in message, message


def test_provision_keeps_one_secret_per_central_record_in_file_order(
    tmp_path: Path,
    memory_keyring: MemoryKeyring,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    site = write_site(tmp_path, SITE.format(url="https://fhir.bolton.example/R4", client="t1"))
    args = ["provision", "--secret-stdin", "--site-config", str(site)]
    code, _, err = run(args, "home-secret\ntrust2-secret\n", monkeypatch, capsys)
    assert code == 1 and "stdin ended before the client secret for source shared" in err
    assert _site_secrets(memory_keyring) == {}  # nothing stored until every line is read

    code, out, err = run(args, "home-secret\ntrust2-secret\nshared-secret\n", monkeypatch, capsys)
    assert code == 0, err
    assert out.splitlines()[1:] == [
        "provisioned source trust-2: client kerbside-bolton for https://fhir.trust2.example.nhs.uk/R4",
        "provisioned source shared: client kerbside-bolton for https://shared.example.nhs.uk/fhir",
    ]
    assert _site_secrets(memory_keyring) == {  # two Trusts gave the same client id
        "site-client-secret/t1": "home-secret",
        "site-client-secret/kerbside-bolton:source:trust-2": "trust2-secret",
        "site-client-secret/kerbside-bolton:source:shared": "shared-secret",
    }
    assert check_site(site)[0].endswith("valid, client secrets provisioned (3)")


def test_a_source_provisioned_by_an_older_provision_is_named_by_doctor_and_enrol(
    tmp_path: Path,
    reference: ReferenceServer,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Only the central record's secret (a site file that gained [[sources]] after IT ran
    provision): doctor says which source lacks one, and enrol makes nothing."""
    site = write_site(tmp_path, MINIMAL + ONE)
    store_site_client_secret("t1", "home-secret")
    with pytest.raises(_Failed, match="no client secret for source\\(s\\) trust-2"):
        check_site(site)
    prof = tmp_path / "prof"
    code, _, err = run(
        [
            "enrol",
            "--profile",
            str(prof),
            "--user",
            "pc101",
            "--pin-stdin",
            "--site-config",
            str(site),
        ],
        f"{TEST_PIN}\n",
        monkeypatch,
        capsys,
    )
    assert code == 1 and "no client secret for every source of the site" in err
    assert not prof.exists()


def test_enrol_from_the_site_copies_every_source_and_its_secret(
    tmp_path: Path,
    reference: ReferenceServer,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    site = write_site(tmp_path, SITE.format(url=reference.base_url, client=TABLET_CLIENT[0]))
    code, _, err = run(
        ["provision", "--secret-stdin", "--site-config", str(site)],
        f"{TABLET_CLIENT[1]}\ntrust2-secret\nshared-secret\n",
        monkeypatch,
        capsys,
    )
    assert code == 0, err
    prof = tmp_path / "prof"
    who = ["--profile", str(prof), "--user", "pc101", "--pin-stdin"]
    code, _, err = run(
        ["enrol", *who, "--site-config", str(site)], f"{TEST_PIN}\n", monkeypatch, capsys
    )
    assert code == 0, err

    profile = Profile.load(prof)
    home = SourceSettings(
        "home",
        reference.base_url,
        TABLET_CLIENT[0],
        reference.token_url,  # the home's is found before enrolling, as before
        None,
        "Bolton NHS Foundation Trust",
        "RMC",
        HOME,
    )
    assert profile.sources == [home, TRUST_2, SHARED]  # a neighbour's is found at its sync
    pid = profile.profile_id
    assert client_secret(pid) == TABLET_CLIENT[1]
    assert client_secret(pid, "trust-2") == "trust2-secret"
    assert client_secret(pid, "shared") == "shared-secret"
    with unlock(prof, "pc101", TEST_PIN) as session:
        assert [(s.sid, s.name) for s in session.store.sources()] == [
            (HOME_SOURCE, "home"),
            (HOME_SOURCE + 1, "trust-2"),
            (HOME_SOURCE + 2, "shared"),
        ]
    code, _, err = run(["sync", *who, "--quiet"], f"{TEST_PIN}\n", monkeypatch, capsys)
    assert code == 0, err  # the home source syncs as it always did
