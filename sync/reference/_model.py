"""FHIR vocabulary of the reference server: types, signals, errors, instants, index extraction.

Nothing here touches HTTP or SQLite, so the store, the handlers and the tests share one
definition of what a resource's search keys are and how the server stamps a version.
"""

from __future__ import annotations

import re
import time
import unicodedata
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from email.utils import format_datetime
from typing import Any, Literal

import orjson

FHIR_JSON = "application/fhir+json"
FHIR_VERSION = "4.0.1"

KERBSIDE = "https://kerbside.example"
# Kerbside-specific signals carried in OperationOutcome.issue.details.coding (see __init__).
SIGNAL_SYSTEM = f"{KERBSIDE}/CodeSystem/server-signal"
DEVICE_REVOKED = "device-revoked"
# A Patient a tablet creates must carry this tag: officers may only add provisional people.
PROVISIONAL_TAG_SYSTEM = f"{KERBSIDE}/CodeSystem/patient-record-status"
PROVISIONAL_TAG_CODE = "provisional"
NHS_NUMBER_SYSTEM = "https://fhir.nhs.uk/Id/nhs-number"
DEVICE_POLICY_OPERATION = "device-policy"
DEVICE_POLICY_DEFINITION = f"{KERBSIDE}/OperationDefinition/device-policy"

# Types the tablet reads (the cohort) and the field-record types it creates. A real Trust's
# server has hundreds of types; these are the ones sync and the demo touch.
COHORT_TYPES: tuple[str, ...] = (
    "Organization",
    "Practitioner",
    "PractitionerRole",
    "Location",
    "Patient",
    "RelatedPerson",
    "CareTeam",
    "Flag",
    "CarePlan",
    "AllergyIntolerance",
    "MedicationStatement",
    "Condition",
    "Encounter",
    "Group",
    "Questionnaire",
)
FIELD_RECORD_TYPES: tuple[str, ...] = (
    "Encounter",
    "Observation",
    "QuestionnaireResponse",
    "Provenance",
    "AuditEvent",
    "Patient",
)
SUPPORTED_TYPES: tuple[str, ...] = tuple(sorted(set(COHORT_TYPES) | set(FIELD_RECORD_TYPES)))

# R4 types whose `identifier` search parameter exists (Provenance and AuditEvent have none:
# clients that need idempotent creates of those can use `_tag`, which every type has).
IDENTIFIER_TYPES = frozenset(SUPPORTED_TYPES) - {"Provenance", "AuditEvent"}

# Reference search parameters, per type: name -> (element paths, target type or None for any).
# `patient` only matches references to Patient, as in the R4 definitions
# (e.g. Encounter.patient = Encounter.subject.where(resolve() is Patient)).
_SUBJECT: dict[str, tuple[tuple[str, ...], str | None]] = {
    "patient": (("subject",), "Patient"),
    "subject": (("subject",), None),
}
REFERENCE_PARAMS: dict[str, dict[str, tuple[tuple[str, ...], str | None]]] = {
    "AllergyIntolerance": {"patient": (("patient",), "Patient")},
    "AuditEvent": {"patient": (("entity.what",), "Patient")},
    "CarePlan": _SUBJECT,
    "CareTeam": _SUBJECT,
    "Condition": _SUBJECT,
    "Encounter": _SUBJECT,
    "Flag": _SUBJECT,
    "MedicationStatement": _SUBJECT,
    "Observation": _SUBJECT,
    "QuestionnaireResponse": _SUBJECT,
    "Provenance": {"patient": (("target",), "Patient")},
    "RelatedPerson": {"patient": (("patient",), "Patient")},
}
# String and date search parameters (R4 search.html#string, #date): name -> element paths.
# Patient's are what a look-up by name and date of birth needs (issue 14).
STRING_PARAMS: dict[str, dict[str, tuple[str, ...]]] = {
    "Patient": {"family": ("name.family",), "given": ("name.given",)},
}
DATE_PARAMS: dict[str, dict[str, tuple[str, ...]]] = {"Patient": {"birthdate": ("birthDate",)}}
# `_elements` answers: marked so that nobody stores them as the whole resource (R4 search.html
# #elements: "Servers SHOULD mark the resources with the tag SUBSETTED").
SUBSETTED = {
    "system": "http://terminology.hl7.org/CodeSystem/v3-ObservationValue",
    "code": "SUBSETTED",
    "display": "subsetted",
}
ELEMENT_NAME_RE = re.compile(r"^[a-z][A-Za-z0-9]{0,63}$")

# Every indexed reference path per type (the store indexes paths, queries filter by target type).
REFERENCE_PATHS: dict[str, tuple[str, ...]] = {
    rtype: tuple(sorted({p for paths, _ in params.values() for p in paths}))
    for rtype, params in REFERENCE_PARAMS.items()
}

