"""Purpose of use at the source: reads of a person's record and the reasons given for them.

An online look-up ("break the glass", issue 14) first POSTs an AuditEvent whose
`purposeOfEvent` is coded from v3-ActReason (ETREAT, BTG, ...): subtype `search-type` before a
search for a person, `read` (naming the Patient in `entity.what`) before opening their record.
The server records each such event against the client that sent it (`note_purposes`, called
inside the write's transaction).

A *record read* is a request aimed at one person's record, by a tablet client:
  * a read (or vread) of a Patient, or of a resource that references a Patient;
  * a search naming Patients through a `patient`/`subject` reference parameter;
  * a Patient search by who the person is (`identifier`, `family`, `given`, `birthdate`).
Cohort sync is none of these (it lists types by `_lastUpdated`, reconciles ids with `_id`, and
pages on), nor is an admin client's read (the Trust's own systems). Each record read is
checked (`check_read`): it is *audited* when the same client recorded a purpose of use of the
right kind (a `read` event for that Patient; any `search-type` event for a search by who) no
more than `window_s` earlier by the server's clock. Unaudited reads are listed in the report
(`GET /admin/access`, `ReferenceServer.access_report`, `reference-admin access`): the
"audited at the source" check of the issue.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ._model import parse_reference, patient_references
from ._search import Query
from ._storage import Store

ACT_REASON = "http://terminology.hl7.org/CodeSystem/v3-ActReason"
SEARCH, READ = "search", "read"
_SUBTYPES = {"search-type": SEARCH, "search-system": SEARCH, "read": READ, "vread": READ}
_WHO_PARAMS = frozenset({"identifier", "family", "given", "birthdate"})


@dataclass(frozen=True)
class Purpose:
    kind: str  # SEARCH, READ, or the event's own subtype code
    patient_ids: tuple[str, ...]
    codes: tuple[str, ...]  # v3-ActReason codes, sorted


def purpose_of(event: dict[str, Any]) -> Purpose | None:
    """The purpose of use an AuditEvent declares, or None when it has no v3-ActReason code."""
    codes = sorted(
        {
            coding["code"]
            for concept in _dicts(event.get("purposeOfEvent"))
            for coding in _dicts(concept.get("coding"))
            if coding.get("system") == ACT_REASON and isinstance(coding.get("code"), str)
        }
    )
    if not codes:
        return None
    subtypes = [s.get("code") for s in _dicts(event.get("subtype"))]
    kind = next((_SUBTYPES[s] for s in subtypes if s in _SUBTYPES), None)
    if kind is None:
        kind = str(subtypes[0]) if subtypes and isinstance(subtypes[0], str) else "other"
    patients = []
    for entity in _dicts(event.get("entity")):
        what = entity.get("what")
        parsed = parse_reference(what.get("reference")) if isinstance(what, dict) else None
        if parsed and parsed[0] == "Patient" and parsed[1] not in patients:
            patients.append(parsed[1])
    return Purpose(kind, tuple(patients), tuple(codes))


def note_purposes(
    store: Store, client_id: str, events: list[tuple[str, dict[str, Any]]], at_us: int
) -> None:
    """Record the purposes of use of AuditEvents just created (id, resource) by `client_id`."""
    for event_id, event in events:
        purpose = purpose_of(event)
        if purpose is None:
            continue
        for patient_id in purpose.patient_ids or (None,):
            store.add_purpose(client_id, purpose.kind, patient_id, purpose.codes, event_id, at_us)


def reads_of_search(q: Query) -> tuple[str, tuple[str, ...]] | None:
    """(kind, Patient ids) when a search is a record read (see the module docstring)."""
    patients: list[str] = []
    for _paths, target, refs in q.refs:
        for rtype, rid in refs:
            if (rtype or target) == "Patient" and rid not in patients:
                patients.append(rid)
    if patients:
        return READ, tuple(patients)
    if q.rtype == "Patient" and (
        q.strings or q.ranges or any(param in _WHO_PARAMS for param, _ in q.tokens)
    ):
        return SEARCH, ()
    return None


def reads_of_resource(rtype: str, rid: str, resource: dict[str, Any]) -> tuple[str, ...]:
    """The Patients whose record a read of this resource shows (none: not a record read)."""
    if rtype == "Patient":
        return (rid,)
    return tuple(dict.fromkeys(pid for _path, pid in patient_references(rtype, resource)))


def check_read(
    store: Store,
    client_id: str,
    kind: str,
    rtype: str,
    patient_ids: tuple[str, ...],
    now_us: int,
    window_s: float,
) -> None:
    """Log one record read, marked audited or not (one row per Patient read)."""
    since = now_us - int(window_s * 1_000_000)
    for patient_id in patient_ids or (None,):
        audited = store.has_purpose(client_id, kind, patient_id, since)
        store.add_read(client_id, kind, rtype, patient_id, now_us, audited)


def _dicts(value: Any) -> list[dict[str, Any]]:
    return [v for v in value if isinstance(v, dict)] if isinstance(value, list) else []
