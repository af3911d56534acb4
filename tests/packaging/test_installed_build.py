"""The tablet build as IT installs it: `make package` from the checkout, the .deb unpacked into a
root outside the checkout, and everything run through the installed binary.

No insecure keyring exists in that binary, so every step runs in a real desktop session:
gnome-keyring in its own D-Bus session (the `keychain` fixture, tests/support/keychain.py).
What the tablet build leaves out (the cohort generator, the reference server) comes from the
dev install, as a Trust's test rig would have it: `.venv/bin/kerbside generate` and
`.venv/bin/kerbside serve-reference`.

The .deb is unpacked with `dpkg-deb -x` rather than installed with `dpkg -i`, so the test needs
no root and leaves the machine as it was; the package's own paths are checked against that
root. `.ci/run` installs and removes the same .deb with apt as its packaging step's last check.
"""

from __future__ import annotations

import configparser
import json
import os
import select
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import TEST_PIN
from tests.support.sync import encounter_json

pytestmark = [pytest.mark.slow, pytest.mark.packaging]

ROOT = Path(__file__).resolve().parents[2]
DEV_KERBSIDE = str(Path(sys.executable).with_name("kerbside"))
TABLET = ("tablet-1", "tablet-secret-0123456789")
USER = "pc101"


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The root the .deb was unpacked into (its binary: <root>/opt/kerbside/kerbside)."""
    built = subprocess.run(
        [tool("make"), "package"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=1800,
        check=False,
    )
    assert built.returncode == 0, built.stdout[-3000:] + built.stderr[-3000:]
    (deb,) = (ROOT / "dist").glob("kerbside_*.deb")
    root = tmp_path_factory.mktemp("installed")
    subprocess.run([tool("dpkg-deb"), "-x", str(deb), str(root)], check=True, timeout=300)
    return root


def tool(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        pytest.skip(f"no {name}: run packaging/linux/packaging-test-deps.sh")
    return found


def app(root: Path) -> str:
    return str(root / "opt" / "kerbside" / "kerbside")


def run(
    args: list[str], env: dict[str, str], cwd: Path, stdin: str = "", timeout: float = 180
) -> subprocess.CompletedProcess[str]:
    """Run a command outside the checkout, with nothing of the dev venv on its paths."""
    clean = {k: v for k, v in env.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}
    clean.setdefault("QT_QPA_PLATFORM", "offscreen")
    return subprocess.run(
        args, input=stdin, env=clean, cwd=cwd, capture_output=True, text=True, timeout=timeout
    )


def ok(done: subprocess.CompletedProcess[str]) -> str:
    assert done.returncode == 0, f"{done.args}: {done.stderr[-3000:]}"
    return done.stdout


def test_the_deb_puts_kerbside_on_path_with_a_launcher_and_an_icon(installed: Path) -> None:
    link = installed / "usr/bin/kerbside"
    assert link.is_symlink() and os.readlink(link) == "/opt/kerbside/kerbside"
    entry = configparser.ConfigParser(interpolation=None)
    entry.read(installed / "usr/share/applications/kerbside.desktop")
    desktop = entry["Desktop Entry"]
    assert desktop["Exec"] == "/usr/bin/kerbside gui"
    for size in (48, 64, 128, 256):
        assert (
            installed / f"usr/share/icons/hicolor/{size}x{size}/apps/{desktop['Icon']}.png"
        ).is_file()
    assert (installed / f"usr/share/icons/hicolor/scalable/apps/{desktop['Icon']}.svg").is_file()
    internal = installed / "opt/kerbside/_internal"
    assert (internal / "tzdata/zoneinfo/Europe/London").is_file()
    assert not list(internal.rglob("libqgtk3*")), "the GTK theme plugin would load system GTK"
    for left_out in (
        "faker",
        "starlette",
        "uvicorn",
        "keyrings",
        "app/synthetic",
        "sync/reference",
    ):
        assert not (internal / left_out).exists(), left_out


def test_the_installed_binary_enrols_imports_searches_and_syncs(
    installed: Path,
    keychain: dict[str, str],
    tmp_path: Path,
) -> None:
    here = tmp_path
    ok(
        run(
            [DEV_KERBSIDE, "generate", "--patients", "20", "--seed", "3", "--out", "local"],
            keychain,
            here,
        )
    )
    ok(
        run(
            [DEV_KERBSIDE, "generate", "--patients", "20", "--seed", "4", "--out", "central"],
            keychain,
            here,
        )
    )
    local = json.loads((here / "local/Patient.ndjson").read_text().splitlines()[0])
    remote = json.loads((here / "central/Patient.ndjson").read_text().splitlines()[0])

    kerbside = app(installed)
    version = ok(run([kerbside, "--version"], keychain, here)).strip()
    assert version == ok(run([DEV_KERBSIDE, "--version"], keychain, here)).strip()
    # libsodium (PyNaCl: the sealed outbox) loads in the bundle.
    ok(
        run(
            [kerbside, "trust-keygen", "--public", "trust.pub", "--private", "trust.key"],
            keychain,
            here,
        )
    )
    assert (here / "trust.pub").stat().st_size > 0
    said = run([kerbside, "generate", "--out", "x"], keychain, here)
    assert said.returncode == 2 and "not part of this build" in said.stderr
    # The insecure opt-in does nothing in this build (the keychain here is real anyway).
    env = {**keychain, "KERBSIDE_ALLOW_INSECURE_KEYRING": "1"}

    with served(here, here / "central") as base_url:
        # Trust IT's provisioning: a site file where MDM's variable points, the secret once.
        site = here / "site.toml"
        site.write_text(
            'locked = ["central_record", "team"]\n'
            f'[central_record]\nurl = "{base_url}"\nclient_id = "{TABLET[0]}"\n'
            '[team]\nname = "Test Street Triage"\n',
            encoding="utf-8",
        )
        env["KERBSIDE_SITE_CONFIG"] = str(site)
        ok(run([kerbside, "provision", "--secret-stdin"], env, here, f"{TABLET[1]}\n"))

        who = ["--profile", str(here / "profile"), "--user", USER, "--pin-stdin"]
        ok(run([kerbside, "enrol", *who], env, here, f"{TEST_PIN}\n"))
        saved = json.loads((here / "profile/profile.json").read_text())
        assert saved["keyring_store"] == "secret-service"
        assert saved["sources"][0]["base_url"] == base_url
        assert saved["settings"]["team"] == "Test Street Triage"
        assert TABLET[1] not in json.dumps(saved)

        # The health check IT runs on a provisioned, enrolled tablet: every check passes.
        doctor = json.loads(ok(run([kerbside, "doctor", "--json", *who[:2]], env, here)))
        failed = [c for c in doctor["checks"] if not c["ok"]]
        assert doctor["ok"] and not failed, failed
        names = {c["name"] for c in doctor["checks"]}
        assert {"SQLCipher", "Keychain", "Time zone data", "Central record"} <= names

        ok(run([kerbside, "import", *who, str(here / "local")], env, here, f"{TEST_PIN}\n"))
        assert local["id"] in search(kerbside, who, local, env, here)
        report = json.loads(
            ok(run([kerbside, "sync", *who, "--quiet"], env, here, f"{TEST_PIN}\n")).splitlines()[
                -1
            ]
        )
        assert report["pulled"] > 0
        assert remote["id"] in search(kerbside, who, remote, env, here)
        # Recording reads the person's cached record: JSON packed as synced, unpacked with
        # the dictionary this build ships (app/store/_codec.py).
        (here / "encounters.json").write_text(json.dumps([encounter_json({"id": remote["id"]})]))
        recorded = ok(
            run(
                [kerbside, "record", *who, "--from-json", "encounters.json"],
                env,
                here,
                f"{TEST_PIN}\n",
            )
        )
        assert len(json.loads(recorded.splitlines()[-1])) == 1

        again = json.loads(
            ok(run([kerbside, "sync", *who, "--quiet"], env, here, f"{TEST_PIN}\n")).splitlines()[
                -1
            ]
        )
        assert (again["pushed"], again["rejected"]) == (1, 0)


def test_the_installed_binary_syncs_two_trusts_and_finds_a_shared_person_once(
    installed: Path,
    keychain: dict[str, str],
    tmp_path: Path,
) -> None:
    """Issue 14 as a Trust deploys it: the home Trust set by `enrol`, a neighbour added with
    `source add` (its secret in the real keychain), one `sync` of both, and a person both
    Trusts know (the same verified NHS number) found once, naming both. Home turns `$export`
    down, so its first load is paged, through the bulk-load path (a new cache: nothing to
    search yet); the neighbour's goes through `$export`."""
    here = tmp_path
    ok(
        run(
            [DEV_KERBSIDE, "generate", "--trusts", "2", "--overlap", "0.5", "--patients", "30",
             "--seed", "5", "--out", "region"],
            keychain,
            here,
        )
    )  # fmt: skip
    numbers = [_nhs_numbers(here / "region" / f"trust-{k}") for k in (1, 2)]
    shared = sorted(set(numbers[0]) & set(numbers[1]))
    assert shared, "the region has nobody both Trusts know"
    person = numbers[0][shared[0]]
    kerbside = app(installed)
    who = ["--profile", str(here / "profile"), "--user", USER, "--pin-stdin"]
    with served(here, here / "region/trust-2", data="neighbour-server") as neighbour_url:
        no_export = ("--no-bulk-export",)
        with served(here, here / "region/trust-1", "home-server", no_export) as home_url:
            ok(
                run(
                    [kerbside, "enrol", *who, "--server", home_url, "--client-id", TABLET[0]],
                    keychain,
                    here,
                    f"{TEST_PIN}\n{TABLET[1]}\n",
                )
            )
            ok(
                run(
                    [kerbside, "source", "add", *who, "--name", "trust-2", "--server",
                     neighbour_url, "--client-id", TABLET[0], "--display-name",
                     "Neighbouring Trust"],
                    keychain,
                    here,
                    f"{TEST_PIN}\n{TABLET[1]}\n",
                )
            )  # fmt: skip
            assert TABLET[1] not in (here / "profile/profile.json").read_text()
            synced = run([kerbside, "sync", *who], keychain, here, f"{TEST_PIN}\n")
            report = json.loads(ok(synced).splitlines()[-1])
            # Its progress lines (stderr): home paged, then built its indexes once; the
            # neighbour exported.
            phases = [line.split(":")[0] for line in synced.stderr.splitlines()]
            at = phases.index("source trust-2")
            assert "pull Patient" in phases[:at] and "index" in phases[:at], phases
            assert "export" not in phases[:at] and "export" in phases[at:], phases
            sources = report["sources"]
            assert set(sources) == {"home", "trust-2"}
            assert all(s["ok"] and s["error"] is None and s["pulled"] > 0 for s in sources.values())
            assert report["pulled"] == sum(s["pulled"] for s in sources.values())
        listed = json.loads(
            ok(run([kerbside, "source", "list", "--profile", str(here / "profile"), "--json"],
                   keychain, here))
        )  # fmt: skip
        assert [(s["name"], s["state"]) for s in listed] == [("home", "ok"), ("trust-2", "ok")]

        # Home down, the neighbour up: the command fails (exit 1, the error last on stderr),
        # and its last stdout line still says how each source went.
        failed = run([kerbside, "sync", *who, "--quiet"], keychain, here, f"{TEST_PIN}\n")
        assert failed.returncode == 1, failed.stderr
        assert failed.stderr.strip().splitlines()[-1].startswith("kerbside: ")
        report = json.loads(failed.stdout.strip().splitlines()[-1])
        assert (report["sources"]["home"]["ok"], report["sources"]["home"]["state"]) == (
            False,
            "failed",
        )
        assert report["sources"]["trust-2"]["ok"] is True

    family = person["name"][0]["family"]
    done = run(
        [kerbside, "search", *who, "--json", "--limit", "50", family], keychain, here,
        f"{TEST_PIN}\n",
    )  # fmt: skip
    hits = [h for h in json.loads(ok(done)) if h["nhs_number"] == shared[0]]
    assert len(hits) == 1, hits
    assert hits[0]["id"] == person["id"] and hits[0]["sources"] == ["home", "trust-2"]


