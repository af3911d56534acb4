"""Recording a street-triage encounter offline: validation, the outbox, drafts, rejections.

This module records and lists encounters and resolves rejections; it is also the one import for
callers, re-exporting the parts that live beside it: the input types (`_encounter_input`),
validation (`_encounter_rules`), the JSON input format (`_encounter_parse`), drafts
(`_encounter_drafts`), the team setting (`_encounter_team`) and the FHIR mapping
(`_encounter_fhir`).

One validation serves the GUI form (`validate` on a typed `EncounterInput`, errors shown
inline) and `kerbside record` (`parse_encounter_json` on the JSON input format documented in
app/cli/_record_cmds.py, which then runs the same `validate`).

Where field records live on the device: only in the outbox. The transaction Bundle saved there
is exactly what sync POSTs, and the views (`list_encounters`, the record card's last contacts)
read it back from there. Nothing is written to the resource table, which mirrors the central
record by server id: a local copy under a client id would sit beside the centre's copy once
it is pulled. When the centre's Encounter arrives, the record card shows it once (it carries
our client identifier) and the outbox row keeps the device-side state.

"Saved" means COMMIT returned: the outbox row (and the removal of the draft it came from) is
one transaction (SECURITY.md 17). Invalid input stores nothing.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any, Literal

import orjson

from app.errors import CacheExpired, InvalidInput
from app.fhir import (
    OUTCOME_CODES,
    SEX_CODES,
    display_name_of,
    nhs_number_of,
)
from app.services import _encounter_fhir as fhir_out
from app.services._encounter_drafts import (
    Draft,
    discard_draft,
    load_drafts,
    new_draft_id,
    save_draft,
)
from app.services._encounter_fhir import (
    FORM,
    FormItem,
    FormSection,
    PersonAtSource,
    home_patient_id,
    person_at_source,
)
from app.services._encounter_input import (
    KIND,
    EncounterInput,
    FieldError,
    InvalidEncounter,
    KnownPatient,
    PatientByNhsNumber,
    PatientChoice,
    UnidentifiedPerson,
)
from app.services._encounter_parse import parse_encounter, parse_encounter_json
from app.services._encounter_rules import (
    CLOCK_SKEW,
    MAX_APPARENT_AGE,
    OPTIONAL_FIELDS,
    REQUIRED_FIELDS,
    _check,
    _youngest_age,
    is_child,
    validate,
)
from app.services._encounter_team import (
    Team,
    make_team,
    set_team,
    team_of,
)
from app.services._people import home_member
from app.services.session import Session
from app.store import HOME_SOURCE, OutboxRow
from app.times import iso_instant, uk_date

log = logging.getLogger("kerbside.services")


# What the officer picks when discarding a rejected record (kept in the audit chain).
DISCARD_REASONS: tuple[str, ...] = (
    "Duplicate of another record",
    "Recorded against the wrong person",
    "Test or training entry",
    "Other",
)
# Outbox state -> what the UI says.
STATE_LABELS = {
    "pending": "waiting",
    "sent": "sent",
    "rejected": "rejected",
    "discarded": "discarded",
}

__all__ = [
    "CLOCK_SKEW",
    "DISCARD_REASONS",
    "FORM",
    "KIND",
    "MAX_APPARENT_AGE",
    "OPTIONAL_FIELDS",
    "REQUIRED_FIELDS",
    "Draft",
    "EncounterInput",
    "EncounterSummary",
    "FieldError",
    "FormItem",
    "FormSection",
    "InvalidEncounter",
    "KnownPatient",
    "PatientByNhsNumber",
    "PatientChoice",
    "PersonAtSource",
    "RecordedEncounter",
    "Team",
    "UnidentifiedPerson",
    "cached_subject",
    "discard_draft",
    "field_records_for_patient",
    "home_patient_id",
    "is_child",
    "list_encounters",
    "load_drafts",
    "make_team",
    "new_draft_id",
    "parse_encounter",
    "parse_encounter_json",
    "person_at_source",
    "record",
    "record_many",
    "recorded_answers",
    "resolve_rejected",
    "save_draft",
    "set_team",
    "team_of",
    "validate",
]


# -- recording --------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class RecordedEncounter:
    """What the form shows after "Saved": the record is committed and queued for sync."""

    client_id: str
    created_at: str  # UTC instant
    patient_id: str | None  # None: a provisional Patient travels in the record
    provisional: bool


def _instant(when: datetime) -> str:
    return iso_instant(when, timespec="milliseconds")


@dataclass(frozen=True, slots=True)
class _Prepared:
    """A validated record as the outbox keeps it: the Bundle, and whose cached Patient it is
    about (`patient_id` of source `patient_source`; both None for an unidentified person)."""

    payload: bytes
    patient_id: str | None
    patient_source: int | None


def _prepare(session: Session, inp: EncounterInput, now: datetime, client_id: str) -> _Prepared:
    """Validate and build the transaction. The record always goes home (section 6 of
    docs/design/multi-trust.md): about a person home knows, under home's Patient id (also
    when a neighbour's record of them was picked: the home member of the same person); about
    a person only a neighbour knows, by their verified NHS number (a Patient made at home
    conditionally on it, once), or, without one, as an unidentified person described by the
    neighbour's record. The outbox row names the cached Patient that was picked."""
    errors, patient_id = _check(inp, session, now)
    if errors:
        raise InvalidEncounter(errors)
    team = team_of(session.profile)
    # The code identifies the profile's team; a team typed in instead is recorded by name only.
    team_code = team.code if team is not None and (inp.team or "").strip() == team.name else None
    source = inp.patient.source if isinstance(inp.patient, KnownPatient) else HOME_SOURCE
    subject_nhs: PersonAtSource | None = None
    home_id = patient_id
    if patient_id is not None and source != HOME_SOURCE:
        home_id = home_member(session, source, patient_id)
        if home_id is None:
            neighbours = session.store.get_resource(source, "Patient", patient_id) or {}
            subject_nhs = person_at_source(neighbours)
            if subject_nhs is None:
                inp = replace(inp, patient=_described(session, source, neighbours, inp.start))
    bundle = fhir_out.build_transaction(
        inp,
        client_id=client_id,
        patient_id=home_id,
        user_id=session.user_id,
        device_id=session.profile.profile_id,
        recorded_at=now,
        team_code=team_code,
        subject_nhs=subject_nhs,
    )
    if source != HOME_SOURCE and home_id is not None:  # a merged person: home's id, as ever
        return _Prepared(orjson.dumps(bundle), home_id, HOME_SOURCE)
    return _Prepared(orjson.dumps(bundle), patient_id, source if patient_id is not None else None)


