"""Online look-up ("break the glass", issue 14, docs/design/multi-trust.md section 7): find a
person no cache holds at a source, then open their record. No store access: the caller keeps
(and later erases) what comes back.

Fail closed: every search and every opening first POSTs an AuditEvent to the source, saying
who looks and why (a purpose of use coded from v3-ActReason, and the officer's words); if that
does not succeed, nothing is asked. The event goes as a one-entry transaction created
conditionally on its `_tag` (the event id), so a retry after a lost answer stores it once.

Searches go by `POST [base]/Patient/_search` with a form body: the same search as
`GET Patient?...` in R4 (http.html#search), but names, dates of birth and NHS numbers stay out
of URLs that servers and proxies log (SECURITY.md 13). Hits carry only what picks a person
(`_elements`; whatever else a server sends is dropped here too) and are tagged SUBSETTED so
nobody keeps one as the whole Patient.

An opening is one batch Bundle: the Patient and the resources about them that the record
card shows. Every part must arrive, and every resource must be about that Patient: an
opening without its alerts, or with someone else's, is an error, never a partial record.

Errors (all SyncError): InvalidRequest before anything is sent; AuthFailed (401/403),
NotFound (404/410), ServerRejected, BadResponse (malformed or truncated answers, after the
client's retries), Timeout / ConnectionLost / ServerUnavailable (transient).
"""

from __future__ import annotations

import logging
import re
import uuid
from dataclasses import dataclass, field
from datetime import date
from typing import Any
from urllib.parse import urlencode

import orjson

from sync._bundles import (
    ID_RE,
    BatchEntry,
    check_resource,
    read_batch_response,
    read_searchset,
    read_transaction_response,
)
from sync._client import FhirClient, outcome_text
from sync._exceptions import (
    AuthFailed,
    BadResponse,
    InvalidRequest,
    NotFound,
    ServerRejected,
    ServerUnavailable,
)
from sync._ports import AuditRecord, PurposeOfUse
from sync._push import SEARCH_ACTION, audit_bundle, now_instant
from sync._report import AuditIdentity

log = logging.getLogger("kerbside.sync")

NHS_NUMBER_SYSTEM = "https://fhir.nhs.uk/Id/nhs-number"
SUBSETTED = {
    "system": "http://terminology.hl7.org/CodeSystem/v3-ObservationValue",
    "code": "SUBSETTED",
    "display": "subsetted",
}
# What picks the person: name, birth date, gender, address; and the modifier elements R4 asks
# a client to list with `_elements` (active, deceased, link: an inactive or replaced record is
# not the one to open).
HIT_ELEMENTS = ("id", "name", "birthDate", "gender", "address", "active", "deceased", "link")
MAX_HITS = 10
# The record card's parts, each found by its reference to the Patient (search parameter and
# the element it searches).
RECORD_PARTS: tuple[tuple[str, str, str], ...] = (
    ("Flag", "patient", "subject"),
    ("CarePlan", "patient", "subject"),
    ("CareTeam", "patient", "subject"),
    ("RelatedPerson", "patient", "patient"),
    ("AllergyIntolerance", "patient", "patient"),
    ("MedicationStatement", "patient", "subject"),
)
PART_PAGE_SIZE = 100
MAX_PART_PAGES = 20  # per part: 2,000 resources about one person is not a record card
MAX_NAME_LENGTH = 100


@dataclass(frozen=True)
class OnlineHits:
    """Up to MAX_HITS Patients, cut to HIT_ELEMENTS; `more`: the source holds more matches
    (narrow the search rather than page through people)."""

    patients: list[dict[str, Any]]
    more: bool


@dataclass(frozen=True)
class OnlineRecord:
    """A person's record as the source holds it: the Patient and, per type, the resources
    about them (every type of RECORD_PARTS is present, perhaps empty)."""

    patient: dict[str, Any]
    parts: dict[str, list[dict[str, Any]]] = field(default_factory=dict)

    @property
    def resources(self) -> list[dict[str, Any]]:
        """Everything, the Patient first."""
        return [self.patient, *(r for rtype, _, _ in RECORD_PARTS for r in self.parts[rtype])]


