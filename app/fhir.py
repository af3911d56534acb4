"""FHIR systems, codes and small readers shared by the generator, store, services and UI.

One place for every URL and code so the generator, the record view and the recorder agree.
Conventions of our own (not national standards) use the `KERBSIDE` base until a Trust
supplies its own CodeSystems.
"""

from __future__ import annotations

from typing import Any

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
ETHNIC_CATEGORY_EXT = "https://fhir.hl7.org.uk/StructureDefinition/Extension-UKCore-EthnicCategory"
ETHNIC_CATEGORY_SYSTEM = "https://fhir.hl7.org.uk/CodeSystem/UKCore-EthnicCategoryEngland"
LEGAL_STATUS_EXT = "https://fhir.hl7.org.uk/StructureDefinition/Extension-UKCore-LegalStatus"
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
ALERT_KINDS = ("self", "others", "safeguarding", "other")

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


def patient_ref_of(resource: dict[str, Any]) -> str | None:
    """The Patient id a resource is about, or None (e.g. Practitioner)."""
    if resource.get("resourceType") == "Patient":
        return resource.get("id")
    for key in ("subject", "patient", "beneficiary"):
        ref = (resource.get(key) or {}).get("reference", "")
        if ref.startswith("Patient/"):
            return ref[len("Patient/") :]
    return None


def nhs_number_of(patient: dict[str, Any]) -> str | None:
    for ident in patient.get("identifier", ()):
        if ident.get("system") == NHS_NUMBER_SYSTEM and ident.get("value"):
            return str(ident["value"])
    return None
