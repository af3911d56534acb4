"""FHIR systems, codes and small readers shared by the generator, store, services and UI.

One place for every URL and code so the generator, the record view and the recorder agree.
Conventions of our own (not national standards) use the `KERBSIDE` base until a Trust
supplies its own CodeSystems.
"""

from __future__ import annotations

from typing import Any

from app.nhs_number import is_valid as nhs_number_is_valid

NHS_NUMBER_SYSTEM = "https://fhir.nhs.uk/Id/nhs-number"
ODS_ORG_SYSTEM = "https://fhir.nhs.uk/Id/ods-organization-code"
NMC_SYSTEM = "https://fhir.hl7.org.uk/Id/nmc-number"
GMC_SYSTEM = "https://fhir.hl7.org.uk/Id/gmc-number"
HCPC_SYSTEM = "https://fhir.hl7.org.uk/Id/hcpc-number"
SNOMED = "http://snomed.info/sct"
NHS_VERIFICATION_EXT = (
    "https://fhir.hl7.org.uk/StructureDefinition/Extension-UKCore-NHSNumberVerificationStatus"
)
NHS_VERIFICATION_SYSTEM = (
    "https://fhir.hl7.org.uk/CodeSystem/UKCore-NHSNumberVerificationStatusEngland"
)
NHS_VERIFIED = "01"  # "Number present and verified" (traced against the national index)
ETHNIC_CATEGORY_EXT = "https://fhir.hl7.org.uk/StructureDefinition/Extension-UKCore-EthnicCategory"
ETHNIC_CATEGORY_SYSTEM = "https://fhir.hl7.org.uk/CodeSystem/UKCore-EthnicCategoryEngland"
LEGAL_STATUS_EXT = "https://fhir.hl7.org.uk/StructureDefinition/Extension-UKCore-LegalStatus"
# s136 times on the Encounter (our own extensions until a national one exists): when the person
# was detained, and when they arrived at the place of safety (the 24-hour limit runs from
# arrival, MHA 1983 s136(2A) as amended in 2017).
S136_DETAINED_EXT = "https://kerbside.example/StructureDefinition/s136-detained-at"
S136_ARRIVED_EXT = "https://kerbside.example/StructureDefinition/s136-arrived-at"
LEGAL_STATUS_SYSTEM = "https://fhir.hl7.org.uk/CodeSystem/UKCore-LegalStatusClassificationEngland"
FLAG_CATEGORY_SYSTEM = "http://terminology.hl7.org/CodeSystem/flag-category"
CLINICAL_STATUS_ALLERGY = "http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical"
CLINICAL_STATUS_CONDITION = "http://terminology.hl7.org/CodeSystem/condition-clinical"
V3_ACT_CODE = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
PROFILE_BASE = "https://fhir.hl7.org.uk/StructureDefinition/UKCore-"

KERBSIDE = "https://kerbside.example"
CRISIS_PLAN_SNOMED = "736253002"  # Mental health crisis plan
CRISIS_PLAN_SECTION_SYSTEM = f"{KERBSIDE}/CodeSystem/crisis-plan-section"
OUTCOME_SYSTEM = f"{KERBSIDE}/CodeSystem/street-triage-outcome"
FIELD_RECORD_ID_SYSTEM = f"{KERBSIDE}/Id/field-record"  # client-generated identifiers
DEVICE_ID_SYSTEM = f"{KERBSIDE}/Id/device"