def search_online(
    client: FhirClient,
    *,
    purpose: PurposeOfUse,
    audit: AuditIdentity,
    user_id: str,
    nhs_number: str | None = None,
    family: str | None = None,
    given: str | None = None,
    birth_date: str | date | None = None,
    event_id: str | None = None,
    at: str | None = None,
    chain: tuple[int, str, str] | None = None,
) -> OnlineHits:
    """Search the source for a person by NHS number alone, or by family name and date of
    birth (and given name), after auditing the search there.

    `event_id` (default: a new UUID) and `at` (default: now) let the caller write the same
    event into its local audit chain. `chain`: that local entry's (sequence, previous hash,
    hash), sent when the source is the one the device uploads its chain to (its home), so the
    event stored there under this id is the chained one the later upload would have made.
    """
    query = search_query(nhs_number=nhs_number, family=family, given=given, birth_date=birth_date)
    _audit_first(
        client,
        AuditRecord(
            event_id or str(uuid.uuid4()),
            at or now_instant(),
            user_id,
            SEARCH_ACTION,
            None,
            query,
            purpose=purpose,
            **_links(chain),
        ),
        audit,
    )
    label = "look-up search Patient"
    answer = client.post(
        client.url("Patient/_search"),
        query.encode(),
        label=label,
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    page = read_searchset(answer.body, "Patient", label, versioned=False)
    hits = [_cut(p) for p in page.resources[:MAX_HITS]]
    more = len(page.resources) > MAX_HITS or page.next_link is not None
    log.info("look-up search: %d hit(s)%s", len(hits), ", more" if more else "")
    return OnlineHits(hits, more)


def search_query(
    *,
    nhs_number: str | None = None,
    family: str | None = None,
    given: str | None = None,
    birth_date: str | date | None = None,
) -> str:
    """The search as `search_online` sends it (the form body, and the AuditEvent's
    `entity.query`), or InvalidRequest: a caller checks the criteria, and can keep the same
    words in its own audit trail, before anything is sent."""
    params = _criteria(nhs_number, family, given, birth_date)
    params += [("_count", str(MAX_HITS)), ("_elements", ",".join(HIT_ELEMENTS))]
    return urlencode(params)


def open_online(
    client: FhirClient,
    patient_id: str,
    *,
    purpose: PurposeOfUse,
    audit: AuditIdentity,
    user_id: str,
    event_id: str | None = None,
    at: str | None = None,
    chain: tuple[int, str, str] | None = None,
) -> OnlineRecord:
    """Fetch one person's record from the source (one batch Bundle, then any further pages),
    after auditing the opening there (`event_id`, `at`, `chain` as for `search_online`)."""
    if not isinstance(patient_id, str) or not ID_RE.match(patient_id):
        raise InvalidRequest("not a FHIR Patient id", field="patient_id")
    _audit_first(
        client,
        AuditRecord(
            event_id or str(uuid.uuid4()),
            at or now_instant(),
            user_id,
            "read",
            patient_id,
            None,
            purpose=purpose,
            **_links(chain),
        ),
        audit,
    )
    urls = [f"Patient/{patient_id}"] + [
        f"{rtype}?{urlencode({param: patient_id, '_count': str(PART_PAGE_SIZE)})}"
        for rtype, param, _ in RECORD_PARTS
    ]
    bundle = {
        "resourceType": "Bundle",
        "type": "batch",
        "entry": [{"request": {"method": "GET", "url": u}} for u in urls],
    }
    label = "open record online"
    answer = client.post(client.base_url, orjson.dumps(bundle), label=label)
    entries = read_batch_response(answer.body, len(urls), label)
    patient = check_resource(_ok(entries[0], "Patient", label), "Patient", label)
    if patient["id"] != patient_id:
        raise BadResponse(f"{label}: the server answered with another Patient")
    parts = {
        rtype: _part(client, entry, rtype, element, patient_id, label)
        for entry, (rtype, _, element) in zip(entries[1:], RECORD_PARTS, strict=True)
    }
    log.info(
        "opened a record online: %s",
        ", ".join(f"{rtype} {len(found)}" for rtype, found in parts.items()),
    )
    return OnlineRecord(patient, parts)


# -- the parts ----------------------------------------------------------------------------
def _criteria(
    nhs_number: str | None, family: str | None, given: str | None, birth_date: str | date | None
) -> list[tuple[str, str]]:
    """The search parameters, or InvalidRequest (messages name the field, never the value)."""
    if nhs_number is not None:
        if family is not None or given is not None or birth_date is not None:
            raise InvalidRequest(
                "search by NHS number alone, or by name and date of birth", field="nhs_number"
            )
        # The app checks the Modulus 11 digit (app.nhs_number) before it asks; the sync layer may
        # not import app, so here only the shape is checked: nothing but ten digits goes out.
        number = re.sub(r"[\s-]", "", nhs_number)
        if not (len(number) == 10 and number.isdigit()):
            raise InvalidRequest("that is not an NHS number (10 digits)", field="nhs_number")
        return [("identifier", f"{NHS_NUMBER_SYSTEM}|{number}")]
    params = [("family", _name(family, "family", required=True))]
    if given is not None and given.strip():
        params.append(("given", _name(given, "given", required=False)))
    params.append(("birthdate", _birth_date(birth_date)))
    return params


def _name(value: str | None, name: str, *, required: bool) -> str:
    text = (value or "").strip()
    if required and not text:
        raise InvalidRequest(
            "give the family name and date of birth, or the NHS number", field=name
        )
    if len(text) > MAX_NAME_LENGTH or any(ord(c) < 32 or c in ",|\\$" for c in text):
        raise InvalidRequest("that name cannot be searched for as written", field=name)
    return text


def _birth_date(value: str | date | None) -> str:
    if value is None:
        raise InvalidRequest(
            "give the date of birth with the family name, or search by NHS number",
            field="birth_date",
        )
    if isinstance(value, date):
        return value.isoformat()
    try:
        parsed = date.fromisoformat(value.strip()) if len(value.strip()) == 10 else None
    except ValueError:
        parsed = None
    if parsed is None:
        raise InvalidRequest("give the whole date of birth (YYYY-MM-DD)", field="birth_date")
    return parsed.isoformat()


def _links(chain: tuple[int, str, str] | None) -> dict[str, Any]:
    if chain is None:
        return {}
    seq, prev_hash, digest = chain
    return {"seq": seq, "prev_hash": prev_hash, "hash": digest}


def _audit_first(client: FhirClient, record: AuditRecord, identity: AuditIdentity) -> None:
    """POST the AuditEvent and see it accepted; any failure ends the look-up here."""
    label = "audit the look-up"
    answer = client.post(
        client.base_url,
        orjson.dumps(audit_bundle([record], identity)),
        label=label,
        headers={"Prefer": "return=minimal"},
    )
    read_transaction_response(answer.body, 1, label)


def _cut(patient: dict[str, Any]) -> dict[str, Any]:
    """A hit holds HIT_ELEMENTS (a choice element in any of its types) and is tagged
    SUBSETTED, whatever the server sent."""
    out: dict[str, Any] = {"resourceType": "Patient"}
    for key, value in patient.items():
        name = key.removeprefix("_")
        if name in HIT_ELEMENTS or any(
            name.startswith(e) and name[len(e) : len(e) + 1].isupper() for e in HIT_ELEMENTS
        ):
            out[key] = value
    raw_meta = patient.get("meta")
    meta: dict[str, Any] = raw_meta if isinstance(raw_meta, dict) else {}
    kept = {k: meta[k] for k in ("versionId", "lastUpdated") if k in meta}
    out["meta"] = {**kept, "tag": [SUBSETTED]}
    return out


def _ok(entry: BatchEntry, what: str, label: str) -> Any:
    """The entry's resource when its status is 200, else the error its status means."""
    if entry.status == 200:
        return entry.resource
    reason = outcome_text(entry.outcome)
    said = f": {reason}" if reason else ""
    outcome = entry.outcome if isinstance(entry.outcome, dict) else None
    if entry.status in (404, 410):
        raise NotFound(
            f"{label}: the source holds no such {what} ({entry.status}){said}",
            status=entry.status,
            outcome=outcome,
        )
    if entry.status in (401, 403):
        raise AuthFailed(
            f"{label}: the source refused access to {what} ({entry.status}){said}",
            status=entry.status,
            outcome=outcome,
        )
    if entry.status in (408, 429) or entry.status >= 500:
        raise ServerUnavailable(
            f"{label}: the source could not send {what} ({entry.status})", status=entry.status
        )
    raise ServerRejected(
        f"{label}: the source refused {what} ({entry.status}){said}",
        status=entry.status,
        outcome=outcome,
    )


def _part(
    client: FhirClient,
    entry: BatchEntry,
    rtype: str,
    element: str,
    patient_id: str,
    label: str,
) -> list[dict[str, Any]]:
    """Every resource of one part (following `next`), each checked to be about the Patient."""
    page = read_searchset(_ok(entry, rtype, label), rtype, label)
    found = list(page.resources)
    pages = 1
    while page.next_link is not None:
        pages += 1
        if pages > MAX_PART_PAGES:
            raise BadResponse(f"{label}: more {rtype} than a record card can hold")
        answer = client.get(client.resolve(page.next_link), label=label)
        page = read_searchset(answer.body, rtype, label)
        found += page.resources
    for resource in found:
        if _reference_id(resource.get(element), client.base_url) != patient_id:
            raise BadResponse(
                f"{label}: a {rtype} came back that is not about this person; nothing was kept"
            )
    return found


def _reference_id(value: Any, base_url: str) -> str | None:
    """The Patient id a reference names, relative (`Patient/x`) or on this server."""
    ref = value.get("reference") if isinstance(value, dict) else None
    if not isinstance(ref, str):
        return None
    ref = ref.removeprefix(base_url.rstrip("/") + "/")
    kind, _, rid = ref.partition("/")
    return rid if kind == "Patient" and ID_RE.match(rid) else None
