"""Canary test for SECURITY.md item 13 (and item 8): patient data and key material stay inside
the encrypted cache.

A patient with a distinctive name and NHS number (the canary) is put on a real reference server;
a real profile then pulls it, searches for it with a typo, opens the record (audited), records
two encounters whose free text carries a third canary, syncs them, meets a wrong PIN and two
kinds of sync error, all with every logger at DEBUG written to a file and the process's stdout
and stderr captured. Then the raw bytes of every log line, exception text, profile file (db,
wal, shm, profile.json, status.json, anything else) and every file created in the temp
directory during the run are searched for the canaries, in the encodings a leak would take.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import shutil
import stat
import sys
import tempfile
import time
import traceback
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from app.errors import KerbsideError, UnlockFailed
from app.fhir import NHS_NUMBER_SYSTEM
from app.nhs_number import check_digit, format_nhs_number
from app.security import LockoutPolicy, ServerSettings, store_client_secret
from app.services import encounters
from app.services.records import ACCESS_REASONS, open_record
from app.services.search import PatientSearch
from app.services.session import Session, enrol, unlock
from app.services.syncing import run_sync
from sync import RetryPolicy, SyncError
from sync.reference import ReferenceServer
from tests.conftest import TABLET_CLIENT, TEST_KDF, MemoryKeyring, reference_config
from tests.gui.conftest import make_window  # noqa: F401  (the real window, for the GUI part)

CANARY_GIVEN = "Quenbritha"
CANARY_FAMILY = "Zorvandeller"
CANARY_NOTE = "Plumtreecanary"  # free text typed by the officer
PIN = "73914862"  # longer than a timestamp fragment, so a digit run in a log is not a false hit
USER = "pc4417"
# Lockout with no delays, so the wrong PIN below costs no waiting.
LOCKOUT = LockoutPolicy(max_failures=10, free_attempts=3, base_delay_s=0.0, max_delay_s=0.0)
SYSTEM_TMP = Path(tempfile.gettempdir())  # read before any fixture points TMPDIR elsewhere


def _canary_nhs_number() -> str:
    """A valid NHS number in the 999 range (never issued to a real person)."""
    for n in range(999_731_001, 999_999_999):
        digit = check_digit(str(n))
        if digit is not None:
            return f"{n}{digit}"
    raise AssertionError("no valid number")


CANARY_NHS = _canary_nhs_number()


def _needles(extra: dict[str, bytes]) -> dict[str, bytes]:
    """What must never show up outside the encrypted db, as raw bytes (matched on lower case)."""
    texts = {
        "given name": CANARY_GIVEN,
        "family name": CANARY_FAMILY,
        "free text": CANARY_NOTE,
        "NHS number": CANARY_NHS,
        "spaced NHS number": format_nhs_number(CANARY_NHS),
        "PIN": PIN,
    }
    out: dict[str, bytes] = {}
    for what, text in texts.items():
        out[what] = text.lower().encode()
        out[f"{what} (UTF-16)"] = text.lower().encode("utf-16-le")
    out.update(extra)
    return out


def _find(blob: bytes, needles: dict[str, bytes]) -> list[str]:
    low = blob.lower()
    return [what for what, needle in needles.items() if needle.lower() in low]


# -- the canary cohort and the server -----------------------------------------------------------


def _canary_cohort(source: Path, out: Path) -> str:
    """The small cohort with one alerted patient renamed to the canary; returns its id."""
    shutil.copytree(source, out)
    flagged = {
        json.loads(line)["subject"]["reference"].split("/", 1)[1]
        for line in (out / "Flag.ndjson").read_text().splitlines()
    }
    lines = (out / "Patient.ndjson").read_text().splitlines()
    patients = [json.loads(line) for line in lines]
    target = next(p for p in patients if p["id"] in flagged and p.get("birthDate"))
    for name in target["name"]:
        name["given"] = [CANARY_GIVEN]
        name["family"] = CANARY_FAMILY
        name.pop("text", None)
    target["identifier"] = [
        i for i in target.get("identifier", ()) if i.get("system") != NHS_NUMBER_SYSTEM
    ]
    target["identifier"].append({"system": NHS_NUMBER_SYSTEM, "value": CANARY_NHS})
    (out / "Patient.ndjson").write_text(
        "\n".join(json.dumps(p) for p in patients) + "\n", encoding="utf-8"
    )
    return str(target["id"])


@pytest.fixture
def canary_server(tmp_path: Path, cohort_dir: Path) -> Iterator[tuple[ReferenceServer, str]]:
    patient_id = _canary_cohort(cohort_dir, tmp_path / "canary-cohort")
    server = ReferenceServer(reference_config(tmp_path / "central", tmp_path / "canary-cohort"))
    server.start()
    try:
        yield server, patient_id
    finally:
        server.stop()


@pytest.fixture
def debug_log(tmp_path: Path) -> Iterator[Path]:
    """Every logger at DEBUG into one file, after the product's own logging set-up."""
    from app.logs import configure_logging

    path = tmp_path / "logs" / "kerbside.log"
    path.parent.mkdir()
    root = logging.getLogger()
    levels = {
        name: logging.getLogger(name).level
        for name in ("", "urllib3", "requests", "uvicorn.access", "faker", "asyncio")
    }
    handlers = list(root.handlers)
    configure_logging(verbose=True)
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setLevel(logging.DEBUG)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:
        yield path
    finally:
        root.removeHandler(handler)
        handler.close()
        root.handlers[:] = handlers
        for name, level in levels.items():
            logging.getLogger(name).setLevel(level)


