"""One patient's FHIR resources, built from that patient's own RNG stream.

Resource shapes (all FHIR R4, UK Core profiles in meta.profile):
- Patient: NHS number identifier with the verification-status extension (absent for ~3%);
  names `official` (+ prefix), `usual` (known-as, same family), `old` (period.end), `nickname`
  (street alias, given only); ethnic-category extension; home address or "No fixed abode" text.
- CarePlan (crisis plan): category SNOMED 736253002; one activity.detail per section present,
  coded from CRISIS_PLAN_SECTION_SYSTEM in CRISIS_PLAN_SECTIONS order; created = plan date,
  period.end = review date, author = care coordinator, careTeam -> the CareTeam.
- Flag: SNOMED alert codes from ALERT_CODES (code.text = the badge label), or local text-only
  codes (MAPPA, MARAC, Do not visit alone).
- Encounter: UK Core legal status as its complex extension (legalStatusContext +
  legalStatusClassification) on ~20%.
"""

from __future__ import annotations

from datetime import datetime
from random import Random
from typing import Any

from app.fhir import (
    CLINICAL_STATUS_ALLERGY,
    CLINICAL_STATUS_CONDITION,
    CRISIS_PLAN_SECTION_SYSTEM,
    CRISIS_PLAN_SECTIONS,
    CRISIS_PLAN_SNOMED,
    ETHNIC_CATEGORY_EXT,
    ETHNIC_CATEGORY_SYSTEM,
    FLAG_CATEGORY_SYSTEM,
    LEGAL_STATUS_EXT,
    LEGAL_STATUS_SYSTEM,
    NHS_NUMBER_SYSTEM,
    NHS_VERIFICATION_EXT,
    NHS_VERIFICATION_SYSTEM,
    SNOMED,
    V3_ACT_CODE,
)
from app.synthetic._clinical import (
    ALERTS,
    ALLERGIES,
    CONDITION_STATUS,
    DIAGNOSES,
    ENCOUNTER_KINDS,
    ETHNIC_DISPLAY,
    FAMILY_ROLES,
    FLAG_CATEGORY_DISPLAY,
    FLAG_STATUS,
    LANGUAGES,
    LEGAL_STATUS,
    LEGAL_STATUS_CONTEXT_SYSTEM,
    MEDICATION_STATUS,
    MEDICINES,
    NHS_VERIFICATION,
    PRIMARY_DIAGNOSIS,
    PRN_MEDICINES,
    RELATIONSHIPS,
    ROLE_CODE_SYSTEM,
    SECONDARY_DIAGNOSIS,
    V3_CLASS,
    Medicine,
)
from app.synthetic._common import (
    FastRandom,
    Weighted,
    codeable,
    day,
    epoch_to_ordinal,
    instant,
    meta,
    new_id,
    ordinal_to_epoch,
    ref,
)
from app.synthetic._directory import (
    Clinician,
    Directory,
    Site,
    TrustDirectory,
    build_directory,
)
from app.synthetic._names import (
    BRITISH_SURNAMES,
    COMMUNITY_TABLE,
    STREET_ALIASES,
    SURNAME_ALIASES,
    known_as_options,
)
from app.synthetic._people import (
    NHS_NUMBERED,
    Identity,
    family_name,
    given_name,
    identity,
    nhs_number,
    nhs_number_permutation,
)
from app.synthetic._places import (
    BLOCK_SUFFIXES,
    HOSPITAL_WORDS,
    TOWNS,
    landline,
    mobile,
    postcode,
    street_pool,
)
from app.synthetic._wording import (
    MONTHS,
    PETS,
    PLAN_TITLES,
    SECTION_CHANCE,
    section_text,
)

