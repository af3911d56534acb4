"""Push: field records up as transaction Bundles, then the audit trail as AuditEvents.

Exactly once, by construction rather than by luck (SECURITY.md 20, 21):
- every entry carries a client-made identifier and `request.ifNoneExist` on it, so a retry
  after a lost answer finds the first copy (200) instead of making a second (201);
- an attempt is counted before the request leaves, and a row is marked sent only after the
  server's answer is committed locally; a crash in between leaves it pending, and the next
  run's retry is harmless for the reason above;
- a 4xx with an OperationOutcome about the record (not 401/403/408/429) keeps the row as
  rejected with the server's reason for a person to resolve; anything transient ends the run
  with the row still pending.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson

from sync._bundles import read_transaction_response
from sync._client import outcome_text
from sync._exceptions import AuthFailed, ServerRejected
from sync._ports import (
    ACT_REASON,
    PURPOSE_CODES,
    AuditRecord,
    OutboxItem,
    PurposeOfUse,
)
from sync._report import KERBSIDE, AuditIdentity, Rejection
from sync._run import RunPart

log = logging.getLogger("kerbside.sync")

# 4xx answers (with an OperationOutcome) that are about the record itself; others (401, 405,
# 415...) are about the server or this device and must not turn every record into a rejection.
_RECORD_REJECTIONS = frozenset({400, 403, 404, 409, 410, 412, 413, 422})
DCM = "http://dicom.nema.org/resources/ontology/DCM"
RESTFUL_INTERACTION = "http://hl7.org/fhir/restful-interaction"
ENTITY_TYPE = "http://terminology.hl7.org/CodeSystem/audit-entity-type"
OBJECT_ROLE = "http://terminology.hl7.org/CodeSystem/object-role"
_ACTIONS = {
    "create": "C",
    "read": "R",
    "open": "R",
    "update": "U",
    "delete": "D",
    "search": "E",
}
AUDIT_CHAIN_EXTENSION = f"{KERBSIDE}/StructureDefinition/audit-chain"
AUDIT_CHAIN_SYSTEM = f"{KERBSIDE}/CodeSystem/audit-chain"
CHAIN_BROKEN_CODE = "audit-chain-broken"
SEARCH_ACTION = "search"  # app.services.search.SEARCH_ACTION: the reason column holds the query


@dataclass(frozen=True)
class _AdminEvent:
    """How an admin action (app.services.session / app.services.sources) reads at the centre."""

    code: str
    display: str
    action: str  # C, U or D
    role: str  # object-role: 11 Security User Entity, 13 Security Resource
    role_display: str


# An admin action is not a patient record read: a user or team change is DICOM "Security Roles
# Changed" / "User Security Attributes Changed", a central record added or removed is "Network
# Configuration" under "Security Alert". The local detail (user ids, team text, a source's name
# and host; never a patient) goes in entity.description, not in purposeOfEvent.
_ADMIN_EVENTS = {
    "add-user": _AdminEvent("110136", "Security Roles Changed", "C", "11", "Security User Entity"),
    "remove-user": _AdminEvent(
        "110136", "Security Roles Changed", "D", "11", "Security User Entity"
    ),
    "change-team": _AdminEvent(
        "110137", "User Security Attributes Changed", "U", "11", "Security User Entity"
    ),
    "source-add": _AdminEvent("110113", "Security Alert", "C", "13", "Security Resource"),
    "source-remove": _AdminEvent("110113", "Security Alert", "D", "13", "Security Resource"),
}
NETWORK_CONFIGURATION = {"system": DCM, "code": "110128", "display": "Network Configuration"}


def now_instant() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def payload_types(bundle: Any) -> set[str] | None:
    """Resource types a transaction Bundle creates, or None if it is not one we can send."""
    if (
        not isinstance(bundle, dict)
        or bundle.get("resourceType") != "Bundle"
        or bundle.get("type") != "transaction"
    ):
        return None
    types: set[str] = set()
    for entry in bundle.get("entry") or ():
        res = entry.get("resource") if isinstance(entry, dict) else None
        request = entry.get("request") if isinstance(entry, dict) else None
        if not isinstance(res, dict) or not isinstance(request, dict):
            return None
        if request.get("method") == "POST" and not request.get("ifNoneExist"):
            return None  # without it a retry could duplicate: never send such an entry
        types.add(str(res.get("resourceType")))
    return types or None


class Pusher(RunPart):
    def blocked_reason(self, types: Iterable[str]) -> str | None:
        """Why this server must not receive our records, or None. Without conditional create
        a write the server applied before the connection dropped would be duplicated by the
        retry, so we refuse to send rather than risk it."""
        if not self.caps.transaction:
            return (
                "the central record does not accept transaction Bundles; records stay on "
                "this device until it does"
            )
        missing = self.caps.missing_conditional_create(types)
        if missing:
            return (
                "the central record does not declare conditional create for "
                f"{', '.join(missing)}; sending could duplicate records on a retry, so "
                "they stay on this device"
            )
        return None

    # -- field records -----------------------------------------------------------------------
    def push_outbox(self) -> None:
        done = 0
        skipped: set[int] = set()
        while True:
            items = [
                i
                for i in self.store.pending_outbox(self.options.outbox_batch + len(skipped))
                if i.seq not in skipped
            ]
            if not items:
                return
            for item in items:
                self.client.check_cancel()
                if not self._push_one(item):
                    skipped.add(item.seq)
                done += 1
                self.progress("push", done, None)

    def _push_one(self, item: OutboxItem) -> bool:
        """Send one record; False if it was left pending on purpose (server cannot take it)."""
        try:
            bundle = orjson.loads(item.payload)
        except orjson.JSONDecodeError:
            bundle = None
        types = payload_types(bundle)
        if types is None:
            # Our own bug, not the server's: keep the record visible, never drop it.
            self._reject(
                item,
                None,
                "this record could not be prepared for sending (every "
                "entry needs a conditional create); it was not sent",
                None,
            )
            return True
        blocked = self.blocked_reason(types)
        if blocked:
            self.report.push_blocked = blocked
            return False
        label = f"push {item.kind}"
        try:
            answer = self.client.post(
                self.client.base_url,
                item.payload,
                label=label,
                headers={"Prefer": "return=representation"},
                before_attempt=lambda: self.store.record_attempt(item.seq, now_instant()),
            )
        except (ServerRejected, AuthFailed) as exc:
            # A 403 with an OperationOutcome on one record is that record being forbidden
            # (e.g. a Patient a tablet may not create), not this device losing access: the
            # next request would say so. Keeping it as rejected stops it blocking the rest.
            if exc.outcome is None or exc.status not in _RECORD_REJECTIONS:
                raise
            reason = outcome_text(exc.outcome) or f"refused by the central record ({exc.status})"
            self._reject(item, exc.status, reason, orjson.dumps(exc.outcome))
            return True
        result = read_transaction_response(answer.body, len(bundle["entry"]), label)
        self.store.mark_sent(item.seq, orjson.dumps(answer.body), result.resources, now_instant())
        self.report.pushed += 1
        log.info("pushed %s record %s (%d entries)", item.kind, item.client_id, result.entries)
        return True

    def _reject(
        self, item: OutboxItem, status: int | None, reason: str, response: bytes | None
    ) -> None:
        self.store.mark_rejected(item.seq, reason, response, now_instant())
        self.report.rejected += 1
        self.report.rejections.append(Rejection(item.client_id, item.kind, status, reason))
        log.warning(
            "the central record rejected %s record %s (status %s)",
            item.kind,
            item.client_id,
            status,
        )

    # -- audit trail -------------------------------------------------------------------------
    def push_audit(self) -> None:
        """Upload not-yet-uploaded audit entries, a batch per transaction.

        A refused batch is reported and left for the next run: the audit trail never blocks
        the cohort refresh an officer is waiting for.
        """
        blocked = self.blocked_reason({"AuditEvent"})
        if self.options.audit_chain_problems:
            self._report_broken_chain(blocked)
            return
        done = 0
        while True:
            records = self.store.pending_audit(self.options.audit_batch)
            if not records:
                return
            if blocked:
                self.report.warnings.append(f"audit trail not uploaded: {blocked}")
                return
            self.client.check_cancel()
            bundle = audit_bundle(records, self.options.audit)
            sent = self._post_audit(
                bundle, len(records), "upload audit trail", "audit trail not uploaded"
            )
            if not sent:
                return
            self.store.mark_audit_uploaded([r.event_id for r in records], now_instant())
            done += len(records)
            self.report.audit_uploaded += len(records)
            self.progress("audit", done, None)

    def _report_broken_chain(self, blocked: str | None) -> None:
        """Upload nothing of a broken trail; tell the centre, once per distinct break."""
        problems = self.options.audit_chain_problems
        self.report.audit_chain_broken = True
        self.report.warnings.append(
            "audit trail not uploaded: the local audit chain is broken ("
            + "; ".join(problems[:3])
            + (f"; {len(problems) - 3} more" if len(problems) > 3 else "")
            + "); the central record has been told"
        )
        if blocked:
            return
        bundle = {
            "resourceType": "Bundle",
            "type": "transaction",
            "entry": [chain_broken_entry(problems, self.options.audit)],
        }
        self._post_audit(
            bundle, 1, "report the broken audit chain", "broken audit chain not reported"
        )

    def _post_audit(self, bundle: dict[str, Any], entries: int, label: str, refused: str) -> bool:
        """POST an audit transaction and check that the server applied all its `entries`.
        Refused, it is a warning (`refused: <why>`) in the report and False: the trail stays
        local for the next run, and never fails the run that carried the officer's records."""
        try:
            answer = self.client.post(
                self.client.base_url,
                orjson.dumps(bundle),
                label=label,
                headers={"Prefer": "return=minimal"},
            )
        except ServerRejected as exc:
            self.report.warnings.append(f"{refused}: {exc}")
            return False
        read_transaction_response(answer.body, entries, label)
        return True