def _described(
    session: Session, source: int, patient: dict[str, Any], on: datetime
) -> UnidentifiedPerson:
    """A neighbour's patient without a verified NHS number, as home receives them: an
    unidentified person whose description names them as the neighbour's record does (never
    matched at home on an unverified number, or on name and birth date)."""
    from app.services._people import source_labels

    trust = source_labels(session).get(source, "another Trust")
    born = patient.get("birthDate")
    number = nhs_number_of(patient)
    text = f"Known to {trust} as {display_name_of(patient)}"
    text += f", born {uk_date(born)}" if isinstance(born, str) and born else ""
    text += f", NHS number {number} (not verified)" if number else ""
    age = _youngest_age(born, on)
    if age is None:
        raise InvalidEncounter(
            [
                FieldError(
                    "patient.id",
                    "the other Trust's record gives no date of birth: record the person as an "
                    "unknown person, with their apparent age",
                )
            ]
        )
    gender = patient.get("gender")
    return UnidentifiedPerson(
        description=text[:1000],
        apparent_age=min(age, MAX_APPARENT_AGE),
        sex=gender if gender in SEX_CODES else "unknown",
        place_found=None,
    )


def subject_snapshot(
    session: Session, patient_id: str | None, source: int | None = HOME_SOURCE
) -> bytes | None:
    """Who a record is about as the cache names them now (name, date of birth, NHS number),
    kept with the queued record so that it still says whom it is about after the person is
    merged or removed centrally (or their Trust's source is removed) and leaves the cache."""
    if not patient_id:
        return None
    patient = session.store.get_resource(source or HOME_SOURCE, "Patient", patient_id)
    if patient is None:
        return None
    return orjson.dumps(
        {
            "name": display_name_of(patient),
            "birth_date": patient.get("birthDate"),
            "nhs_number": nhs_number_of(patient),
        }
    )


