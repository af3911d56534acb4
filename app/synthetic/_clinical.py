"""Clinical vocabularies: diagnoses, medicines, allergies, alerts, contacts, legal status.

SNOMED CT codes here are ones in common UK use; where we were not sure of a concept id the
entry is text-only rather than risk a wrong code. Medicines are text-only (dm+d codes belong
to a real formulary). Check every code in the UK SNOMED CT browser before any real use.
"""

from __future__ import annotations

from dataclasses import dataclass

from app.fhir import ALERT_CODES
from app.synthetic._common import Weighted

# UK Core legal status: a complex extension (legalStatusContext + legalStatusClassification).
LEGAL_STATUS_CONTEXT_SYSTEM = "https://fhir.hl7.org.uk/CodeSystem/UKCore-LegalStatusContext"
LEGAL_STATUS = {
    "01": "Informal",
    "02": "Formally detained under Mental Health Act Section 2",
    "03": "Formally detained under Mental Health Act Section 3",
    "04": "Formally detained under Mental Health Act Section 4",
    "19": "Formally detained under Mental Health Act Section 135",
    "20": "Formally detained under Mental Health Act Section 136",
}
NHS_VERIFICATION = Weighted(
    [
        (("01", "Number present and verified"), 92),
        (("02", "Number present but not traced"), 5),
        (("03", "Trace required"), 3),
    ]
)
ETHNIC_DISPLAY = {
    "A": "White - British",
    "B": "White - Irish",
    "C": "White - Any other White background",
    "D": "Mixed - White and Black Caribbean",
    "E": "Mixed - White and Black African",
    "F": "Mixed - White and Asian",
    "G": "Mixed - Any other mixed background",
    "H": "Asian or Asian British - Indian",
    "J": "Asian or Asian British - Pakistani",
    "K": "Asian or Asian British - Bangladeshi",
    "L": "Asian or Asian British - Any other Asian background",
    "M": "Black or Black British - Caribbean",
    "N": "Black or Black British - African",
    "P": "Black or Black British - Any other Black background",
    "R": "Other Ethnic Groups - Chinese",
    "S": "Other Ethnic Groups - Any other ethnic group",
    "Z": "Not stated",
    "99": "Not known",
}
LANGUAGES = {
    "pl": "Polish",
    "pa": "Panjabi",
    "ur": "Urdu",
    "bn": "Bengali",
    "so": "Somali",
    "yue": "Cantonese",
    "tr": "Turkish",
    "pt": "Portuguese",
}


@dataclass(frozen=True, slots=True)
class Diagnosis:
    key: str
    snomed: str | None
    display: str  # SNOMED display, or the text when there is no code
    text: str  # what UK clinicians write
    group: str  # drives medicines: psychosis, bipolar, mood, personality, substance, other


DIAGNOSES = {
    d.key: d
    for d in (
        Diagnosis(
            "paranoid_scz",
            "35252006",
            "Paranoid schizophrenia",
            "Paranoid schizophrenia",
            "psychosis",
        ),
        Diagnosis("scz", "58214004", "Schizophrenia", "Schizophrenia", "psychosis"),
        Diagnosis(
            "schizoaffective",
            "68890003",
            "Schizoaffective disorder",
            "Schizoaffective disorder",
            "psychosis",
        ),
        Diagnosis("psychosis", "69322001", "Psychotic disorder", "Psychotic disorder", "psychosis"),
        Diagnosis(
            "bipolar", "13746004", "Bipolar disorder", "Bipolar affective disorder", "bipolar"
        ),
        Diagnosis(
            "eupd",
            "20010003",
            "Borderline personality disorder",
            "Emotionally unstable personality disorder",
            "personality",
        ),
        Diagnosis(
            "recurrent_depression",
            "66344007",
            "Recurrent major depression",
            "Recurrent depressive disorder",
            "mood",
        ),
        Diagnosis("depression", "35489007", "Depressive disorder", "Depressive disorder", "mood"),
        Diagnosis(
            "ptsd",
            "47505003",
            "Posttraumatic stress disorder",
            "Post-traumatic stress disorder",
            "mood",
        ),
        Diagnosis(
            "gad",
            "21897009",
            "Generalized anxiety disorder",
            "Generalised anxiety disorder",
            "mood",
        ),
        Diagnosis(
            "ocd",
            "191736004",
            "Obsessive-compulsive disorder",
            "Obsessive-compulsive disorder",
            "mood",
        ),
        Diagnosis("alcohol", "7200002", "Alcoholism", "Alcohol dependence", "substance"),
        Diagnosis(
            "drugs", "191816009", "Drug dependence", "Drug dependence (opioids)", "substance"
        ),
        Diagnosis(
            "cannabis", None, "Harmful use of cannabis", "Harmful use of cannabis", "substance"
        ),
        Diagnosis("autism", "408856003", "Autistic disorder", "Autism", "other"),
    )
}
PRIMARY_DIAGNOSIS = Weighted(
    [
        ("paranoid_scz", 14),
        ("scz", 7),
        ("schizoaffective", 5),
        ("psychosis", 8),
        ("bipolar", 13),
        ("eupd", 14),
        ("recurrent_depression", 13),
        ("depression", 6),
        ("ptsd", 8),
        ("gad", 3),
        ("ocd", 2),
        ("alcohol", 3),
        ("drugs", 2),
        ("autism", 2),
    ]
)
SECONDARY_DIAGNOSIS = Weighted(
    [
        ("alcohol", 20),
        ("cannabis", 18),
        ("drugs", 8),
        ("ptsd", 14),
        ("gad", 12),
        ("eupd", 8),
        ("depression", 10),
        ("autism", 6),
        ("ocd", 4),
    ]
)
CONDITION_STATUS = Weighted([("active", 85), ("remission", 8), ("recurrence", 4), ("relapse", 3)])


