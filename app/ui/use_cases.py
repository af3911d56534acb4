"""What the screens ask of the services, one small factory per use case, each returning an `Op`.

As Anki's `aqt.operations` (`add_note(parent=..., note=...)` returns a `CollectionOp`): a
screen never builds a worker closure inline; it calls a factory here, chains its callbacks
and runs it on the runner it was given:

    open_record_op(self, session, patient_id, reason).for_request(ticket).on_success(
        self._opened
    ).run(self._runner)

Every callable here runs on a worker and reaches the cache through `session.on_worker`, its
own connection (the rules are in `app.ui.ops`). Writes say what they change (`OpChanges`);
reads that audit (a search that showed people, a record opened) stay reads. Services are
imported when a factory is first called, not when a screen module is: the unlock screen does
not need them (see `main_window._PREWARM_OFF_THREAD`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from PySide6.QtCore import QObject

from app.ui.ops import Op, OpChanges, Ticket

if TYPE_CHECKING:
    from app.services.doctor import CheckResult
    from app.services.encounters import Draft, EncounterInput, RecordedEncounter
    from app.services.lookup import LookupHit, LookupQuery, LookupReason, LookupResult
    from app.services.records import PatientRecord, PersonView
    from app.services.search import SearchResult, SearchWords
    from app.services.session import Session, SessionStatus
    from app.services.today import PanelData


# -- unlocking and enrolling (no cache open yet) -----------------------------------------------
def derive_key_op(
    parent: QObject | None, profile_dir: Path, user_id: str, pin: str
) -> Op[tuple[Any, bytes]]:
    """Check the PIN (Argon2, about 0.15 s): the profile and its data key. The cache is then
    opened on the main thread (`session.open_session`), whose Store it is."""
    from app.services import session

    return Op(parent, lambda: session.derive_key(profile_dir, user_id, pin))


def enrol_op(
    parent: QObject | None, profile_dir: Path, site: Any, user_id: str, pin: str
) -> Op[None]:
    """Enrol this officer on a provisioned tablet (contacts the central record)."""
    from app.services import site as sites

    def work() -> None:
        sites.enrol_from_site(profile_dir, site, user_id, pin).close()

    return Op(parent, work)


def doctor_op(
    parent: QObject | None, profile_dir: Path, site_path: Path | None
) -> Op[list[CheckResult]]:
    """The doctor's checks (one waits for the network)."""
    from app.services import doctor

    return Op(parent, lambda: doctor.run_checks(profile_dir, site_path))


def session_status_op(parent: QObject | None, session: Session) -> Op[SessionStatus]:
    """The header's counts and last sync, and whether patient data is locked (expired cache,
    clock behind): after unlock, after a sync, after a write that changed the outbox."""
    return Op(parent, lambda: session.on_worker(lambda s: s.status()))


# -- search -------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class SearchAsked:
    """What the officer asked: the typed query and the two hard filters."""

    query: str
    sex: Any = None
    age_range: Any = None


@dataclass(frozen=True, slots=True)
class Found:
    """A search's answer: the result, whether it was audited, the service's time."""

    asked: SearchAsked
    result: SearchResult
    audited: bool
    search_ms: float
    # Each source's name as officers know it (the Trust's display name from the profile),
    # by source name: what a result's `sources` are shown as. Empty with one source.
    labels: dict[str, str] = field(default_factory=dict)


def search_words() -> SearchWords:
    """The shared in-memory vocabulary for one open cache (empty until a search loads it)."""
    from app.services.search import SearchWords

    return SearchWords()