def record(
    session: Session,
    inp: EncounterInput,
    *,
    draft_id: str | None = None,
    now: datetime | None = None,
) -> RecordedEncounter:
    """Validate, build the FHIR transaction and queue it; returns only after COMMIT.

    The draft the form autosaved (if any) goes in the same transaction, so a crash can leave
    either the draft or the record, never both (which could be saved twice) nor neither.
    """
    return record_many(session, [inp], draft_ids=[draft_id], now=now)[0]


def record_many(
    session: Session,
    inputs: Sequence[EncounterInput],
    *,
    draft_ids: Sequence[str | None] | None = None,
    now: datetime | None = None,
) -> list[RecordedEncounter]:
    """Record several encounters all or nothing: every one is validated, then one transaction.

    Errors name the item's index (`[2].end: ...`) when there is more than one.
    """
    now = now or datetime.now(UTC)
    draft_ids = draft_ids or [None] * len(inputs)
    prepared: list[tuple[str, _Prepared, EncounterInput]] = []
    errors: list[FieldError] = []
    for index, inp in enumerate(inputs):
        client_id = str(uuid.uuid4())
        try:
            ready = _prepare(session, inp, now, client_id)
        except InvalidEncounter as exc:
            prefix = f"[{index}]." if len(inputs) > 1 else ""
            errors += [FieldError(prefix + e.field, e.message) for e in exc.errors]
            continue
        prepared.append((client_id, ready, inp))
    if errors:
        raise InvalidEncounter(errors)
    created_at = _instant(now)
    store = session.store
    with store.transaction():
        for (client_id, ready, _), draft_id in zip(prepared, draft_ids, strict=True):
            store.add_outbox(
                client_id=client_id,
                kind=KIND,
                patient_id=ready.patient_id,
                patient_source=ready.patient_source,
                user_id=session.user_id,
                payload=ready.payload,
                created_at=created_at,
                subject=subject_snapshot(session, ready.patient_id, ready.patient_source),
            )
            if draft_id is not None:
                store.delete_draft(draft_id)
    # A copy sealed to the Trust outlives any wipe of this tablet (SECURITY.md 28).
    from app.services.session import seal_records

    seal_records(
        session, [(cid, KIND, ready.patient_id, ready.payload) for cid, ready, _ in prepared]
    )
    log.info("recorded %d encounter(s): %s", len(prepared), ", ".join(p[0] for p in prepared))
    return [
        RecordedEncounter(
            client_id, created_at, ready.patient_id, isinstance(inp.patient, UnidentifiedPerson)
        )
        for client_id, ready, inp in prepared
    ]


def cached_subject(
    session: Session,
    *,
    patient_id: str | None = None,
    nhs_number: str = "",
    source: int = HOME_SOURCE,
) -> dict[str, Any] | None:
    """The cached Patient a form names (by `source`'s id, or by an NHS number that matches
    exactly one home Patient); None when nobody cached is named."""
    if patient_id is None and len(nhs_number) == 10:
        ids = session.store.patient_ids_with_nhs_number(HOME_SOURCE, nhs_number)
        patient_id = ids[0] if len(ids) == 1 else None
        source = HOME_SOURCE
    if not patient_id:
        return None
    return session.store.get_resource(source, "Patient", patient_id)


def source_name(session: Session, sid: int) -> str | None:
    """The name of source `sid` (what the JSON input's `patient.source` holds), or None."""
    return next((s.name for s in session.store.sources() if s.sid == sid), None)


def source_sid(session: Session, name: str) -> int | None:
    """The sid of the source named `name` on this tablet, or None."""
    return session.store.source_id(name)


