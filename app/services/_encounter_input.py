"""What an encounter is as input: the typed `EncounterInput` the form and the JSON parser build,
the ways to name the person, and the field errors validation reports.

Types only, so the FHIR mapping, validation, parsing and recording can all use them without
importing one another.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from app.errors import InvalidInput

KIND = "encounter"  # outbox kind and draft kind


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
    """A person picked from the cache (search result or record card): `source`'s (sid)
    Patient `patient_id` (1, the home source, unless a neighbour Trust's record was picked;
    the record still goes home, by NHS number: docs/design/multi-trust.md section 6)."""

    patient_id: str
    source: int = 1  # app.store.HOME_SOURCE


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
    s136_detained_at: datetime | None = None  # required when section_136
    s136_arrived_at: datetime | None = None  # at the place of safety; the 24 hours run from it
    referrals: tuple[str, ...] = ()
    team: str | None = None