def search_op(
    parent: QObject | None,
    session: Session,
    words: SearchWords,
    asked: SearchAsked,
    ticket: Ticket,
    *,
    limit: int,
    audit: bool,
) -> Op[Found | None]:
    """Search the cache; audit the search (`audit`) when it puts people on screen.

    Latest query wins: a search already superseded when a worker picks it up does no work
    (None), and is not audited when superseded before its audit; its answer is dropped on
    delivery (`for_request`). The query is patient data: only the encrypted audit chain holds
    it (`audit_search`)."""
    from app.services import records, search

    def work(s: Session) -> Found | None:
        if not ticket.current():
            return None
        s.check_fresh()  # an expired cache answers nothing, whatever the screen shows yet
        started = time.perf_counter()
        result = search.PatientSearch(s, words=words).search(
            asked.query, limit=limit, sex=asked.sex, age_range=asked.age_range
        )
        elapsed = (time.perf_counter() - started) * 1000
        audited = False
        if audit and result.hits and ticket.current():
            search.audit_search(s, asked.query, len(result.hits))  # no entry, no results shown
            audited = True
        labels: dict[str, str] = {}
        names = s.patient_index().source_names()
        if len(names) > 1:
            labels = {names[sid]: text for sid, text in records.source_labels(s).items()}
        return Found(asked, result, audited, elapsed, labels)

    return Op(parent, lambda: session.on_worker(work)).for_request(ticket)


def load_search_words_op(parent: QObject | None, session: Session, words: SearchWords) -> Op[None]:
    """Load the vocabulary (and, with several sources, who they share) now, after unlock, so
    the first typed search does not wait."""

    def work(s: Session) -> None:
        words.preload(s.patient_index())

    return Op(parent, lambda: session.on_worker(work))


# -- records ------------------------------------------------------------------------------------
def open_record_op(
    parent: QObject | None,
    session: Session,
    patient_id: str,
    reason: str,
    *,
    source: int | None = None,
) -> Op[PatientRecord]:
    """Audit the opening (with its reason), then read the record of `source`'s Patient
    `patient_id` (None: the home source's). A search result opens with its (sid, id): an id
    means something only within its source."""
    from app.services import records

    def work(s: Session) -> PatientRecord:
        if source is None:
            return records.open_record(s, patient_id, reason)
        return records.open_record(s, patient_id, reason, source=source)

    return Op(parent, lambda: session.on_worker(work))


def refresh_record_op(
    parent: QObject | None, session: Session, record: PatientRecord
) -> Op[PatientRecord]:
    """Read an open record again (after a save or a sync), under its opening's audit entry."""
    from app.services import records

    return Op(parent, lambda: session.on_worker(lambda s: records.refresh_record(s, record)))


# -- online look-up ("break the glass") --------------------------------------------------------
def look_up_op(
    parent: QObject | None,
    session: Session,
    source: str,
    query: LookupQuery,
    reason: LookupReason,
) -> Op[LookupResult]:
    """Search a source for a person no cache holds, audited here and there first."""
    from app.services import lookup

    return Op(
        parent,
        lambda: session.on_worker(lambda s: lookup.look_up(s, source, query, reason)),
    )


def open_looked_up_op(
    parent: QObject | None,
    session: Session,
    source: str,
    hit: LookupHit,
    reason: LookupReason,
) -> Op[PatientRecord]:
    """Fetch the picked person's record from the source (audited first) and keep it until
    its time; a write: the search index gains them until they are erased."""
    from app.services import lookup

    return Op(
        parent,
        lambda: session.on_worker(lambda s: lookup.open_looked_up(s, source, hit, reason)),
    )


# -- drafts and encounters ----------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class DraftsFound:
    """This user's drafts, newest first, and whom each is about (draft id -> words)."""

    drafts: list[Draft]
    people: dict[str, str] = field(default_factory=dict)


def drafts_found_op(parent: QObject | None, session: Session) -> Op[DraftsFound]:
    """The drafts to offer back (a crash, a lock that became a restart), each named."""
    from app.services import encounters, today

    def work(s: Session) -> DraftsFound:
        drafts = encounters.load_drafts(s)
        return DraftsFound(drafts, {d.draft_id: today.draft_person(s, d.data) for d in drafts})

    return Op(parent, lambda: session.on_worker(work))