# Field records (the street-triage encounter and what travels with it; app/services/encounters).
USER_ID_SYSTEM = f"{KERBSIDE}/Id/user"  # the enrolled user name (collar or staff number)
POLICE_INCIDENT_SYSTEM = f"{KERBSIDE}/Id/police-incident"  # the force's incident/CAD number
STREET_TRIAGE_QUESTIONNAIRE = f"{KERBSIDE}/Questionnaire/street-triage"
STREET_TRIAGE_QUESTIONNAIRE_VERSION = "3"  # 2: the Team item; 3: s136 times
SERVICE_TYPE_SYSTEM = f"{KERBSIDE}/CodeSystem/service-type"
RESPONSE_MODE_SYSTEM = f"{KERBSIDE}/CodeSystem/street-triage-response-mode"
LOCATION_TYPE_SYSTEM = f"{KERBSIDE}/CodeSystem/street-triage-location-type"
PLACE_OF_SAFETY_SYSTEM = f"{KERBSIDE}/CodeSystem/place-of-safety"
CONVEYANCE_SYSTEM = f"{KERBSIDE}/CodeSystem/conveyance"
REFERRAL_SYSTEM = f"{KERBSIDE}/CodeSystem/street-triage-referral"
KNOWN_TO_SERVICES_SYSTEM = f"{KERBSIDE}/CodeSystem/known-to-services"
RISK_SYSTEM = f"{KERBSIDE}/CodeSystem/street-triage-risk"  # what the risk is about
RISK_LEVEL_SYSTEM = f"{KERBSIDE}/CodeSystem/risk-level"
RECORD_STATUS_SYSTEM = f"{KERBSIDE}/CodeSystem/patient-record-status"  # meta.tag `provisional`
APPARENT_AGE_EXT = f"{KERBSIDE}/StructureDefinition/apparent-age"  # valueAge, years
PERSON_DESCRIPTION_EXT = f"{KERBSIDE}/StructureDefinition/person-description"  # valueString
PLACE_FOUND_EXT = f"{KERBSIDE}/StructureDefinition/place-found"  # valueString
LEGAL_STATUS_CONTEXT_SYSTEM = "https://fhir.hl7.org.uk/CodeSystem/UKCore-LegalStatusContext"
LEGAL_STATUS_S136 = "20"  # Formally detained under Mental Health Act Section 136
# The England classification's displays for the codes street triage meets most.
LEGAL_STATUS_DISPLAYS = {
    "01": "Informal",
    "02": "Formally detained under Mental Health Act Section 2",
    "03": "Formally detained under Mental Health Act Section 3",
    "04": "Formally detained under Mental Health Act Section 4",
    "05": "Formally detained under Mental Health Act Section 5(2)",
    "06": "Formally detained under Mental Health Act Section 5(4)",
    "07": "Formally detained under Mental Health Act Section 35",
    "08": "Formally detained under Mental Health Act Section 36",
    "09": "Formally detained under Mental Health Act Section 37 with section 41 restrictions",
    "10": "Formally detained under Mental Health Act Section 37",
    "12": "Formally detained under Mental Health Act Section 38",
    "19": "Formally detained under Mental Health Act Section 135",
    "20": "Formally detained under Mental Health Act Section 136",
    "98": "Not Applicable",
    "99": "Not Known",
}
KNOWN_TO_SERVICES_CODES = {"yes": "Known to services", "no": "Not known", "unknown": "Unknown"}
RISK_TOPICS = {  # field name -> (code in RISK_SYSTEM, display)
    "risk_to_self": ("risk-to-self", "Risk to self"),
    "risk_to_others": ("risk-to-others", "Risk to others"),
    "risk_from_others": ("risk-from-others", "Risk from others"),
}
SEX_CODES = ("female", "male", "other", "unknown")  # FHIR administrative gender

# Crisis-plan headings in the order someone on scene reads them (DOMAIN.md). A crisis-plan
# CarePlan carries one `activity[].detail` per section: detail.code.coding[0] =
# {system: CRISIS_PLAN_SECTION_SYSTEM, code: <section>}, detail.description = the text,
# detail.status = "in-progress". Plan date = CarePlan.created, author = CarePlan.author,
# review date = CarePlan.period.end.
CRISIS_PLAN_SECTIONS: tuple[tuple[str, str], ...] = (
    ("early-warning-signs", "Early warning signs"),
    ("triggers", "Triggers"),
    ("what-helps", "What helps"),
    ("what-does-not-help", "What does not help"),
    ("who-to-contact", "Who to contact"),
    ("preferred-place", "Preferred place of safety / treatment"),
    ("places-to-avoid", "Places to avoid"),
    ("practical-needs", "Practical needs if admitted"),
    ("advance-statement", "Advance statement"),
    ("adrt", "Advance decision to refuse treatment"),
    ("family-carer-involvement", "Family and carer involvement"),
    ("protective-factors", "Protective factors"),
)

# Alert flags: SNOMED code -> (short label for a badge, kind). Kinds drive badge colour/icon.
ALERT_CODES: dict[str, tuple[str, str]] = {
    "225444004": ("Risk of suicide", "self"),
    "225457007": ("Feeling suicidal", "self"),
    "248062006": ("Self-harm", "self"),
    "401233007": ("Self-neglect", "self"),
    "65108000": ("Risk of violence", "others"),
    "129707006": ("Violence to others", "others"),
    "417430008": ("Vulnerable adult", "safeguarding"),
    "919461000000108": ("Sexual exploitation risk", "safeguarding"),
    "1188261000000103": ("Criminal exploitation risk", "safeguarding"),
}
ALERT_KINDS = ("staff", "self", "others", "safeguarding", "other")
# Staff-safety alerts are local, text-only flags (no national code): known by their words,
# shown first in their own colour with what they mean for whoever attends (hazard H4).
STAFF_SAFETY: tuple[tuple[str, str], ...] = (
    ("do not visit alone", "Never attend alone: at least two staff at every contact."),
    ("mappa", "Managed under MAPPA (public protection): check the risk plan with police first."),
    ("marac", "MARAC case: high risk of domestic abuse. Do not discuss at the address."),
    ("weapon", "May carry or keep weapons: keep your distance and call for support."),
)


def staff_safety_note(text: str | None) -> str | None:
    """The plain-English meaning of a staff-safety alert's text, or None if it is not one."""
    lowered = (text or "").lower()
    return next((note for word, note in STAFF_SAFETY if word in lowered), None)


