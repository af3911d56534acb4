"""The rules an encounter must meet before it is saved (DOMAIN.md): times, required text,
codes from the form definition, the s136 fields, and who the record is about (a cached person,
an NHS number matching one, or a described unidentified person).

One `validate` serves the form (errors shown inline) and `kerbside record`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, date, datetime, timedelta
from typing import Any

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
)
from app.nhs_number import is_valid as nhs_number_is_valid
from app.nhs_number import normalise as normalise_nhs_number
from app.services._encounter_fhir import FORM_ITEMS
from app.services._encounter_input import (
    EncounterInput,
    FieldError,
    KnownPatient,
    PatientByNhsNumber,
    UnidentifiedPerson,
)
from app.services.session import Session
from app.store import HOME_SOURCE

CLOCK_SKEW = timedelta(minutes=5)  # tablets drift; an end this far ahead is still "now"
MAX_DURATION = timedelta(hours=24)  # longer is almost surely a mistyped date
MAX_APPARENT_AGE = 120
ADULT_AGE = 18

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
    _check_s136_times(inp, now, errors)
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


def _check_s136_times(inp: EncounterInput, now: datetime, errors: list[FieldError]) -> None:
    """Time of detention (required with s136) and arrival at the place of safety: real
    instants, not in the future, arrival after detention. The 24-hour limit runs from them
    (hazard H10), so a wrong time here is a wrong legal record."""
    if not inp.section_136:
        return  # recorded only with s136: _check_section_136 says so
    detained, arrived = inp.s136_detained_at, inp.s136_arrived_at
    if detained is None:
        errors.append(FieldError("s136_detained_at", "is required when section 136 is used"))
    for name, value in (("s136_detained_at", detained), ("s136_arrived_at", arrived)):
        if value is None:
            continue
        if not isinstance(value, datetime) or value.tzinfo is None:
            errors.append(FieldError(name, "must be a date-time with a time zone"))
            return
        if value > now + CLOCK_SKEW:
            errors.append(FieldError(name, "is in the future"))
    if detained is not None and arrived is not None and arrived < detained:
        errors.append(FieldError("s136_arrived_at", "must be after the time of detention"))


def _check_text(name: str, value: Any, errors: list[FieldError], *, required: bool) -> None:
    if value is None and not required:
        return
    if not isinstance(value, str):
        errors.append(FieldError(name, "must be text"))
        return
    if required and not value.strip():
        errors.append(FieldError(name, "is required: fill it in"))
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
        ids = session.store.patient_ids_with_nhs_number(HOME_SOURCE, digits)
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
    source = person.source if isinstance(person, KnownPatient) else HOME_SOURCE
    patient = session.store.get_resource(source, "Patient", patient_id)
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
        errors.append(FieldError(name, "is required: fill it in"))
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


def is_child(birth_date: Any, on: datetime) -> bool:
    """Under 18 on `on` (a partial date counts as the youngest possible), as the
    police-station rule decides it: the form uses this to disable that choice up front."""
    age = _youngest_age(birth_date, on)
    return age is not None and age < ADULT_AGE