def _nhs_numbers(folder: Path) -> dict[str, dict]:
    """Each Patient of a Trust's folder by its NHS number (those that carry one)."""
    found = {}
    for line in (folder / "Patient.ndjson").read_text().splitlines():
        patient = json.loads(line)
        for ident in patient.get("identifier", []):
            if ident.get("system") == "https://fhir.nhs.uk/Id/nhs-number":
                found[str(ident["value"])] = patient
    return found


def search(
    kerbside: str, who: list[str], patient: dict, env: dict[str, str], cwd: Path
) -> list[str]:
    """Ids found for the patient's family name; search loads `nicknames`, which warns on every
    run when its package metadata is missing from the bundle."""
    family = patient["name"][0]["family"]
    done = run(
        [kerbside, "search", *who, "--json", "--limit", "50", family], env, cwd, f"{TEST_PIN}\n"
    )
    ok(done)
    assert "metadata" not in done.stderr, done.stderr
    return [hit["id"] for hit in json.loads(done.stdout)]


class served:
    """`kerbside serve-reference` from the dev install, seeded with `seed`; yields its URL."""

    def __init__(
        self, cwd: Path, seed: Path, data: str = "server", extra: tuple[str, ...] = ()
    ) -> None:
        self.proc = subprocess.Popen(
            [DEV_KERBSIDE, "serve-reference", "--data", str(cwd / data), "--seed", str(seed),
             "--client", ":".join(TABLET), *extra],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=cwd,
        )  # fmt: skip

    def __enter__(self) -> str:
        assert self.proc.stdout is not None
        ready, _, _ = select.select([self.proc.stdout], [], [], 120)
        url = self.proc.stdout.readline().strip() if ready else ""
        if not url:
            self.__exit__()
            raise AssertionError("serve-reference printed no URL")
        return url

    def __exit__(self, *exc: object) -> None:
        self.proc.terminate()
        try:
            self.proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.communicate()