@pytest.fixture
def private_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The process's temp directory for the test: whatever lands there is inspected."""
    path = tmp_path / "tmpdir"
    path.mkdir()
    monkeypatch.setenv("TMPDIR", str(path))
    monkeypatch.setenv("SQLITE_TMPDIR", str(path))
    monkeypatch.setattr(tempfile, "tempdir", str(path))
    return path


# -- the run ------------------------------------------------------------------------------------


def _encounter(patient_id: str, minutes_ago: int) -> dict[str, Any]:
    now = datetime.now(UTC).replace(microsecond=0)
    return {
        "patient": {"id": patient_id},
        "start": (now - timedelta(minutes=minutes_ago + 30)).isoformat().replace("+00:00", "Z"),
        "end": (now - timedelta(minutes=minutes_ago)).isoformat().replace("+00:00", "Z"),
        "location": f"Bus station, near {CANARY_NOTE} Street",
        "location_type": "public-place",
        "police_incident_ref": "WMP-2026-11-20-1042",
        "presenting_situation": f"Distressed; {CANARY_NOTE} said she had not slept",
        "section_136": False,
        "outcome": "referred-crisis-team",
        "narrative": f"{CANARY_GIVEN} {CANARY_FAMILY} ({CANARY_NOTE}) known as Q, NHS {CANARY_NHS}",
    }


def _exception_text(exc: BaseException) -> str:
    """What a crash report would hold: message, repr and the chain of causes (not locals)."""
    return "".join(traceback.format_exception(exc)) + repr(exc)


def _enrolled(profile: Path, server: ReferenceServer) -> Session:
    session = enrol(profile, USER, PIN, kdf=TEST_KDF, lockout=LOCKOUT)
    session.profile.set_server(ServerSettings(base_url=server.base_url, client_id=TABLET_CLIENT[0]))
    store_client_secret(session.profile.profile_id, TABLET_CLIENT[1])
    return session


def _walk_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file())


def _new_temp_files(since: float, skip: Path) -> list[Path]:
    """Files under the real system temp dir changed since `since`, outside pytest's own dirs."""
    base = SYSTEM_TMP
    found: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(base, onerror=lambda _e: None):
        here = Path(dirpath)
        dirnames[:] = [d for d in dirnames if not (here / d).is_relative_to(skip)]
        for name in filenames:
            path = here / name
            try:
                st = path.lstat()
            except OSError:
                continue
            if stat.S_ISREG(st.st_mode) and max(st.st_mtime, st.st_ctime) >= since:
                found.append(path)
    return found