@dataclass(frozen=True, slots=True)
class Medicine:
    text: str
    dosage: str
    male_only: bool = False  # valproate: not for women who could become pregnant (MHRA)


def _m(text: str, dosage: str, male_only: bool = False) -> Medicine:
    return Medicine(text, dosage, male_only)


MEDICINES: dict[str, tuple[Medicine, ...]] = {
    "psychosis": (
        _m("Olanzapine 10mg tablets", "One tablet at night."),
        _m("Olanzapine 20mg tablets", "One tablet at night."),
        _m("Risperidone 2mg tablets", "One tablet twice a day."),
        _m("Aripiprazole 15mg tablets", "One tablet once a day in the morning."),
        _m("Quetiapine 200mg tablets", "One tablet twice a day."),
        _m(
            "Clozapine 100mg tablets",
            "150mg in the morning and 250mg at night. Blood monitoring "
            "through the clozapine clinic; do not stop suddenly.",
        ),
        _m(
            "Aripiprazole 400mg prolonged-release injection",
            "400mg by deep intramuscular injection every 4 weeks (depot clinic).",
        ),
        _m(
            "Paliperidone 100mg prolonged-release injection",
            "100mg by intramuscular injection every month (depot clinic).",
        ),
        _m(
            "Zuclopenthixol decanoate 200mg/1ml injection",
            "300mg by deep intramuscular injection every 2 weeks (depot clinic).",
        ),
        _m(
            "Flupentixol decanoate 40mg/2ml injection",
            "40mg by deep intramuscular injection every 2 weeks.",
        ),
        _m(
            "Haloperidol decanoate 100mg/1ml injection",
            "100mg by deep intramuscular injection every 4 weeks.",
        ),
        _m(
            "Procyclidine 5mg tablets",
            "One tablet up to three times a day when required for side effects.",
        ),
    ),
    "bipolar": (
        _m(
            "Lithium carbonate 400mg modified-release tablets (Priadel)",
            "800mg at night. Lithium levels every 3 months.",
        ),
        _m("Sodium valproate 500mg modified-release tablets", "500mg twice a day.", male_only=True),
        _m("Lamotrigine 100mg tablets", "One tablet twice a day."),
        _m("Olanzapine 10mg tablets", "One tablet at night."),
        _m("Quetiapine 300mg modified-release tablets", "One tablet at night."),
        _m("Aripiprazole 10mg tablets", "One tablet once a day."),
    ),
    "mood": (
        _m("Sertraline 100mg tablets", "One tablet once a day."),
        _m("Sertraline 50mg tablets", "One tablet once a day."),
        _m("Fluoxetine 20mg capsules", "One capsule once a day in the morning."),
        _m("Citalopram 20mg tablets", "One tablet once a day."),
        _m("Mirtazapine 30mg tablets", "One tablet at night."),
        _m("Venlafaxine 75mg modified-release capsules", "Two capsules (150mg) once a day."),
        _m(
            "Propranolol 10mg tablets",
            "One tablet up to three times a day when required for anxiety.",
        ),
        _m("Zopiclone 7.5mg tablets", "One tablet at night when required (short course)."),
    ),
    "personality": (
        _m("Sertraline 100mg tablets", "One tablet once a day."),
        _m("Quetiapine 25mg tablets", "One or two tablets at night when required."),
        _m(
            "Promethazine 25mg tablets", "One tablet up to twice a day when required for agitation."
        ),
        _m("Fluoxetine 20mg capsules", "Two capsules (40mg) once a day."),
    ),
    "substance": (
        _m(
            "Methadone 1mg/ml oral solution sugar free",
            "60mg once a day, supervised consumption at the community pharmacy.",
        ),
        _m("Buprenorphine 8mg sublingual tablets", "16mg once a day, supervised."),
        _m("Thiamine 100mg tablets", "One tablet three times a day."),
        _m("Acamprosate 333mg gastro-resistant tablets", "Two tablets three times a day."),
    ),
    "other": (
        _m("Melatonin 2mg modified-release tablets", "One tablet at night."),
        _m("Sertraline 50mg tablets", "One tablet once a day."),
    ),
}
PRN_MEDICINES = (
    _m(
        "Lorazepam 1mg tablets",
        "1mg when required for severe anxiety or agitation; maximum 4mg in 24 hours.",
    ),
    _m("Promethazine 25mg tablets", "One tablet up to twice a day when required for agitation."),
)
MEDICATION_STATUS = Weighted([("active", 86), ("stopped", 9), ("on-hold", 5)])