_DAY_S = 86_400
_TOWN_INDEX = Weighted((i, w) for i, (_, w) in enumerate(TOWNS))
_PREFIX = {"male": ("Mr",), "female": ("Ms", "Mrs", "Miss"), "other": ("Mx",), "unknown": ()}
_CARE_TEAM_ROLES = (("Care coordinator", None), ("Consultant psychiatrist", "consultant"))
_ALLERGY_STATUS = Weighted(
    [(("active", "Active"), 92), (("inactive", "Inactive"), 4), (("resolved", "Resolved"), 4)]
)
_CONDITION_DISPLAY = {
    "active": "Active",
    "remission": "Remission",
    "recurrence": "Recurrence",
    "relapse": "Relapse",
}
_COUNT_FLAGS = Weighted([(0, 60), (1, 22), (2, 12), (3, 6)])
_COUNT_RELATED = Weighted([(0, 30), (1, 45), (2, 25)])
_COUNT_MEDS = Weighted([(0, 20), (1, 35), (2, 30), (3, 15)])
_COUNT_ENCOUNTERS = Weighted([(0, 25), (1, 35), (2, 25), (3, 15)])


class CohortBuilder:
    """Holds what every patient shares (directory, street pool, NHS number permutation)."""

    def __init__(self, seed: int, as_of: datetime) -> None:
        self.seed = seed
        self.now = int(as_of.timestamp())
        self.today = epoch_to_ordinal(self.now)
        shared = FastRandom(f"kerbside:{seed}:directory")
        self.directory: Directory = build_directory(shared, self.now)
        self.streets = street_pool(shared, BRITISH_SURNAMES)
        self.nhs_perm = nhs_number_permutation(shared)
        self.coordinators = {
            key: td.staff["nurse"] + td.staff["ot"] for key, td in self.directory.trusts.items()
        }
        self._rng = FastRandom()
        # Where the records of patient i come from and where they live: the whole region by
        # default; a subclass (app.synthetic._trusts) narrows both to one Trust's stream.
        self._towns: Weighted[int] = _TOWN_INDEX

    def records_key(self, index: int) -> str:
        """The RNG key of patient `index`'s records (ids, address, clinical content).

        Identity (name, sex, birth date, NHS number) has its own key from (seed, index) alone,
        so a builder with another records key describes the same person with other records.
        """
        return f"kerbside:{self.seed}:{index}"

    # -- small helpers -------------------------------------------------------------------

    def _updated(self, rng: Random, not_before: int) -> str:
        """meta.lastUpdated: mostly recent (a few months), never before the record's own date."""
        back = min(int(rng.expovariate(1.0 / (120 * _DAY_S))), 2 * 365 * _DAY_S)
        when = max(self.now - back, min(not_before + rng.randrange(3600, 20 * 3600), self.now))
        return instant(when)

    def _days_ago(self, rng: Random, lo: int, hi: int, earliest: int | None = None) -> int:
        """A day between `hi` and `lo` days ago, and not before `earliest` where that fits."""
        if earliest is not None:
            hi = min(hi, max(lo, self.today - earliest))
        return self.today - rng.randint(lo, hi)

    # -- the patient ---------------------------------------------------------------------

    def patient_records(self, index: int) -> list[dict[str, Any]]:
        rng = self._rng
        rng.seed(self.records_key(index))
        who = identity(self.seed, index, self.today)
        pid = new_id(rng)
        subject = ref("Patient", pid)
        town_index = self._towns.pick(rng)
        town = TOWNS[town_index][0]
        td = self.directory.trusts[town.trust]
        area = town.areas[rng.randrange(len(town.areas))]
        cmht = td.cmhts[(town_index, area)]
        gp = rng.choice(self.directory.gps[town_index])
        coordinator = rng.choice(self.coordinators[town.trust])
        consultant = rng.choice(td.staff["consultant"])
        age_days = self.today - who.birth
        adult_from = who.birth + 18 * 365

        patient, preferred, old_family = self._patient(rng, index, pid, who, town_index, gp, td)
        out: list[dict[str, Any]] = [patient]

        contacts: list[tuple[str, str, str]] = []  # (label, "Given Family", phone)
        for _ in range(_COUNT_RELATED.pick(rng)):
            res, contact = self._related(rng, subject, who, old_family, age_days, town_index)
            out.append(res)
            contacts.append(contact)

        has_plan = rng.random() < 0.7
        care_team_id = None
        if has_plan or rng.random() < 0.5:
            care_team_id = new_id(rng)
            out.append(
                self._care_team(
                    rng,
                    care_team_id,
                    subject,
                    cmht,
                    td.crisis_line,
                    coordinator,
                    consultant,
                    td.staff["psychologist"],
                    who.birth + 14 * 365,
                )
            )

        out.extend(self._flags(rng, subject, adult_from))

        if has_plan and care_team_id:
            fill = self._plan_fill(
                rng,
                preferred,
                contacts,
                td.wards,
                td.hospital.name,
                self.directory.eds[town_index],
                town.name,
            )
            stale = rng.random() < 0.15
            created = self._days_ago(rng, 400, 900) if stale else self._days_ago(rng, 7, 330)
            review = created + rng.choice((182, 365))
            if not stale and review <= self.today:
                review = created + 365
            if stale and review >= self.today:
                review = self.today - rng.randint(1, 60)
            if rng.random() < 0.1:  # an older plan this one replaced
                old_created = created - rng.randint(380, 800)
                out.append(
                    self._care_plan(
                        rng,
                        subject,
                        "completed",
                        old_created,
                        created,
                        coordinator,
                        care_team_id,
                        fill,
                        cmht,
                        td.crisis_line,
                        gp,
                        contacts,
                    )
                )
            out.append(
                self._care_plan(
                    rng,
                    subject,
                    "active",
                    created,
                    review,
                    coordinator,
                    care_team_id,
                    fill,
                    cmht,
                    td.crisis_line,
                    gp,
                    contacts,
                )
            )

        if rng.random() < 0.3:
            out.append(self._allergy(rng, subject, adult_from))
            if rng.random() < 0.12:
                out.append(self._allergy(rng, subject, adult_from))

        primary = DIAGNOSES[PRIMARY_DIAGNOSIS.pick(rng)]
        diagnoses = [primary]
        if rng.random() < 0.35:
            second = DIAGNOSES[SECONDARY_DIAGNOSIS.pick(rng)]
            if second.key != primary.key:
                diagnoses.append(second)

        onset_from = min(who.birth + 14 * 365, self.today - 60)
        out.extend(
            self._medications(rng, subject, who.gender, [d.group for d in diagnoses], onset_from)
        )
        for diagnosis in diagnoses:
            onset = rng.randint(onset_from, self.today - 30)
            recorded = rng.randint(onset, self.today - 1)
            status = CONDITION_STATUS.pick(rng)
            coding: dict[str, Any] = (
                {
                    "coding": [
                        {"system": SNOMED, "code": diagnosis.snomed, "display": diagnosis.display}
                    ],
                    "text": diagnosis.text,
                }
                if diagnosis.snomed
                else {"text": diagnosis.text}
            )
            recorded_epoch = ordinal_to_epoch(recorded)
            out.append(
                {
                    "resourceType": "Condition",
                    "id": new_id(rng),
                    "meta": meta("Condition", self._updated(rng, recorded_epoch)),
                    "clinicalStatus": codeable(
                        CLINICAL_STATUS_CONDITION, status, _CONDITION_DISPLAY[status]
                    ),
                    "code": coding,
                    "subject": dict(subject),
                    "onsetDateTime": day(onset),
                    "recordedDate": day(recorded),
                }
            )

        psychosis = primary.group == "psychosis"
        for _ in range(_COUNT_ENCOUNTERS.pick(rng)):
            out.append(self._encounter(rng, subject, td, cmht, coordinator, psychosis))
        return out

    def _patient(
        self,
        rng: Random,
        index: int,
        pid: str,
        who: Identity,
        town_index: int,
        gp: Site,
        td: TrustDirectory,
    ) -> tuple[dict[str, Any], str, str]:
        community = who.community
        female = who.gender == "female" or (who.gender != "male" and rng.random() < 0.5)
        official: dict[str, Any] = {
            "use": "official",
            "family": who.family,
            "given": list(who.given),
        }
        titles = _PREFIX[who.gender]
        if titles and rng.random() < 0.5:
            official["prefix"] = [rng.choice(titles)]
        names = [official]
        preferred = who.given[0]
        if rng.random() < 0.55:  # about half of given names have a usual short form
            options = known_as_options(who.given[0])
            if options:
                preferred = options[0] if rng.random() < 0.5 else rng.choice(options)
                names.append({"use": "usual", "family": who.family, "given": [preferred]})
        old_family = who.family
        if rng.random() < (0.16 if female else 0.04):
            if "-" in who.family and rng.random() < 0.5:
                previous = who.family.split("-")[0]
            else:
                previous = family_name(rng, community, female)
            if previous != who.family:
                old_family = previous
                changed = rng.randint(min(who.birth + 18 * 365, self.today - 30), self.today - 30)
                names.append(
                    {
                        "use": "old",
                        "family": previous,
                        "given": list(who.given),
                        "period": {"end": day(changed)},
                    }
                )
        if rng.random() < 0.05:
            alias = SURNAME_ALIASES.get(who.family)
            if not alias or rng.random() < 0.4:
                alias = rng.choice(STREET_ALIASES)
            names.append({"use": "nickname", "given": [alias]})

        ethnic = community.ethnicity.pick(rng)
        patient: dict[str, Any] = {
            "resourceType": "Patient",
            "id": pid,
            "meta": meta("Patient", self._updated(rng, 0)),
            "extension": [
                {
                    "url": ETHNIC_CATEGORY_EXT,
                    "valueCodeableConcept": codeable(
                        ETHNIC_CATEGORY_SYSTEM, ethnic, ETHNIC_DISPLAY[ethnic]
                    ),
                }
            ],
        }
        if rng.random() >= 0.03 and index < NHS_NUMBERED:
            code, display = NHS_VERIFICATION.pick(rng)
            patient["identifier"] = [
                {
                    "extension": [
                        {
                            "url": NHS_VERIFICATION_EXT,
                            "valueCodeableConcept": codeable(
                                NHS_VERIFICATION_SYSTEM, code, display
                            ),
                        }
                    ],
                    "system": NHS_NUMBER_SYSTEM,
                    "value": nhs_number(index, self.nhs_perm),
                }
            ]
        patient["active"] = True
        patient["name"] = names
        telecom = []
        if rng.random() < 0.7:
            telecom.append({"system": "phone", "value": mobile(rng), "use": "mobile"})
        town = TOWNS[town_index][0]
        if rng.random() < 0.08:
            telecom.append({"system": "phone", "value": landline(rng, town), "use": "home"})
        if telecom:
            patient["telecom"] = telecom
        patient["gender"] = who.gender
        patient["birthDate"] = day(who.birth)
        if rng.random() < 0.05:
            patient["address"] = [{"use": "home", "text": "No fixed abode", "city": town.name}]
        else:
            street = self.streets[rng.randrange(len(self.streets))]
            number = int(rng.triangular(1, 260, 1))
            roll = rng.random()
            if roll < 0.12:
                block = f"{rng.choice(HOSPITAL_WORDS)} {rng.choice(BLOCK_SUFFIXES)}"
                lines = [f"Flat {rng.randint(1, 60)}", block, street]
            elif roll < 0.2:
                lines = [f"Flat {rng.randint(1, 6)}", f"{number} {street}"]
            else:
                lines = [f"{number} {street}"]
            patient["address"] = [
                {"use": "home", "line": lines, "city": town.name, "postalCode": postcode(rng, town)}
            ]
        if community.language and rng.random() < 0.35:
            patient["communication"] = [
                {
                    "language": codeable(
                        "urn:ietf:bcp:47", community.language, LANGUAGES[community.language]
                    ),
                    "preferred": True,
                }
            ]
        patient["generalPractitioner"] = [ref("Organization", gp.id, gp.name)]
        patient["managingOrganization"] = ref("Organization", td.org.id, td.org.name)
        return patient, preferred, old_family

    def _related(
        self,
        rng: Random,
        subject: dict[str, str],
        who: Identity,
        old_family: str,
        age_days: int,
        town_index: int,
    ) -> tuple[dict[str, Any], tuple[str, str, str]]:
        code, display, label, female = RELATIONSHIPS.pick(rng)
        if code in ("DAUC", "SONC") and age_days < 35 * 365:
            code, display, label, female = "MTH", "mother", "Mum", True
        if code == "GRMTH" and age_days > 35 * 365:
            code, display, label, female = "SIS", "sister", "Sister", True
        if female is None:
            female = rng.random() < 0.5
        community = who.community if rng.random() < 0.85 else None
        if community is None:
            community = COMMUNITY_TABLE.pick(rng)
        given = given_name(rng, community, female)
        if code in FAMILY_ROLES and rng.random() < 0.8:
            family = old_family if code in ("MTH", "FTH", "SIS", "BRO", "GRMTH") else who.family
        elif code in ("WIFE", "HUSB") and rng.random() < 0.7:
            family = who.family
        else:
            family = family_name(rng, community, female)
        phone = mobile(rng) if rng.random() < 0.85 else landline(rng, TOWNS[town_index][0])
        relationship: list[dict[str, Any]] = [
            {
                "coding": [{"system": ROLE_CODE_SYSTEM, "code": code, "display": display}],
                "text": label,
            }
        ]
        if rng.random() < 0.2:
            relationship.append({"text": "Carer"})
        res = {
            "resourceType": "RelatedPerson",
            "id": new_id(rng),
            "meta": meta("RelatedPerson", self._updated(rng, 0)),
            "active": True,
            "patient": dict(subject),
            "relationship": relationship,
            "name": [{"use": "official", "family": family, "given": [given]}],
            "telecom": [
                {
                    "system": "phone",
                    "value": phone,
                    "use": "mobile" if phone.startswith("07") else "home",
                }
            ],
            "gender": "female" if female else "male",
        }
        return res, (label, f"{given} {family}", phone)

    def _care_team(
        self,
        rng: Random,
        team_id: str,
        subject: dict[str, str],
        cmht: Site,
        crisis_line: str,
        coordinator: Clinician,
        consultant: Clinician,
        psychologists: list[Clinician],
        earliest: int,
    ) -> dict[str, Any]:
        start = self._days_ago(rng, 30, 3000, earliest)
        participants = [
            {
                "role": [{"text": "Care coordinator"}],
                "member": ref("Practitioner", coordinator.id, coordinator.display),
            },
            {
                "role": [{"text": "Consultant psychiatrist"}],
                "member": ref("Practitioner", consultant.id, consultant.display),
            },
        ]
        if rng.random() < 0.25:
            psych = rng.choice(psychologists)
            participants.append(
                {
                    "role": [{"text": "Clinical psychologist"}],
                    "member": ref("Practitioner", psych.id, psych.display),
                }
            )
        return {
            "resourceType": "CareTeam",
            "id": team_id,
            "meta": meta("CareTeam", self._updated(rng, ordinal_to_epoch(start))),
            "status": "active",
            "name": cmht.name,
            "subject": dict(subject),
            "period": {"start": day(start)},
            "participant": participants,
            "managingOrganization": [ref("Organization", cmht.id, cmht.name)],
            # rank 1 is the 24-hour crisis line; rank 2 the team's office hours number.
            "telecom": [
                {"system": "phone", "value": crisis_line, "use": "work", "rank": 1},
                {"system": "phone", "value": cmht.phone, "use": "work", "rank": 2},
            ],
        }

    def _flags(
        self,
        rng: Random,
        subject: dict[str, str],
        adult_from: int,
    ) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        seen: set[str] = set()
        for _ in range(_COUNT_FLAGS.pick(rng)):
            alert = ALERTS.pick(rng)
            if alert.text in seen:
                continue
            seen.add(alert.text)
            status = FLAG_STATUS.pick(rng)
            start = rng.randint(
                min(max(adult_from, self.today - 3650), self.today - 60), self.today - 30
            )
            period = {"start": day(start)}
            if status == "inactive":
                period["end"] = day(rng.randint(start + 1, self.today - 1))
            code: dict[str, Any] = (
                {
                    "coding": [{"system": SNOMED, "code": alert.snomed, "display": alert.display}],
                    "text": alert.text,
                }
                if alert.snomed
                else {"text": alert.text}
            )
            out.append(
                {
                    "resourceType": "Flag",
                    "id": new_id(rng),
                    "meta": meta("Flag", self._updated(rng, ordinal_to_epoch(start))),
                    "status": status,
                    "category": [
                        codeable(
                            FLAG_CATEGORY_SYSTEM,
                            alert.category,
                            FLAG_CATEGORY_DISPLAY[alert.category],
                        )
                    ],
                    "code": code,
                    "subject": dict(subject),
                    "period": period,
                }
            )
        return out

    def _plan_fill(
        self,
        rng: Random,
        preferred: str,
        contacts: list[tuple[str, str, str]],
        wards: tuple[str, ...],
        hospital: str,
        ed: str,
        town: str,
    ) -> dict[str, str]:
        fill = {
            "pref": preferred,
            "ward": rng.choice(wards),
            "hospital": hospital,
            "ed": ed,
            "town": town,
            "pet": rng.choice(PETS),
            "house": str(rng.randint(1, 120)),
            "month": rng.choice(MONTHS),
            "adrt_date": day(self._days_ago(rng, 200, 2500)),
        }
        if contacts:
            label, name, _ = contacts[0]
            given = name.split(" ")[0]
            fill["contact_rel"] = (
                f"{label} ({given})"
                if label in ("Mum", "Dad", "Nan")
                else f"{label.lower()} {given}"
            )
            fill["contact_my"] = f"my {label.lower()} {given}"
        return fill

    def _who_to_contact(
        self,
        rng: Random,
        fill: dict[str, str],
        cmht: Site,
        crisis_line: str,
        coordinator: Clinician,
        gp: Site,
        contacts: list[tuple[str, str, str]],
    ) -> str:
        parts = [
            f"Care coordinator {coordinator.display} ({cmht.name}), {cmht.phone}, "
            "Monday to Friday 9am to 5pm.",
            f"Out of hours: crisis line {crisis_line} (24 hours).",
        ]
        for label, name, phone in contacts:
            parts.append(f"{label}, {name}: {phone}.")
        roll = rng.random()
        if roll < 0.25:
            parts.append(f"GP: {gp.name}, {gp.phone}.")
        elif roll < 0.35:
            parts.append("Samaritans 116 123 (any time).")
        elif roll < 0.4:
            parts.append("Text SHOUT to 85258 (any time).")
        if rng.random() < 0.08:
            parts.append("Do not contact the ex-partner.")
        return " ".join(parts)

    def _care_plan(
        self,
        rng: Random,
        subject: dict[str, str],
        status: str,
        created: int,
        review: int,
        author: Clinician,
        care_team_id: str,
        fill: dict[str, str],
        cmht: Site,
        crisis_line: str,
        gp: Site,
        contacts: list[tuple[str, str, str]],
    ) -> dict[str, Any]:
        activities = []
        for code, _label in CRISIS_PLAN_SECTIONS:
            if rng.random() >= SECTION_CHANCE[code]:
                continue
            if code == "who-to-contact":
                text = self._who_to_contact(rng, fill, cmht, crisis_line, author, gp, contacts)
            else:
                text = section_text(rng, code, fill)
            activities.append(
                {
                    "detail": {
                        "code": {"coding": [{"system": CRISIS_PLAN_SECTION_SYSTEM, "code": code}]},
                        "status": "in-progress",
                        "description": text,
                    }
                }
            )
        return {
            "resourceType": "CarePlan",
            "id": new_id(rng),
            "meta": meta("CarePlan", self._updated(rng, ordinal_to_epoch(created))),
            "status": status,
            "intent": "plan",
            "category": [codeable(SNOMED, CRISIS_PLAN_SNOMED, "Mental health crisis plan")],
            "title": rng.choice(PLAN_TITLES),
            "subject": dict(subject),
            "period": {"start": day(created), "end": day(review)},
            "created": day(created),
            "author": ref("Practitioner", author.id, author.display),
            "careTeam": [ref("CareTeam", care_team_id)],
            "activity": activities,
        }

    def _allergy(self, rng: Random, subject: dict[str, str], adult_from: int) -> dict[str, Any]:
        snomed, text, category, kind, reactions = ALLERGIES.pick(rng)
        reaction = rng.choice(reactions)
        if reaction == "Anaphylaxis":
            criticality = "high"
        else:
            criticality = "low" if rng.random() < 0.7 else "unable-to-assess"
        status, status_display = _ALLERGY_STATUS.pick(rng)
        recorded = rng.randint(
            min(max(adult_from, self.today - 5000), self.today - 60), self.today - 1
        )
        code: dict[str, Any] = (
            {"coding": [{"system": SNOMED, "code": snomed, "display": text}], "text": text}
            if snomed
            else {"text": text}
        )
        return {
            "resourceType": "AllergyIntolerance",
            "id": new_id(rng),
            "meta": meta("AllergyIntolerance", self._updated(rng, ordinal_to_epoch(recorded))),
            "clinicalStatus": codeable(CLINICAL_STATUS_ALLERGY, status, status_display),
            "type": kind,
            "category": [category],
            "criticality": criticality,
            "code": code,
            "patient": dict(subject),
            "recordedDate": day(recorded),
            "reaction": [{"manifestation": [{"text": reaction}]}],
        }

    def _medications(
        self, rng: Random, subject: dict[str, str], gender: str, groups: list[str], earliest: int
    ) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        chosen: set[str] = set()
        for n in range(_COUNT_MEDS.pick(rng)):
            pool = MEDICINES[groups[-1] if n == 2 and len(groups) > 1 else groups[0]]
            medicine: Medicine = (
                rng.choice(PRN_MEDICINES) if rng.random() < 0.1 else rng.choice(pool)
            )
            if medicine.text in chosen or (medicine.male_only and gender != "male"):
                continue
            chosen.add(medicine.text)
            status = MEDICATION_STATUS.pick(rng)
            start = self._days_ago(rng, 14, 2500, earliest)
            period = {"start": day(start)}
            if status == "stopped":
                period["end"] = day(rng.randint(start, self.today - 1))
            asserted = rng.randint(start, self.today - 1)
            out.append(
                {
                    "resourceType": "MedicationStatement",
                    "id": new_id(rng),
                    "meta": meta(
                        "MedicationStatement", self._updated(rng, ordinal_to_epoch(asserted))
                    ),
                    "status": status,
                    "medicationCodeableConcept": {"text": medicine.text},
                    "subject": dict(subject),
                    "effectivePeriod": period,
                    "dateAsserted": day(asserted),
                    "dosage": [{"text": medicine.dosage}],
                }
            )
        return out

    def _encounter(
        self,
        rng: Random,
        subject: dict[str, str],
        td: TrustDirectory,
        cmht: Site,
        coordinator: Clinician,
        psychosis: bool,
    ) -> dict[str, Any]:
        kind = ENCOUNTER_KINDS.pick(rng)
        if kind.text == "Depot clinic" and not psychosis:
            kind = ENCOUNTER_KINDS.pick(rng)
        minutes = rng.randint(*kind.minutes)
        latest_start = self.now - minutes * 60 - 3600
        start = latest_start - rng.randrange(365 * _DAY_S)
        start -= start % 300  # appointments start on the five minutes
        end = start + minutes * 60
        provider = {
            "crisis": td.crisis_team,
            "cmht": cmht,
            "hospital": td.hospital,
            "trust": td.org,
        }[kind.provider]
        staff = (
            coordinator
            if kind.staff == "nurse" and kind.provider == "cmht"
            else rng.choice(td.staff[kind.staff])
        )
        res: dict[str, Any] = {
            "resourceType": "Encounter",
            "id": new_id(rng),
            "meta": meta("Encounter", self._updated(rng, end)),
        }
        if kind.legal and rng.random() < kind.legal_chance:
            code = kind.legal.pick(rng)
            res["extension"] = [
                {
                    "url": LEGAL_STATUS_EXT,
                    "extension": [
                        {
                            "url": "legalStatusContext",
                            "valueCodeableConcept": codeable(
                                LEGAL_STATUS_CONTEXT_SYSTEM, "admission", "Admission"
                            ),
                        },
                        {
                            "url": "legalStatusClassification",
                            "valueCodeableConcept": codeable(
                                LEGAL_STATUS_SYSTEM, code, LEGAL_STATUS[code]
                            ),
                        },
                    ],
                }
            ]
        res["status"] = "finished"
        res["class"] = {"system": V3_ACT_CODE, "code": kind.cls, "display": V3_CLASS[kind.cls]}
        res["type"] = [{"text": kind.text}]
        res["subject"] = dict(subject)
        res["participant"] = [{"individual": ref("Practitioner", staff.id, staff.display)}]
        res["period"] = {"start": instant(start), "end": instant(end)}
        res["serviceProvider"] = ref("Organization", provider.id, provider.name)
        return res