OUTCOME_CODES: dict[str, str] = {
    "no-further-action": "No further action",
    "advice-signposting": "Advice / signposting",
    "referred-crisis-team": "Referred to crisis team",
    "referred-cmht": "Referred to community mental health team",
    "referred-gp": "Referred to GP",
    "voluntary-ed": "Voluntary attendance at ED",
    "informal-admission": "Informal admission",
    "s136-place-of-safety": "Section 136 to a place of safety",
    "arrested": "Arrested",
    "other": "Other",
}
PLACE_OF_SAFETY_CODES = {
    "hbpos": "Health-based place of safety",
    "ed": "Emergency department",
    "police-station": "Police station",
    "other": "Other",
}
CONVEYANCE_CODES = {
    "ambulance": "Ambulance",
    "police-vehicle": "Police vehicle",
    "other": "Other",
    "none": "None",
}
RISK_LEVELS = ("none", "low", "medium", "high")
RESPONSE_MODES = ("face-to-face", "telephone", "control-room")
LOCATION_TYPES = ("public-place", "dwelling")
REFERRAL_CODES = {
    "crisis-team": "Crisis team",
    "cmht": "Community mental health team",
    "gp": "GP",
    "substance-misuse": "Substance misuse",
    "social-care": "Social care",
    "other": "Other",
}

# Types the tablet caches from the central record, in pull order (referenced before referrer).
CACHED_TYPES: tuple[str, ...] = (
    "Organization",
    "Practitioner",
    "Patient",
    "RelatedPerson",
    "CareTeam",
    "Flag",
    "CarePlan",
    "AllergyIntolerance",
    "MedicationStatement",
    "Condition",
    "Encounter",
)


# Outside data (the central record, imports) may be malformed in any field. Readers go through
# these three, so a wrong shape reads as "absent" instead of crashing a sync or an import.
def obj(value: Any) -> dict[str, Any]:
    """A FHIR complex element, or {} when it is missing or not an object."""
    return value if isinstance(value, dict) else {}


def objs(value: Any) -> list[dict[str, Any]]:
    """The objects of a repeating element; anything else in it (or instead of it) is dropped."""
    return [v for v in value if isinstance(v, dict)] if isinstance(value, list) else []


def strs(value: Any) -> list[str]:
    """The strings of a repeating primitive element (e.g. `given`, `line`)."""
    return [v for v in value if isinstance(v, str)] if isinstance(value, list) else []


def patient_ref_of(resource: dict[str, Any]) -> str | None:
    """The Patient id a resource is about, or None (e.g. Practitioner)."""
    if resource.get("resourceType") == "Patient":
        return resource.get("id")
    for key in ("subject", "patient", "beneficiary"):
        ref = obj(resource.get(key)).get("reference")
        if isinstance(ref, str) and ref.startswith("Patient/"):
            return ref[len("Patient/") :]
    return None


def nhs_number_of(patient: dict[str, Any]) -> str | None:
    for ident in objs(patient.get("identifier")):
        if ident.get("system") == NHS_NUMBER_SYSTEM and isinstance(ident.get("value"), str):
            return str(ident["value"])
    return None


def verified_nhs_number(patient: dict[str, Any]) -> str | None:
    """The Patient's NHS number if it passes the Modulus 11 check and its verification status
    is `01`, else None: the only NHS numbers that may say two Trusts' records are one person
    (docs/design/multi-trust.md sections 5 and 6)."""
    for ident in objs(patient.get("identifier")):
        value = ident.get("value")
        if ident.get("system") != NHS_NUMBER_SYSTEM or not isinstance(value, str):
            continue
        codes = {
            coding.get("code")
            for ext in objs(ident.get("extension"))
            if ext.get("url") == NHS_VERIFICATION_EXT
            for coding in objs(obj(ext.get("valueCodeableConcept")).get("coding"))
            if coding.get("system") == NHS_VERIFICATION_SYSTEM
        }
        if NHS_VERIFIED in codes and nhs_number_is_valid(value) and value.isdigit():
            return value
    return None


def human_name_text(name: dict[str, Any]) -> str:
    """A HumanName as people say it: its `text`, else given names then family."""
    if isinstance(name.get("text"), str) and name["text"]:
        return str(name["text"])
    family = name.get("family")
    parts = [*strs(name.get("given")), family if isinstance(family, str) else ""]
    return " ".join(p for p in parts if p)


def display_name_of(patient: dict[str, Any]) -> str:
    """The name to show for a Patient: official (or the first usable) name, never empty."""
    names = [n for n in objs(patient.get("name")) if n.get("use") not in ("old", "anonymous")]
    names.sort(key=lambda n: n.get("use") != "official")
    for name in names:
        text = human_name_text(name)
        if text:
            return text
    return "Name not recorded"
