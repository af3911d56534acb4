"""What the central record says it can do (`GET [base]/metadata`), read once per run.

Only what the CapabilityStatement declares is used: sync must work with any conformant R4
server (HAPI, Azure, Google, Medplum...), not just the reference one.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from sync._exceptions import BadResponse

DEVICE_POLICY = "device-policy"
EXPORT = "export"


@dataclass(frozen=True)
class Capabilities:
    fhir_version: str | None
    software: str | None
    transaction: bool
    batch: bool = False  # `POST [base]` takes a batch Bundle (an online look-up's opening)
    # per type: interactions, conditionalCreate, search parameter names
    interactions: dict[str, frozenset[str]] = field(default_factory=dict)
    conditional_create: frozenset[str] = frozenset()
    search_params: dict[str, frozenset[str]] = field(default_factory=dict)
    common_params: frozenset[str] = frozenset()
    operations: frozenset[str] = frozenset()
    # FHIR Bulk Data: `[base]/$export` and `Group/[id]/$export` declared.
    bulk_export: bool = False
    group_export: bool = False

    def can_search(self, rtype: str) -> bool:
        return "search-type" in self.interactions.get(rtype, frozenset())

    def has_history(self, rtype: str) -> bool:
        """Type history (`[type]/_history`) lists deletions since an instant."""
        return "history-type" in self.interactions.get(rtype, frozenset())

    def declares_param(self, rtype: str, name: str) -> bool:
        return name in self.common_params or name in self.search_params.get(rtype, frozenset())

    def can_sort(self, rtype: str) -> bool:
        """`_sort=_lastUpdated` is used only where `_sort` is declared for the type or server."""
        return self.declares_param(rtype, "_sort")

    def missing_conditional_create(self, types: Iterable[str]) -> list[str]:
        return sorted({t for t in types if t not in self.conditional_create})

    @property
    def device_policy(self) -> bool:
        return DEVICE_POLICY in self.operations


def parse_capabilities(body: Any) -> Capabilities:
    """Read the parts of a CapabilityStatement sync uses; BadResponse if it is not one."""
    if not isinstance(body, dict) or body.get("resourceType") != "CapabilityStatement":
        raise BadResponse("the server's /metadata is not a CapabilityStatement")
    rests = [r for r in _list(body.get("rest"), "rest") if isinstance(r, dict)]
    rest = next((r for r in rests if r.get("mode") == "server"), rests[0] if rests else {})
    interactions: dict[str, frozenset[str]] = {}
    conditional: set[str] = set()
    params: dict[str, frozenset[str]] = {}
    group_export = False
    for res in _list(rest.get("resource"), "rest.resource"):
        if not isinstance(res, dict) or not isinstance(res.get("type"), str):
            continue
        rtype = res["type"]
        interactions[rtype] = frozenset(_codes(res.get("interaction")))
        if res.get("conditionalCreate") is True:
            conditional.add(rtype)
        params[rtype] = frozenset(_names(res.get("searchParam")))
        if rtype == "Group" and _declares_export(res.get("operation")):
            group_export = True
    operations = set(_names(rest.get("operation")))
    for op in _list(rest.get("operation"), "rest.operation"):
        definition = op.get("definition") if isinstance(op, dict) else None
        if isinstance(definition, str) and definition.rstrip("/").endswith("/" + DEVICE_POLICY):
            operations.add(DEVICE_POLICY)
    raw_software = body.get("software")
    software = raw_software if isinstance(raw_software, dict) else {}
    name = " ".join(str(software[k]) for k in ("name", "version") if software.get(k))
    return Capabilities(
        fhir_version=body.get("fhirVersion") if isinstance(body.get("fhirVersion"), str) else None,
        software=name or None,
        transaction="transaction" in set(_codes(rest.get("interaction"))),
        batch="batch" in set(_codes(rest.get("interaction"))),
        interactions=interactions,
        conditional_create=frozenset(conditional),
        search_params=params,
        common_params=frozenset(_names(rest.get("searchParam"))),
        operations=frozenset(o.lstrip("$") for o in operations),
        bulk_export=_declares_export(rest.get("operation")),
        group_export=group_export,
    )


def _list(value: Any, where: str) -> list[Any]:
    """A JSON array the CapabilityStatement must hold at `where` (absent: empty); any other
    type is a BadResponse, never a TypeError traceback (SECURITY.md 29)."""
    if value is None:
        return []
    if not isinstance(value, list):
        raise BadResponse(f"the server's CapabilityStatement has a malformed {where}")
    return value


def _declares_export(items: Any) -> bool:
    """An operation named `export`, or defined by the Bulk Data IG's export definitions
    (servers name it `export` or `$export`; the definition URL is the reliable part)."""
    for op in _list(items, "operation"):
        if not isinstance(op, dict):
            continue
        name = op.get("name")
        definition = op.get("definition")
        if isinstance(name, str) and name.lstrip("$") == EXPORT:
            return True
        if (
            isinstance(definition, str)
            and "bulkdata" in definition
            and definition.rstrip("/").rsplit("/", 1)[-1] in ("export", "group-export")
        ):
            return True
    return False


def _codes(items: Any) -> Iterable[str]:
    for item in _list(items, "interaction"):
        if isinstance(item, dict) and isinstance(item.get("code"), str):
            yield item["code"]


def _names(items: Any) -> Iterable[str]:
    for item in _list(items, "name list"):
        if isinstance(item, dict) and isinstance(item.get("name"), str):
            yield item["name"]
