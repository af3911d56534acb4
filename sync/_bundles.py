"""Reading what the server sends: Bundles checked for shape before anything touches the cache.

Every check raises BadResponse with a message that names the request and what was wrong,
never a value from the body (a broken answer may still carry patient data).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sync._exceptions import BadResponse

ID_RE = re.compile(r"^[A-Za-z0-9\-.]{1,64}$")
_TYPE_RE = re.compile(r"^[A-Z][A-Za-z]{0,63}$")
_INSTANT_RE = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?(Z|[+-]\d{2}:\d{2})$")


def instant_key(value: str) -> datetime:
    """A FHIR instant as an aware datetime for ordering (ValueError if it is not one).

    Instants of mixed precision and offsets compare correctly this way; comparing the strings
    would not (`...:00Z` vs `...:00.5Z`).
    """
    if not _INSTANT_RE.match(value):
        raise ValueError("not a FHIR instant")
    return datetime.fromisoformat(value)


def format_instant(moment: datetime) -> str:
    """An aware datetime as a FHIR instant in UTC, millisecond precision, `Z`."""
    utc = moment.astimezone(UTC)
    return f"{utc:%Y-%m-%dT%H:%M:%S}.{utc.microsecond // 1000:03d}Z"


def safe_type(value: Any) -> str:
    """A resourceType fit for an error message (it is the server's text, so check it)."""
    return value if isinstance(value, str) and _TYPE_RE.match(value) else "something else"


@dataclass(slots=True)
class Page:
    """One validated searchset page."""

    resources: list[dict[str, Any]]
    next_link: str | None
    total: int | None
    # Newest lastUpdated on the page (string as sent, and its key), and whether the page
    # itself is in ascending lastUpdated order.
    max_updated: str | None = None
    max_key: datetime | None = None
    min_key: datetime | None = None
    ascending: bool = True


def _bundle(body: Any, kind: str, label: str) -> dict[str, Any]:
    if not isinstance(body, dict) or body.get("resourceType") != "Bundle":
        found = safe_type(body.get("resourceType")) if isinstance(body, dict) else "not an object"
        raise BadResponse(f"{label}: expected a Bundle, got {found}")
    if body.get("type") != kind:
        raise BadResponse(f"{label}: expected a {kind} Bundle")
    entries = body.get("entry", [])
    if not isinstance(entries, list):
        raise BadResponse(f"{label}: Bundle.entry is not a list")
    bundle_id = body.get("id")
    if bundle_id is not None and not (isinstance(bundle_id, str) and ID_RE.match(bundle_id)):
        raise BadResponse(f"{label}: the Bundle has a malformed id")
    return body


def next_link(body: dict[str, Any], label: str) -> str | None:
    links = body.get("link", [])
    if not isinstance(links, list):
        raise BadResponse(f"{label}: Bundle.link is not a list")
    for link in links:
        if isinstance(link, dict) and link.get("relation") == "next":
            url = link.get("url")
            if not isinstance(url, str) or not url:
                raise BadResponse(f"{label}: the next link has no URL")
            return url
    return None


def check_resource(res: Any, rtype: str, label: str, *, versioned: bool = True) -> dict[str, Any]:
    """Right type, a valid id, and (when `versioned`) meta.versionId and meta.lastUpdated;
    returns the resource, typed, for the caller to read."""
    if not isinstance(res, dict):
        raise BadResponse(f"{label}: an entry has no resource")
    found = res.get("resourceType")
    if found != rtype:
        raise BadResponse(f"{label}: an entry holds {safe_type(found)} where {rtype} was expected")
    rid = res.get("id")
    if not isinstance(rid, str) or not ID_RE.match(rid):
        raise BadResponse(f"{label}: a {rtype} has no valid id")
    if not versioned:
        return res
    meta = res.get("meta")
    if not isinstance(meta, dict):
        raise BadResponse(f"{label}: a {rtype} has no meta")
    version = meta.get("versionId")
    if not isinstance(version, str) or not version:
        raise BadResponse(f"{label}: a {rtype} has no meta.versionId")
    updated = meta.get("lastUpdated")
    if not isinstance(updated, str):
        raise BadResponse(f"{label}: a {rtype} has no meta.lastUpdated")
    return res


def read_searchset(body: Any, rtype: str, label: str, *, versioned: bool = True) -> Page:
    """Validate a whole searchset page before any of it is used.

    Entries in `include` or `outcome` mode are left out (we ask for neither; a server may add
    an OperationOutcome with warnings).
    """
    bundle = _bundle(body, "searchset", label)
    resources: list[dict[str, Any]] = []
    max_updated: str | None = None
    max_key: datetime | None = None
    min_key: datetime | None = None
    prev: datetime | None = None
    ascending = True
    for entry in bundle.get("entry", []):
        if not isinstance(entry, dict):
            raise BadResponse(f"{label}: an entry is not an object")
        search = entry.get("search")
        if isinstance(search, dict) and search.get("mode") in ("include", "outcome"):
            continue
        res = entry.get("resource")
        res = check_resource(res, rtype, label, versioned=versioned)
        if versioned:
            updated = res["meta"]["lastUpdated"]
            try:
                key = instant_key(updated)
            except ValueError:
                raise BadResponse(f"{label}: a {rtype} has a malformed meta.lastUpdated") from None
            if prev is not None and key < prev:
                ascending = False
            prev = key
            if max_key is None or key > max_key:
                max_key, max_updated = key, updated
            if min_key is None or key < min_key:
                min_key = key
        resources.append(res)
    total = bundle.get("total")
    return Page(
        resources=resources,
        next_link=next_link(bundle, label),
        total=total if isinstance(total, int) and not isinstance(total, bool) else None,
        max_updated=max_updated,
        max_key=max_key,
        min_key=min_key,
        ascending=ascending,
    )


@dataclass(frozen=True, slots=True)
class HistoryEntry:
    id: str
    deleted: bool
    when: datetime | None
    position: int


def read_history(
    body: Any, rtype: str, label: str, offset: int
) -> tuple[list[HistoryEntry], str | None]:
    """A history page: (id, deleted?, when) per entry, and the next link.

    A deletion is an entry with `request.method = DELETE` and no resource (R4 http.html#history);
    its id comes from `request.url` (`Type/id`). `position` keeps the server's order, newest
    first, for entries without a timestamp.
    """
    bundle = _bundle(body, "history", label)
    out: list[HistoryEntry] = []
    for index, entry in enumerate(bundle.get("entry", [])):
        if not isinstance(entry, dict):
            raise BadResponse(f"{label}: an entry is not an object")
        raw_request, raw_response = entry.get("request"), entry.get("response")
        request = raw_request if isinstance(raw_request, dict) else {}
        response = raw_response if isinstance(raw_response, dict) else {}
        method = request.get("method")
        res = entry.get("resource")
        when_text: Any = None
        if method == "DELETE" or (res is None and method is None):
            url = request.get("url") or entry.get("fullUrl") or ""
            rid = _id_from_url(url, rtype)
            if rid is None:
                raise BadResponse(f"{label}: a deletion names no {rtype} id")
            deleted = True
            when_text = response.get("lastModified")
        else:
            res = check_resource(res, rtype, label)
            rid = res["id"]
            deleted = False
            when_text = res["meta"]["lastUpdated"]
        when: datetime | None = None
        if isinstance(when_text, str):
            try:
                when = instant_key(when_text)
            except ValueError:
                when = None
        out.append(HistoryEntry(rid, deleted, when, offset + index))
    return out, next_link(bundle, label)


def _id_from_url(url: Any, rtype: str) -> str | None:
    if not isinstance(url, str):
        return None
    parts = url.split("?", 1)[0].rstrip("/").split("/")
    if "_history" in parts:
        parts = parts[: parts.index("_history")]
    if len(parts) >= 2 and parts[-2] == rtype and ID_RE.match(parts[-1]):
        return parts[-1]
    return None


def latest_deletions(entries: list[HistoryEntry]) -> list[str]:
    """Ids whose newest history entry is a deletion (a later re-create wins over it).

    With timestamps on every entry of an id, the newest by time wins; otherwise the server's
    order (newest first, as R4 requires) decides.
    """
    by_id: dict[str, list[HistoryEntry]] = {}
    for entry in entries:
        by_id.setdefault(entry.id, []).append(entry)
    deleted: list[str] = []
    for rid, items in by_id.items():
        if all(e.when is not None for e in items):
            newest = max(items, key=lambda e: (e.when, -e.position))
        else:
            newest = min(items, key=lambda e: e.position)
        if newest.deleted:
            deleted.append(rid)
    return deleted


@dataclass(frozen=True, slots=True)
class TransactionResult:
    resources: list[dict[str, Any]]
    entries: int


def read_transaction_response(body: Any, sent_entries: int, label: str) -> TransactionResult:
    """A transaction-response with one 2xx entry per entry we sent.

    Returned resources (Prefer: return=representation) are kept only when they are complete
    enough to cache; a server may return none.
    """
    bundle = _bundle(body, "transaction-response", label)
    entries = bundle.get("entry", [])
    if len(entries) != sent_entries:
        raise BadResponse(
            f"{label}: the server answered {len(entries)} entries for {sent_entries} sent"
        )
    resources: list[dict[str, Any]] = []
    for entry in entries:
        if not isinstance(entry, dict):
            raise BadResponse(f"{label}: an entry is not an object")
        response = entry.get("response")
        status = response.get("status") if isinstance(response, dict) else None
        if not isinstance(status, str) or not status[:1] == "2":
            raise BadResponse(f"{label}: an entry of an accepted transaction has no 2xx status")
        res = entry.get("resource")
        if isinstance(res, dict):
            try:
                check_resource(res, safe_type(res.get("resourceType")), label)
                instant_key(res["meta"]["lastUpdated"])
            except (BadResponse, ValueError):
                continue
            resources.append(res)
    return TransactionResult(resources, len(entries))


@dataclass(frozen=True, slots=True)
class BatchEntry:
    """One entry of a batch-response: its HTTP status, and its resource or OperationOutcome
    (as sent: the caller checks them for what it asked)."""

    status: int
    resource: Any
    outcome: Any


def read_batch_response(body: Any, sent_entries: int, label: str) -> list[BatchEntry]:
    """A batch-response with one entry per entry sent, each with a `response.status`."""
    bundle = _bundle(body, "batch-response", label)
    entries = bundle.get("entry", [])
    if len(entries) != sent_entries:
        raise BadResponse(
            f"{label}: the server answered {len(entries)} entries for {sent_entries} sent"
        )
    out: list[BatchEntry] = []
    for entry in entries:
        if not isinstance(entry, dict):
            raise BadResponse(f"{label}: an entry is not an object")
        response = entry.get("response")
        status = response.get("status") if isinstance(response, dict) else None
        code = status.split(" ", 1)[0] if isinstance(status, str) else ""
        if not (len(code) == 3 and code.isdigit()):
            raise BadResponse(f"{label}: an entry has no HTTP status")
        outcome = response.get("outcome") if isinstance(response, dict) else None
        out.append(BatchEntry(int(code), entry.get("resource"), outcome))
    return out