# (SNOMED substance or None, text, category, type, reactions, high criticality chance)
ALLERGIES = Weighted(
    [
        (
            ("764146007", "Penicillin", "medication", "allergy", ("Rash", "Hives", "Anaphylaxis")),
            30,
        ),
        (("372687004", "Amoxicillin", "medication", "allergy", ("Rash", "Hives")), 6),
        (("111088007", "Latex", "environment", "allergy", ("Contact dermatitis", "Wheeze")), 6),
        (("762952008", "Peanut", "food", "allergy", ("Anaphylaxis", "Swollen lips")), 8),
        (("227493005", "Cashew nut", "food", "allergy", ("Anaphylaxis", "Hives")), 3),
        (("387458008", "Aspirin", "medication", "allergy", ("Wheeze", "Rash")), 4),
        (("387207008", "Ibuprofen", "medication", "intolerance", ("Stomach pain", "Wheeze")), 5),
        (("387494007", "Codeine", "medication", "intolerance", ("Nausea and vomiting",)), 5),
        (
            (
                "386837002",
                "Haloperidol",
                "medication",
                "intolerance",
                ("Acute dystonic reaction", "Severe muscle stiffness"),
            ),
            6,
        ),
        ((None, "Trimethoprim", "medication", "allergy", ("Rash",)), 3),
        ((None, "Shellfish", "food", "allergy", ("Swollen lips", "Vomiting")), 3),
        ((None, "Sticking plasters", "environment", "intolerance", ("Skin irritation",)), 2),
    ]
)

# Alerts: SNOMED codes from app.fhir, a category that matches their kind, and local text-only
# alerts common in mental-health and police records.
_CATEGORY_OF_KIND = {"self": "clinical", "others": "behavioral", "safeguarding": "safety"}
FLAG_CATEGORY_DISPLAY = {"safety": "Safety", "behavioral": "Behavioral", "clinical": "Clinical"}
_ALERT_DISPLAY = {
    "225444004": "At risk for suicide",
    "225457007": "Feeling suicidal",
    "248062006": "Self-injurious behaviour",
    "401233007": "At risk for self-neglect",
    "65108000": "At risk for violence",
    "129707006": "At risk for other-directed violence",
    "417430008": "Vulnerable adult",
    "919461000000108": "At risk of sexual exploitation",
    "1188261000000103": "At risk of criminal exploitation",
}
_ALERT_WEIGHT = {
    "225444004": 20,
    "225457007": 8,
    "248062006": 16,
    "401233007": 6,
    "65108000": 9,
    "129707006": 5,
    "417430008": 10,
    "919461000000108": 3,
    "1188261000000103": 3,
}


@dataclass(frozen=True, slots=True)
class Alert:
    snomed: str | None
    display: str | None
    text: str
    category: str