# -- what the device holds --------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class EncounterSummary:
    """One row of "today's encounters" (and of the record card's contacts from this device)."""

    client_id: str
    created_at: str  # UTC instant it was saved
    recorded_by: str
    start: datetime  # UTC
    end: datetime  # UTC
    patient_id: str | None  # None for a provisional (unidentified) person
    patient_display: str
    provisional: bool
    outcome: str  # OUTCOME_CODES key
    outcome_display: str
    section_136: bool
    state: str  # waiting | sent | rejected | discarded
    reason: str | None  # the server's reason, for rejected and discarded rows
    attempts: int
    resolved_by: str | None = None
    team: str | None = None  # the team that recorded it, as entered
    # Who it is about as saved (see `subject_snapshot`); `person_gone`: no longer cached.
    subject_birth_date: str | None = None
    subject_nhs_number: str | None = None
    person_gone: bool = False
    # A person only a neighbour Trust knows, sent home by NHS number: the Patient id home
    # answered with (made or found), once sent; None otherwise (section 6 of the design note).
    home_patient_id: str | None = None


def _cache_usable(session: Session) -> bool:
    try:
        session.check_fresh()
    except CacheExpired:
        return False
    return True


def _summary(session: Session, row: OutboxRow, names_visible: bool) -> EncounterSummary:
    bundle = orjson.loads(row.payload)
    answers = fhir_out.answers_of(bundle)
    person = answers["patient"].get("unidentified")
    snapshot = orjson.loads(row.subject) if row.subject else {}
    gone = False
    if person is not None and row.patient_id is None:
        display = f"{fhir_out.PROVISIONAL_NAME} ({person['sex']}, about {person['apparent_age']})"
    elif not names_visible:
        display = "Name hidden until the tablet syncs"
    else:
        source = row.patient_source if row.patient_source is not None else HOME_SOURCE
        patient = session.store.get_resource(source, "Patient", row.patient_id or "")
        # A record about a neighbour Trust's patient names them itself (by NHS number, or
        # described as an unidentified person): it does not need the cached Patient, so it is
        # never "person gone" (that advice says to pick the person again).
        gone = patient is None and source == HOME_SOURCE
        if patient is not None:
            display = display_name_of(patient)
        else:
            display = str(snapshot.get("name") or "Person no longer on this tablet")
    return EncounterSummary(
        client_id=row.client_id,
        created_at=row.created_at,
        recorded_by=row.user_id,
        start=datetime.fromisoformat(answers["start"]),
        end=datetime.fromisoformat(answers["end"]),
        patient_id=row.patient_id,
        patient_display=display,
        provisional=person is not None,
        outcome=answers["outcome"],
        outcome_display=OUTCOME_CODES.get(answers["outcome"], answers["outcome"]),
        section_136=bool(answers.get("section_136")),
        state=STATE_LABELS[row.state],
        reason=row.reason if row.state in ("rejected", "discarded") else None,
        attempts=row.attempts,
        resolved_by=row.resolved_by,
        team=answers.get("team"),
        subject_birth_date=snapshot.get("birth_date") if names_visible else None,
        subject_nhs_number=snapshot.get("nhs_number") if names_visible else None,
        person_gone=gone,
        home_patient_id=(
            home_patient_id(bundle, orjson.loads(row.response))
            if row.state == "sent" and row.response
            else None
        ),
    )


def list_encounters(
    session: Session, since: datetime | None = None, *, user_id: str | None = None
) -> list[EncounterSummary]:
    """Field records on this device, newest first.

    `since` limits sent and discarded records; waiting and rejected ones are always listed,
    because they still need the network or a person. `user_id` keeps one officer's records.
    """
    store = session.store
    rows = {r.client_id: r for r in store.outbox_rows(kind=KIND, states=("pending", "rejected"))}
    since_text = _instant(since) if since is not None else None
    for row in store.outbox_rows(kind=KIND, since=since_text):
        rows.setdefault(row.client_id, row)
    names_visible = _cache_usable(session)
    chosen = [r for r in rows.values() if user_id is None or r.user_id == user_id]
    chosen.sort(key=lambda r: r.seq, reverse=True)
    return [_summary(session, r, names_visible) for r in chosen]


