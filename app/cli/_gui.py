"""`kerbside gui`, `kerbside demo` and `kerbside screenshots`: the commands that open windows.

The demo is the whole product on one machine: a synthetic cohort (generated once, cached),
the reference central record on 127.0.0.1 seeded with it, a fresh demo profile enrolled
against it, and the app, which syncs after unlock. The server stops when the window closes.

Why the demo keeps its secrets in memory: the demo profile is thrown away on the next run, so
its device secret and client secret must not pile up in the officer's real keychain, and many
demo machines (CI, containers, kiosks) have no keychain at all. So the demo, and only the
demo, installs an in-process keyring and sets KERBSIDE_ALLOW_INSECURE_KEYRING=1; the window
then shows a DEMO banner and the unlock screen shows the demo PIN. `kerbside gui` never does
this: without a platform keychain it refuses to start (SECURITY.md). The in-memory backend is
made when the demo starts, never at import: a backend class defined at import would join
keyring's automatic choice for every command (app/security/_keyring.py).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import secrets
import shutil
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import keyring

from app import times
from app.cli._common import add_profile_arg, add_site_arg, profile_dir
from app.errors import InvalidInput

if TYPE_CHECKING:
    from app.security import KdfParams
    from app.ui.main_window import MainWindow
    from sync.reference import ReferenceServer

log = logging.getLogger("kerbside.demo")

DEMO_USER = "demo"
DEMO_PIN = "280461"  # shown on the demo unlock screen; synthetic data only
DEMO_CLIENT_ID = "demo-tablet"
DEMO_ADMIN_ID = "demo-admin"
DEMO_SEED = 1
DEMO_TRUSTS = 2  # the demo's region: home and one neighbouring Trust (issue 14)
DEMO_OVERLAP = 0.2
MAX_DEMO_TRUSTS = 3
DEMO_TEAM = "Riverside Street Triage (demo)"  # synthetic: no ODS code, no real team
SCREEN_SIZES = ((1280, 800), (800, 1280))
SCENES = (
    "unlock", "search", "reason-sheet", "record", "staff-alert", "child-record", "weak-match",
    "encounter", "form-errors", "s136", "sync", "offline-waiting", "merged-record",
    "merged-plans", "lookup-reason", "lookup-results", "lookup-record", "sync-sources",
)  # fmt: skip
# The neighbouring Trust of the merged-person scenes (synthetic, never contacted).
NEIGHBOUR_SOURCE = "trust-2"
NEIGHBOUR_NAME = "West Vale Partnership NHS Trust"
# Someone the central record holds and the tablet does not (added after the tablet's syncs):
# the online look-up's screenshots find and open them. Synthetic.
LOOKUP_FAMILY, LOOKUP_GIVEN, LOOKUP_BORN = "Fenwick", "Adaeze", "1987-03-14"


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = subparsers.add_parser(
        "gui",
        help="open the app on a profile (first run on a provisioned device: enrol in the app)",
    )
    add_profile_arg(p)
    add_site_arg(p)
    p.set_defaults(func=_gui)

    p = subparsers.add_parser(
        "demo",
        help="the app against a local reference central record (synthetic data only)",
        description="Generate (once) a synthetic cohort, serve it from the reference central "
        "record on 127.0.0.1, enrol a fresh demo profile against it and open the app. The "
        f"demo PIN ({DEMO_PIN}) is shown on the unlock screen. Secrets live in memory only "
        "(insecure keyring, DEMO banner). The server stops when the window closes.",
    )
    p.add_argument(
        "--patients",
        type=int,
        default=3000,
        metavar="N",
        help="people in the region (default 3000); with one Trust, the cohort size",
    )
    p.add_argument(
        "--trusts",
        type=int,
        default=DEMO_TRUSTS,
        metavar="N",
        help=f"central records to serve (default {DEMO_TRUSTS}: home and a neighbouring Trust, "
        "from `generate --trusts`; 1: the home Trust alone, as before)",
    )
    p.add_argument(
        "--overlap",
        type=float,
        default=DEMO_OVERLAP,
        metavar="F",
        help=f"share of people two Trusts know (default {DEMO_OVERLAP})",
    )
    p.add_argument(
        "--dir",
        type=Path,
        default=None,
        metavar="DIR",
        help="where the cohort cache, server data and demo profile go "
        "(default: the user cache dir, kerbside/demo)",
    )
    p.add_argument(
        "--quit-after-sync",
        action="store_true",
        help="unlock with the demo PIN, sync, print a JSON summary and quit "
        "(smoke test; needs a display or QT_QPA_PLATFORM=offscreen)",
    )
    p.set_defaults(func=_demo)

    p = subparsers.add_parser(
        "screenshots",
        help="render every screen to PNG (synthetic data, day and night, two sizes)",
    )
    p.add_argument("--out", type=Path, required=True, metavar="DIR")
    p.add_argument(
        "--patients",
        type=int,
        default=300,
        metavar="N",
        help="cohort size behind the screenshots (default 300)",
    )
    p.add_argument(
        "--work",
        type=Path,
        default=None,
        metavar="DIR",
        help="where the demo server and profile go (default: a temporary dir)",
    )
    p.set_defaults(func=_screenshots)


# -- gui ---------------------------------------------------------------------------------------
def _gui(args: argparse.Namespace) -> int:
    from app.services.site import load_site_config
    from app.ui.app import run_gui

    site = load_site_config(args.site_config)  # a bad file: one line here, before any window
    return run_gui(profile_dir(args), auto_sync=True, site=site)


# -- the demo environment ----------------------------------------------------------------------
def use_demo_keyring() -> None:
    """Opt in to the in-memory keyring (demo and screenshots only)."""
    from app.security import INSECURE_ENV, memory_keyring

    os.environ[INSECURE_ENV] = "1"
    keyring.set_keyring(memory_keyring())


def default_demo_dir() -> Path:
    import platformdirs

    return Path(platformdirs.user_cache_dir("kerbside", appauthor=False)) / "demo"


def cached_cohort(directory: Path, patients: int, seed: int = DEMO_SEED) -> Path:
    """The synthetic cohort for this size, generated on first use (deterministic, so the
    cache is always what a fresh generation would give)."""
    from app.synthetic import generate_cohort

    cohort = directory / "cohorts" / f"{patients}-seed{seed}"
    done = cohort / ".complete"
    if not done.exists():
        shutil.rmtree(cohort, ignore_errors=True)
        started = time.perf_counter()
        generate_cohort(patients, seed, cohort)
        done.write_text("ok\n")
        log.info("generated a %d-patient cohort in %.1f s", patients, time.perf_counter() - started)
    return cohort


def cached_region(
    directory: Path, trusts: int, overlap: float, patients: int, seed: int = DEMO_SEED
) -> list[Path]:
    """The `generate --trusts` folders (trust-1 = home) for these arguments, generated on first
    use like `cached_cohort`."""
    from app.synthetic import generate_trusts, trust_folder

    region = directory / "regions" / f"{patients}-t{trusts}-o{overlap:g}-seed{seed}"
    done = region / ".complete"
    if not done.exists():
        shutil.rmtree(region, ignore_errors=True)
        started = time.perf_counter()
        generate_trusts(trusts, overlap, patients, seed, region)
        done.write_text("ok\n")
        log.info(
            "generated a %d-person region of %d Trusts in %.1f s",
            patients,
            trusts,
            time.perf_counter() - started,
        )
    return [region / trust_folder(k) for k in range(1, trusts + 1)]


def trust_identity(folder: Path) -> tuple[str | None, str | None]:
    """(name, ODS code) of the Trust a generated folder is, from its own Organization."""
    path = folder / "Organization.ndjson"
    if not path.exists():
        return None, None
    with path.open(encoding="utf-8") as fh:
        for line in fh:
            org = json.loads(line)
            if any(t.get("text") == "NHS trust" for t in org.get("type") or []):
                code = next((i.get("value") for i in org.get("identifier") or []), None)
                return org.get("name"), code
    return None, None


@dataclass
class DemoEnvironment:
    """Running reference servers (home first, then each neighbouring Trust's) and an enrolled
    demo profile with a source for each; `stop()` ends the servers."""

    directory: Path
    cohort: Path  # the home Trust's folder
    server: ReferenceServer  # the home Trust's central record
    profile_dir: Path
    user: str = DEMO_USER
    pin: str = field(default=DEMO_PIN, repr=False)
    admin_secret: str = field(default="", repr=False)
    neighbours: list[ReferenceServer] = field(default_factory=list)
    folders: list[Path] = field(default_factory=list)  # every Trust's folder, home first

    @property
    def servers(self) -> list[ReferenceServer]:
        return [self.server, *self.neighbours]

    @classmethod
    def create(
        cls,
        directory: Path,
        patients: int,
        *,
        seed: int = DEMO_SEED,
        kdf: KdfParams | None = None,
        trusts: int = 1,
        overlap: float = DEMO_OVERLAP,
    ) -> DemoEnvironment:
        """Generate (or reuse) the data, start a fresh server for each Trust, enrol a fresh
        profile (`kdf`: the PIN's Argon2 cost; production's unless a throwaway profile says
        less). One Trust: a plain cohort of `patients`, as the demo always served. Several:
        `generate --trusts` over a region of `patients` people, trust-1 served as home and
        each other as a read-only source (`trust-2`...), so a person both know is merged
        after the first sync."""
        from app.security import (
            HOME,
            READ_ONLY,
            Profile,
            ServerSettings,
            SourceSettings,
            store_client_secret,
        )
        from app.services.encounters import make_team, set_team
        from app.services.session import enrol
        from sync.reference import ReferenceConfig, ReferenceServer

        if patients < 1:
            raise InvalidInput("--patients must be at least 1", field="patients")
        if not 1 <= trusts <= MAX_DEMO_TRUSTS:
            raise InvalidInput(f"--trusts must be 1 to {MAX_DEMO_TRUSTS}", field="trusts")
        if trusts > 1 and not 0.0 <= overlap <= 1.0:
            raise InvalidInput("--overlap must be between 0 and 1", field="overlap")
        directory.mkdir(parents=True, exist_ok=True)
        if trusts == 1:
            folders = [cached_cohort(directory, patients, seed)]
        else:
            folders = cached_region(directory, trusts, overlap, patients, seed)
        use_demo_keyring()
        # Fresh each run: the secrets of the last run's profile went with its process.
        data_dirs = ["central"] + [f"central-{k}" for k in range(2, MAX_DEMO_TRUSTS + 1)]
        for old in (*data_dirs, "profile"):
            shutil.rmtree(directory / old, ignore_errors=True)
        admin_secret = secrets.token_urlsafe(24)
        started: list[tuple[ReferenceServer, str]] = []
        try:
            for data_dir, folder in zip(data_dirs, folders, strict=False):
                client_secret = secrets.token_urlsafe(24)
                server = ReferenceServer(
                    ReferenceConfig(
                        data_dir=directory / data_dir,
                        seed_dir=folder,
                        clients=[(DEMO_CLIENT_ID, client_secret)],
                        admin_clients=[(DEMO_ADMIN_ID, admin_secret)],
                    )
                ).start()
                started.append((server, client_secret))
            profile = directory / "profile"
            enrol(profile, DEMO_USER, DEMO_PIN, kdf=kdf).close()
            loaded = Profile.load(profile)
            set_team(loaded, make_team(DEMO_TEAM))
            (home, home_secret), *others = started
            if trusts == 1:
                store_client_secret(loaded.profile_id, home_secret)
                loaded.set_server(
                    ServerSettings(
                        base_url=home.base_url, client_id=DEMO_CLIENT_ID, token_url=home.token_url
                    )
                )
            else:  # the home source named like the neighbours: by its Trust
                name, ods = trust_identity(folders[0])
                loaded.add_source(
                    SourceSettings(
                        "home",
                        home.base_url,
                        DEMO_CLIENT_ID,
                        home.token_url,
                        display_name=f"{name} (demo)" if name else None,
                        ods_code=ods,
                        role=HOME,
                    ),
                    home_secret,
                )
            for k, ((server, client_secret), folder) in enumerate(
                zip(others, folders[1:], strict=True), start=2
            ):
                name, ods = trust_identity(folder)
                # Registered in the cache by its first sync (no PIN derivation here).
                loaded.add_source(
                    SourceSettings(
                        f"trust-{k}",
                        server.base_url,
                        DEMO_CLIENT_ID,
                        server.token_url,
                        display_name=f"{name} (demo)" if name else None,
                        ods_code=ods,
                        role=READ_ONLY,
                    ),
                    client_secret,
                )
        except BaseException:
            for server, _secret in started:
                server.stop()
            raise
        return cls(
            directory,
            folders[0],
            started[0][0],
            profile,
            admin_secret=admin_secret,
            neighbours=[server for server, _secret in started[1:]],
            folders=folders,
        )

    def answering(self) -> bool:
        """Whether any of the demo's central records still answers on its port."""
        import requests

        for server in self.servers:
            try:
                requests.get(f"{server.base_url}/metadata", timeout=2)
            except requests.RequestException:
                continue
            return True
        return False

    def stop(self) -> None:
        """Stop the servers (idempotent); the profile stays until the next run."""
        for server in self.servers:
            server.stop()
        log.info("demo central records stopped")


def open_demo_window(
    env: DemoEnvironment,
    *,
    auto_sync: bool = True,
    sync_options: dict[str, Any] | None = None,
    install_excepthook: bool = True,
) -> MainWindow:
    """The app on the demo profile: DEMO banner, the PIN shown, the server stopped on close."""
    from app.ui.app import build_window

    _app, _runner, window, _crash = build_window(
        env.profile_dir,
        demo_pin=env.pin,
        demo=True,
        auto_sync=auto_sync,
        sync_options=sync_options,
        install_excepthook=install_excepthook,
    )
    window.closed.connect(env.stop)
    return window


def _demo(args: argparse.Namespace) -> int:
    from PySide6.QtCore import QTimer
    from PySide6.QtWidgets import QApplication

    directory = args.dir if args.dir is not None else default_demo_dir()
    started = time.perf_counter()
    env = DemoEnvironment.create(directory, args.patients, trusts=args.trusts, overlap=args.overlap)
    try:
        people = (
            f"{args.patients} synthetic patients"
            if args.trusts == 1
            else f"{args.patients} synthetic people in {args.trusts} Trusts"
        )
        print(
            f"kerbside demo: central record at {env.server.base_url} ({people}, ready in "
            f"{time.perf_counter() - started:.1f} s)",
            file=sys.stderr,
        )
        for k, server in enumerate(env.neighbours, start=2):
            print(
                f"kerbside demo: neighbouring Trust (read-only source trust-{k}) at "
                f"{server.base_url}",
                file=sys.stderr,
            )
        print(
            f"kerbside demo: user {env.user}, PIN {env.pin} (synthetic data only; secrets "
            "are kept in memory and forgotten on exit)",
            file=sys.stderr,
        )
        window = open_demo_window(env)
        outcome: dict[str, Any] = {}
        if args.quit_after_sync:
            _quit_after_sync(window, env, outcome)
        window.show()
        app = QApplication.instance()
        assert app is not None
        if args.quit_after_sync:
            QTimer.singleShot(0, lambda: window.unlock_view.enter_pin(env.pin))
        _close_on_signals(window)
        code = int(app.exec())
    finally:
        env.stop()
    if args.quit_after_sync:
        outcome["server_stopped"] = not env.answering()
        print(json.dumps(outcome, sort_keys=True), flush=True)
        synced = all(state == "ok" for state in outcome.get("sources", {}).values())
        return 0 if outcome.get("patients") and synced and outcome["server_stopped"] else 1
    return code


def _close_on_signals(window: MainWindow) -> None:
    """Ctrl+C or SIGTERM in the terminal closes the window properly (drafts kept, server
    stopped). Python runs signal handlers only between bytecodes, so a timer lets it in."""
    import signal

    from PySide6.QtCore import QTimer

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda _s, _f: window.close())
    tick = QTimer(window)
    tick.timeout.connect(lambda: None)
    tick.start(250)


