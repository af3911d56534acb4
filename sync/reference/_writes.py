"""Create, update, delete and transaction Bundles: one engine, one SQLite transaction.

A single create is a one-entry transaction, so conditional create, business rules and the
version stamping behave identically however a client writes.

Processing follows R4 http.html#trules: identities are resolved first (conditional creates
are matched against the state before the transaction; `urn:uuid:` fullUrls get server ids,
or the id of the resource a conditional create matched), then every `reference` in the
written resources is rewritten, then checks run, then DELETE, POST, PUT are applied. Every
entry gets the same lastUpdated instant. Any failure rolls everything back.

Business rules (deliberately few and explicit, so tests can provoke a rejection naturally):
  * a reference a `patient`/`subject` search sees (e.g. Encounter.subject) to `Patient/x`
    must name a Patient that exists and is not deleted, or one this transaction writes
    -> 422 business-rule; except in an AuditEvent, which may record a read of a record
    since merged away, or an attempt to read one that never was;
  * an Encounter needs a subject -> 422 business-rule;
  * a tablet may create a Patient only with the provisional tag, or conditionally on exactly
    the NHS number the Patient carries (`ifNoneExist: identifier=<nhs-number system>|N`)
    -> 403 forbidden.
A created AuditEvent that declares a purpose of use is recorded against the client
(`_access.py`), in the same transaction.
Structural problems (not an object, wrong resourceType, bad id, a missing R4 1..1 element
listed in `REQUIRED_ELEMENTS`, an unresolved urn:uuid reference) -> 400 invalid/required.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

from ._access import note_purposes
from ._auth import TABLET, Principal
from ._model import (
    ID_RE,
    NHS_NUMBER_SYSTEM,
    SUPPORTED_TYPES,
    FhirError,
    check_structure,
    has_provisional_tag,
    patient_references,
)
from ._search import parse_search
from ._storage import Store

_IF_MATCH = re.compile(r'^(?:W/)?"?([0-9]+)"?$')
_ORDER = {"DELETE": 0, "POST": 1, "PUT": 2}
_LETTER = {"POST": "c", "PUT": "u", "DELETE": "d"}


@dataclass
class Entry:
    index: int | None  # position in a transaction Bundle; None for a direct request
    method: str
    rtype: str
    rid: str | None = None
    resource: dict[str, Any] | None = None
    full_url: str | None = None
    if_none_exist: str | None = None
    if_match: int | None = None

    @property
    def where(self) -> str:
        return f"Bundle.entry[{self.index}]" if self.index is not None else self.rtype

    @property
    def resource_where(self) -> str:
        return f"{self.where}.resource" if self.index is not None else self.rtype


@dataclass
class Outcome:
    entry: Entry
    status: int  # 201 created, 200 existing/updated, 204 deleted
    rid: str
    vid: int | None
    lu: int | None
    body: bytes | None


def parse_if_match(value: str | None) -> int | None:
    if value is None or value == "":
        return None
    m = _IF_MATCH.match(value.strip())
    if not m:
        raise FhirError(400, "invalid", 'If-Match must be W/"<versionId>"')
    return int(m.group(1))


def entries_from_bundle(bundle: Any, base_url: str) -> list[Entry]:
    if not isinstance(bundle, dict) or bundle.get("resourceType") != "Bundle":
        raise FhirError(400, "invalid", "POST to the base needs a Bundle")
    if bundle.get("type") != "transaction":
        raise FhirError(400, "invalid", "Bundle.type must be transaction or batch")
    raw = bundle.get("entry") or []
    if not isinstance(raw, list):
        raise FhirError(400, "invalid", "Bundle.entry must be a list")
    entries = []
    for i, item in enumerate(raw):
        where = f"Bundle.entry[{i}]"
        request = item.get("request") if isinstance(item, dict) else None
        if not isinstance(request, dict):
            raise FhirError(400, "invalid", "entry.request is required", expression=where)
        method = str(request.get("method", "")).upper()
        url = str(request.get("url") or "")
        if url.startswith(base_url + "/"):
            url = url[len(base_url) + 1 :]
        if method not in _ORDER:
            raise FhirError(
                400,
                "not-supported",
                f"{method or 'no method'} is not supported in a transaction",
                expression=f"{where}.request.method",
            )
        path, _, query = url.partition("?")
        parts = path.split("/")
        if query or parts[0] not in SUPPORTED_TYPES or len(parts) != (1 if method == "POST" else 2):
            raise FhirError(
                400,
                "invalid",
                f"unsupported request.url for {method}",
                expression=f"{where}.request.url",
            )
        entry = Entry(i, method, parts[0], full_url=item.get("fullUrl"))
        if method != "POST":
            entry.rid = parts[1]
            if not ID_RE.match(entry.rid):
                raise FhirError(400, "invalid", "invalid id", expression=f"{where}.request.url")
        if method != "DELETE":
            entry.resource = check_structure(entry.rtype, item.get("resource"), f"{where}.resource")
        entry.if_none_exist = request.get("ifNoneExist") if method == "POST" else None
        entry.if_match = parse_if_match(request.get("ifMatch")) if method == "PUT" else None
        entries.append(entry)
    return entries


def apply(
    store: Store,
    principal: Principal,
    entries: list[Entry],
    *,
    backdate_ms: int = 0,
    max_count: int = 1000,
) -> list[Outcome]:
    """Apply `entries` all-or-nothing; outcomes are in the entries' order."""
    for e in entries:
        if not principal.may(e.rtype, _LETTER[e.method]):
            raise FhirError(
                403, "forbidden", f"this client may not {e.method} {e.rtype}", expression=e.where
            )
        if e.method == "PUT" and e.resource is not None and e.resource.get("id") != e.rid:
            raise FhirError(
                400,
                "invalid",
                "resource id must match the id in the URL",
                expression=f"{e.resource_where}.id",
            )
    with store.transaction():
        lu = store.next_instant() - backdate_ms * 1000
        plans, mapping = _resolve(store, entries, max_count)
        for plan in plans:
            if plan.resource is not None and plan.existing is None:
                plan.resource = _rewrite(plan.resource, mapping, plan.entry.resource_where)
        _check_rules(store, principal, plans)
        results: dict[int, Outcome] = {}
        for pos in sorted(range(len(plans)), key=lambda k: _ORDER[plans[k].entry.method]):
            results[pos] = _apply_one(store, plans[pos], lu)
        outcomes = [results[pos] for pos in range(len(plans))]
        created_events = [
            (o.rid, plan.resource)
            for o, plan in zip(outcomes, plans, strict=True)
            if o.entry.rtype == "AuditEvent" and o.status == 201 and plan.resource is not None
        ]
        if created_events:
            note_purposes(store, principal.client_id, created_events, lu)
        return outcomes