ALERTS = Weighted(
    [
        (Alert(code, _ALERT_DISPLAY[code], label, _CATEGORY_OF_KIND[kind]), _ALERT_WEIGHT[code])
        for code, (label, kind) in ALERT_CODES.items()
    ]
    + [
        (Alert(None, None, "MAPPA", "safety"), 3),
        (Alert(None, None, "MARAC", "safety"), 4),
        (Alert(None, None, "Do not visit alone", "safety"), 6),
    ]
)
FLAG_STATUS = Weighted([("active", 85), ("inactive", 12), ("entered-in-error", 3)])

# RelatedPerson relationships: v3 RoleCode (code, display, label used in plan text, female?).
ROLE_CODE_SYSTEM = "http://terminology.hl7.org/CodeSystem/v3-RoleCode"
RELATIONSHIPS = Weighted(
    [
        (("MTH", "mother", "Mum", True), 22),
        (("FTH", "father", "Dad", False), 8),
        (("SIS", "sister", "Sister", True), 10),
        (("BRO", "brother", "Brother", False), 7),
        (("DOMPART", "domestic partner", "Partner", None), 12),
        (("WIFE", "wife", "Wife", True), 4),
        (("HUSB", "husband", "Husband", False), 3),
        (("FRND", "unrelated friend", "Friend", None), 12),
        (("DAUC", "daughter", "Daughter", True), 5),
        (("SONC", "son", "Son", False), 4),
        (("NBOR", "neighbor", "Neighbour", None), 4),
        (("GRMTH", "grandmother", "Nan", True), 3),
        (("AUNT", "aunt", "Aunt", True), 3),
    ]
)
FAMILY_ROLES = frozenset({"MTH", "FTH", "SIS", "BRO", "DAUC", "SONC", "GRMTH"})

# Encounters: (class code, class display, type text, minutes lo, hi, legal status weights or
# None, chance of a legal-status extension).
V3_CLASS = {
    "AMB": "ambulatory",
    "HH": "home health",
    "EMER": "emergency",
    "IMP": "inpatient encounter",
    "VR": "virtual",
}


@dataclass(frozen=True, slots=True)
class EncounterKind:
    cls: str
    text: str
    minutes: tuple[int, int]
    provider: str  # "crisis", "cmht", "hospital", "trust"
    staff: str  # directory role of the practitioner
    legal: Weighted[str] | None
    legal_chance: float


_INFORMAL = Weighted([("01", 1)])
ENCOUNTER_KINDS = Weighted(
    [
        (
            EncounterKind(
                "HH", "Crisis team home visit", (45, 90), "crisis", "crisis", _INFORMAL, 0.08
            ),
            18,
        ),
        (
            EncounterKind(
                "HH", "Care coordinator home visit", (40, 75), "cmht", "nurse", _INFORMAL, 0.05
            ),
            22,
        ),
        (
            EncounterKind(
                "AMB",
                "Outpatient review with consultant psychiatrist",
                (20, 45),
                "cmht",
                "consultant",
                _INFORMAL,
                0.05,
            ),
            14,
        ),
        (EncounterKind("AMB", "Depot clinic", (10, 20), "cmht", "nurse", None, 0.0), 8),
        (
            EncounterKind(
                "VR", "Telephone contact with care coordinator", (8, 25), "cmht", "nurse", None, 0.0
            ),
            14,
        ),
        (
            EncounterKind(
                "EMER",
                "Liaison psychiatry assessment in the emergency department",
                (60, 240),
                "trust",
                "doctor",
                _INFORMAL,
                0.35,
            ),
            8,
        ),
        (
            EncounterKind(
                "EMER", "Street triage assessment", (30, 120), "crisis", "crisis", _INFORMAL, 0.2
            ),
            6,
        ),
        (
            EncounterKind(
                "EMER",
                "Assessment in health-based place of safety (s136 suite)",
                (240, 1440),
                "hospital",
                "doctor",
                Weighted([("20", 1)]),
                1.0,
            ),
            4,
        ),
        (
            EncounterKind(
                "EMER",
                "Mental Health Act assessment",
                (60, 180),
                "crisis",
                "consultant",
                Weighted([("02", 45), ("03", 20), ("01", 30), ("04", 5)]),
                1.0,
            ),
            3,
        ),
        (
            EncounterKind(
                "IMP",
                "Admission to acute mental health ward",
                (5 * 1440, 45 * 1440),
                "hospital",
                "consultant",
                Weighted([("01", 42), ("02", 35), ("03", 23)]),
                1.0,
            ),
            3,
        ),
    ]
)