def _quit_after_sync(
    window: MainWindow, env: DemoEnvironment, outcome: dict[str, Any], timeout_s: float = 300.0
) -> None:
    """Close the window after the first sync (or its failure), noting what happened."""
    from PySide6.QtCore import QTimer

    def finished(report: Any) -> None:
        session = window.session
        counts = session.store.count_by_type() if session is not None else {}
        from app.store import HOME_SOURCE

        home = (
            session.store.count_by_type("Patient", source=HOME_SOURCE)
            if session is not None
            else {}
        )
        sources = getattr(report, "sources", {})
        outcome.update(
            pulled=report.pulled,
            patients=home.get("Patient", 0),  # the home Trust's, as before several sources
            patients_all_sources=counts.get("Patient", 0),
            sources={name: part.state for name, part in sources.items()},
            merged_people=_merged_people(session) if session is not None else 0,
            enrolled_with=DEMO_CLIENT_ID,
            seconds=round(report.seconds, 2),
        )
        QTimer.singleShot(0, window.close)  # after every other receiver of this signal

    def failed(message: str) -> None:
        outcome["error"] = message
        QTimer.singleShot(0, window.close)

    def opened(_session: Any) -> None:
        controller = window.sync_controller
        assert controller is not None
        controller.sync_failed.connect(failed)

    window.session_opened.connect(opened)
    window.sync_finished.connect(finished)
    watchdog = QTimer(window)
    watchdog.setSingleShot(True)
    watchdog.timeout.connect(lambda: (outcome.setdefault("error", "timed out"), window.close()))
    watchdog.start(int(timeout_s * 1000))


