"""The settled pull cursor (`sync/_pull.py`, `_settles`) against a real reference server.

After a clean pass the next run asks `_lastUpdated=gt<cursor>` instead of `ge`, but only
once the server's clock had passed the end of the cursor's precision (plus `settle_s`) when
that pass began. A server stamping whole seconds gives many resources one timestamp, and a
write landing in the cursor's second after the pass must still reach the tablet. The server
is started with `timestamp_precision` "s" (or "us"); `settle_s=0` stands in for the 5 s
margin. The server reads time from a `ManualClock`: its stamps and its `Date` header move only
when a test moves the clock, so "a write in the cursor's second" is arranged, not raced for.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import datetime, timedelta
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any

import pytest
import requests

from app.fhir import CACHED_TYPES
from app.services.syncing import run_sync, sync_options
from app.store import HOME_SOURCE
from sync import SyncOptions
from sync._bundles import instant_key
from sync._client import new_http_session
from sync.reference import ReferenceServer
from tests.conftest import COHORT_SEED, reference_config
from tests.support.clock import ManualClock
from tests.support.sync import cache_cohort, change, cursor_queries, search_all, server_cohort

LARGE_COHORT = 400  # about 4,000 resources: seeded within one second, a large tie set


@pytest.fixture
def server_clock() -> ManualClock:
    """Overrides conftest's wall clock: the server's time moves only when a test moves it."""
    return ManualClock()


@pytest.fixture
def reference(
    request: pytest.FixtureRequest, tmp_path: Path, cohort_dir: Path, server_clock: ManualClock
) -> Iterator[ReferenceServer]:
    """Overrides conftest's: param is (timestamp precision, patients or None for the small
    cohort); the `tablet` fixture then enrols against this server. The server's clock is
    `server_clock`: the whole seed lands in its one second (µs apart)."""
    precision, patients = getattr(request, "param", ("s", None))
    seed = cohort_dir
    if patients is not None:
        from app.synthetic import generate_cohort

        seed = tmp_path / "large-cohort"
        generate_cohort(patients, COHORT_SEED, seed)
    config = reference_config(
        tmp_path / "central", seed, timestamp_precision=precision, clock=server_clock
    )
    server = ReferenceServer(config).start()
    try:
        yield server
    finally:
        server.stop()


def options(tablet: Any, **overrides: Any) -> SyncOptions:
    """Kerbside's options with no settle margin: the precision rule alone must protect."""
    return sync_options(tablet.profile, settle_s=0.0, **overrides)


def server_now(reference: ReferenceServer) -> datetime:
    resp = requests.get(f"{reference.base_url}/metadata", timeout=30)
    return parsedate_to_datetime(resp.headers["Date"])


def end_second_of(server_clock: ManualClock, reference: ReferenceServer, instant: str) -> None:
    """Move the server's clock past the instant's second; its `Date` (what the client judges
    by) then says so."""
    second = instant_key(instant).replace(microsecond=0)
    server_clock.set(second + timedelta(seconds=1, milliseconds=1))
    assert server_now(reference) > instant_key(instant)


def dated_session() -> tuple[requests.Session, dict[str, datetime]]:
    """A sync HTTP session noting the `Date` of the first search answer of each type, i.e.
    the server clock the pull judges a pass by."""
    http = new_http_session()
    dates: dict[str, datetime] = {}

    def note(resp: requests.Response, *_args: Any, **_kwargs: Any) -> None:
        rtype = resp.request.path_url.split("?")[0].rstrip("/").rsplit("/", 1)[-1]
        if rtype in CACHED_TYPES and "Date" in resp.headers and "_count=" in resp.request.url:
            dates.setdefault(rtype, parsedate_to_datetime(resp.headers["Date"]))

    http.hooks["response"].append(note)
    return http, dates


def last_updated(reference: ReferenceServer, admin: requests.Session, rid: str) -> str:
    resp = admin.get(f"{reference.base_url}/Patient/{rid}", timeout=30)
    resp.raise_for_status()
    return str(resp.json()["meta"]["lastUpdated"])


def patient_ids(reference: ReferenceServer, admin: requests.Session) -> list[str]:
    return [r["id"] for r in search_all(admin, f"{reference.base_url}/Patient")]


def cached_version(tablet: Any, rid: str) -> str:
    return str(tablet.store.get_resource(HOME_SOURCE, "Patient", rid)["meta"]["versionId"])


def test_a_write_in_the_cursors_second_after_a_clean_pass_is_not_lost(
    tablet: Any, reference: ReferenceServer, server_clock: ManualClock
) -> None:
    admin = reference.session(admin=True)
    run_sync(tablet, options=options(tablet))
    first, second = patient_ids(reference, admin)[:2]
    # The cursor's second S: a fresh write, a clean pass that ends on it and begins while the
    # server's Date still reads S, and another write in S (the clock stands still in S).
    server_clock.next_second()
    change(reference, admin, "Patient", first)
    cursor = last_updated(reference, admin, first)
    http, dates = dated_session()
    run_sync(tablet, options=options(tablet), http=http)
    assert tablet.store.cursor(HOME_SOURCE, "Patient") == cursor
    change(reference, admin, "Patient", second)
    assert instant_key(cursor) == dates["Patient"]  # the pass began inside S
    assert last_updated(reference, admin, second) == cursor  # and the write landed in S
    assert "." not in cursor  # whole seconds, as the server was told to stamp
    # At once: the pass that ended on `cursor` began inside its second, so the cursor is not
    # settled (with settle_s=0 only the precision rule says so) and this run asks `ge`.
    reference.clear_requests()
    report = run_sync(tablet, options=options(tablet))
    assert cursor_queries(reference, "Patient") == [f"ge{cursor}"]
    assert report.pulled == 1
    assert cached_version(tablet, second) == server_version(reference, admin, second)
    # After the second is over: a pass that settles the cursor, then `gt` from it.
    end_second_of(server_clock, reference, cursor)
    run_sync(tablet, options=options(tablet))
    reference.clear_requests()
    quiet = run_sync(tablet, options=options(tablet))
    assert cursor_queries(reference, "Patient") == [f"gt{cursor}"]
    assert quiet.received == 0 and quiet.pulled == 0
    assert cache_cohort(tablet.store) == server_cohort(reference, admin)
    # A later write still arrives through the `gt` query.
    change(reference, admin, "Patient", first)
    report = run_sync(tablet, options=options(tablet))
    assert report.pulled == 1
    assert cache_cohort(tablet.store) == server_cohort(reference, admin)