def chain_broken_entry(problems: Iterable[str], identity: AuditIdentity) -> dict[str, Any]:
    """One AuditEvent (subtype `audit-chain-broken`, outcome 8) naming the problems found.

    The texts carry sequence numbers only. Its tag is a digest of the problems, so the same
    break reported by every later sync is stored once and a new break is stored again.
    """
    text = "; ".join(problems)
    code = (
        "chain-broken-" + hashlib.sha256(f"{identity.device_id}\n{text}".encode()).hexdigest()[:32]
    )
    event = {
        "resourceType": "AuditEvent",
        "meta": {"tag": [{"system": identity.event_tag_system, "code": code}]},
        "type": {"system": DCM, "code": "110100", "display": "Application Activity"},
        "subtype": [
            {
                "system": AUDIT_CHAIN_SYSTEM,
                "code": CHAIN_BROKEN_CODE,
                "display": "local audit chain broken",
            }
        ],
        "action": "E",
        "recorded": now_instant(),
        "outcome": "8",
        "outcomeDesc": text[:2000],
        "agent": [
            {
                "who": {
                    "identifier": {"system": identity.device_system, "value": identity.device_id}
                },
                "requestor": False,
            }
        ],
        "source": {
            "observer": {
                "identifier": {"system": identity.device_system, "value": identity.device_id}
            },
        },
    }
    return {
        "fullUrl": f"urn:uuid:{uuid.uuid4()}",
        "resource": event,
        "request": {
            "method": "POST",
            "url": "AuditEvent",
            "ifNoneExist": f"_tag={identity.event_tag_system}|{code}",
        },
    }