@dataclass
class _Plan:
    entry: Entry
    rid: str
    existing: tuple[str, int, int] | None = None  # a conditional create's match
    resource: dict[str, Any] | None = None


def _resolve(
    store: Store, entries: list[Entry], max_count: int
) -> tuple[list[_Plan], dict[str, str]]:
    plans: list[_Plan] = []
    mapping: dict[str, str] = {}
    writes: set[tuple[str, str]] = set()
    for e in entries:
        plan = _Plan(e, e.rid or "", resource=e.resource)
        if e.method == "POST":
            if e.if_none_exist:
                params = parse_qsl(e.if_none_exist.lstrip("?"), keep_blank_values=True)
                try:
                    query = parse_search(
                        e.rtype, params, default_count=2, max_count=max_count, allow_control=False
                    )
                except FhirError as exc:
                    exc.expression = f"{e.where}.request.ifNoneExist"
                    raise
                if not query.has_criteria:
                    raise FhirError(
                        400,
                        "invalid",
                        "ifNoneExist has no search criteria",
                        expression=f"{e.where}.request.ifNoneExist",
                    )
                matches = store.match_ids(query, 2)
                if len(matches) > 1:
                    raise FhirError(
                        412,
                        "multiple-matches",
                        "ifNoneExist matched more than one resource",
                        expression=f"{e.where}.request.ifNoneExist",
                    )
                if matches:
                    plan.existing = matches[0]
                    plan.rid = matches[0][0]
            if not plan.rid:
                plan.rid = str(uuid.uuid4())
        if plan.existing is None:
            key = (e.rtype, plan.rid)
            if key in writes:
                raise FhirError(
                    400, "invalid", f"{e.rtype}/{plan.rid} is written twice", expression=e.where
                )
            writes.add(key)
        if e.full_url and e.full_url.startswith(("urn:uuid:", "urn:oid:")):
            if e.full_url in mapping:
                raise FhirError(400, "invalid", "fullUrl used twice", expression=e.where)
            mapping[e.full_url] = f"{e.rtype}/{plan.rid}"
        plans.append(plan)
    return plans, mapping


