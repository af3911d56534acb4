"""The record card: what someone on scene reads about a person, in the order they need it.

`open_record` audits first (Caldicott: a reason for each record opened, every access audited)
and only then reads: one query for the person's resources, plus the few Practitioners and
Organizations they point at. `refresh_record` re-reads a record that is already open (after a
sync or a save) without a second audit entry: the officer did not open it again, and a log
full of openings nobody made would hide the real ones. The result is plain dataclasses for
the UI; no Qt here.

Dates are `date` objects and instants UTC `datetime`s; the UI shows them in Europe/London.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

from app.errors import InvalidInput
from app.fhir import (
    ALERT_CODES,
    ALERT_KINDS,
    CRISIS_PLAN_SECTION_SYSTEM,
    CRISIS_PLAN_SECTIONS,
    CRISIS_PLAN_SNOMED,
    FIELD_RECORD_ID_SYSTEM,
    LEGAL_STATUS_DISPLAYS,
    LEGAL_STATUS_EXT,
    LEGAL_STATUS_SYSTEM,
    SNOMED,
    display_name_of,
    human_name_text,
    nhs_number_of,
    staff_safety_note,
)
from app.nhs_number import format_nhs_number
from app.services.encounters import EncounterSummary, field_records_for_patient
from app.services.session import Session
from app.store import HOME_SOURCE
from app.times import london_today, parse_instant

ACCESS_REASONS: tuple[str, ...] = (
    "Street triage: person in crisis",
    "Police request for information",
    "Welfare check",
    "Other",
)
OPEN_RECORD_ACTION = "open-record"
LAST_CONTACTS_LIMIT = 10  # central encounters shown; this device's records are always shown
_PATIENT_TYPES = (
    "Patient", "Flag", "CarePlan", "RelatedPerson", "CareTeam", "AllergyIntolerance",
    "MedicationStatement", "Condition", "Encounter",
)  # fmt: skip
_SECTION_ORDER = {code: i for i, (code, _) in enumerate(CRISIS_PLAN_SECTIONS)}
_SECTION_HEADINGS = dict(CRISIS_PLAN_SECTIONS)
_KIND_ORDER = {kind: i for i, kind in enumerate(ALERT_KINDS)}
_NOT_RECORDED = {"entered-in-error", "refuted"}  # verificationStatus codes that unsay a record


# -- the view model ---------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class PersonView:
    patient_id: str
    name: str
    known_as: tuple[str, ...]  # `usual` names
    aliases: tuple[str, ...]  # `nickname` names (street names)
    previous_names: tuple[str, ...]  # `old` and `maiden` names
    birth_date: date | None
    age: int | None
    gender: str | None
    nhs_number: str | None  # formatted 3 3 4
    address: str | None
    phones: tuple[str, ...]
    gp: str | None  # practice (or GP) name
    gp_phone: str | None


@dataclass(frozen=True, slots=True)
class AlertView:
    label: str
    kind: str  # self | others | safeguarding | other (badge colour and order)
    code: str | None  # SNOMED code when the flag has one
    category: str | None
    since: date | None


@dataclass(frozen=True, slots=True)
class CrisisPlanSection:
    code: str
    heading: str
    text: str


@dataclass(frozen=True, slots=True)
class CrisisPlanView:
    plan_id: str
    title: str | None
    sections: tuple[CrisisPlanSection, ...]  # CRISIS_PLAN_SECTIONS order, unknown ones last
    created: date | None
    author: str | None
    review_date: date | None
    stale: bool  # the review date has passed


@dataclass(frozen=True, slots=True)
class ContactView:
    name: str
    role: str | None  # relationship, care-team role or "24-hour crisis line"
    phones: tuple[str, ...]
    kind: str  # service | professional | personal


@dataclass(frozen=True, slots=True)
class MedicationView:
    name: str
    dosage: str | None


@dataclass(frozen=True, slots=True)
class AllergyView:
    substance: str
    reactions: tuple[str, ...]
    criticality: str | None


@dataclass(frozen=True, slots=True)
class ConditionView:
    name: str
    status: str | None
    onset: str | None  # as recorded (a FHIR date may be partial)


@dataclass(frozen=True, slots=True)
class LegalStatusView:
    code: str
    display: str
    as_of: datetime | None  # when the encounter that recorded it took place


@dataclass(frozen=True, slots=True)
class LastContact:
    when: datetime | None  # UTC start
    description: str
    provider: str | None
    outcome: str | None
    source: str  # central | this-device
    state: str | None = None  # this device's records: waiting | sent | rejected | discarded
    reason: str | None = None  # why the central record rejected it
    client_id: str | None = None


@dataclass(frozen=True, slots=True)
class PatientRecord:
    person: PersonView
    alerts: tuple[AlertView, ...]  # active only, self / others / safeguarding / other
    crisis_plan: CrisisPlanView | None
    contacts: tuple[ContactView, ...]  # crisis line, care team, then family and friends
    medications: tuple[MedicationView, ...]
    allergies: tuple[AllergyView, ...]
    conditions: tuple[ConditionView, ...]
    legal_status: LegalStatusView | None
    last_contacts: tuple[LastContact, ...]  # newest first
    last_refreshed: datetime | None  # when the cache last matched the central record
    audit_event_id: str
    source: int = HOME_SOURCE  # the sid of the central record it was read from


# -- opening a record -------------------------------------------------------------------------
def open_record(
    session: Session,
    patient_id: str,
    reason: str,
    *,
    source: int = HOME_SOURCE,
    now: datetime | None = None,
) -> PatientRecord:
    """Audit the opening, then read the record of `source`'s Patient `patient_id`.

    `reason` is one of ACCESS_REASONS. A cache past its time-to-live raises CacheExpired
    before anything is read or audited. Everything the record refers to (practitioners,
    organisations) is read from the same source: an id means something only within its
    source.
    """
    if reason not in ACCESS_REASONS:
        raise InvalidInput(f"choose a reason: {', '.join(ACCESS_REASONS)}", field="reason")
    session.check_fresh()
    event_id = str(uuid.uuid4())
    session.store.audit(
        user_id=session.user_id,
        action=OPEN_RECORD_ACTION,
        patient_id=patient_id,
        source=source,
        reason=reason,
        event_id=event_id,
    )
    return _read_record(session, source, patient_id, event_id, now)


def refresh_record(
    session: Session, record: PatientRecord, *, now: datetime | None = None
) -> PatientRecord:
    """Read an open record again (new data after a sync or a save), without auditing.

    Only for a record `open_record` returned in this session: the refresh belongs to that
    audited opening and keeps its `audit_event_id`. A cache past its time-to-live raises
    CacheExpired, as opening does.
    """
    session.check_fresh()
    return _read_record(
        session, record.source, record.person.patient_id, record.audit_event_id, now
    )


def person_of(
    session: Session,
    patient_id: str,
    *,
    source: int = HOME_SOURCE,
    now: datetime | None = None,
) -> PersonView | None:
    """Who a cached patient is (name, date of birth and age, NHS number, sex), unaudited.

    For naming a person the officer already chose (the encounter form's identity header, a
    queued record's snapshot): the demographics only, none of the clinical record, which
    still needs `open_record` and its audited reason. None when the cache does not hold them.
    """
    patient = session.store.get_resource(source, "Patient", patient_id)
    if patient is None:
        return None
    return _person(patient, london_today(now), _Lookup(session, source))


def _read_record(
    session: Session, source: int, patient_id: str, event_id: str, now: datetime | None
) -> PatientRecord:
    by_type: dict[str, list[dict[str, Any]]] = {t: [] for t in _PATIENT_TYPES}
    for res in session.store.resources_for_patient(source, patient_id, _PATIENT_TYPES):
        by_type[res["resourceType"]].append(res)
    if not by_type["Patient"]:
        raise InvalidInput("no such person in this device's cache", field="patient_id")
    today = london_today(now)
    lookup = _Lookup(session, source)
    care_teams = [t for t in by_type["CareTeam"] if t.get("status", "active") == "active"]
    return PatientRecord(
        person=_person(by_type["Patient"][0], today, lookup),
        alerts=_alerts(by_type["Flag"], today),
        crisis_plan=_crisis_plan(by_type["CarePlan"], today, lookup),
        contacts=(*_team_contacts(care_teams, lookup), *_related(by_type["RelatedPerson"])),
        medications=_medications(by_type["MedicationStatement"]),
        allergies=_allergies(by_type["AllergyIntolerance"]),
        conditions=_conditions(by_type["Condition"]),
        legal_status=_legal_status(by_type["Encounter"]),
        last_contacts=_last_contacts(
            by_type["Encounter"], field_records_for_patient(session, patient_id, source=source)
        ),
        last_refreshed=session.last_refresh(),
        audit_event_id=event_id,
        source=source,
    )


class _Lookup:
    """Practitioners and Organizations by reference, each read once per opening, from the
    source of the record that refers to them (the same id elsewhere is someone else)."""

    def __init__(self, session: Session, source: int) -> None:
        self._store = session.store
        self._source = source
        self._seen: dict[str, dict[str, Any] | None] = {}

    def __call__(self, reference: Mapping[str, Any] | None) -> dict[str, Any] | None:
        ref = (reference or {}).get("reference", "")
        rtype, _, rid = ref.partition("/")
        if rtype not in ("Practitioner", "Organization") or not rid:
            return None
        if ref not in self._seen:
            self._seen[ref] = self._store.get_resource(self._source, rtype, rid)
        return self._seen[ref]

    def name(self, reference: Mapping[str, Any] | None) -> str | None:
        """The referenced person or organisation's name, else the reference's display."""
        res = self(reference)
        if res is not None:
            if res["resourceType"] == "Organization" and res.get("name"):
                return str(res["name"])
            names = [human_name_text(n) for n in res.get("name", ()) if isinstance(n, dict)]
            if any(names):
                return next(n for n in names if n)
        display = (reference or {}).get("display")
        return str(display) if display else None


# -- small readers ----------------------------------------------------------------------------
def _date(value: Any) -> date | None:
    """A full FHIR date (or the date part of a dateTime); partial dates give None."""
    if not isinstance(value, str) or len(value) < 10:
        return None
    try:
        return date.fromisoformat(value[:10])
    except ValueError:
        return None


def _instant(value: Any) -> datetime | None:
    return parse_instant(value)


def _concept_text(concept: Mapping[str, Any] | None) -> str | None:
    if not concept:
        return None
    if concept.get("text"):
        return str(concept["text"])
    for coding in concept.get("coding", ()):
        if coding.get("display"):
            return str(coding["display"])
    return None


def _code(concept: Mapping[str, Any] | None, system: str) -> str | None:
    for coding in (concept or {}).get("coding", ()):
        if coding.get("system") == system and coding.get("code"):
            return str(coding["code"])
    return None


def _phones(telecom: Iterable[Mapping[str, Any]] | None) -> tuple[str, ...]:
    ranked = sorted(
        (t for t in telecom or () if t.get("system") in ("phone", "sms") and t.get("value")),
        key=lambda t: t.get("rank", 1_000),
    )
    return tuple(dict.fromkeys(str(t["value"]) for t in ranked if not _ended(t)))


def _ended(element: Mapping[str, Any]) -> bool:
    end = _date((element.get("period") or {}).get("end"))
    return end is not None and end < london_today()


def _age(birth: date | None, today: date) -> int | None:
    if birth is None:
        return None
    return today.year - birth.year - ((today.month, today.day) < (birth.month, birth.day))


def _address_text(patient: Mapping[str, Any]) -> str | None:
    addresses = [a for a in patient.get("address", ()) if a.get("use") != "old" and not _ended(a)]
    addresses.sort(key=lambda a: a.get("use") != "home")
    for address in addresses:
        if address.get("text"):
            return str(address["text"])
        parts = [*address.get("line", ()), address.get("city"), address.get("postalCode")]
        text = ", ".join(str(p) for p in parts if p)
        if text:
            return text
    return None


# -- sections ---------------------------------------------------------------------------------
def _person(patient: dict[str, Any], today: date, lookup: _Lookup) -> PersonView:
    def names(*uses: str) -> tuple[str, ...]:
        found = (human_name_text(n) for n in patient.get("name", ()) if n.get("use") in uses)
        return tuple(dict.fromkeys(n for n in found if n))

    birth = _date(patient.get("birthDate"))
    nhs = nhs_number_of(patient)
    gp_ref = next(iter(patient.get("generalPractitioner", ())), None)
    gp = lookup(gp_ref)
    return PersonView(
        patient_id=patient["id"],
        name=display_name_of(patient),
        known_as=names("usual"),
        aliases=names("nickname"),
        previous_names=names("old", "maiden"),
        birth_date=birth,
        age=_age(birth, today),
        gender=patient.get("gender"),
        nhs_number=format_nhs_number(nhs) if nhs else None,
        address=_address_text(patient),
        phones=_phones(patient.get("telecom")),
        gp=lookup.name(gp_ref),
        gp_phone=next(iter(_phones(gp.get("telecom"))), None) if gp else None,
    )


def _alerts(flags: list[dict[str, Any]], today: date) -> tuple[AlertView, ...]:
    alerts = []
    for flag in flags:
        end = _date((flag.get("period") or {}).get("end"))
        if flag.get("status") != "active" or (end is not None and end < today):
            continue
        code = _code(flag.get("code"), SNOMED)
        label, kind = ALERT_CODES.get(code or "", (None, "other"))
        label = label or _concept_text(flag.get("code")) or "Alert"
        if kind == "other" and staff_safety_note(label):
            kind = "staff"
        category = next(
            (_concept_text(c) for c in flag.get("category", ()) if _concept_text(c)), None
        )
        since = _date((flag.get("period") or {}).get("start"))
        alerts.append(AlertView(label, kind, code, category, since))
    alerts.sort(key=lambda a: (_KIND_ORDER.get(a.kind, len(_KIND_ORDER)), a.label))
    return tuple(alerts)


def _is_crisis_plan(plan: Mapping[str, Any]) -> bool:
    concepts = [*plan.get("category", ())]
    return any(_code(c, SNOMED) == CRISIS_PLAN_SNOMED for c in concepts)


def _crisis_plan(
    plans: list[dict[str, Any]], today: date, lookup: _Lookup
) -> CrisisPlanView | None:
    active = [p for p in plans if p.get("status") == "active" and _is_crisis_plan(p)]
    if not active:
        return None
    plan = max(
        active,
        key=lambda p: (p.get("created") or "", (p.get("meta") or {}).get("lastUpdated") or ""),
    )
    sections = []
    for activity in plan.get("activity", ()):
        detail = activity.get("detail") or {}
        text = detail.get("description")
        if not text:
            continue
        code = _code(detail.get("code"), CRISIS_PLAN_SECTION_SYSTEM)
        heading = _SECTION_HEADINGS.get(code or "") or _concept_text(detail.get("code"))
        sections.append(CrisisPlanSection(code or "", heading or "Other", str(text)))
    sections.sort(key=lambda s: _SECTION_ORDER.get(s.code, len(_SECTION_ORDER)))
    notes = [str(n["text"]) for n in plan.get("note", ()) if n.get("text")]
    if notes:
        sections.append(CrisisPlanSection("notes", "Notes", "\n\n".join(notes)))
    review = _date((plan.get("period") or {}).get("end"))
    return CrisisPlanView(
        plan_id=plan["id"],
        title=plan.get("title"),
        sections=tuple(sections),
        created=_date(plan.get("created")),
        author=lookup.name(plan.get("author")),
        review_date=review,
        stale=review is not None and review < today,
    )


def _team_contacts(teams: list[dict[str, Any]], lookup: _Lookup) -> list[ContactView]:
    """Each team's numbers (rank 1 is its 24-hour crisis line), then its members."""
    services: list[ContactView] = []
    people: list[ContactView] = []
    for team in teams:
        managing = next(iter(team.get("managingOrganization", ())), None)
        name = team.get("name") or lookup.name(managing) or "Care team"
        numbers = sorted(
            (t for t in team.get("telecom", ()) if t.get("system") == "phone" and t.get("value")),
            key=lambda t: t.get("rank", 1_000),
        )
        for telecom in numbers:
            line = "24-hour crisis line" if telecom.get("rank") == 1 else "Team office"
            services.append(ContactView(name, line, (str(telecom["value"]),), "service"))
        for participant in team.get("participant", ()):
            member = participant.get("member")
            person = lookup(member)
            member_name = lookup.name(member)
            if member_name is None:
                continue
            role = next(
                (_concept_text(r) for r in participant.get("role", ()) if _concept_text(r)), None
            )
            phones = _phones(person.get("telecom")) if person else ()
            people.append(ContactView(member_name, role, phones, "professional"))
    return services + people


def _related(related: list[dict[str, Any]]) -> list[ContactView]:
    out = []
    for person in related:
        if person.get("active") is False:
            continue
        name = next((human_name_text(n) for n in person.get("name", ())), "") or "Name unknown"
        roles = [_concept_text(r) for r in person.get("relationship", ())]
        out.append(
            ContactView(
                name,
                ", ".join(r for r in roles if r) or None,
                _phones(person.get("telecom")),
                "personal",
            )
        )
    return out


def _recorded(resource: Mapping[str, Any]) -> bool:
    """False when the verification status unsays the record (refuted, entered in error)."""
    return _status_code(resource.get("verificationStatus")) not in _NOT_RECORDED


def _medications(statements: list[dict[str, Any]]) -> tuple[MedicationView, ...]:
    out = []
    for st in statements:
        if st.get("status") != "active":
            continue
        name = _concept_text(st.get("medicationCodeableConcept")) or (
            st.get("medicationReference") or {}
        ).get("display")
        dosage = "; ".join(str(d["text"]) for d in st.get("dosage", ()) if d.get("text"))
        out.append(MedicationView(str(name or "Medicine not named"), dosage or None))
    return tuple(sorted(out, key=lambda m: m.name.lower()))


def _allergies(allergies: list[dict[str, Any]]) -> tuple[AllergyView, ...]:
    out = []
    for allergy in allergies:
        status = _status_code(allergy.get("clinicalStatus"))
        if status not in (None, "active") or not _recorded(allergy):
            continue
        reactions = tuple(
            text
            for r in allergy.get("reaction", ())
            for m in r.get("manifestation", ())
            if (text := _concept_text(m))
        )
        substance = _concept_text(allergy.get("code")) or "Substance not named"
        out.append(AllergyView(substance, reactions, allergy.get("criticality")))
    return tuple(out)


def _conditions(conditions: list[dict[str, Any]]) -> tuple[ConditionView, ...]:
    out = []
    for condition in conditions:
        status = _status_code(condition.get("clinicalStatus"))
        if status not in ("active", "recurrence", "relapse") or not _recorded(condition):
            continue
        name = _concept_text(condition.get("code")) or "Condition not named"
        onset = condition.get("onsetDateTime")
        out.append(ConditionView(name, status, str(onset)[:10] if onset else None))
    return tuple(out)


def _status_code(concept: Mapping[str, Any] | None) -> str | None:
    for coding in (concept or {}).get("coding", ()):
        if coding.get("code"):
            return str(coding["code"])
    return None


def _encounter_start(encounter: Mapping[str, Any]) -> datetime | None:
    period = encounter.get("period") or {}
    return _instant(period.get("start") or period.get("end"))


def _legal_status(encounters: list[dict[str, Any]]) -> LegalStatusView | None:
    """From the newest Encounter that records one (UK Core's complex extension)."""
    dated = sorted(
        (e for e in encounters if e.get("status") != "entered-in-error"),
        key=lambda e: _encounter_start(e) or datetime.min.replace(tzinfo=UTC),
        reverse=True,
    )
    for encounter in dated:
        for ext in encounter.get("extension", ()):
            if ext.get("url") != LEGAL_STATUS_EXT:
                continue
            # The classification sits in a sub-extension; accept a plain value as well.
            values = [ext, *ext.get("extension", ())]
            for value in values:
                concept = value.get("valueCodeableConcept")
                code = _code(concept, LEGAL_STATUS_SYSTEM)
                if code:
                    display = (
                        LEGAL_STATUS_DISPLAYS.get(code)
                        or _concept_text(concept)
                        or f"Legal status {code}"
                    )
                    return LegalStatusView(code, display, _encounter_start(encounter))
    return None


def _field_record_ids(encounter: Mapping[str, Any]) -> set[str]:
    return {
        str(i.get("value"))
        for i in encounter.get("identifier", ())
        if i.get("system") == FIELD_RECORD_ID_SYSTEM
    }


def _last_contacts(
    encounters: list[dict[str, Any]], mine: list[EncounterSummary]
) -> tuple[LastContact, ...]:
    """Central encounters (newest LAST_CONTACTS_LIMIT) and this device's field records.

    A field record that has come back from the centre (it carries our client identifier) is
    shown once, as the centre has it.
    """
    central = [e for e in encounters if e.get("status") not in ("entered-in-error", "cancelled")]
    central.sort(key=lambda e: _encounter_start(e) or datetime.min.replace(tzinfo=UTC))
    central = central[-LAST_CONTACTS_LIMIT:]
    echoed = set().union(*(_field_record_ids(e) for e in central)) if central else set()
    contacts = [
        LastContact(
            when=_encounter_start(e),
            description=next((t for t in (_concept_text(c) for c in e.get("type", ())) if t), None)
            or _concept_text(e.get("serviceType"))
            or (e.get("class") or {}).get("display")
            or "Contact",
            provider=(e.get("serviceProvider") or {}).get("display"),
            outcome=_concept_text((e.get("hospitalization") or {}).get("dischargeDisposition")),
            source="central",
        )
        for e in central
    ]
    contacts += [
        LastContact(
            when=r.start,
            description="Street triage (this device)",
            provider=r.team,
            outcome=r.outcome_display,
            source="this-device",
            state=r.state,
            reason=r.reason,
            client_id=r.client_id,
        )
        for r in mine
        if r.client_id not in echoed
    ]
    contacts.sort(key=lambda c: c.when or datetime.min.replace(tzinfo=UTC), reverse=True)
    return tuple(contacts)
