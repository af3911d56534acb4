"""Recording a street-triage encounter offline: validation, the outbox, drafts, rejections.

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
import re
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any, Literal

import orjson

from app.errors import CacheExpired, InvalidInput
from app.fhir import (
    CONVEYANCE_CODES,
    KNOWN_TO_SERVICES_CODES,
    LOCATION_TYPES,
    OUTCOME_CODES,
    PLACE_OF_SAFETY_CODES,
    REFERRAL_CODES,
    RESPONSE_MODES,
    RISK_LEVELS,
    RISK_TOPICS,
    SEX_CODES,
    display_name_of,
)
from app.nhs_number import is_valid as nhs_number_is_valid
from app.nhs_number import normalise as normalise_nhs_number
from app.security import Profile
from app.services import _encounter_fhir as fhir_out
from app.services._encounter_fhir import FORM, FORM_ITEMS, FormItem, FormSection
from app.services.session import Session
from app.store import OutboxRow
from app.times import iso_instant, parse_instant

log = logging.getLogger("kerbside.services")

KIND = "encounter"  # outbox kind and draft kind
CLOCK_SKEW = timedelta(minutes=5)  # tablets drift; an end this far ahead is still "now"
MAX_DURATION = timedelta(hours=24)  # longer is almost surely a mistyped date
MAX_APPARENT_AGE = 120
ADULT_AGE = 18
_PLAIN_NAME = re.compile(r"[A-Za-z0-9_.-]{1,40}")
# Profile settings naming the officer's team (set at enrolment or by `kerbside set-team`).
TEAM_SETTING = "team"
TEAM_CODE_SETTING = "team_code"
_ODS_CODE = re.compile(r"[A-Z0-9]{3,10}")  # organisation (e.g. RXV) or site (e.g. RXV01) code

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
    "Draft",
    "EncounterInput",
    "EncounterSummary",
    "FieldError",
    "FormItem",
    "FormSection",
    "InvalidEncounter",
    "KnownPatient",
    "PatientByNhsNumber",
    "RecordedEncounter",
    "Team",
    "UnidentifiedPerson",
    "discard_draft",
    "field_records_for_patient",
    "list_encounters",
    "load_drafts",
    "make_team",
    "new_draft_id",
    "parse_encounter",
    "parse_encounter_json",
    "record",
    "record_many",
    "recorded_answers",
    "resolve_rejected",
    "save_draft",
    "set_team",
    "team_of",
    "validate",
]


# -- input ------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class FieldError:
    """One problem with one field; `field` is the JSON name (dotted/indexed for nested ones)."""

    field: str
    message: str

    def __str__(self) -> str:
        return f"{self.field}: {self.message}"


class InvalidEncounter(InvalidInput):
    """Refused input, with every problem found (the form shows them all at once)."""

    def __init__(self, errors: Sequence[FieldError]) -> None:
        self.errors = list(errors)
        super().__init__("; ".join(str(e) for e in self.errors), field=self.errors[0].field)


@dataclass(frozen=True, slots=True)
class KnownPatient:
    """A person picked from the cache (search result or record card)."""

    patient_id: str


@dataclass(frozen=True, slots=True)
class PatientByNhsNumber:
    """A person given by NHS number: must be valid and match exactly one cached Patient."""

    nhs_number: str


@dataclass(frozen=True, slots=True)
class UnidentifiedPerson:
    """Someone who cannot be identified: recorded by description as a provisional Patient."""

    description: str
    apparent_age: int
    sex: str  # female | male | other | unknown
    place_found: str | None = None


PatientChoice = KnownPatient | PatientByNhsNumber | UnidentifiedPerson


@dataclass(frozen=True, slots=True)
class EncounterInput:
    """One street-triage encounter as the form or the JSON gives it (DOMAIN.md field list).

    Times are timezone-aware (stored as UTC). Optional fields left as None are not recorded
    rather than defaulted: a clinical record should not claim what nobody entered. The one
    default, `team`, is filled in by the callers (the form, `parse_encounter`) from the
    profile's setting: it says who recorded the contact, not anything about the person.
    """

    patient: PatientChoice
    start: datetime
    end: datetime
    location: str
    police_incident_ref: str
    presenting_situation: str
    section_136: bool
    outcome: str
    narrative: str
    location_type: str | None = None
    response_mode: str | None = None
    known_to_services: str | None = None
    crisis_plan_consulted: bool | None = None
    risk_to_self: str | None = None
    risk_to_others: str | None = None
    risk_from_others: str | None = None
    health_professional_consulted: bool | None = None
    consulted_with: str | None = None
    place_of_safety: str | None = None
    conveyance: str | None = None
    referrals: tuple[str, ...] = ()
    team: str | None = None


REQUIRED_FIELDS = ("patient", *(i.link_id for i in FORM_ITEMS.values() if i.required))
OPTIONAL_FIELDS = tuple(i.link_id for i in FORM_ITEMS.values() if not i.required)
_S136_ONLY = tuple(i.link_id for i in FORM_ITEMS.values() if i.only_with_s136)
_CODES: dict[str, Mapping[str, str] | Sequence[str]] = {
    "response_mode": RESPONSE_MODES,
    "location_type": LOCATION_TYPES,
    "known_to_services": KNOWN_TO_SERVICES_CODES,
    "outcome": OUTCOME_CODES,
    "place_of_safety": PLACE_OF_SAFETY_CODES,
    "conveyance": CONVEYANCE_CODES,
    **dict.fromkeys(RISK_TOPICS, RISK_LEVELS),
}


def _name(key: object) -> str:
    """A field name from outside, safe to echo in a message: short and printable."""
    text = str(key)
    if _PLAIN_NAME.fullmatch(text):
        return text
    return repr(text[:40]) if text.isprintable() else "(unprintable name)"


def _parse_time(raw: str) -> datetime | None:
    return parse_instant(raw, naive="reject")


def _parse_patient(raw: Any, errors: list[FieldError]) -> PatientChoice | None:
    if not isinstance(raw, dict) or len(raw) != 1:
        errors.append(
            FieldError(
                "patient",
                'must be one of {"id": ...}, {"nhs_number": ...} or {"unidentified": {...}}',
            )
        )
        return None
    ((key, value),) = raw.items()
    if key in ("id", "nhs_number"):
        if not isinstance(value, str):
            errors.append(FieldError(f"patient.{key}", "must be a string"))
            return None
        return KnownPatient(value) if key == "id" else PatientByNhsNumber(value)
    if key != "unidentified":
        errors.append(FieldError(f"patient.{_name(key)}", "unknown field"))
        return None
    if not isinstance(value, dict):
        errors.append(FieldError("patient.unidentified", "must be an object"))
        return None
    known = {"description", "apparent_age", "sex", "place_found"}
    before = len(errors)
    for extra in sorted(set(value) - known, key=str):
        errors.append(FieldError(f"patient.unidentified.{_name(extra)}", "unknown field"))
    for name in ("description", "apparent_age", "sex"):
        if name not in value:
            errors.append(FieldError(f"patient.unidentified.{name}", "is required"))
    age = value.get("apparent_age")
    if "apparent_age" in value and (not isinstance(age, int) or isinstance(age, bool)):
        errors.append(FieldError("patient.unidentified.apparent_age", "must be a whole number"))
    for name in ("description", "sex", "place_found"):
        if value.get(name) is not None and not isinstance(value[name], str):
            errors.append(FieldError(f"patient.unidentified.{name}", "must be a string"))
    if len(errors) > before:
        return None
    return UnidentifiedPerson(
        description=value["description"],
        apparent_age=age,  # type: ignore[arg-type]
        sex=value["sex"],
        place_found=value.get("place_found"),
    )


def _parse_value(item: FormItem, raw: Any, errors: list[FieldError]) -> Any:
    """Check the JSON type of one form field and convert it; values are checked by validate."""
    name = item.link_id
    if item.type == "dateTime":
        when = _parse_time(raw) if isinstance(raw, str) else None
        if when is None:
            errors.append(
                FieldError(name, "must be a date-time with a time zone, e.g. 2026-11-20T22:15:00Z")
            )
        return when
    if item.type == "boolean":
        if not isinstance(raw, bool):
            errors.append(FieldError(name, "must be true or false"))
        return raw
    if item.repeats:
        if not isinstance(raw, list) or not all(isinstance(c, str) for c in raw):
            errors.append(FieldError(name, "must be a list of codes"))
            return ()
        return tuple(raw)
    if not isinstance(raw, str):
        errors.append(FieldError(name, "must be a string"))
    return raw


def parse_encounter(
    obj: Any, session: Session | None = None, *, now: datetime | None = None
) -> tuple[EncounterInput | None, list[FieldError]]:
    """Check a JSON object (the input format, or a form draft) and build the input from it.

    Returns every error found. Field types are checked first; values and rules (the same
    `validate` the form uses) only once every field has the right type. With a session, an
    absent `team` is the profile's team (`null` or "" records none).
    """
    if not isinstance(obj, dict):
        return None, [FieldError("encounter", "must be a JSON object")]
    errors: list[FieldError] = []
    for key in sorted(set(obj) - {*REQUIRED_FIELDS, *OPTIONAL_FIELDS}, key=str):
        errors.append(FieldError(_name(key), "unknown field"))
    for name in REQUIRED_FIELDS:
        if name not in obj:
            errors.append(FieldError(name, "is required"))
    values: dict[str, Any] = {}
    if "patient" in obj:
        values["patient"] = _parse_patient(obj["patient"], errors)
    for name, item in FORM_ITEMS.items():
        if name in obj and not (obj[name] is None and not item.required):
            values[name] = _parse_value(item, obj[name], errors)
    if errors:
        return None, errors
    team = team_of(session.profile) if session is not None else None
    if "team" not in obj and team is not None:
        values["team"] = team.name
    inp = EncounterInput(**values)
    errors = validate(inp, session, now=now)
    return (None, errors) if errors else (inp, [])


def parse_encounter_json(
    obj: Any, session: Session | None = None, *, now: datetime | None = None
) -> EncounterInput:
    """`parse_encounter`, raising InvalidEncounter (naming each bad field) on any error."""
    inp, errors = parse_encounter(obj, session, now=now)
    if errors:
        raise InvalidEncounter(errors)
    assert inp is not None
    return inp


# -- validation -------------------------------------------------------------------------------
def validate(
    inp: EncounterInput, session: Session | None = None, *, now: datetime | None = None
) -> list[FieldError]:
    """Every problem with `inp`, for the form to show inline; empty means it can be saved.

    Without a session the checks that need the cache (the person exists; their age for the
    police-station rule) are skipped; `record` always runs them.
    """
    return _check(inp, session, now or datetime.now(UTC))[0]


def _check(
    inp: EncounterInput, session: Session | None, now: datetime
) -> tuple[list[FieldError], str | None]:
    """(errors, the cached Patient id the record is about or None for a provisional one)."""
    errors: list[FieldError] = []
    _check_times(inp, now, errors)
    for name in ("location", "police_incident_ref", "presenting_situation"):
        _check_text(name, getattr(inp, name), errors, required=True)
    for name in ("narrative", "consulted_with", "team"):
        _check_text(name, getattr(inp, name), errors, required=False)
    for name, allowed in _CODES.items():
        value = getattr(inp, name)
        if value is not None and value not in allowed:
            errors.append(FieldError(name, f"must be one of: {', '.join(allowed)}"))
    for name in ("section_136", "crisis_plan_consulted", "health_professional_consulted"):
        value = getattr(inp, name)
        if value is not None and not isinstance(value, bool):
            errors.append(FieldError(name, "must be true or false"))
    for index, code in enumerate(inp.referrals):
        if code not in REFERRAL_CODES:
            errors.append(
                FieldError(f"referrals[{index}]", f"must be one of: {', '.join(REFERRAL_CODES)}")
            )
        elif code in inp.referrals[:index]:
            errors.append(FieldError(f"referrals[{index}]", "is listed twice"))
    _check_section_136(inp, errors)
    patient_id, age = _check_patient(inp, session, now, errors)
    if inp.section_136 and inp.place_of_safety == "police-station" and age is not None:
        if age < ADULT_AGE:
            errors.append(
                FieldError(
                    "place_of_safety",
                    "a police station is never a place of safety for a person under 18",
                )
            )
    return errors, patient_id


def _check_times(inp: EncounterInput, now: datetime, errors: list[FieldError]) -> None:
    aware = True
    for name in ("start", "end"):
        value = getattr(inp, name)
        if not isinstance(value, datetime) or value.tzinfo is None:
            errors.append(FieldError(name, "must be a date-time with a time zone"))
            aware = False
    if not aware:
        return
    if inp.end <= inp.start:
        errors.append(FieldError("end", "must be after start"))
    elif inp.end - inp.start > MAX_DURATION:
        errors.append(FieldError("end", "is more than 24 hours after start"))
    for name in ("start", "end"):
        if getattr(inp, name) > now + CLOCK_SKEW:
            errors.append(FieldError(name, "is in the future"))


def _check_text(name: str, value: Any, errors: list[FieldError], *, required: bool) -> None:
    if value is None and not required:
        return
    if not isinstance(value, str):
        errors.append(FieldError(name, "must be text"))
        return
    if required and not value.strip():
        errors.append(FieldError(name, "must not be empty"))
    limit = FORM_ITEMS[name].max_length
    if limit and len(value) > limit:
        errors.append(FieldError(name, f"is longer than {limit} characters"))


def _check_section_136(inp: EncounterInput, errors: list[FieldError]) -> None:
    if not inp.section_136:
        for name in _S136_ONLY:
            if getattr(inp, name) is not None:
                errors.append(FieldError(name, "is recorded only when section 136 is used"))
        if inp.outcome == "s136-place-of-safety":
            errors.append(
                FieldError(
                    "outcome", "cannot be a section 136 outcome when section 136 is not used"
                )
            )
        return
    if inp.location_type is None:
        errors.append(FieldError("location_type", "is required when section 136 is used"))
    elif inp.location_type == "dwelling":
        errors.append(
            FieldError(
                "section_136",
                "section 136 cannot be used in a dwelling (Mental Health Act 1983 s136(1))",
            )
        )
    for name in ("health_professional_consulted", "place_of_safety", "conveyance"):
        if getattr(inp, name) is None:
            errors.append(FieldError(name, "is required when section 136 is used"))
    if inp.consulted_with is not None and inp.health_professional_consulted is False:
        errors.append(
            FieldError(
                "consulted_with", "is recorded only when a health professional was consulted"
            )
        )


def _check_patient(
    inp: EncounterInput, session: Session | None, now: datetime, errors: list[FieldError]
) -> tuple[str | None, int | None]:
    """(cached Patient id, age in whole years if known) for the person the record is about."""
    person = inp.patient
    if isinstance(person, UnidentifiedPerson):
        before = len(errors)
        _check_text_field("patient.unidentified.description", person.description, 1000, errors)
        age = person.apparent_age
        if not isinstance(age, int) or isinstance(age, bool) or not 0 <= age <= MAX_APPARENT_AGE:
            errors.append(
                FieldError(
                    "patient.unidentified.apparent_age",
                    f"must be a whole number from 0 to {MAX_APPARENT_AGE}",
                )
            )
        if person.sex not in SEX_CODES:
            errors.append(
                FieldError("patient.unidentified.sex", f"must be one of: {', '.join(SEX_CODES)}")
            )
        if person.place_found is not None:
            _check_text_field(
                "patient.unidentified.place_found", person.place_found, 500, errors, required=False
            )
        return None, age if len(errors) == before else None
    if isinstance(person, PatientByNhsNumber):
        if not isinstance(person.nhs_number, str) or not nhs_number_is_valid(person.nhs_number):
            errors.append(
                FieldError(
                    "patient.nhs_number",
                    "is not a valid NHS number (10 digits with a correct check digit)",
                )
            )
            return None, None
        if session is None:
            return None, None
        digits = normalise_nhs_number(person.nhs_number)
        ids = session.store.patient_ids_with_nhs_number(digits)
        if not ids:
            errors.append(
                FieldError(
                    "patient.nhs_number",
                    "matches no person in this "
                    "device's cache; search for them or record them as "
                    "unidentified",
                )
            )
            return None, None
        if len(ids) > 1:
            errors.append(
                FieldError(
                    "patient.nhs_number",
                    "matches more than one cached person; pick the person from search instead",
                )
            )
            return None, None
        patient_id = ids[0]
    elif isinstance(person, KnownPatient):
        patient_id = person.patient_id
        if not isinstance(patient_id, str) or not patient_id.strip():
            errors.append(FieldError("patient.id", "must not be empty"))
            return None, None
        if session is None:
            return None, None
    else:
        errors.append(FieldError("patient", "must be a known, NHS-numbered or unidentified person"))
        return None, None
    patient = session.store.get_resource("Patient", patient_id)
    if patient is None:
        errors.append(FieldError("patient.id", "matches no person in this device's cache"))
        return None, None
    return patient_id, _youngest_age(patient.get("birthDate"), inp.start)


def _check_text_field(
    name: str, value: Any, limit: int, errors: list[FieldError], *, required: bool = True
) -> None:
    if not isinstance(value, str):
        errors.append(FieldError(name, "must be text"))
    elif required and not value.strip():
        errors.append(FieldError(name, "must not be empty"))
    elif len(value) > limit:
        errors.append(FieldError(name, f"is longer than {limit} characters"))


def _youngest_age(birth_date: Any, on: datetime) -> int | None:
    """Age in whole years on `on`, taking the latest day a partial birth date allows.

    `1990` or `1990-05` could be a birthday late in that year or month; the police-station rule
    protects children, so a partial date counts as the youngest the person could be.
    """
    if not isinstance(birth_date, str):
        return None
    parts = birth_date.split("-")
    try:
        year = int(parts[0])
        month = int(parts[1]) if len(parts) > 1 else 12
        day = int(parts[2][:2]) if len(parts) > 2 else 0
        if day == 0:
            following = date(year + month // 12, month % 12 + 1, 1)
            born = following - timedelta(days=1)
        else:
            born = date(year, month, day)
    except (ValueError, IndexError):
        return None
    when = on.astimezone(UTC).date() if isinstance(on, datetime) and on.tzinfo else None
    if when is None:
        return None
    return when.year - born.year - ((when.month, when.day) < (born.month, born.day))


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


def _prepare(
    session: Session, inp: EncounterInput, now: datetime, client_id: str
) -> tuple[bytes, str | None]:
    errors, patient_id = _check(inp, session, now)
    if errors:
        raise InvalidEncounter(errors)
    team = team_of(session.profile)
    # The code identifies the profile's team; a team typed in instead is recorded by name only.
    team_code = team.code if team is not None and (inp.team or "").strip() == team.name else None
    bundle = fhir_out.build_transaction(
        inp,
        client_id=client_id,
        patient_id=patient_id,
        user_id=session.user_id,
        device_id=session.profile.profile_id,
        recorded_at=now,
        team_code=team_code,
    )
    return orjson.dumps(bundle), patient_id


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
    prepared: list[tuple[str, bytes, str | None, EncounterInput]] = []
    errors: list[FieldError] = []
    for index, inp in enumerate(inputs):
        client_id = str(uuid.uuid4())
        try:
            payload, patient_id = _prepare(session, inp, now, client_id)
        except InvalidEncounter as exc:
            prefix = f"[{index}]." if len(inputs) > 1 else ""
            errors += [FieldError(prefix + e.field, e.message) for e in exc.errors]
            continue
        prepared.append((client_id, payload, patient_id, inp))
    if errors:
        raise InvalidEncounter(errors)
    created_at = _instant(now)
    store = session.store
    with store.transaction():
        for (client_id, payload, patient_id, _), draft_id in zip(prepared, draft_ids, strict=True):
            store.add_outbox(
                client_id=client_id,
                kind=KIND,
                patient_id=patient_id,
                user_id=session.user_id,
                payload=payload,
                created_at=created_at,
            )
            if draft_id is not None:
                store.delete_draft(draft_id)
    log.info("recorded %d encounter(s): %s", len(prepared), ", ".join(p[0] for p in prepared))
    return [
        RecordedEncounter(
            client_id, created_at, patient_id, isinstance(inp.patient, UnidentifiedPerson)
        )
        for client_id, _, patient_id, inp in prepared
    ]


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
    if person is not None:
        display = f"{fhir_out.PROVISIONAL_NAME} ({person['sex']}, about {person['apparent_age']})"
    elif not names_visible:
        display = "Name hidden until the cache syncs"
    else:
        patient = session.store.get_resource("Patient", row.patient_id or "")
        display = display_name_of(patient) if patient else "Person no longer in the cache"
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


def field_records_for_patient(session: Session, patient_id: str) -> list[EncounterSummary]:
    """This device's records about one cached person, newest first (for the record card)."""
    rows = session.store.outbox_rows(kind=KIND, patient_id=patient_id)
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
        payload, patient_id = (None, row.patient_id)
        if corrected is not None:
            payload, patient_id = _prepare(session, corrected, now, client_id)
        with store.transaction():
            if not store.requeue_outbox(client_id, payload=payload, patient_id=patient_id):
                raise InvalidInput("the record changed meanwhile; look again", field="client_id")
            store.audit(
                user_id=session.user_id,
                action="amend-field-record" if corrected is not None else "retry-field-record",
                patient_id=patient_id,
                reason=None,
                event_id=str(uuid.uuid4()),
            )
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
                reason=reason,
                event_id=str(uuid.uuid4()),
            )
    else:
        raise InvalidInput("the action must be retry or discard", field="action")
    log.info("rejected encounter %s resolved: %s", client_id, action)