def _rewrite(value: Any, mapping: dict[str, str], where: str) -> Any:
    """Rewrite `reference` values that are bundle-local urns; an unknown urn is an error."""
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            if k == "reference" and isinstance(v, str) and v.startswith(("urn:uuid:", "urn:oid:")):
                if v not in mapping:
                    raise FhirError(
                        400,
                        "invalid",
                        "reference to a urn that is not in this Bundle",
                        expression=where,
                    )
                out[k] = mapping[v]
            else:
                out[k] = _rewrite(v, mapping, where)
        return out
    if isinstance(value, list):
        return [_rewrite(v, mapping, where) for v in value]
    return value


def _check_rules(store: Store, principal: Principal, plans: list[_Plan]) -> None:
    written_patients = {
        p.rid
        for p in plans
        if p.entry.rtype == "Patient" and p.entry.method in ("POST", "PUT") and p.existing is None
    }
    deleted_patients = {
        p.rid for p in plans if p.entry.rtype == "Patient" and p.entry.method == "DELETE"
    }
    wanted: list[tuple[_Plan, str, str]] = []
    for plan in plans:
        e, resource = plan.entry, plan.resource
        if resource is None or plan.existing is not None:
            continue
        if (
            principal.role == TABLET
            and e.rtype == "Patient"
            and not has_provisional_tag(resource)
            and not _on_its_nhs_number(e, resource)
        ):
            raise FhirError(
                403,
                "forbidden",
                "tablets may only create provisional Patients, or a Patient conditionally on "
                "the NHS number it carries",
                expression=f"{e.resource_where}.meta.tag",
            )
        if e.rtype == "Encounter" and not resource.get("subject"):
            raise FhirError(
                422,
                "business-rule",
                "an Encounter must have a subject",
                expression=f"{e.resource_where}.subject",
            )
        if e.rtype == "AuditEvent":
            continue  # an audit trail records reads of records since gone, and attempts
        for path, pid in patient_references(e.rtype, resource):
            wanted.append((plan, path, pid))
    live = store.existing_ids("Patient", {pid for _, _, pid in wanted} - written_patients)
    for plan, path, pid in wanted:
        if pid in deleted_patients or (pid not in written_patients and pid not in live):
            raise FhirError(
                422,
                "business-rule",
                f"{path} refers to a Patient that does not exist on this server",
                expression=f"{plan.entry.resource_where}.{path}",
            )


def _on_its_nhs_number(entry: Entry, resource: dict[str, Any]) -> bool:
    """A create conditional on exactly `identifier=<nhs-number system>|N`, of a Patient that
    carries N: a person another Trust knows, sent home with an encounter (issue 14). Were
    the number already here, the condition would have matched instead of creating."""
    if entry.method != "POST" or not entry.if_none_exist:
        return False
    params = parse_qsl(entry.if_none_exist.lstrip("?"), keep_blank_values=True)
    if len(params) != 1 or params[0][0] != "identifier":
        return False
    system, _, number = params[0][1].partition("|")
    if system != NHS_NUMBER_SYSTEM or not (len(number) == 10 and number.isdigit()):
        return False
    return any(
        isinstance(ident, dict)
        and ident.get("system") == NHS_NUMBER_SYSTEM
        and ident.get("value") == number
        for ident in resource.get("identifier") or ()
    )


def _apply_one(store: Store, plan: _Plan, lu: int) -> Outcome:
    e = plan.entry
    if plan.existing is not None:
        rid, vid, existing_lu = plan.existing
        current = store.read(e.rtype, rid)
        return Outcome(e, 200, rid, vid, existing_lu, current.body if current else None)
    current = store.read(e.rtype, plan.rid) if e.method != "POST" else None
    if e.method == "DELETE":
        if current is None:
            raise FhirError(404, "not-found", f"no {e.rtype} with this id", expression=e.where)
        if current.deleted:
            return Outcome(e, 204, plan.rid, current.vid, current.lu, None)
        w = store.write(e.rtype, plan.rid, None, lu, method="DELETE")
        return Outcome(e, 204, plan.rid, w.vid, w.lu, None)
    if e.if_match is not None and (current is None or current.deleted or current.vid != e.if_match):
        raise FhirError(
            412, "conflict", "If-Match does not match the current version", expression=e.where
        )
    assert plan.resource is not None
    w = store.write(e.rtype, plan.rid, plan.resource, lu, method=e.method)
    return Outcome(e, 201 if w.created else 200, plan.rid, w.vid, w.lu, w.body)
