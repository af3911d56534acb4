"""GUI fixtures: a real SQLCipher profile filled from a small synthetic cohort, and the real
main window on it (offscreen). The keyring is the in-memory one from tests/conftest.py."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from pytestqt.qtbot import QtBot

from app.security import KdfParams, LockoutPolicy
from tests.conftest import TEST_KDF, TEST_LOCKOUT, TEST_PIN
from tests.support.gui import pin as tap_pin

USER = "pc101"
COHORT_SIZE = 150


@dataclass(frozen=True)
class Person:
    """A cohort patient as the tests look for them (read from the NDJSON, not the app)."""

    id: str
    given: str
    family: str
    birth_date: str
    alert_codes: tuple[str, ...]


@pytest.fixture(scope="session")
def cohort_dir(cohort_of: Callable[[int], Path]) -> Path:
    """The GUI suite's cohort is larger (COHORT_SIZE people): enough people for fuzzy search,
    alerts and look-alikes to show up on screen. The root `reference` is seeded with it here."""
    return cohort_of(COHORT_SIZE)


@pytest.fixture(scope="session")
def alerted_person(cohort_dir: Path) -> Person:
    """A patient with at least one active alert, a crisis plan and a distinctive family name."""
    flags: dict[str, list[str]] = {}
    for line in (cohort_dir / "Flag.ndjson").read_text().splitlines():
        flag = json.loads(line)
        if flag.get("status") == "active":
            pid = flag["subject"]["reference"].split("/", 1)[1]
            coding = flag["code"].get("coding") or [{"code": ""}]
            flags.setdefault(pid, []).append(coding[0].get("code", ""))
    planned = {
        json.loads(line)["subject"]["reference"].split("/", 1)[1]
        for line in (cohort_dir / "CarePlan.ndjson").read_text().splitlines()
    }
    patients = [
        json.loads(line) for line in (cohort_dir / "Patient.ndjson").read_text().splitlines()
    ]
    families: dict[str, int] = {}
    for p in patients:
        fam = p["name"][0]["family"]
        families[fam] = families.get(fam, 0) + 1
    for p in patients:
        name = p["name"][0]
        if (
            p["id"] in flags
            and p["id"] in planned
            and families[name["family"]] == 1
            and len(name["family"]) >= 6
            and name["family"].isascii()
            and name["family"].isalpha()
            and p.get("birthDate")
        ):
            return Person(
                p["id"], name["given"][0], name["family"], p["birthDate"], tuple(flags[p["id"]])
            )
    raise AssertionError("the cohort has no suitable patient with alerts")


def make_profile(
    directory: Path,
    cohort: Path | None,
    *,
    kdf: KdfParams = TEST_KDF,
    lockout: LockoutPolicy = TEST_LOCKOUT,
    **settings: Any,
) -> Path:
    from app.services.importer import import_ndjson
    from app.services.session import enrol

    session = enrol(directory, USER, TEST_PIN, kdf=kdf, lockout=lockout)
    try:
        if cohort is not None:
            import_ndjson(session, cohort)
        if settings:
            session.profile.update_settings(**settings)
    finally:
        session.close()
    return directory


@pytest.fixture
def gui_profile(tmp_path: Path, cohort_dir: Path) -> Path:
    return make_profile(tmp_path / "profile", cohort_dir)


WindowFactory = Callable[..., Any]


@pytest.fixture
def make_window(qtbot: QtBot, qapp: Any) -> Iterator[WindowFactory]:
    """Build the real main window (theme, runner, crash handler) on a profile directory."""
    from app.ui.app import build_window

    made: list[Any] = []

    def factory(profile: Path, *, size: tuple[int, int] = (1280, 800), **kw: Any) -> Any:
        _app, runner, window, crash = build_window(profile, install_excepthook=False, **kw)
        qtbot.addWidget(window)
        window.resize(*size)
        window.show()
        qtbot.waitExposed(window)
        window.test_runner = runner
        window.test_crash = crash
        made.append(window)
        return window

    yield factory
    for window in made:
        window.test_runner.wait_until_idle(10_000)
        window.close()


def enter_pin(qtbot: QtBot, window: Any, pin: str = TEST_PIN) -> None:
    """Tap the PIN on the pad and OK, as an officer would (keys found by accessible name)."""
    tap_pin(qtbot, window, pin)


def unlock(qtbot: QtBot, window: Any, pin: str = TEST_PIN) -> None:
    enter_pin(qtbot, window, pin)
    try:
        qtbot.waitUntil(lambda: not window.is_locked, timeout=10_000)
    except Exception:
        raise AssertionError(
            f"still locked: {window.unlock_view.status_text()!r}, "
            f"{window.test_crash.count} crash(es)"
        ) from None


def _left() -> Any:
    from PySide6.QtCore import Qt

    return Qt.MouseButton.LeftButton


def type_search(qtbot: QtBot, window: Any, text: str) -> list[Any]:
    view = window.search_view
    view.box.clear()
    if text.isascii():
        qtbot.keyClicks(view.box, text)
    else:  # QTest can only type ASCII
        view.box.setText(text)
    qtbot.waitUntil(lambda: view.box.text() == text and not view.is_searching(), timeout=5_000)
    return view.hits()


def wait_for_results(qtbot: QtBot, window: Any) -> list[Any]:
    """The answer to what the search box and filters ask now is on screen (search runs on a
    worker: a tap on a filter shows its results a moment later)."""
    view = window.search_view
    qtbot.waitUntil(lambda: not view.is_searching(), timeout=5_000)
    return view.hits()


def open_first_with_reason(qtbot: QtBot, window: Any, patient_id: str) -> None:
    """Tap the person's row, then the (default) reason."""
    view = window.search_view
    row = next(i for i, h in enumerate(view.hits()) if h.id == patient_id)
    rect = view.results.visualRect(view.model.index(row))
    qtbot.mouseClick(view.results.viewport(), _left(), pos=rect.center())
    qtbot.waitUntil(window.record_view.showing_reason_sheet, timeout=5_000)
    qtbot.mouseClick(window.record_view.reason_sheet.buttons()[0], _left())
    qtbot.waitUntil(lambda: window.record_view.patient_id == patient_id, timeout=5_000)


def enrol_against(directory: Path, server: Any, **settings: Any) -> Path:
    """An empty profile enrolled against `server` as the tablet client (secret in the test
    keyring), as `kerbside enrol --server ... --client-id ...` leaves it."""
    from app.security import Profile, ServerSettings, store_client_secret
    from tests.conftest import TABLET_CLIENT

    make_profile(directory, None, **settings)
    profile = Profile.load(directory)
    profile.set_server(
        ServerSettings(base_url=server.base_url, client_id=TABLET_CLIENT[0], token_url=None)
    )
    store_client_secret(profile.profile_id, TABLET_CLIENT[1])
    return directory
