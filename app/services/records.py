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
from dataclasses import dataclass, replace
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
from app.services._people import members_of, source_labels
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
    # A merged person (section 5 of docs/design/multi-trust.md): the fields the Trusts that
    # know them disagree on ("name", "date of birth", "sex"), in that order; () for one source.
    disagreements: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class AlertView:
    label: str
    kind: str  # self | others | safeguarding | other (badge colour and order)
    code: str | None  # SNOMED code when the flag has one
    category: str | None
    since: date | None
    source: str | None = None  # the Trust whose record holds it (its display name)


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
    source: str | None = None  # the Trust whose plan it is (its display name)


@dataclass(frozen=True, slots=True)
class ContactView:
    name: str
    role: str | None  # relationship, care-team role or "24-hour crisis line"
    phones: tuple[str, ...]
    kind: str  # service | professional | personal
    source: str | None = None  # the Trust whose record names them (its display name)


@dataclass(frozen=True, slots=True)
class MedicationView:
    name: str
    dosage: str | None
    source: str | None = None


@dataclass(frozen=True, slots=True)
class AllergyView:
    substance: str
    reactions: tuple[str, ...]
    criticality: str | None
    source: str | None = None


@dataclass(frozen=True, slots=True)
class ConditionView:
    name: str
    status: str | None
    onset: str | None  # as recorded (a FHIR date may be partial)
    source: str | None = None


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
    # Every source's row of this person (section 5): (sid, id), home first; `source` and
    # `person.patient_id` name the member it was opened with, which stays the person shown.
    members: tuple[tuple[int, str], ...] = ()
    sources: tuple[str, ...] = ()  # the Trusts that know the person (display names), home first
    crisis_plans: tuple[CrisisPlanView, ...] = ()  # each Trust's current plan, newest first
    identities: tuple[SourcedPerson, ...] = ()  # each member as its Trust records them
    # After a sync changed who is joined to this person (`refresh_record`): Trusts that now
    # know them too (not read: that needs an opening, audited) and Trusts whose record is
    # no longer joined to them (not read any more). Both () on an opening.
    joined: tuple[str, ...] = ()
    left: tuple[str, ...] = ()
    # Fetched by an online look-up and erased at this time (UTC); None for the cohort's.
    looked_up_until: datetime | None = None

    @property
    def merged(self) -> bool:
        """More than one Trust's record makes up this person."""
        return len(self.members) > 1


@dataclass(frozen=True, slots=True)
class SourcedPerson:
    """One member of a merged person: the Trust (display name) and what its record says."""

    source: str
    person: PersonView


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
    before anything is read or audited. The person is every source's row with the same
    verified NHS number (`members_of`, design section 5): each member source's opening is
    audited (one entry each, `audit.source` its sid, in one transaction) before anything is
    read. Everything a record refers to (practitioners, organisations) is read from its own
    source: an id means something only within its source.
    """
    if reason not in ACCESS_REASONS:
        raise InvalidInput(f"choose a reason: {', '.join(ACCESS_REASONS)}", field="reason")
    session.check_fresh()
    members = members_of(session, source, patient_id)
    event_ids = [str(uuid.uuid4()) for _ in members]
    with session.store.transaction():
        for (sid, rid), event_id in zip(members, event_ids, strict=True):
            session.store.audit(
                user_id=session.user_id,
                action=OPEN_RECORD_ACTION,
                patient_id=rid,
                source=sid,
                reason=reason,
                event_id=event_id,
            )
    return _read_record(session, (source, patient_id), members, event_ids[0], now)


def refresh_record(
    session: Session, record: PatientRecord, *, now: datetime | None = None
) -> PatientRecord:
    """Read an open record again (new data after a sync or a save), without auditing.

    Only for a record `open_record` returned in this session: the refresh belongs to that
    audited opening and keeps its `audit_event_id`. A cache past its time-to-live raises
    CacheExpired, as opening does.

    The person stays the one opened (hazard H1): the member it was opened with, and of the
    members read then, those still joined to it. A sync that joined another Trust's record
    to the person does not add it here (its opening was not audited): the record says so in
    `joined`. A member no longer joined (its NHS number is no longer verified there, or its
    record went) is no longer read: `left` names its Trust.
    """
    session.check_fresh()
    anchor = (record.source, record.person.patient_id)
    before = record.members or (anchor,)
    now_members = members_of(session, *anchor)
    kept = tuple(m for m in now_members if m in before)
    labels = source_labels(session)
    joined = tuple(
        dict.fromkeys(_label(labels, sid) for sid, rid in now_members if (sid, rid) not in before)
    )
    left = tuple(
        dict.fromkeys(_label(labels, sid) for sid, rid in before if (sid, rid) not in kept)
    )
    read = _read_record(session, anchor, kept, record.audit_event_id, now)
    # What an earlier refresh already said still holds until the record is opened again.
    return replace(
        read,
        joined=tuple(dict.fromkeys((*record.joined, *joined))),
        left=tuple(dict.fromkeys((*record.left, *left))),
    )


def _label(labels: Mapping[int, str], sid: int) -> str:
    return labels.get(sid) or f"source {sid}"


def read_opened_record(
    session: Session,
    patient_id: str,
    event_id: str,
    *,
    source: int = HOME_SOURCE,
    now: datetime | None = None,
) -> PatientRecord:
    """The record card of a person whose opening the caller has just audited under
    `event_id` (an online look-up, `app.services.lookup`): that source's record only, as
    the look-up's audit names that source's Patient only."""
    anchor = (source, patient_id)
    return _read_record(session, anchor, (anchor,), event_id, now)


def full_date(value: Any) -> date | None:
    """A full FHIR date (or the date part of a dateTime); partial dates give None."""
    return _date(value)


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


@dataclass(slots=True)
class _Part:
    """One member source's resources, read for the record."""

    sid: int
    patient_id: str
    label: str | None  # the Trust's name on what it brought; None for a one-source person
    by_type: dict[str, list[dict[str, Any]]]
    lookup: _Lookup


