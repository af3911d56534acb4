"""Search parameters: parsing, date precision and opaque page tokens.

Parsing is strict by default, as HAPI is: an unknown parameter is a 400, because silently
ignoring it would widen a search (and make a conditional create match everything).
`Prefer: handling=lenient` ignores unknown parameters instead, and the `self` link then shows
only the parameters that were used, as the spec asks.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from dataclasses import dataclass, field
from typing import Any

import orjson

from ._model import (
    DATE_PARAMS,
    ELEMENT_NAME_RE,
    ID_RE,
    IDENTIFIER_TYPES,
    REFERENCE_PARAMS,
    STRING_PARAMS,
    FhirError,
    date_bounds,
    normalise_string,
)

_PREFIXES = ("eq", "ne", "gt", "lt", "ge", "le", "sa", "eb", "ap")
_SORTS = {"_lastUpdated": "lu", "_id": "rid"}
_IGNORED = frozenset({"_format", "_pretty"})
_CONTROL = frozenset({"_count", "_sort", "_total", "_offset", "_summary", "_elements"})


@dataclass(frozen=True)
class DateCondition:
    """One date search value (`_lastUpdated`, `birthdate`): prefix plus the bounds [lo, hi) of
    its written precision, in microseconds since the epoch (the precision instants are stored
    with)."""

    prefix: str
    lo_us: int
    hi_us: int


@dataclass
class Query:
    rtype: str
    dates: list[list[DateCondition]] = field(default_factory=list)  # AND of ORs
    ids: list[list[str]] = field(default_factory=list)
    # (param, OR list of (system or None for any, value or None for any))
    tokens: list[tuple[str, list[tuple[str | None, str | None]]]] = field(default_factory=list)
    # (paths, target type required by the param, OR list of (type or None, id))
    refs: list[tuple[tuple[str, ...], str | None, list[tuple[str | None, str]]]] = field(
        default_factory=list
    )
    # (param, OR list of normalised prefixes): R4 string search, "equals or starts with"
    strings: list[tuple[str, list[str]]] = field(default_factory=list)
    # (param, OR list of conditions) on a date element, compared as ranges
    ranges: list[tuple[str, list[DateCondition]]] = field(default_factory=list)
    elements: tuple[str, ...] = ()  # `_elements`: only these (and mandatory ones) are returned
    sort: str = "rid"
    descending: bool = False
    count: int = 100
    offset: int = 0
    total: bool = False
    summary_count: bool = False  # `_summary=count`: the total, no entries
    used: list[tuple[str, str]] = field(default_factory=list)  # canonical, for links
    sorted_by: str | None = None  # the _sort value honoured, for links

    @property
    def has_criteria(self) -> bool:
        return bool(
            self.dates or self.ids or self.tokens or self.refs or self.strings or self.ranges
        )


def parse_date_condition(raw: str) -> DateCondition:
    prefix = "eq"
    if raw[:2] in _PREFIXES and raw[2:3].isdigit():
        prefix, raw = raw[:2], raw[2:]
    if prefix in ("sa", "eb", "ap"):
        raise FhirError(400, "not-supported", f"date prefix {prefix!r} is not supported")
    lo, hi = date_bounds(raw)
    return DateCondition(prefix, lo, hi)


def since_us(raw: str) -> int:
    """`_since` is an instant: versions at or after its lower bound (microseconds)."""
    return date_bounds(raw)[0]


def _token(raw: str) -> tuple[str | None, str | None]:
    if "|" not in raw:
        return None, raw
    system, value = raw.split("|", 1)
    return system, (value or None)


def _reference(raw: str, target: str | None) -> tuple[str | None, str]:
    if raw.startswith(("http://", "https://")):
        raw = "/".join(raw.rstrip("/").split("/")[-2:])
    parts = raw.split("/")
    if len(parts) == 2 and parts[0][:1].isupper() and ID_RE.match(parts[1]):
        rtype, rid = parts
        if target and rtype != target:
            raise FhirError(400, "invalid", f"this parameter only references {target}")
        return rtype, rid
    if len(parts) == 1 and ID_RE.match(raw):
        return target, raw
    raise FhirError(400, "invalid", "reference parameter must be Type/id or id")


def _split(value: str) -> list[str]:
    """OR values of one parameter (commas; `\\,` is a literal comma)."""
    parts = re.split(r"(?<!\\),", value)
    return [p.replace("\\,", ",") for p in parts if p != ""]


def parse_search(
    rtype: str,
    params: list[tuple[str, str]],
    *,
    default_count: int,
    max_count: int,
    lenient: bool = False,
    allow_control: bool = True,
) -> Query:
    """Parse `(name, value)` pairs for a search of `rtype` (also used for If-None-Exist)."""
    q = Query(rtype, count=default_count)
    ref_params = REFERENCE_PARAMS.get(rtype, {})
    for name, value in params:
        base, _, modifier = name.partition(":")
        if base in _IGNORED:
            continue
        if modifier and not lenient:
            raise FhirError(400, "not-supported", f"modifier :{modifier} is not supported")
        if modifier:
            continue
        if base in _CONTROL and not allow_control:
            raise FhirError(400, "invalid", f"{base} is not allowed here")
        values = _split(value)
        if not values and base not in _CONTROL:
            raise FhirError(400, "invalid", f"parameter {base} has no value")
        if base == "_lastUpdated":
            q.dates.append([parse_date_condition(v) for v in values])
        elif base == "_id":
            if not all(ID_RE.match(v) for v in values):
                raise FhirError(400, "invalid", "_id must be FHIR ids")
            q.ids.append(values)
        elif base == "_tag" or (base == "identifier" and rtype in IDENTIFIER_TYPES):
            q.tokens.append((base, [_token(v) for v in values]))
        elif base in ref_params:
            paths, target = ref_params[base]
            q.refs.append((paths, target, [_reference(v, target) for v in values]))
        elif base in STRING_PARAMS.get(rtype, {}):
            prefixes = [normalise_string(v) for v in values]
            if not all(prefixes):
                raise FhirError(400, "invalid", f"parameter {base} has an empty value")
            q.strings.append((base, prefixes))
        elif base in DATE_PARAMS.get(rtype, {}):
            q.ranges.append((base, [parse_date_condition(v) for v in values]))
        elif base == "_elements":
            names = tuple(n.strip() for n in value.split(","))
            if not all(ELEMENT_NAME_RE.match(n) for n in names):
                raise FhirError(400, "invalid", "_elements lists element names, comma-separated")
            q.elements = names
        elif base == "_count":
            try:
                count = int(value)
            except ValueError:
                raise FhirError(400, "invalid", "_count must be an integer") from None
            if count < 0:
                raise FhirError(400, "invalid", "_count must not be negative")
            q.count = min(count, max_count)
            continue
        elif base == "_offset":
            try:
                q.offset = max(0, int(value))
            except ValueError:
                raise FhirError(400, "invalid", "_offset must be an integer") from None
            continue
        elif base == "_summary":
            # `count` (total only, no entries) is what clients use for progress and checks;
            # the element-subsetting summaries are not offered.
            if value not in ("count", "false"):
                if lenient:
                    continue
                raise FhirError(400, "not-supported", "_summary supports count and false")
            q.summary_count = value == "count"
        elif base == "_total":
            if value not in ("none", "estimate", "accurate"):
                raise FhirError(400, "invalid", "_total must be none, estimate or accurate")
            q.total = value != "none"
        elif base == "_sort":
            keys = value.split(",")
            first = keys[0]
            desc = first.startswith("-")
            column = _SORTS.get(first.lstrip("-"))
            tie_ok = all(k == ("-_id" if desc else "_id") for k in keys[1:])
            if column is None or not tie_ok:
                if lenient:
                    continue
                raise FhirError(
                    400,
                    "not-supported",
                    "_sort supports _lastUpdated and _id (optionally descending)",
                )
            q.sort, q.descending, q.sorted_by = column, desc, value
        else:
            if lenient:
                continue
            raise FhirError(400, "not-supported", f"unknown search parameter {base!r} for {rtype}")
        q.used.append((base, value))
    if q.summary_count:
        q.total, q.count = True, 0
    return q


class PageTokens:
    """Opaque, tamper-evident `_getpages` tokens holding the query and a keyset cursor.

    Stateless (an HMAC with a key kept in the store), so they survive a restart; they expire
    after `ttl_s`, as HAPI's cached searches do, and then answer 410.
    """

    def __init__(self, key: bytes, ttl_s: float) -> None:
        self._key = key
        self.ttl_s = ttl_s

    def encode(self, payload: dict[str, Any]) -> str:
        body = orjson.dumps(payload)
        mac = hmac.new(self._key, body, hashlib.sha256).digest()[:12]
        return f"{_b64(body)}.{_b64(mac)}"

    def decode(self, token: str, now_ms: int) -> dict[str, Any]:
        try:
            body_b64, mac_b64 = token.split(".")
            body = _unb64(body_b64)
            good = hmac.compare_digest(
                hmac.new(self._key, body, hashlib.sha256).digest()[:12], _unb64(mac_b64)
            )
            payload = orjson.loads(body) if good else None
        except (ValueError, orjson.JSONDecodeError):
            payload = None
        if not isinstance(payload, dict):
            raise FhirError(400, "invalid", "unknown or damaged page token")
        if now_ms - int(payload.get("i", 0)) > self.ttl_s * 1000:
            raise FhirError(410, "expired", "this search has expired; start it again")
        return payload


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
