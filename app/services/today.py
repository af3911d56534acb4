"""What the sync screen lists, read in one go on a worker: today's encounters (and older ones
still waiting or refused), the refused ones, this user's drafts and whom each is about, how many
records wait, and when sync last completed (the same value the window's header shows)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from app.nhs_number import format_nhs_number
from app.services.encounters import Draft, EncounterSummary, list_encounters, load_drafts
from app.services.records import person_of
from app.services.session import Session, SourceState
from app.times import london_midnight, uk_date


@dataclass
class PanelData:
    """What one background read returns; counts and rows only."""

    today: list[EncounterSummary] = field(default_factory=list)
    rejected: list[EncounterSummary] = field(default_factory=list)
    drafts: list[Draft] = field(default_factory=list)
    waiting: int = 0
    last_sync: datetime | None = None
    draft_people: dict[str, str] = field(default_factory=dict)  # draft id -> whom it is about
    # Each central record, home first: its state, last sync and counts (issue 14).
    sources: list[SourceState] = field(default_factory=list)
    stale_after: timedelta = timedelta(hours=72)  # the cache's time-to-live


def load_panel_data(session: Session) -> PanelData:
    """Runs on a worker with its own connection (`Session.on_worker`)."""
    since = london_midnight()
    rows = list_encounters(session, since=since)
    drafts = load_drafts(session)
    return PanelData(
        today=rows,  # today's, plus older ones still waiting or refused
        rejected=[r for r in rows if r.state == "rejected"],
        drafts=drafts,
        draft_people={d.draft_id: draft_person(session, d.data) for d in drafts},
        waiting=sum(1 for r in rows if r.state == "waiting"),
        last_sync=session.last_sync(),  # the header reads the same
        sources=session.source_states(),
        stale_after=session.cache_ttl,
    )


def draft_person(session: Session, data: Any) -> str:
    """Whom a draft is about, for offering it back: the cached person's name and date of
    birth, the NHS number typed, or the unknown person's description."""
    patient = data.get("patient") if isinstance(data, dict) else None
    if not isinstance(patient, dict):
        return "person not chosen yet"
    if isinstance(patient.get("unidentified"), dict):
        description = str(patient["unidentified"].get("description") or "").strip()
        short = description if len(description) <= 40 else description[:39] + "…"
        return "an unknown person" + (f" ({short})" if short else "")
    if patient.get("id"):
        person = person_of(session, str(patient["id"]))
        if person is None:
            return "a person no longer on this tablet"
        return f"{person.name} (born {uk_date(person.birth_date)})"
    digits = "".join(ch for ch in str(patient.get("nhs_number") or "") if ch.isdigit())
    if len(digits) == 10:
        return f"NHS number {format_nhs_number(digits)}"
    return "person not chosen yet"
