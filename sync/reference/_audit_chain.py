"""The centre's check of each device's audit trail (SECURITY.md 27, issue 12 finding 2).

Every AuditEvent a Kerbside tablet uploads carries its per-device sequence number, the previous
entry's hash and its own hash (extension `.../StructureDefinition/audit-chain`, see
docs/security/audit-trail.md). Here the stored events are grouped by device (the
`source.observer` identifier) and checked: a missing sequence number is a gap, an entry whose
previous hash is not its predecessor's hash is a break, two entries with one number are a
conflict, and a device's own "chain broken" report is listed as reported. Read by
`reference-admin stats` and `GET /admin/audit`.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import orjson

CHAIN_EXTENSION_SUFFIX = "/StructureDefinition/audit-chain"
CHAIN_BROKEN_CODE = "audit-chain-broken"


def _device(event: dict[str, Any]) -> str | None:
    source = event.get("source")
    observer = source.get("observer") if isinstance(source, dict) else None
    ident = observer.get("identifier") if isinstance(observer, dict) else None
    value = ident.get("value") if isinstance(ident, dict) else None
    return value if isinstance(value, str) else None


def _chain(event: dict[str, Any]) -> tuple[int, str, str] | None:
    for ext in event.get("extension") or ():
        if not isinstance(ext, dict) or not str(ext.get("url", "")).endswith(
            CHAIN_EXTENSION_SUFFIX
        ):
            continue
        parts = {
            e.get("url"): e.get("valueInteger", e.get("valueString"))
            for e in ext.get("extension") or ()
            if isinstance(e, dict)
        }
        seq, prev, digest = parts.get("sequence"), parts.get("previousHash"), parts.get("hash")
        if isinstance(seq, int) and isinstance(prev, str) and isinstance(digest, str):
            return seq, prev, digest
    return None


def _is_break_report(event: dict[str, Any]) -> bool:
    return any(
        isinstance(c, dict) and c.get("code") == CHAIN_BROKEN_CODE
        for c in event.get("subtype") or ()
    )


def check_chains(bodies: Iterable[bytes]) -> dict[str, Any]:
    """Per device: events, last sequence, gaps [[from, to]], breaks, conflicts, reports."""
    links: dict[str, list[tuple[int, str, str]]] = {}
    reports: dict[str, list[str]] = {}
    for body in bodies:
        event = orjson.loads(body)
        device = _device(event)
        if device is None:
            continue
        if _is_break_report(event):
            reports.setdefault(device, []).append(str(event.get("outcomeDesc", "")))
            continue
        chain = _chain(event)
        if chain is not None:
            links.setdefault(device, []).append(chain)
    devices: dict[str, Any] = {}
    for device in sorted(set(links) | set(reports)):
        ordered = sorted(links.get(device, []))
        gaps: list[list[int]] = []
        breaks: list[int] = []
        conflicts: list[int] = []
        prev_seq, prev_hash = 0, "0" * 64
        for seq, prev, digest in ordered:
            if seq == prev_seq:
                conflicts.append(seq)
                continue
            if seq != prev_seq + 1:
                gaps.append([prev_seq + 1, seq - 1])
            elif prev != prev_hash:
                breaks.append(seq)
            prev_seq, prev_hash = seq, digest
        devices[device] = {
            "events": len(ordered),
            "last_sequence": prev_seq,
            "gaps": gaps,
            "breaks": breaks,
            "conflicts": conflicts,
            "reported_breaks": reports.get(device, []),
        }
    flagged = [
        d
        for d, v in devices.items()
        if v["gaps"] or v["breaks"] or v["conflicts"] or v["reported_breaks"]
    ]
    return {"devices": devices, "flagged": flagged}