def chain_extension(record: AuditRecord) -> dict[str, Any]:
    """Where the centre reads the chain: `sequence` (per device, from 1), `previousHash` and
    `hash` (hex SHA-256 of the entry, covering the previous hash). docs/security/audit-trail.md
    """
    return {
        "url": AUDIT_CHAIN_EXTENSION,
        "extension": [
            {"url": "sequence", "valueInteger": record.seq},
            {"url": "previousHash", "valueString": record.prev_hash},
            {"url": "hash", "valueString": record.hash},
        ],
    }


def audit_event(record: AuditRecord, identity: AuditIdentity) -> dict[str, Any]:
    """An R4 AuditEvent for one opening of a record (DICOM 110110 "Patient Record", read),
    or one search (subtype search-type, the words searched for in `entity.query`), or one admin
    action (`_ADMIN_EVENTS`: its own event type, the detail in `entity.description`).

    A record with a `purpose` (an online look-up) says why in coded `purposeOfEvent`;
    otherwise a reason given for an opening is its plain-text purpose.

    R4 AuditEvent has no `identifier`; the local event id rides in `meta.tag` so the
    conditional create can match on `_tag`, which every resource type supports.
    """
    event: dict[str, Any] = {
        "resourceType": "AuditEvent",
        "meta": {"tag": [{"system": identity.event_tag_system, "code": record.event_id}]},
        "type": {"system": DCM, "code": "110110", "display": "Patient Record"},
        "subtype": [{"system": RESTFUL_INTERACTION, "code": "read", "display": "read"}],
        "action": _ACTIONS.get(record.action, "R"),
        "recorded": record.at,
        "outcome": "0",
        "agent": [
            {
                "who": {"identifier": {"system": identity.user_system, "value": record.user_id}},
                "requestor": True,
            }
        ],
        "source": {
            "observer": {
                "identifier": {"system": identity.device_system, "value": identity.device_id}
            },
        },
    }
    if record.seq is not None:
        event["extension"] = [chain_extension(record)]
    admin = _ADMIN_EVENTS.get(record.action)
    if admin is not None:
        event["type"] = {"system": DCM, "code": admin.code, "display": admin.display}
        if admin.code == "110113":
            event["subtype"] = [NETWORK_CONFIGURATION]
        else:
            del event["subtype"]
        event["action"] = admin.action
        event["entity"] = [
            {
                "type": {"system": ENTITY_TYPE, "code": "2", "display": "System Object"},
                "role": {"system": OBJECT_ROLE, "code": admin.role, "display": admin.role_display},
                "description": record.reason or "",
            }
        ]
        return event
    if record.purpose is not None:
        event["purposeOfEvent"] = purpose_of_event(record.purpose)
    if record.action == SEARCH_ACTION:
        # The words searched for: patient data, so only here and in the encrypted cache.
        event["subtype"] = [
            {"system": RESTFUL_INTERACTION, "code": "search-type", "display": "search-type"}
        ]
        event["entity"] = [
            {
                "type": {"system": ENTITY_TYPE, "code": "2", "display": "System Object"},
                "role": {"system": OBJECT_ROLE, "code": "24", "display": "Query"},
                "query": base64.b64encode((record.reason or "").encode()).decode(),
            }
        ]
        return event
    if record.reason and record.purpose is None:
        event["purposeOfEvent"] = [{"text": record.reason}]
    if record.patient_id:
        event["entity"] = [
            {
                "what": {"reference": f"Patient/{record.patient_id}"},
                "type": {"system": ENTITY_TYPE, "code": "1", "display": "Person"},
                "role": {"system": OBJECT_ROLE, "code": "1", "display": "Patient"},
            }
        ]
    return event


def purpose_of_event(purpose: PurposeOfUse) -> list[dict[str, Any]]:
    """`AuditEvent.purposeOfEvent`: one concept per v3-ActReason code (codings inside one
    CodeableConcept are translations of one meaning, and ETREAT and BTG are two); the
    officer's words are the text of the first, the purpose the others qualify."""
    concepts: list[dict[str, Any]] = []
    for code in purpose.codes:
        concept: dict[str, Any] = {
            "coding": [{"system": ACT_REASON, "code": code, "display": PURPOSE_CODES[code]}]
        }
        if not concepts:
            concept["text"] = purpose.text.strip()
        concepts.append(concept)
    return concepts


def audit_bundle(records: list[AuditRecord], identity: AuditIdentity) -> dict[str, Any]:
    return {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "fullUrl": f"urn:uuid:{uuid.uuid4()}",
                "resource": audit_event(r, identity),
                "request": {
                    "method": "POST",
                    "url": "AuditEvent",
                    "ifNoneExist": f"_tag={identity.event_tag_system}|{r.event_id}",
                },
            }
            for r in records
        ],
    }