def _merged_people(session: Any) -> int:
    """People with more than one source's record (joined by a verified NHS number)."""
    return int(session.store.merged_people())


# -- screenshots -------------------------------------------------------------------------------
def _screenshots(args: argparse.Namespace) -> int:
    import tempfile

    if args.work is not None:
        written = render_screenshots(args.out, args.work, patients=args.patients)
    else:
        with tempfile.TemporaryDirectory(prefix="kerbside-shots-") as work:
            written = render_screenshots(args.out, Path(work), patients=args.patients)
    for path in written:
        print(path)
    return 0


def _pick_showcase(cohort: Path) -> tuple[str, str, str]:
    """(patient id, search text, doomed id): a person with alerts, a crisis plan and a
    distinctive surname to show, and another whose encounter the centre will refuse."""

    def rows(rtype: str) -> Iterator[dict[str, Any]]:
        with (cohort / f"{rtype}.ndjson").open(encoding="utf-8") as fh:
            for line in fh:
                yield json.loads(line)

    def subject(res: dict[str, Any]) -> str:
        return str(res.get("subject", {}).get("reference", "")).removeprefix("Patient/")

    alerts: dict[str, int] = {}
    for flag in rows("Flag"):
        if flag.get("status") == "active":
            alerts[subject(flag)] = alerts.get(subject(flag), 0) + 1
    planned = {subject(p) for p in rows("CarePlan") if p.get("status") == "active"}
    patients = list(rows("Patient"))
    families: dict[str, int] = {}
    for p in patients:
        family = p["name"][0].get("family", "")
        families[family] = families.get(family, 0) + 1
    best: tuple[int, str, str] | None = None
    for p in patients:
        name = p["name"][0]
        family = name.get("family", "")
        if (
            p["id"] in planned
            and families[family] == 1
            and family.isalpha()
            and 1 <= alerts.get(p["id"], 0) <= 3
        ):
            score = alerts[p["id"]]
            if best is None or score > best[0]:
                best = (score, p["id"], f"{name.get('given', [''])[0]} {family}")
    if best is None:
        raise InvalidInput("the cohort is too small for screenshots; use more --patients")
    doomed = next(p["id"] for p in patients if p["id"] != best[1])
    return best[1], best[2], doomed