def field_records_for_patient(
    session: Session, patient_id: str, *, source: int = HOME_SOURCE
) -> list[EncounterSummary]:
    """This device's records about one cached person (`source`'s Patient `patient_id`),
    newest first (for the record card)."""
    rows = session.store.outbox_rows(kind=KIND, patient_id=patient_id, patient_source=source)
    return [_summary(session, r, True) for r in sorted(rows, key=lambda r: -r.seq)]


def recorded_answers(session: Session, client_id: str) -> dict[str, Any]:
    """A recorded encounter back in the JSON input shape, to edit it after a rejection."""
    row = _outbox_row(session, client_id)
    return fhir_out.answers_of(orjson.loads(row.payload))


def _outbox_row(session: Session, client_id: str) -> OutboxRow:
    row = session.store.outbox_row(client_id)
    if row is None or row.kind != KIND:
        raise InvalidInput("no such encounter on this device", field="client_id")
    return row


def resolve_rejected(
    session: Session,
    client_id: str,
    action: Literal["retry", "discard"],
    *,
    corrected: EncounterInput | None = None,
    reason: str | None = None,
    now: datetime | None = None,
) -> None:
    """Settle a record the central record rejected; nothing is ever deleted.

    - `retry`: back to waiting, to be sent again as it is or, with `corrected`, rebuilt from
      the corrected input under the same client id (the server applied nothing of a rejected
      transaction, so the identifiers are free).
    - `discard`: kept, with its payload and the server's reason, marked discarded by this
      user; `reason` (one of DISCARD_REASONS) is required.
    Either way the decision is appended to the audit chain in the same transaction.
    """
    row = _outbox_row(session, client_id)
    if row.state != "rejected":
        raise InvalidInput(
            f"only a rejected record can be resolved; this one is {STATE_LABELS[row.state]}",
            field="client_id",
        )
    store = session.store
    now = now or datetime.now(UTC)
    if action == "retry":
        if reason is not None:
            raise InvalidInput("a retry takes no reason", field="reason")
        payload, patient_id, patient_source = (None, row.patient_id, row.patient_source)
        if corrected is not None:
            ready = _prepare(session, corrected, now, client_id)
            payload, patient_id, patient_source = (
                ready.payload,
                ready.patient_id,
                ready.patient_source,
            )
        with store.transaction():
            subject = (
                subject_snapshot(session, patient_id, patient_source)
                if corrected is not None
                else None
            )
            if not store.requeue_outbox(
                client_id,
                payload=payload,
                patient_id=patient_id,
                patient_source=patient_source if patient_id is not None else None,
                subject=subject,
            ):
                raise InvalidInput("the record changed meanwhile; look again", field="client_id")
            store.audit(
                user_id=session.user_id,
                action="amend-field-record" if corrected is not None else "retry-field-record",
                patient_id=patient_id,
                source=(patient_source or HOME_SOURCE) if patient_id is not None else None,
                reason=None,
                event_id=str(uuid.uuid4()),
            )
        if payload is not None:  # the corrected record replaces its sealed copy
            from app.services.session import seal_records

            seal_records(session, [(client_id, KIND, patient_id, payload)])
    elif action == "discard":
        if reason not in DISCARD_REASONS:
            raise InvalidInput(f"choose a reason: {', '.join(DISCARD_REASONS)}", field="reason")
        if corrected is not None:
            raise InvalidInput("a discarded record takes no correction", field="corrected")
        with store.transaction():
            if not store.discard_outbox(client_id, by=session.user_id):
                raise InvalidInput("the record changed meanwhile; look again", field="client_id")
            store.audit(
                user_id=session.user_id,
                action="discard-field-record",
                patient_id=row.patient_id,
                source=row.patient_source if row.patient_id is not None else None,
                reason=reason,
                event_id=str(uuid.uuid4()),
            )
    else:
        raise InvalidInput("the action must be retry or discard", field="action")
    log.info("rejected encounter %s resolved: %s", client_id, action)