# Elements R4 makes mandatory (min 1) on the field-record types: missing -> 400 `required`.
REQUIRED_ELEMENTS: dict[str, tuple[str, ...]] = {
    "Encounter": ("status", "class"),
    "Observation": ("status", "code"),
    "QuestionnaireResponse": ("status",),
    "Provenance": ("target", "recorded", "agent"),
    "AuditEvent": ("type", "recorded", "agent", "source"),
    "Flag": ("status", "code", "subject"),
    "CarePlan": ("status", "intent", "subject"),
}

_DATE_RE = re.compile(
    r"^(\d{4})(?:-(\d{2})(?:-(\d{2})(?:T(\d{2}):(\d{2})(?::(\d{2})(?:\.(\d{1,9}))?)?"
    r"(Z|[+-]\d{2}:\d{2})?)?)?)?$"
)
ID_RE = re.compile(r"^[A-Za-z0-9\-.]{1,64}$")
_REF_RE = re.compile(
    r"^([A-Z][A-Za-z]+)/([A-Za-z0-9\-.]{1,64})(?:/_history/[A-Za-z0-9\-.]{1,64})?$"
)


@dataclass
class FhirError(Exception):
    """A request the server refuses; rendered as an OperationOutcome with `status`.

    `signal` adds a Kerbside server-signal coding (e.g. device-revoked) to issue.details.
    """

    status: int
    code: str
    diagnostics: str
    expression: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    signal: str | None = None

    def __post_init__(self) -> None:
        super().__init__(self.diagnostics)

    def outcome(self) -> dict[str, Any]:
        return operation_outcome(
            self.code, self.diagnostics, expression=self.expression, signal=self.signal
        )


def operation_outcome(
    code: str,
    diagnostics: str,
    *,
    severity: str = "error",
    expression: str | None = None,
    signal: str | None = None,
) -> dict[str, Any]:
    issue: dict[str, Any] = {"severity": severity, "code": code, "diagnostics": diagnostics}
    if signal:
        issue["details"] = {
            "coding": [{"system": SIGNAL_SYSTEM, "code": signal}],
            "text": diagnostics,
        }
    if expression:
        issue["expression"] = [expression]
    return {"resourceType": "OperationOutcome", "issue": [issue]}


def dumps(value: Any) -> bytes:
    return orjson.dumps(value)


Clock = Callable[[], int]
"""Now in µs since the epoch. The server reads time only through one (tests inject a manual one,
so stamps and `Date` move only when told; no test races the wall clock)."""


def wall_clock_us() -> int:
    return time.time_ns() // 1000