def _pick_extras(cohort: Path) -> tuple[str | None, str | None]:
    """(child id, staff-safety id): someone under 18, and someone with a staff-safety alert,
    for the screenshots of those states (None when the cohort has nobody of the kind)."""
    from datetime import date

    from app.fhir import staff_safety_note

    today = date.today()
    child = None
    with (cohort / "Patient.ndjson").open(encoding="utf-8") as fh:
        for line in fh:
            patient = json.loads(line)
            born = str(patient.get("birthDate", ""))
            if len(born) == 10 and 12 <= today.year - int(born[:4]) <= 16:
                child = str(patient["id"])
                break
    staff = None
    with (cohort / "Flag.ndjson").open(encoding="utf-8") as fh:
        for line in fh:
            flag = json.loads(line)
            code = flag.get("code") or {}
            text = code.get("text") or next(
                (c.get("display") or c.get("code") for c in code.get("coding") or []), ""
            )
            if flag.get("status") == "active" and staff_safety_note(str(text)):
                staff = str(flag["subject"]["reference"]).removeprefix("Patient/")
                break
    return child, staff


def _field_record(patient: dict[str, Any], minutes_ago: int) -> dict[str, Any]:
    now = times.now()
    iso = times.iso_instant

    return {
        "patient": patient,
        "start": iso(now - timedelta(minutes=minutes_ago + 40)),
        "end": iso(now - timedelta(minutes=minutes_ago)),
        "location": "Bus station, Moor Street", "location_type": "public-place",
        "police_incident_ref": "WMP-0000-DEMO", "presenting_situation": "Distressed in a "
        "public place (synthetic)", "section_136": False, "outcome": "referred-crisis-team",
        "narrative": "Synthetic demo narrative", "risk_to_self": "medium",
    }  # fmt: skip