@dataclass(frozen=True, slots=True)
class FormSubject:
    """The cached person an encounter form names, read once per choice: whom its identity
    header shows (and, for another Trust's Patient, that Trust's name), and their birth date
    as held (maybe partial) for the police-station rule."""

    asked: tuple[str, str, int]  # ("id", patient id, sid) or ("nhs", ten digits, 1)
    person: PersonView | None  # None: nobody cached (gone since, or no single match)
    birth_date: str | None
    trust: str | None = None  # the source's display name when it is not home


def form_subject_op(
    parent: QObject | None, session: Session, asked: tuple[str, str, int]
) -> Op[FormSubject]:
    """Who the form's answers name: the person picked, or the one home Patient with the typed
    NHS number (unaudited demographics, as `records.person_of`)."""
    from app.services import encounters, records

    kind, value, source = asked

    def work(s: Session) -> FormSubject:
        if kind == "id":
            patient = encounters.cached_subject(s, patient_id=value, source=source)
        else:
            patient = encounters.cached_subject(s, nhs_number=value)
        if patient is None:
            return FormSubject(asked, None, None)
        person = records.person_of(s, str(patient["id"]), source=source)
        trust = None if source == 1 else records.source_labels(s).get(source)
        return FormSubject(asked, person, patient.get("birthDate"), trust)

    return Op(parent, lambda: session.on_worker(work))


def save_draft_op(
    parent: QObject | None, session: Session, draft_id: str, data: dict[str, Any]
) -> Op[str]:
    """Autosave a half-filled form; no screen lists it differently (`OpChanges()`)."""
    from app.services import encounters

    def work() -> str:
        session.on_worker(lambda s: encounters.save_draft(s, draft_id, data))
        return draft_id

    return Op(parent, work, changes=OpChanges())


def discard_draft_op(parent: QObject | None, session: Session, draft_id: str) -> Op[None]:
    from app.services import encounters

    return Op(
        parent,
        lambda: session.on_worker(lambda s: encounters.discard_draft(s, draft_id)),
        changes=OpChanges(drafts=True),
    )


def recorded_answers_op(
    parent: QObject | None, session: Session, client_id: str
) -> Op[dict[str, Any]]:
    """A refused record's answers, to correct them."""
    from app.services import encounters

    return Op(
        parent, lambda: session.on_worker(lambda s: encounters.recorded_answers(s, client_id))
    )


def save_encounter_op(
    parent: QObject | None,
    session: Session,
    inp: EncounterInput,
    *,
    draft_id: str | None,
    amend: str | None,
) -> Op[RecordedEncounter]:
    """Record the encounter (its draft goes), or send a refused one again corrected
    (`amend`: its client id). "Saved" is shown only once COMMIT returned."""
    from app import times
    from app.services import encounters

    def work(s: Session) -> RecordedEncounter:
        if amend is None:
            return encounters.record(s, inp, draft_id=draft_id)
        encounters.resolve_rejected(s, amend, "retry", corrected=inp)
        return encounters.RecordedEncounter(amend, times.iso_instant(times.now()), None, False)

    return Op(parent, lambda: session.on_worker(work), changes=OpChanges(outbox=True, drafts=True))


# -- the sync screen ----------------------------------------------------------------------------
def panel_data_op(parent: QObject | None, session: Session) -> Op[PanelData]:
    from app.services import today

    return Op(parent, lambda: session.on_worker(today.load_panel_data))


def resolve_rejected_op(
    parent: QObject | None,
    session: Session,
    client_id: str,
    action: Literal["retry", "discard"],
    *,
    reason: str | None = None,
) -> Op[None]:
    """Send a refused record again as it is, or discard it with a reason."""
    from app.services import encounters

    return Op(
        parent,
        lambda: session.on_worker(
            lambda s: encounters.resolve_rejected(s, client_id, action, reason=reason)
        ),
        changes=OpChanges(outbox=True),
    )
