"""What the encounter form calls each section and field, in the order it shows them, and how it
words an error against one: read by the form's sections, its Save bar and its error display."""

from __future__ import annotations

from app.fhir import RISK_TOPICS
from app.services import encounters

FORM_SECTIONS = {section.link_id: section for section in encounters.FORM}
FORM_ITEMS = {item.link_id: item for section in encounters.FORM for item in section.items}

# Every field the form can show an error against, in the order it appears (for "what's
# missing" and for scrolling to the first problem).
FIELD_ORDER = (
    "patient", "patient.id", "patient.nhs_number", "patient.unidentified.description",
    "patient.unidentified.apparent_age", "patient.unidentified.sex",
    "patient.unidentified.place_found", "start", "end", "response_mode", "team", "location",
    "location_type", "police_incident_ref", "presenting_situation", "known_to_services",
    "crisis_plan_consulted", *RISK_TOPICS, "section_136", "s136_detained_at", "s136_arrived_at",
    "health_professional_consulted",
    "consulted_with", "place_of_safety", "conveyance", "outcome", "referrals", "narrative",
)  # fmt: skip
FIELD_LABELS = {
    **{name: item.text for name, item in FORM_ITEMS.items()},
    "patient": "Person",
    "patient.id": "Person",
    "patient.nhs_number": "NHS number",
    "patient.unidentified.description": "Description",
    "patient.unidentified.apparent_age": "Apparent age",
    "patient.unidentified.sex": "Sex",
    "patient.unidentified.place_found": "Where found",
    "location_type": "Public place or dwelling",
}


def error_text(field: str, message: str) -> str:
    """An error as a sentence: "Location is required: fill it in", "End must be after start"."""
    name = FIELD_LABELS.get(base_field(field), field)
    if message.startswith(("is ", "must ", "matches ", "has ", "cannot ")):
        return f"⚠ {name} {message}"
    return "⚠ " + message[:1].upper() + message[1:]


def base_field(field: str) -> str:
    """`referrals[2]` -> `referrals`; other names are kept."""
    return field.split("[", 1)[0]