def server_version(reference: ReferenceServer, admin: requests.Session, rid: str) -> str:
    resp = admin.get(f"{reference.base_url}/Patient/{rid}", timeout=30)
    resp.raise_for_status()
    return str(resp.json()["meta"]["versionId"])


@pytest.mark.parametrize("reference", [("s", None), ("us", None)], indirect=True)
@pytest.mark.parametrize("when", ["first page", "last page"])
def test_a_write_landing_while_a_pass_runs_is_not_lost(
    tablet: Any, reference: ReferenceServer, server_clock: ManualClock, when: str
) -> None:
    admin = reference.session(admin=True)
    paged = options(tablet, page_size=10)
    run_sync(tablet, options=paged)
    ids = patient_ids(reference, admin)
    moved = ids[:25]  # the next pass reads these, 10 a page, in this order
    fired: list[str] = []

    def write_during_pass(phase: str, done: int, _total: int | None) -> None:
        if phase != "pull Patient" or done == 0 or fired:
            return
        if when == "last page" and done < len(moved):
            return
        # Read already (on the first page): it moves to the end; or, after the last page, a
        # write in the second the pass's cursor ends on.
        change(reference, admin, "Patient", moved[0])
        fired.append(last_updated(reference, admin, moved[0]))

    server_clock.next_second()
    for rid in moved:
        change(reference, admin, "Patient", rid)
    run_sync(tablet, options=paged, progress=write_during_pass)
    assert fired, "the Patient pass reported no progress"
    # At once, then after the write's second is over (settling), then a no-op from `gt`.
    run_sync(tablet, options=paged)
    assert cached_version(tablet, moved[0]) == "3"
    end_second_of(server_clock, reference, fired[0])
    run_sync(tablet, options=paged)
    reference.clear_requests()
    quiet = run_sync(tablet, options=paged)
    assert quiet.received == 0
    assert cursor_queries(reference, "Patient") == [
        f"gt{tablet.store.cursor(HOME_SOURCE, 'Patient')}"
    ]
    assert cache_cohort(tablet.store) == server_cohort(reference, admin)


@pytest.mark.parametrize("reference", [("s", LARGE_COHORT)], indirect=True)
def test_a_no_op_sync_after_a_settled_pass_downloads_no_resources_despite_a_large_tie_set(
    tablet: Any, reference: ReferenceServer, server_clock: ManualClock
) -> None:
    admin = reference.session(admin=True)
    first = run_sync(tablet, options=options(tablet))
    cursors = {t: tablet.store.cursor(HOME_SOURCE, t) for t in CACHED_TYPES}
    # Second precision and one seeding: thousands of resources share their type's cursor.
    ties = sum(
        admin.get(
            f"{reference.base_url}/{t}",
            params={"_lastUpdated": f"eq{c}", "_summary": "count"},
            timeout=30,
        ).json()["total"]
        for t, c in cursors.items()
        if c
    )
    assert ties >= 1000 and first.pulled == sum(tablet.store.count_by_type().values())
    assert all(c and c.endswith("Z") and "." not in c for c in cursors.values())
    end_second_of(server_clock, reference, max(cursors.values(), key=instant_key))
    run_sync(tablet, options=options(tablet))  # a clean pass that settles every cursor
    reference.clear_requests()
    quiet = run_sync(tablet, options=options(tablet))
    assert (quiet.received, quiet.pulled, quiet.deleted) == (0, 0, 0)
    for rtype, cursor in cursors.items():
        assert cursor_queries(reference, rtype) == [f"gt{cursor}"]
    assert cache_cohort(tablet.store) == server_cohort(reference, admin)


@pytest.mark.parametrize(
    ("reference", "pattern"),
    [
        (("us", None), r"T\d\d:\d\d:\d\d\.\d{6}Z$"),
        (("ms", None), r"T\d\d:\d\d:\d\d\.\d{3}Z$"),
        (("s", None), r"T\d\d:\d\d:\d\dZ$"),
    ],
    indirect=["reference"],
)
def test_the_reference_server_stamps_at_its_configured_precision(
    reference: ReferenceServer, pattern: str
) -> None:
    admin = reference.session(admin=True)
    rid = patient_ids(reference, admin)[0]
    change(reference, admin, "Patient", rid)
    stamped = last_updated(reference, admin, rid)
    assert re.search(pattern, stamped)
    history = admin.get(f"{reference.base_url}/Patient/_history", timeout=30).json()
    assert history["entry"][0]["response"]["lastModified"] == stamped  # newest first
    found = search_all(admin, f"{reference.base_url}/Patient", {"_lastUpdated": f"eq{stamped}"})
    assert rid in {r["id"] for r in found}
    later = search_all(admin, f"{reference.base_url}/Patient", {"_lastUpdated": f"gt{stamped}"})
    assert rid not in {r["id"] for r in later}