@pytest.fixture
def display() -> Iterator[str]:
    """A virtual X display (Xvfb picks a free number and writes it to our pipe)."""
    xvfb = subprocess.Popen(
        [tool("Xvfb"), "-displayfd", "1", "-screen", "0", "1280x800x24", "-nolisten", "tcp"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )  # fmt: skip
    try:
        assert xvfb.stdout is not None
        ready, _, _ = select.select([xvfb.stdout], [], [], 60)
        number = xvfb.stdout.readline().strip() if ready else ""
        assert number, "Xvfb did not start"
        yield f":{number}"
    finally:
        xvfb.terminate()
        xvfb.communicate(timeout=30)  # waits and closes our end of its pipe


@pytest.mark.parametrize("build", ["installed", "venv"])
def test_gui_opens_on_the_unlock_screen(
    build: str,
    request: pytest.FixtureRequest,
    keychain: dict[str, str],
    display: str,
    tmp_path: Path,
) -> None:
    """`kerbside gui` on an X display reaches the unlock screen; the cold start (spawn to the
    unlock screen on the display) is printed for the installed build and the dev venv."""
    kerbside = app(request.getfixturevalue("installed")) if build == "installed" else DEV_KERBSIDE
    profile = tmp_path / "profile"
    ok(run([kerbside, "enrol", "--profile", str(profile), "--user", USER, "--pin-stdin"],
           keychain, tmp_path, f"{TEST_PIN}\n"))  # fmt: skip
    x_env = {**keychain, "DISPLAY": display, "QT_QPA_PLATFORM": "xcb"}
    shot = tmp_path / "unlock.png"
    grabber = subprocess.Popen(
        [sys.executable, "-m", "tests.packaging.xscreen", str(shot), "90"],
        env={**x_env, "PYTHONPATH": str(ROOT)}, cwd=ROOT, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert grabber.stdout is not None and grabber.stdout.readline().strip() == "ready"
    clean = {k: v for k, v in x_env.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}
    spawned_at = time.monotonic()
    gui = subprocess.Popen(
        [kerbside, "gui", "--profile", str(profile)], env=clean, cwd=tmp_path,
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        out, _ = grabber.communicate(timeout=120)
        seen = json.loads(out.strip().splitlines()[-1])
        assert seen["seen_at"] is not None, f"no unlock screen (last frame: {shot})"
        cold_start = seen["seen_at"] - spawned_at
        print(f"\n{build} build: cold start to the unlock screen {cold_start:.2f} s")
        request.node.user_properties.append((f"{build}_cold_start_s", round(cold_start, 2)))
        assert gui.poll() is None, gui.stderr.read() if gui.stderr else ""
    finally:
        if grabber.poll() is None:
            grabber.kill()
            grabber.communicate()
        gui.terminate()
        try:
            gui.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            gui.kill()
            gui.communicate()