def _prepare_screenshot_data(env: DemoEnvironment, doomed: str) -> None:
    """Sync, then leave one sent, one refused (its person merged away centrally) and one
    waiting record on the device, through the real services and the real server."""
    import requests

    from app.services.encounters import parse_encounter_json, record_many
    from app.services.session import unlock
    from app.services.syncing import run_sync

    with unlock(env.profile_dir, env.user, env.pin) as session:
        run_sync(session)
        inputs = [
            parse_encounter_json(_field_record({"id": doomed}, 90), session),
            parse_encounter_json(
                _field_record(
                    {
                        "unidentified": {
                            "description": "Tall, grey hoodie, rucksack",
                            "apparent_age": 30,
                            "sex": "male",
                        }
                    },
                    60,
                ),
                session,
            ),
        ]
        record_many(session, inputs)
        admin = requests.Session()
        token = env.server.token(DEMO_ADMIN_ID, env.admin_secret)
        admin.headers["Authorization"] = f"Bearer {token}"
        resp = admin.delete(f"{env.server.base_url}/Patient/{doomed}", timeout=30)
        resp.raise_for_status()
        admin.close()
        run_sync(session)
        record_many(
            session,
            [
                parse_encounter_json(
                    _field_record(
                        {
                            "unidentified": {
                                "description": "Woman in a red coat",
                                "apparent_age": 45,
                                "sex": "female",
                            }
                        },
                        10,
                    ),
                    session,
                )
            ],
        )
    _add_lookup_person(env)


def _add_lookup_person(env: DemoEnvironment) -> None:
    """A person (with an alert) at the central record after the tablet last synced."""
    import requests

    admin = requests.Session()
    admin.headers["Authorization"] = f"Bearer {env.server.token(DEMO_ADMIN_ID, env.admin_secret)}"
    admin.headers["Content-Type"] = "application/fhir+json"
    patient = {
        "resourceType": "Patient",
        "identifier": [{"system": "https://fhir.nhs.uk/Id/nhs-number", "value": "9434765919"}],
        "name": [{"use": "official", "family": LOOKUP_FAMILY, "given": [LOOKUP_GIVEN]}],
        "gender": "female",
        "birthDate": LOOKUP_BORN,
        "address": [
            {"use": "home", "line": ["4 Canal Row"], "city": "Riverside", "postalCode": "RV3 7QT"}
        ],
    }
    resp = admin.post(f"{env.server.base_url}/Patient", json=patient, timeout=30)
    resp.raise_for_status()
    pid = resp.json()["id"]
    flag = {
        "resourceType": "Flag",
        "status": "active",
        "code": {"text": "Risk to self: recent overdose"},
        "subject": {"reference": f"Patient/{pid}"},
    }
    admin.post(f"{env.server.base_url}/Flag", json=flag, timeout=30).raise_for_status()
    admin.close()