def _read_record(
    session: Session,
    anchor: tuple[int, str],
    members: Iterable[tuple[int, str]],
    event_id: str,
    now: datetime | None,
) -> PatientRecord:
    """The record of the person made of `members` (home first), shown as `anchor` (the member
    opened, which must be one of them and must still be cached)."""
    members = tuple(members) or (anchor,)
    merged = len(members) > 1
    labels = source_labels(session)
    parts: list[_Part] = []
    for sid, rid in members:
        by_type: dict[str, list[dict[str, Any]]] = {t: [] for t in _PATIENT_TYPES}
        for res in session.store.resources_for_patient(sid, rid, _PATIENT_TYPES):
            by_type[res["resourceType"]].append(res)
        if not by_type["Patient"]:
            if (sid, rid) == anchor:
                raise InvalidInput("no such person in this device's cache", field="patient_id")
            continue  # gone since the membership was read: not part of the person now
        label = _label(labels, sid) if merged else None
        parts.append(_Part(sid, rid, label, by_type, _Lookup(session, sid)))
    today = london_today(now)
    people = [
        SourcedPerson(_label(labels, p.sid), _person(p.by_type["Patient"][0], today, p.lookup))
        for p in parts
    ]
    shown = next(
        sp.person for p, sp in zip(parts, people, strict=True) if (p.sid, p.patient_id) == anchor
    )
    shown = replace(shown, disagreements=_disagreements([p.by_type["Patient"][0] for p in parts]))
    plans = [
        plan
        for p in parts
        if (plan := _crisis_plan(p.by_type["CarePlan"], today, p.lookup, p.label)) is not None
    ]
    plans.sort(key=lambda plan: plan.created or date.min, reverse=True)  # stable: home first
    contacts: list[ContactView] = []
    for p in parts:
        teams = [t for t in p.by_type["CareTeam"] if t.get("status", "active") == "active"]
        contacts += _team_contacts(teams, p.lookup, p.label)
    for p in parts:
        contacts += _related(p.by_type["RelatedPerson"], p.label)
    encounters = [e for p in parts for e in p.by_type["Encounter"]]
    mine = [
        r for p in parts for r in field_records_for_patient(session, p.patient_id, source=p.sid)
    ]
    return PatientRecord(
        person=shown,
        alerts=_alerts([(f, p.label) for p in parts for f in p.by_type["Flag"]], today),
        crisis_plan=plans[0] if plans else None,
        contacts=tuple(contacts),
        medications=_medications(
            [(m, p.label) for p in parts for m in p.by_type["MedicationStatement"]]
        ),
        allergies=tuple(
            a for p in parts for a in _allergies(p.by_type["AllergyIntolerance"], p.label)
        ),
        conditions=tuple(c for p in parts for c in _conditions(p.by_type["Condition"], p.label)),
        legal_status=_legal_status(encounters),
        last_contacts=_last_contacts(encounters, mine),
        last_refreshed=session.last_refresh(),
        audit_event_id=event_id,
        source=anchor[0],
        members=tuple((p.sid, p.patient_id) for p in parts),
        sources=tuple(dict.fromkeys(_label(labels, p.sid) for p in parts)),
        crisis_plans=tuple(plans),
        identities=tuple(people),
        looked_up_until=_looked_up_until(session, parts),
    )