def instant(ms: int) -> str:
    """`meta.lastUpdated` form: UTC, millisecond precision, `Z` (2026-11-20T22:15:00.123Z)."""
    dt = datetime.fromtimestamp(ms // 1000, UTC)
    return f"{dt:%Y-%m-%dT%H:%M:%S}.{ms % 1000:03d}Z"


def instant_us(us: int) -> str:
    """`meta.lastUpdated` of a version: UTC, microsecond precision (...T22:15:00.123456Z).

    Microseconds let every write get its own instant (see `Store.next_instant`), as on real
    servers, instead of thousands of resources sharing a millisecond."""
    dt = datetime.fromtimestamp(us // 1_000_000, UTC)
    return f"{dt:%Y-%m-%dT%H:%M:%S}.{us % 1_000_000:06d}Z"


# How finely the server stamps `meta.lastUpdated`: "us" gives every write its own instant (as
# HAPI and the cloud servers do); "ms" and "s" stand in for coarser servers, where many
# resources share one timestamp and a write can land in an instant a client already read.
Precision = Literal["us", "ms", "s"]
PRECISION_US: dict[str, int] = {"us": 1, "ms": 1000, "s": 1_000_000}


def instant_at(us: int, precision: Precision) -> str:
    """`meta.lastUpdated` text of `us` (already truncated) written at `precision`:
    `...T22:15:00.123456Z`, `...T22:15:00.123Z` or `...T22:15:00Z`."""
    if precision == "us":
        return instant_us(us)
    dt = datetime.fromtimestamp(us // 1_000_000, UTC)
    if precision == "ms":
        return f"{dt:%Y-%m-%dT%H:%M:%S}.{us % 1_000_000 // 1000:03d}Z"
    return f"{dt:%Y-%m-%dT%H:%M:%S}Z"


def http_date(ms: int) -> str:
    return format_datetime(datetime.fromtimestamp(ms / 1000, UTC), usegmt=True)


def etag(vid: int) -> str:
    return f'W/"{vid}"'


def stamp(resource: dict[str, Any], rid: str, vid: int, lu: str) -> dict[str, Any]:
    """The stored form: server-owned meta fields replaced; resourceType, id, meta lead."""
    meta = resource.get("meta")
    meta = dict(meta) if meta else {}
    meta["versionId"] = str(vid)
    meta["lastUpdated"] = lu
    if resource.get("id") == rid and next(iter(resource)) == "resourceType":
        out = dict(resource)  # already in the usual order: keep it, replace meta in place
        out["meta"] = meta
        return out
    rest = {k: v for k, v in resource.items() if k not in ("resourceType", "id", "meta")}
    return {"resourceType": resource["resourceType"], "id": rid, "meta": meta, **rest}


def _values_at(resource: Any, path: str) -> Iterator[Any]:
    """Values at a dotted element path, flattening lists at every step (FHIRPath-like)."""
    current: list[Any] = [resource]
    for step in path.split("."):
        nxt: list[Any] = []
        for item in current:
            if isinstance(item, dict) and step in item:
                value = item[step]
                nxt.extend(value if isinstance(value, list) else [value])
        current = nxt
    yield from current


def parse_reference(ref: Any) -> tuple[str, str] | None:
    """(type, id) of a relative literal reference `Type/id[/_history/v]`, else None."""
    if not isinstance(ref, str):
        return None
    m = _REF_RE.match(ref)
    return (m.group(1), m.group(2)) if m else None


def _listed(value: Any) -> list[Any]:
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def index_tokens(rtype: str, resource: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(param, system, value) rows for `identifier` and `_tag`."""
    rows: list[tuple[str, str, str]] = []
    if rtype in IDENTIFIER_TYPES:
        for ident in _listed(resource.get("identifier")):
            if isinstance(ident, dict) and isinstance(ident.get("value"), str):
                rows.append(("identifier", str(ident.get("system") or ""), ident["value"]))
    meta = resource.get("meta")
    if isinstance(meta, dict):
        for tag in _listed(meta.get("tag")):
            if isinstance(tag, dict) and isinstance(tag.get("code"), str):
                rows.append(("_tag", str(tag.get("system") or ""), tag["code"]))
    return rows


def normalise_string(value: str) -> str:
    """A string as R4 string search compares it, "after both have been normalized by case and
    accent" (`bronte` finds Brontë); surrounding space goes, punctuation stays."""
    decomposed = unicodedata.normalize("NFKD", value)
    return "".join(c for c in decomposed if not unicodedata.combining(c)).casefold().strip()


def index_strings(rtype: str, resource: dict[str, Any]) -> list[tuple[str, str]]:
    """(param, normalised value) rows for the type's string search parameters."""
    rows: list[tuple[str, str]] = []
    for param, paths in STRING_PARAMS.get(rtype, {}).items():
        for path in paths:
            for value in _values_at(resource, path):
                if isinstance(value, str) and (key := normalise_string(value)):
                    if (param, key) not in rows:
                        rows.append((param, key))
    return rows


def index_dates(rtype: str, resource: dict[str, Any]) -> list[tuple[str, int, int]]:
    """(param, lo, hi) rows, the value's range at its written precision in µs (a birth date
    `1988-04-03` is that whole day), for the type's date search parameters. A malformed
    value is not indexed (it can match no date search), never an error on write."""
    rows: list[tuple[str, int, int]] = []
    for param, paths in DATE_PARAMS.get(rtype, {}).items():
        for path in paths:
            for value in _values_at(resource, path):
                if not isinstance(value, str):
                    continue
                try:
                    lo, hi = date_bounds(value)
                except FhirError:
                    continue
                rows.append((param, lo, hi))
    return rows


def subset(rtype: str, resource: dict[str, Any], elements: tuple[str, ...]) -> dict[str, Any]:
    """`resource` cut to `elements` (base element names; `deceased` keeps `deceasedBoolean`,
    `birthDate` keeps its `_birthDate` extensions) plus id, meta and the elements R4 makes
    mandatory, tagged SUBSETTED."""
    keep = {"resourceType", "id", "meta", *REQUIRED_ELEMENTS.get(rtype, ()), *elements}
    out: dict[str, Any] = {}
    for key, value in resource.items():
        name = key[1:] if key.startswith("_") else key
        if name in keep or any(
            name.startswith(e) and name[len(e) : len(e) + 1].isupper() for e in elements
        ):
            out[key] = value
    meta = dict(out.get("meta") or {})
    tags = [t for t in meta.get("tag") or () if t != SUBSETTED]
    meta["tag"] = [*tags, SUBSETTED]
    out["meta"] = meta
    return out


def index_references(rtype: str, resource: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(path, target type, target id) rows for the type's reference search parameters."""
    rows: list[tuple[str, str, str]] = []
    for path in REFERENCE_PATHS.get(rtype, ()):
        values = (
            _listed(resource.get(path)) if "." not in path else list(_values_at(resource, path))
        )
        for ref in values:
            parsed = parse_reference(ref.get("reference")) if isinstance(ref, dict) else None
            if parsed and (path, *parsed) not in rows:
                rows.append((path, parsed[0], parsed[1]))
    return rows


def patient_references(rtype: str, resource: dict[str, Any]) -> list[tuple[str, str]]:
    """(element path, Patient id) for every Patient reference a `patient`/`subject` param sees."""
    return [
        (path, tid) for path, ttype, tid in index_references(rtype, resource) if ttype == "Patient"
    ]


def rewrite_strings(value: Any, fn: Callable[[str], str]) -> Any:
    """Copy of a JSON value with every string passed through `fn` (urn:uuid rewriting)."""
    if isinstance(value, str):
        return fn(value)
    if isinstance(value, dict):
        return {k: rewrite_strings(v, fn) for k, v in value.items()}
    if isinstance(value, list):
        return [rewrite_strings(v, fn) for v in value]
    return value


def find_strings(value: Any, predicate: Callable[[str], bool]) -> Iterator[str]:
    if isinstance(value, str):
        if predicate(value):
            yield value
    elif isinstance(value, dict):
        for v in value.values():
            yield from find_strings(v, predicate)
    elif isinstance(value, list):
        for v in value:
            yield from find_strings(v, predicate)


def has_provisional_tag(resource: dict[str, Any]) -> bool:
    return any(
        isinstance(t, dict)
        and t.get("system") == PROVISIONAL_TAG_SYSTEM
        and t.get("code") == PROVISIONAL_TAG_CODE
        for t in _values_at(resource, "meta.tag")
    )


def check_structure(rtype: str, resource: Any, where: str) -> dict[str, Any]:
    """Basic FHIR validation a real server does before any business rule (400 on failure)."""
    if not isinstance(resource, dict):
        raise FhirError(400, "invalid", "resource must be a JSON object", expression=where)
    found = resource.get("resourceType")
    if found != rtype:
        raise FhirError(
            400, "invalid", f"resourceType {found!r} does not match {rtype}", expression=where
        )
    rid = resource.get("id")
    if rid is not None and not (isinstance(rid, str) and ID_RE.match(rid)):
        raise FhirError(400, "invalid", "id is not a valid FHIR id", expression=f"{where}.id")
    meta = resource.get("meta")
    if meta is not None and not isinstance(meta, dict):
        raise FhirError(400, "invalid", "meta must be an object", expression=f"{where}.meta")
    for name in REQUIRED_ELEMENTS.get(rtype, ()):
        if resource.get(name) in (None, "", [], {}):
            raise FhirError(
                400, "required", f"{rtype}.{name} is required", expression=f"{where}.{name}"
            )
    return resource


def date_bounds(value: str) -> tuple[int, int]:
    """[lo, hi) of a FHIR date/dateTime/instant at its written precision, in microseconds UTC.

    A value without a zone is taken as UTC (the server's zone), as R4 allows.
    """
    m = _DATE_RE.match(value)
    if not m:
        raise FhirError(
            400,
            "invalid",
            "not a FHIR date, dateTime or instant (a '+' in a URL must be sent as %2B)",
        )
    year, month, day, hour, minute, second, frac, tz = m.groups()
    tzinfo: timezone = UTC
    if tz and tz != "Z":
        sign = 1 if tz[0] == "+" else -1
        tzinfo = timezone(sign * timedelta(hours=int(tz[1:3]), minutes=int(tz[4:6])))
    try:
        lo = datetime(
            int(year),
            int(month or 1),
            int(day or 1),
            int(hour or 0),
            int(minute or 0),
            int(second or 0),
            tzinfo=tzinfo,
        )
        if frac:
            digits = frac[:6]
            lo += timedelta(microseconds=int(digits.ljust(6, "0")))
            hi = lo + timedelta(microseconds=10 ** (6 - len(digits)))
        elif second:
            hi = lo + timedelta(seconds=1)
        elif minute:
            hi = lo + timedelta(minutes=1)
        elif day:
            hi = lo + timedelta(days=1)
        elif month:
            hi = lo.replace(year=lo.year + (lo.month == 12), month=lo.month % 12 + 1)
        else:
            hi = lo.replace(year=lo.year + 1)
    except ValueError as exc:
        raise FhirError(400, "invalid", f"date out of range: {exc}") from None
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    return (lo - epoch) // timedelta(microseconds=1), (hi - epoch) // timedelta(microseconds=1)