def _shoot_lookup(window: MainWindow, shoot: Callable[[str], None]) -> None:
    """The look-up: the reason sheet, the hits, the record it opened (labelled)."""
    session = window.session
    assert session is not None and session.profile.home_source is not None
    window.start_lookup(session.profile.home_source.name)
    view = window.lookup_view
    view.reason_sheet.words.setPlainText("Found collapsed at the bus station; not known to us")
    shoot("lookup-reason")
    view.reason_sheet.buttons()[0].click()
    view.family.setText(LOOKUP_FAMILY)
    view.birth_date.setText("14/03/1987")
    view.search()
    _wait(lambda: bool(view.hits()))
    shoot("lookup-results")
    pid = view.hits()[0].patient_id
    view.open_hit(0)
    _wait(lambda: window.record_view.shown_record_id() == pid)
    window.record_view.scroll_area.verticalScrollBar().setValue(0)
    shoot("lookup-record")


def _prepare_merged(env: DemoEnvironment, showcase: str, doomed: str) -> tuple[str, str]:
    """A person two Trusts know, for the merged-record scenes: their home id and a search for
    them. A neighbouring
    Trust (a read-only source, never synced here) holds a copy of a home Patient under its own
    id with the same verified NHS number, a differently spelt surname and another birth date
    (so the view says the sources disagree), its own address, and alerts, a crisis plan and a
    care team of its own (the showcase person's, re-pointed). Synthetic data only."""
    import copy

    from app.fhir import verified_nhs_number
    from app.security import Profile, SourceSettings
    from app.services.session import unlock

    def rows(rtype: str) -> list[dict[str, Any]]:
        path = env.cohort / f"{rtype}.ndjson"
        if not path.exists():
            return []
        return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]

    def subject(res: dict[str, Any]) -> str:
        ref = (res.get("subject") or res.get("patient") or {}).get("reference", "")
        return str(ref).removeprefix("Patient/")

    flagged = {subject(f) for f in rows("Flag") if f.get("status") == "active"}
    planned = {subject(p) for p in rows("CarePlan") if p.get("status") == "active"}
    candidates = [
        p
        for p in rows("Patient")
        if p["id"] not in (showcase, doomed) and verified_nhs_number(p) and p.get("birthDate")
    ]
    if not candidates:
        raise InvalidInput("the cohort is too small for screenshots; use more --patients")
    candidates.sort(key=lambda p: (p["id"] not in flagged or p["id"] not in planned, p["id"]))
    home = candidates[0]
    twin = copy.deepcopy(home)
    twin["id"] = f"wv-{home['id'][:12]}"
    twin["meta"] = {"versionId": "1", "lastUpdated": "2026-10-01T09:00:00.000Z"}
    official = next(n for n in twin["name"] if n.get("use", "official") == "official")
    family = str(official.get("family", ""))
    official["family"] = family + "e"  # another spelling of the same name
    year = int(twin["birthDate"][:4]) + 1
    twin["birthDate"] = f"{year}{twin['birthDate'][4:]}"
    twin["address"] = [
        {"use": "home", "line": ["14 Severn Terrace"], "city": "Worcester", "postalCode": "WR1 3JD"}
    ]
    twin.pop("generalPractitioner", None)

    def pointed(res: dict[str, Any]) -> dict[str, Any]:
        out = copy.deepcopy(res)
        out["id"] = f"wv-{res['id'][:24]}"
        for key in ("subject", "patient"):
            if key in out:
                out[key] = {"reference": f"Patient/{twin['id']}"}
        return out

    donor = next(p for p in rows("Patient") if p["id"] == showcase)
    donor_given = str((donor["name"][0].get("given") or [""])[0])
    home_given = str((official.get("given") or [""])[0])

    def renamed(res: dict[str, Any]) -> dict[str, Any]:  # the plan's text names its person
        if not donor_given or not home_given:
            return res
        return dict(json.loads(json.dumps(res).replace(donor_given, home_given)))

    theirs = [
        renamed(pointed(r))
        for rtype in ("Flag", "CarePlan", "CareTeam")
        for r in rows(rtype)
        if subject(r) == showcase and r.get("status", "active") == "active"
    ]
    directory = [*rows("Practitioner"), *rows("Organization")]
    Profile.load(env.profile_dir).add_source(
        SourceSettings(
            NEIGHBOUR_SOURCE,
            "https://fhir.west-vale.invalid/R4",
            "kerbside-demo",
            display_name=NEIGHBOUR_NAME,
            role="read-only",
        ),
        "synthetic",
    )
    with unlock(env.profile_dir, env.user, env.pin) as session:
        sid = session.store.ensure_source(NEIGHBOUR_SOURCE, "read-only")
        session.store.put_resources(sid, [*directory, twin, *theirs])
    return str(home["id"]), family