def _looked_up_until(session: Session, parts: list[_Part]) -> datetime | None:
    """The earliest time a member fetched by an online look-up is erased (None: none was)."""
    times_ = [
        until
        for p in parts
        if (until := parse_instant(session.store.looked_up_until(p.sid, "Patient", p.patient_id)))
    ]
    return min(times_) if times_ else None


def _official_name(patient: Mapping[str, Any]) -> str:
    """The official name folded for comparing (case and spacing do not make a difference)."""
    names = [n for n in patient.get("name", ()) if isinstance(n, dict)]
    official = next((n for n in names if n.get("use") == "official"), None)
    return " ".join(human_name_text(official).casefold().split()) if official else ""


def _disagreements(patients: list[dict[str, Any]]) -> tuple[str, ...]:
    """The identity fields the members' Patients disagree on (a field one Trust leaves out is
    no disagreement): what the view puts beside the name, so a wrong-person merge shows."""
    fields = (
        ("name", _official_name),
        ("date of birth", lambda p: p.get("birthDate") or ""),
        ("sex", lambda p: p.get("gender") or ""),
    )
    out = []
    for field_name, value in fields:
        values = {value(p) for p in patients} - {""}
        if len(values) > 1:
            out.append(field_name)
    return tuple(out)


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


def _alerts(flags: list[tuple[dict[str, Any], str | None]], today: date) -> tuple[AlertView, ...]:
    """Active alerts, each with its Trust's label (None for a one-source person)."""
    alerts = []
    for flag, source in flags:
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
        alerts.append(AlertView(label, kind, code, category, since, source))
    alerts.sort(key=lambda a: (_KIND_ORDER.get(a.kind, len(_KIND_ORDER)), a.label))
    return tuple(alerts)


def _is_crisis_plan(plan: Mapping[str, Any]) -> bool:
    concepts = [*plan.get("category", ())]
    return any(_code(c, SNOMED) == CRISIS_PLAN_SNOMED for c in concepts)


def _crisis_plan(
    plans: list[dict[str, Any]], today: date, lookup: _Lookup, source: str | None = None
) -> CrisisPlanView | None:
    """The newest active crisis plan of one source's record."""
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
        source=source,
    )


def _team_contacts(
    teams: list[dict[str, Any]], lookup: _Lookup, source: str | None = None
) -> list[ContactView]:
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
            services.append(ContactView(name, line, (str(telecom["value"]),), "service", source))
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
            people.append(ContactView(member_name, role, phones, "professional", source))
    return services + people


def _related(related: list[dict[str, Any]], source: str | None = None) -> list[ContactView]:
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
                source,
            )
        )
    return out


def _recorded(resource: Mapping[str, Any]) -> bool:
    """False when the verification status unsays the record (refuted, entered in error)."""
    return _status_code(resource.get("verificationStatus")) not in _NOT_RECORDED


def _medications(
    statements: list[tuple[dict[str, Any], str | None]],
) -> tuple[MedicationView, ...]:
    out = []
    for st, source in statements:
        if st.get("status") != "active":
            continue
        name = _concept_text(st.get("medicationCodeableConcept")) or (
            st.get("medicationReference") or {}
        ).get("display")
        dosage = "; ".join(str(d["text"]) for d in st.get("dosage", ()) if d.get("text"))
        out.append(MedicationView(str(name or "Medicine not named"), dosage or None, source))
    return tuple(sorted(out, key=lambda m: m.name.lower()))


def _allergies(
    allergies: list[dict[str, Any]], source: str | None = None
) -> tuple[AllergyView, ...]:
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
        out.append(AllergyView(substance, reactions, allergy.get("criticality"), source))
    return tuple(out)


def _conditions(
    conditions: list[dict[str, Any]], source: str | None = None
) -> tuple[ConditionView, ...]:
    out = []
    for condition in conditions:
        status = _status_code(condition.get("clinicalStatus"))
        if status not in ("active", "recurrence", "relapse") or not _recorded(condition):
            continue
        name = _concept_text(condition.get("code")) or "Condition not named"
        onset = condition.get("onsetDateTime")
        out.append(ConditionView(name, status, str(onset)[:10] if onset else None, source))
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