# -- the officer's team (a profile setting; the default for every record) -------------------
@dataclass(frozen=True, slots=True)
class Team:
    """The street-triage team this device records for; `code` is its ODS code, if known."""

    name: str
    code: str | None = None


def team_of(profile: Profile) -> Team | None:
    """The profile's team, or None if none was set (records then name no team)."""
    settings = profile.settings
    name = settings.get(TEAM_SETTING)
    if not isinstance(name, str) or not name.strip():
        return None
    code = settings.get(TEAM_CODE_SETTING)
    return Team(name.strip(), code if isinstance(code, str) and code else None)


def make_team(name: str, code: str | None = None) -> Team:
    """A team as the officer typed it, checked: one line of at most the form's `team` length,
    and an ODS-shaped code (upper-cased) if any. Messages never echo the value."""
    limit = FORM_ITEMS["team"].max_length or 0
    name = name.strip()
    if not name:
        raise InvalidInput("the team name must not be empty", field=TEAM_SETTING)
    if len(name) > limit:
        raise InvalidInput(f"the team name is longer than {limit} characters", field=TEAM_SETTING)
    if not name.isprintable():
        raise InvalidInput("the team name must be one line of text", field=TEAM_SETTING)
    if code is not None:
        code = code.strip().upper()
        if not _ODS_CODE.fullmatch(code):
            raise InvalidInput(
                "the team code must be an ODS code: 3 to 10 letters and digits, e.g. RXV",
                field=TEAM_CODE_SETTING,
            )
    return Team(name, code)