def _wait(predicate: Callable[[], bool], timeout_s: float = 20.0) -> None:
    from PySide6.QtWidgets import QApplication

    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise RuntimeError("the window did not reach the expected state in time")
        QApplication.processEvents()
        time.sleep(0.01)


def _settle(window: MainWindow) -> None:
    from PySide6.QtWidgets import QApplication

    for _ in range(5):
        QApplication.processEvents()
    window.runner.wait_until_idle(10_000)
    QApplication.processEvents()


def render_screenshots(
    out: Path, work: Path, *, patients: int = 300, sizes: tuple[tuple[int, int], ...] = SCREEN_SIZES
) -> list[Path]:
    """Render every screen at each size in day and night mode to `out` as PNG files named
    `<scene>-<w>x<h>-<day|night>.png`; returns the paths. Synthetic data only."""
    from app.security import KdfParams
    from app.ui.app import build_window

    out.mkdir(parents=True, exist_ok=True)
    # A throwaway profile unlocked four times: a cheap PIN hash keeps the run short.
    cheap = KdfParams(time_cost=1, memory_kib=8192, parallelism=1)
    env = DemoEnvironment.create(work, patients, kdf=cheap, trusts=1)
    written: list[Path] = []
    try:
        showcase, query, doomed = _pick_showcase(env.cohort)
        _prepare_screenshot_data(env, doomed)
        _app, _runner, window, _crash = build_window(
            env.profile_dir,
            auto_sync=False,
            install_excepthook=False,
            sync_options={"use_os_network_info": False, "probe_interval_s": 0},
        )
        extras = _pick_extras(env.cohort)
        try:
            window.show()
            for mode in ("day", "night"):
                window.set_night_mode(mode == "night")
                for width, height in sizes:
                    window.resize(width, height)
                    written += _shoot_all(
                        window, env, out, f"{width}x{height}-{mode}", showcase, query, extras
                    )
            written += _shoot_offline(window, env, out, sizes)
        finally:
            window.set_night_mode(False)
            window.close()
        # Last, in a window of its own: a neighbouring Trust added to the profile (so every
        # scene above is the one-source app, as before) and a person both Trusts know.
        merged = _prepare_merged(env, showcase, doomed)
        _app, _runner, window, _crash = build_window(
            env.profile_dir, auto_sync=False, install_excepthook=False,
            sync_options={"use_os_network_info": False, "probe_interval_s": 0},
        )  # fmt: skip
        try:
            window.show()
            window.unlock_view.enter_pin(env.pin)
            _wait(lambda: not window.is_locked)
            for mode in ("day", "night"):
                window.set_night_mode(mode == "night")
                for width, height in sizes:
                    window.resize(width, height)
                    written += _shoot_merged(window, out, f"{width}x{height}-{mode}", merged)
        finally:
            window.set_night_mode(False)
            window.close()
    finally:
        env.stop()
    written += _shoot_sources(out, work / "sources", sizes, patients, cheap)
    return written


def _shooter(
    window: MainWindow, out: Path, suffix: str, shots: list[Path]
) -> Callable[[str], None]:
    """Grab the settled window as `<scene>-<suffix>.png` in `out`, adding each file to `shots`."""

    def shoot(scene: str) -> None:
        _settle(window)
        path = out / f"{scene}-{suffix}.png"
        if not window.grab().save(str(path)):
            raise RuntimeError(f"could not write {path}")
        shots.append(path)

    return shoot


def _shoot_each_look(
    window: MainWindow, out: Path, scene: str, sizes: tuple[tuple[int, int], ...]
) -> list[Path]:
    """The page on screen as `<scene>-<W>x<H>-<day|night>.png`, at each size in both modes."""
    shots: list[Path] = []
    for mode in ("day", "night"):
        window.set_night_mode(mode == "night")
        for width, height in sizes:
            window.resize(width, height)
            _shooter(window, out, f"{width}x{height}-{mode}", shots)(scene)
    return shots


def _shoot_merged(
    window: MainWindow, out: Path, suffix: str, merged: tuple[str, str]
) -> list[Path]:
    """A person two Trusts know: labelled alerts and the disagreement; the neighbour's plan."""
    shots: list[Path] = []
    shoot = _shooter(window, out, suffix, shots)

    window.show_page("find")
    window.focus_search()
    window.search_view.box.setText(merged[1])
    window.search_view.search_now()
    _open_record(window, merged[0])
    shoot("merged-record")
    window.record_view.jump_to("other-plans")
    shoot("merged-plans")
    return shots


