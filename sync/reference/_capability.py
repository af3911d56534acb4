"""What the server tells clients it can do: `GET [base]/metadata` and SMART discovery.

The statement is built per request from the live settings, so switching history off at run
time also removes `history-type` from it: a client that reads the statement before relying
on an interaction (as it should) notices.
"""

from __future__ import annotations

from typing import Any

from ._export import BULK_CAPABILITY, EXPORT_DEFINITION, GROUP_EXPORT_DEFINITION
from ._model import (
    DATE_PARAMS,
    DEVICE_POLICY_DEFINITION,
    DEVICE_POLICY_OPERATION,
    FHIR_VERSION,
    IDENTIFIER_TYPES,
    REFERENCE_PARAMS,
    STRING_PARAMS,
    SUPPORTED_TYPES,
)

SOFTWARE_VERSION = "0.1.0"
_SPEC = "http://hl7.org/fhir/SearchParameter"


def _search_params(rtype: str) -> list[dict[str, Any]]:
    params: list[dict[str, Any]] = [
        {"name": "_id", "definition": f"{_SPEC}/Resource-id", "type": "token"},
        {
            "name": "_lastUpdated",
            "definition": f"{_SPEC}/Resource-lastUpdated",
            "type": "date",
            "documentation": "Prefixes eq, ne, gt, ge, lt, le at the precision written; "
            "repeat to AND, comma to OR.",
        },
        {"name": "_tag", "definition": f"{_SPEC}/Resource-tag", "type": "token"},
    ]
    if rtype in IDENTIFIER_TYPES:
        params.append({"name": "identifier", "type": "token"})
    for name in REFERENCE_PARAMS.get(rtype, {}):
        params.append({"name": name, "type": "reference"})
    for name in STRING_PARAMS.get(rtype, {}):
        params.append(
            {
                "name": name,
                "type": "string",
                "documentation": "Starts with, case and accents folded; no modifiers.",
            }
        )
    for name in DATE_PARAMS.get(rtype, {}):
        params.append({"name": name, "type": "date"})
    params += [
        {
            "name": "_count",
            "type": "number",
            "documentation": "Page size requested; default 100, at most 1000 (fewer may come).",
        },
        {
            "name": "_sort",
            "type": "string",
            "documentation": "_lastUpdated or _id, '-' for descending; ties broken by _id.",
        },
        {
            "name": "_elements",
            "type": "string",
            "documentation": "Search results cut to these elements (and id, meta, mandatory "
            "ones), tagged SUBSETTED.",
        },
    ]
    return params


def capability_statement(
    base_url: str, token_url: str, *, history: bool, now: str, bulk_export: bool = True
) -> dict[str, Any]:
    interactions = ["read", "vread", "search-type", "create", "update", "delete"]
    if history:
        interactions.append("history-type")
    resources = [
        {
            "type": rtype,
            "interaction": [{"code": code} for code in interactions],
            "versioning": "versioned",
            "readHistory": True,
            "updateCreate": True,
            "conditionalCreate": True,
            "conditionalRead": "not-supported",
            "conditionalUpdate": False,
            "conditionalDelete": "not-supported",
            "searchParam": _search_params(rtype),
        }
        for rtype in SUPPORTED_TYPES
    ]
    operations: list[dict[str, Any]] = [
        {
            "name": DEVICE_POLICY_OPERATION,
            "definition": DEVICE_POLICY_DEFINITION,
            "documentation": "Kerbside-specific: the calling device's policy "
            "(cache TTL, purge, idle lock) as Parameters.",
        }
    ]
    if bulk_export:
        operations.append(
            {
                "name": "export",
                "definition": EXPORT_DEFINITION,
                "documentation": "FHIR Bulk Data Access v2 system-level export: NDJSON, "
                "_type, _since; files need the bearer token and honour Range.",
            }
        )
        for res in resources:
            if res["type"] == "Group":
                res["operation"] = [{"name": "export", "definition": GROUP_EXPORT_DEFINITION}]
    statement: dict[str, Any] = {
        "resourceType": "CapabilityStatement",
        "id": "kerbside-reference",
        "name": "KerbsideReferenceCentralRecord",
        "title": "Kerbside reference central record (development and test stand-in)",
        "status": "active",
        "experimental": True,
        "date": now,
        "publisher": "Kerbside",
        "kind": "instance",
        "software": {"name": "kerbside-reference", "version": SOFTWARE_VERSION},
        "implementation": {"description": "Kerbside reference FHIR R4 server", "url": base_url},
        "fhirVersion": FHIR_VERSION,
        "format": ["application/fhir+json", "json"],
        "rest": [
            {
                "mode": "server",
                "security": {
                    "cors": False,
                    "service": [
                        {
                            "coding": [
                                {
                                    "system": "http://terminology.hl7.org/CodeSystem/restful-security-service",
                                    "code": "SMART-on-FHIR",
                                }
                            ]
                        }
                    ],
                    "extension": [
                        {
                            "url": "http://fhir-registry.smarthealthit.org/StructureDefinition/"
                            "oauth-uris",
                            "extension": [{"url": "token", "valueUri": token_url}],
                        }
                    ],
                    "description": "OAuth2 client credentials; bearer tokens; SMART v2 "
                    "system scopes.",
                },
                "resource": resources,
                "interaction": [{"code": "transaction"}, {"code": "batch"}],
                "operation": operations,
            }
        ],
    }
    if bulk_export:
        statement["instantiates"] = [BULK_CAPABILITY]
    return statement


def smart_configuration(token_url: str, scopes: list[str]) -> dict[str, Any]:
    return {
        "token_endpoint": token_url,
        "grant_types_supported": ["client_credentials"],
        "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
        "scopes_supported": scopes,
        "capabilities": ["client-confidential-symmetric"],
    }