def test_canaries_stay_inside_the_encrypted_cache(
    tmp_path: Path,
    canary_server: tuple[ReferenceServer, str],
    debug_log: Path,
    private_tmp: Path,
    memory_keyring: MemoryKeyring,
    capfd: pytest.CaptureFixture[str],
) -> None:
    server, canary_id = canary_server
    started = time.time()
    profile = tmp_path / "profile"
    errors: list[BaseException] = []
    fast_retry = RetryPolicy(attempts=2, base_s=0.0, cap_s=0.0)

    session = _enrolled(profile, server)
    try:
        # Pull the cohort, find the canary with a typo, open the record (audited).
        assert run_sync(session).pulled > 0
        hits = PatientSearch(session.store).search("Quenbrita Zorvandeler").hits
        assert hits and hits[0].id == canary_id
        assert (
            PatientSearch(session.store).search(format_nhs_number(CANARY_NHS)).hits[0].id
            == canary_id
        )
        record = open_record(session, canary_id, ACCESS_REASONS[0])
        assert CANARY_FAMILY.lower() in record.person.name.lower()
        assert record.person.nhs_number == format_nhs_number(CANARY_NHS)
        assert any(e.patient_id == canary_id for e in session.store.audit_entries())

        # Record an encounter and sync it: accepted by the centre.
        first = encounters.record(
            session, encounters.parse_encounter_json(_encounter(canary_id, 60), session)
        )
        report = run_sync(session)
        assert report.pushed >= 1
        assert session.store.outbox_row(first.client_id).state == "sent"  # type: ignore[union-attr]

        # A second encounter meets a failing centre: 500s, then no server at all.
        second = encounters.record(
            session, encounters.parse_encounter_json(_encounter(canary_id, 10), session)
        )
        server.inject("status", status=500, path="/")
        with pytest.raises(SyncError) as failed:
            run_sync(session, retry=fast_retry, sleep=lambda _s: None)
        errors.append(failed.value)
        server.clear_faults()
        server.stop()
        with pytest.raises(SyncError) as offline:
            run_sync(session, retry=fast_retry, sleep=lambda _s: None)
        errors.append(offline.value)
        assert session.store.outbox_row(second.client_id).state == "pending"  # type: ignore[union-attr]
        session.write_status()
        data_key = session._data_key
    finally:
        session.close()

    # A wrong PIN, then the right one (the session reopens: wal and shm come back).
    with pytest.raises(UnlockFailed) as wrong:
        unlock(profile, USER, "19283746")
    errors.append(wrong.value)
    reopened = unlock(profile, USER, PIN)
    try:
        assert reopened.store.outbox_row(second.client_id) is not None
        live_files = {p: p.read_bytes() for p in _walk_files(profile)}
    finally:
        reopened.close()

    out, err = capfd.readouterr()
    for handler in logging.getLogger().handlers:
        handler.flush()

    secrets_ = {
        "data key (hex)": data_key.hex().encode(),
        "data key (base64)": base64.b64encode(data_key),
        "data key (raw)": data_key,
        "client secret": TABLET_CLIENT[1].encode(),
    }
    for (service, name), value in memory_keyring.secrets.items():
        if name.startswith("device"):
            secrets_[f"device secret {service}/{name}"] = value.encode()
    needles = _needles(secrets_)

    leaks: list[str] = []
    log_text = debug_log.read_bytes()
    assert b"kerbside" in log_text, "the DEBUG log captured nothing: the check would be empty"
    leaks += [f"log: {w}" for w in _find(log_text, needles)]
    leaks += [f"stdout/stderr: {w}" for w in _find((out + err).encode(), needles)]
    for exc in errors:
        assert isinstance(exc, KerbsideError | SyncError)
        leaks += [
            f"{type(exc).__name__} text: {w}" for w in _find(_exception_text(exc).encode(), needles)
        ]

    # Every file of the profile, while open (wal/shm present) and after closing.
    final_files = {p: p.read_bytes() for p in _walk_files(profile)}
    names = {p.name for p in [*live_files, *final_files]}
    assert {"cache.db", "profile.json", "status.json"} <= names
    assert any(n.endswith("-wal") for n in names), "the open cache's wal was not inspected"
    for path, blob in [*live_files.items(), *final_files.items()]:
        assert len(blob) > 0 or path.suffix != ".db"
        leaks += [f"{path.name}: {w}" for w in _find(blob, needles)]
    assert not final_files[profile / "cache.db"].startswith(b"SQLite format 3\0")

    # Temp files: the process's own temp dir, and anything new under the real one.
    for path in _walk_files(private_tmp):
        leaks += [f"temp {path.name}: {w}" for w in _find(path.read_bytes(), needles)]
    pytest_root = tmp_path.parents[1]  # pytest-of-<user>: other runs' and this run's dirs
    for path in _new_temp_files(started, pytest_root):
        try:
            blob = path.read_bytes()
        except OSError:
            continue
        leaks += [f"temp {path}: {w}" for w in _find(blob, needles)]

    # Positive control: the same search finds the canary where it is stored in the clear (the
    # central record's own files), so a miss above is not a wrong encoding.
    central = b"".join(p.read_bytes() for p in _walk_files(tmp_path / "central"))
    assert {"family name", "NHS number"} <= set(_find(central, needles))

    assert not leaks, "canary found outside the encrypted cache:\n" + "\n".join(leaks)


