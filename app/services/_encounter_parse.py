"""The JSON input format of `kerbside record` (and of form drafts) read into an `EncounterInput`:
field types first, then the same `validate` the form uses; every error is reported at once.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

from app.services._encounter_fhir import FORM_ITEMS, FormItem
from app.services._encounter_input import (
    EncounterInput,
    FieldError,
    InvalidEncounter,
    KnownPatient,
    PatientByNhsNumber,
    PatientChoice,
    UnidentifiedPerson,
)
from app.services._encounter_rules import OPTIONAL_FIELDS, REQUIRED_FIELDS, validate
from app.services._encounter_team import team_of
from app.services.session import Session
from app.times import parse_instant

_PLAIN_NAME = re.compile(r"[A-Za-z0-9_.-]{1,40}")


def _name(key: object) -> str:
    """A field name from outside, safe to echo in a message: short and printable."""
    text = str(key)
    if _PLAIN_NAME.fullmatch(text):
        return text
    return repr(text[:40]) if text.isprintable() else "(unprintable name)"


def _parse_sourced(
    raw: dict[str, Any], errors: list[FieldError], session: Session | None
) -> PatientChoice | None:
    """`{"id": ..., "source": NAME}`: source NAME's Patient (issue 14: the record still goes
    home, by NHS number; docs/design/multi-trust.md section 6)."""
    rid, name = raw["id"], raw["source"]
    if not isinstance(rid, str):
        errors.append(FieldError("patient.id", "must be a string"))
        return None
    if not isinstance(name, str):
        errors.append(FieldError("patient.source", "must be a string"))
        return None
    if session is None:
        errors.append(FieldError("patient.source", "can be checked only on the tablet"))
        return None
    sid = session.store.source_id(name)
    if sid is None:
        errors.append(FieldError("patient.source", "names no source on this tablet"))
        return None
    return KnownPatient(rid, source=sid)


def _parse_time(raw: str) -> datetime | None:
    return parse_instant(raw, naive="reject")


def _parse_patient(
    raw: Any, errors: list[FieldError], session: Session | None = None
) -> PatientChoice | None:
    if isinstance(raw, dict) and set(raw) == {"id", "source"}:
        # A Patient of another source (a neighbour Trust's), named by the source's name.
        return _parse_sourced(raw, errors, session)
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
        values["patient"] = _parse_patient(obj["patient"], errors, session)
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
