from typing import Any

from app.services.syncing import run_sync


def test_first_sync_pulls_the_cohort(tablet: Any, reference: Any) -> None:
    report = run_sync(tablet)
    assert report.pulled > 0
    assert tablet.store.count_by_type().get("Patient", 0) == 40