def set_team(profile: Profile, team: Team | None) -> None:
    """Make `team` (from `make_team`; None: no team) the default for new records.

    Name and code are replaced together: a code left over from the previous team would
    identify the wrong organisation on every later record.
    """
    name, code = (team.name, team.code) if team is not None else (None, None)
    profile.update_settings(**{TEAM_SETTING: name, TEAM_CODE_SETTING: code})


# -- drafts (the form autosaves; a crash restores them) ---------------------------------------
@dataclass(frozen=True, slots=True)
class Draft:
    draft_id: str
    updated_at: str  # UTC instant
    data: dict[str, Any] = field(default_factory=dict)  # partial JSON input shape


def new_draft_id() -> str:
    return str(uuid.uuid4())


def save_draft(session: Session, draft_id: str, partial: Mapping[str, Any]) -> None:
    """Autosave a half-filled form (the JSON input shape; anything may be missing)."""
    if not isinstance(draft_id, str) or not 0 < len(draft_id) <= 64:
        raise InvalidInput("a draft id is 1-64 characters", field="draft_id")
    if not isinstance(partial, Mapping):
        raise InvalidInput("a draft is an object of form fields", field="draft")
    body = orjson.dumps(dict(partial), option=orjson.OPT_UTC_Z)
    session.store.save_draft(draft_id, KIND, session.user_id, body)


def load_drafts(session: Session) -> list[Draft]:
    """This user's encounter drafts, most recently saved first."""
    drafts = [
        Draft(draft_id, updated_at, orjson.loads(body))
        for draft_id, kind, _, body, updated_at in session.store.drafts(session.user_id)
        if kind == KIND
    ]
    return sorted(drafts, key=lambda d: d.updated_at, reverse=True)


def discard_draft(session: Session, draft_id: str) -> None:
    session.store.delete_draft(draft_id)