def test_profile_files_are_owner_only(tmp_path: Path, cohort_dir: Path) -> None:
    """SECURITY.md 8: the profile directory is 0700 and every file in it 0600."""
    from app.services.importer import import_ndjson

    if sys.platform == "win32":
        pytest.skip("POSIX permissions")
    profile = tmp_path / "profile"
    old = os.umask(0o022)  # a usual, permissive umask: the product must not rely on a strict one
    try:
        session = enrol(profile, USER, PIN, kdf=TEST_KDF, lockout=LOCKOUT)
        try:
            import_ndjson(session, cohort_dir)
            session.write_status()
            session.profile.update_settings(night_mode=True)
            modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in _walk_files(profile)}
        finally:
            session.close()
    finally:
        os.umask(old)
    assert {"cache.db", "cache.db-wal", "profile.json", "status.json"} <= set(modes)
    assert stat.S_IMODE(profile.stat().st_mode) == 0o700
    loose = {name: oct(mode) for name, mode in modes.items() if mode & 0o077}
    assert not loose, f"profile files readable by others: {loose}"


# -- the window ---------------------------------------------------------------------------------


def _shown_texts(widget: Any) -> list[str]:
    """Every piece of text a visible widget under `widget` shows or reads out."""
    from PySide6.QtWidgets import QAbstractButton, QLabel, QLineEdit, QPlainTextEdit, QWidget

    texts: list[str] = []
    for w in [widget, *widget.findChildren(QWidget)]:
        if not w.isVisible():
            continue
        texts += [w.windowTitle(), w.accessibleName(), w.toolTip()]
        if isinstance(w, QLabel | QAbstractButton | QLineEdit):
            texts.append(w.text())
        elif isinstance(w, QPlainTextEdit):
            texts.append(w.toPlainText())
    return texts


def test_the_window_shows_no_canary_in_titles_clipboard_or_when_locked(
    tmp_path: Path,
    cohort_dir: Path,
    qtbot: Any,
    make_window: Any,  # noqa: F811  (the fixture imported above)
    debug_log: Path,
) -> None:
    """SECURITY.md 13-14 through the real window: titles, clipboard, the lock screen, logs."""
    from PySide6.QtCore import Qt
    from PySide6.QtGui import QGuiApplication
    from PySide6.QtWidgets import QApplication

    from tests.gui.conftest import make_profile
    from tests.support.gui import fill_encounter, save_encounter, search, tap, tap_result
    from tests.support.gui import unlock as unlock_window

    canary_id = _canary_cohort(cohort_dir, tmp_path / "canary-cohort")
    profile = make_profile(tmp_path / "profile", tmp_path / "canary-cohort")
    clipboard = QGuiApplication.clipboard()
    clipboard.setText("nothing from the app")
    window = make_window(profile)
    unlock_window(qtbot, window)
    hits = search(qtbot, window, "Quenbrita Zorvandeler")
    assert hits[0].id == canary_id
    tap_result(qtbot, window, canary_id)
    qtbot.waitUntil(window.record_view.showing_reason_sheet, timeout=5_000)
    tap(qtbot, window.record_view, "Reason: Street triage: person in crisis")
    qtbot.waitUntil(lambda: window.record_view.patient_id == canary_id, timeout=5_000)
    shown = " ".join(_shown_texts(window))
    assert CANARY_FAMILY.lower() in shown.lower(), "the record is not on screen: check is empty"
    # Copy shortcuts on whatever has the focus, as a user would try.
    for target in (window.search_view.box, window.record_view):
        target.setFocus()
        qtbot.keyClick(target, Qt.Key.Key_A, Qt.KeyboardModifier.ControlModifier)
        qtbot.keyClick(target, Qt.Key.Key_C, Qt.KeyboardModifier.ControlModifier)
    tap(qtbot, window.record_view, "Record encounter")
    fill_encounter(
        qtbot,
        window.encounter_form,
        incident="WMP-7",
        narrative=f"{CANARY_NOTE} was calmer after talking.",
    )
    save_encounter(qtbot, window)

    titles = [w.windowTitle() for w in QApplication.topLevelWidgets()]
    titles += [QApplication.applicationDisplayName(), window.windowIconText()]
    needles = _needles({})
    leaks = [f"title {t!r}: {w}" for t in titles for w in _find(t.encode(), needles)]
    leaks += [f"clipboard: {w}" for w in _find(clipboard.text().encode(), needles)]

    # Locking hides everything at once: no visible text carries the canary.
    tap(qtbot, window, "Lock now")
    assert window.is_locked
    leaks += [
        f"locked screen: {w}" for w in _find(" ".join(_shown_texts(window)).encode(), needles)
    ]
    window.test_runner.wait_until_idle(10_000)
    for handler in logging.getLogger().handlers:
        handler.flush()
    leaks += [f"log: {w}" for w in _find(debug_log.read_bytes(), needles)]
    assert not leaks, "canary outside the encrypted cache:\n" + "\n".join(leaks)
