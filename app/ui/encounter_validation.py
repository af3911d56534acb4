"""What is still wrong with the encounter form, and where the officer is told.

Validation is the service's own `encounters.validate` (no second set of rules here), plus
"choose one" for the choices a form leaves unset where the JSON input would simply lack them.
It is pure and cheap, so it runs after each change; errors appear next to their field once the
officer has tried to save, and the Save bar always says what is still needed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime

from app import times
from app.services import encounters
from app.ui.encounter_answers import EncounterAnswers
from app.ui.encounter_controls import Field
from app.ui.encounter_fields import FIELD_LABELS, FIELD_ORDER, base_field, error_text

MISSING_SHOWN = 3  # field names in the Save bar before "and N more"


def form_errors(form: EncounterAnswers, now: datetime | None = None) -> list[encounters.FieldError]:
    """The service's validation of the form's answers, with "choose one" for unset choices,
    in the order the fields appear."""
    now = now or times.now()
    missing: list[encounters.FieldError] = []
    mode = form.person_mode.value()
    if mode == "known" and not form._patient_id:
        missing.append(encounters.FieldError("patient.id", "is required: pick the person"))
    if mode == "nhs" and not form.nhs_number.text().strip():
        missing.append(encounters.FieldError("patient.nhs_number", "is required"))
    if mode == "unknown":
        if form.apparent_age.value() is None:
            missing.append(
                encounters.FieldError(
                    "patient.unidentified.apparent_age", "is required: your best guess"
                )
            )
        if form.sex.value() is None:
            missing.append(
                encounters.FieldError("patient.unidentified.sex", "is required: choose one")
            )
    if form.outcome.value() is None:
        missing.append(encounters.FieldError("outcome", "is required: choose one"))
    stood_in = {e.field for e in missing}
    found = [e for e in encounters.validate(form.to_input(now), now=now) if e.field not in stood_in]
    return sorted(missing + found, key=lambda e: _order(e.field))


def field_of(fields: Mapping[str, Field], error: encounters.FieldError) -> str | None:
    """The field an error is shown at (the person's errors at the person), or None."""
    key = base_field(error.field)
    return key if key in fields else ("patient.id" if key == "patient" else None)


def show_at_fields(
    fields: Mapping[str, Field], errors: Sequence[encounters.FieldError], *, shown: bool
) -> list[str]:
    """Each error under its field while `shown` (after the first Save attempt), every other
    field's line cleared; the errors that belong to no field, as sentences."""
    by_field: dict[str, list[str]] = {}
    unplaced: list[str] = []
    for error in errors:
        target = field_of(fields, error)
        text = error_text(error.field, error.message)
        if target is None:
            unplaced.append(text)
        else:
            by_field.setdefault(target, []).append(text)
    for name, field in fields.items():
        lines = by_field.get(name) if shown else None
        field.show_error("\n".join(lines) if lines else None)
    return unplaced


def save_bar_text(
    errors: Sequence[encounters.FieldError], unplaced: Sequence[str]
) -> tuple[str, str]:
    """(what the Save bar says, what the Save button says) for these errors."""
    if not errors:
        return "Ready to save", "Save encounter"
    names: list[str] = []
    for error in errors:
        name = FIELD_LABELS.get(base_field(error.field), error.field)
        if name not in names:
            names.append(name)
    # A few names, then a count: the whole list grew the Save bar to five lines in portrait,
    # pushing the form itself off a wet screen.
    first = names[:MISSING_SHOWN]
    more = len(names) - len(first)
    missing = "Still needed: " + ", ".join(first) + (f" and {more} more" if more else "")
    return ("\n".join(unplaced) if unplaced else missing), f"Save · {len(names)} to fix"


def show_service_errors(
    fields: Mapping[str, Field], errors: Sequence[encounters.FieldError]
) -> str:
    """Errors only `record` can find (the person is not in the cache, age rules), each at its
    field (else at the person); what the Save bar says."""
    for error in errors:
        fields[field_of(fields, error) or "patient.id"].show_error(
            error_text(error.field, error.message)
        )
    return "Not saved: " + "; ".join(error_text(e.field, e.message) for e in errors)


def _order(field: str) -> int:
    key = base_field(field)
    return FIELD_ORDER.index(key) if key in FIELD_ORDER else len(FIELD_ORDER)