def _shoot_sources(
    out: Path, work: Path, sizes: tuple[tuple[int, int], ...], patients: int, kdf: KdfParams
) -> list[Path]:
    """The Sync page of the two-Trust demo (`kerbside demo`'s region) after a run in which
    the neighbouring Trust did not answer: one row per central record, home synced, the
    neighbour's last sync failed with its reason and its records kept and dated."""
    from app.ui.app import build_window

    env = DemoEnvironment.create(work, patients, kdf=kdf, trusts=2)
    shots: list[Path] = []
    try:
        _app, _runner, window, _crash = build_window(
            env.profile_dir,
            auto_sync=False,
            install_excepthook=False,
            sync_options={"use_os_network_info": False, "probe_interval_s": 0},
        )
        try:
            window.show()
            window.unlock_view.enter_pin(env.pin)
            _wait(lambda: not window.is_locked)
            _sync_in(window)
            for neighbour in env.neighbours:
                neighbour.stop()
            _sync_in(window)
            window.show_page("sync")
            shots += _shoot_each_look(window, out, "sync-sources", sizes)
        finally:
            window.set_night_mode(False)
            window.close()
    finally:
        env.stop()
    return shots


def _sync_in(window: MainWindow, timeout_s: float = 120.0) -> None:
    """One whole sync through the window's controller (after any it started by itself)."""
    controller = window.sync_controller
    assert controller is not None
    _wait(lambda: not controller.is_running, timeout_s)
    ended: list[bool] = []
    controller.sync_finished.connect(lambda _report: ended.append(True))
    controller.sync_failed.connect(lambda _message: ended.append(False))
    if not controller.start_sync():
        raise RuntimeError("a sync could not be started")
    _wait(lambda: bool(ended), timeout_s)
    if not ended[0]:
        raise RuntimeError("the demo sync failed")


def _shoot_offline(
    window: MainWindow, env: DemoEnvironment, out: Path, sizes: tuple[tuple[int, int], ...]
) -> list[Path]:
    """Last: the central record goes away; the Sync page and header with a record waiting."""
    env.stop()
    controller = window.sync_controller
    assert controller is not None
    from app.ui.sync_worker import OFFLINE

    controller.check_connectivity()
    _wait(lambda: controller.connectivity == OFFLINE)
    window.show_page("sync")
    return _shoot_each_look(window, out, "offline-waiting", sizes)


def _open_record(window: MainWindow, patient_id: str) -> None:
    window.open_patient(patient_id)
    window.record_view.reason_sheet.buttons()[0].click()
    _wait(lambda: window.record_view.shown_record_id() == patient_id)
    window.record_view.scroll_area.verticalScrollBar().setValue(0)


def _shoot_all(
    window: MainWindow,
    env: DemoEnvironment,
    out: Path,
    suffix: str,
    showcase: str,
    query: str,
    extras: tuple[str | None, str | None] = (None, None),
) -> list[Path]:
    shots: list[Path] = []
    shoot = _shooter(window, out, suffix, shots)

    if not window.is_locked:
        window.lock()
    _settle(window)
    shoot("unlock")
    window.unlock_view.enter_pin(env.pin)
    _wait(lambda: not window.is_locked)
    window.focus_search()
    window.search_view.box.setText(query.split()[-1])
    window.search_view.search_now()
    shoot("search")
    window.open_patient(showcase)
    shoot("reason-sheet")
    buttons = window.record_view.reason_sheet.buttons()
    buttons[0].click()
    _wait(lambda: window.record_view.patient_id == showcase)
    window.record_view.scroll_area.verticalScrollBar().setValue(0)
    shoot("record")
    child, staff = extras
    for scene, pid in (("staff-alert", staff), ("child-record", child)):
        _open_record(window, pid or showcase)
        shoot(scene)
    window.search_view.box.setText(f"Xanthe {query.split()[-1]}")  # no Xanthe: weak matches
    window.search_view.search_now()
    shoot("weak-match")
    _shoot_lookup(window, shoot)
    _open_record(window, showcase)
    window.start_encounter(showcase)
    shoot("encounter")
    form = window.encounter_form
    assert form is not None
    form.discard()  # its autosaved draft would otherwise pile up in later shots
    form = window._open_form()
    form.save()  # nothing filled in: every problem shown at its field
    shoot("form-errors")
    form.discard()
    window.start_encounter(showcase)
    form = window.encounter_form
    assert form is not None
    form.location_type.button("public-place").click()
    form.section_136.button("yes").click()
    for when, nudge in ((form.s136_detained_at, "-60"), (form.s136_arrived_at, "-15")):
        when.buttons["now"].click()
        when.buttons[nudge].click()
    form.health_professional_consulted.button("yes").click()
    form.place_of_safety.button("hbpos").click()
    form.conveyance.button("ambulance").click()
    form.reveal(form.s136_limit)
    shoot("s136")
    form.discard()
    window.show_page("sync")
    panel = window.sync_panel
    assert panel is not None
    _wait(lambda: bool(panel.rejected_rows))
    shoot("sync")
    window.show_page("find")
    return shots
