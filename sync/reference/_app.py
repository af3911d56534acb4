"""The Starlette application: FHIR REST interactions, the token endpoint and /admin.

Handlers are `async` and call SQLite directly on the event loop: requests are served one at a
time (each in a few ms), which serialises writes and keeps `lastUpdated` monotonic without
locks. Only the fault layer's sleeps interleave.

Routes (base path `/fhir` by default):
    GET  /fhir/metadata                         CapabilityStatement (no token needed)
    GET  /fhir/.well-known/smart-configuration  SMART discovery (no token needed)
    POST /oauth/token                           client credentials
    GET  /fhir/$device-policy                   Kerbside-specific device policy (Parameters)
    POST /fhir                                  transaction Bundle, or batch of GET entries
    GET  /fhir?_getpages=<token>                next page of a search or history
    GET  /fhir/T?params, POST /fhir/T/_search   search (form body for POST)
    GET  /fhir/T/_history?_since=&_count=       type history (unless history is off)
    POST /fhir/T                                create (If-None-Exist honoured)
    GET|PUT|DELETE /fhir/T/id                   read / update (If-Match) / delete
    GET  /fhir/T/id/_history/vid                vread
    GET  /fhir/$export, /fhir/Group/id/$export  Bulk Data kick-off (see _export.py)
    GET|DELETE /fhir/_bulk/status/job           export status / cancel
    GET  /fhir/_bulk/files/job/name             export output (NDJSON, Range)
    /admin/...                                  see _admin.py
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qsl, quote, urlencode

import orjson
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from . import _admin
from ._access import READ, check_read, reads_of_resource, reads_of_search
from ._auth import ADMIN, TABLET, Principal, scopes_for
from ._capability import capability_statement, smart_configuration
from ._export import (
    FILES_PATH,
    NDJSON,
    STATUS_PATH,
    manifest,
    parse_kickoff,
    parse_range,
    read_file,
)
from ._faults import FaultMiddleware
from ._model import (
    DEVICE_POLICY_DEFINITION,
    FHIR_JSON,
    ID_RE,
    SUPPORTED_TYPES,
    FhirError,
    check_structure,
    dumps,
    etag,
    http_date,
    instant,
    operation_outcome,
    subset,
)
from ._search import Query, parse_search, since_us
from ._state import ReferenceState
from ._storage import Current
from ._writes import Entry, Outcome, apply, entries_from_bundle, parse_if_match

log = logging.getLogger("sync.reference")

_CONTENT_TYPE = f"{FHIR_JSON}; charset=utf-8"
_JSON_TYPES = ("application/fhir+json", "application/json", "application/json+fhir")
_STATUS_HOLD_STEPS = 25  # an export status request waits up to 0.25 s for the job to end
_STATUS_TEXT = {200: "200 OK", 201: "201 Created", 204: "204 No Content"}


def _status_line(status: int) -> str:
    """`404 Not Found`: a batch entry's response.status."""
    try:
        return f"{status} {HTTPStatus(status).phrase}"
    except ValueError:
        return str(status)


def create_app(state: ReferenceState) -> ASGIApp:
    """The ASGI app: journal/logging, then fault injection, then Starlette."""
    handlers = _Handlers(state)

    @asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        try:
            state.open()
        except BaseException as exc:
            state.startup_error = exc
            raise
        try:
            yield
        finally:
            state.close()

    b = state.config.base_path
    routes = [
        Route(f"{b}/metadata", handlers.metadata, methods=["GET"]),
        Route(f"{b}/.well-known/smart-configuration", handlers.smart, methods=["GET"]),
        Route("/oauth/token", handlers.token, methods=["POST"]),
        Route(f"{b}/$device-policy", handlers.device_policy, methods=["GET", "POST"]),
        Route(f"{b}/$export", handlers.export_kickoff, methods=["GET"]),
        Route(f"{b}/Group/{{gid}}/$export", handlers.export_kickoff, methods=["GET"]),
        Route(f"{b}/{STATUS_PATH}/{{job}}", handlers.export_status, methods=["GET", "DELETE"]),
        Route(f"{b}/{FILES_PATH}/{{job}}/{{name}}", handlers.export_file, methods=["GET"]),
        Route(b, handlers.system, methods=["GET", "POST"]),
        Route(f"{b}/", handlers.system, methods=["GET", "POST"]),
        Route(f"{b}/{{rtype}}/_history", handlers.type_history, methods=["GET"]),
        Route(f"{b}/{{rtype}}/_search", handlers.search_post, methods=["POST"]),
        Route(f"{b}/{{rtype}}/{{rid}}/_history/{{vid}}", handlers.vread, methods=["GET"]),
        Route(f"{b}/{{rtype}}", handlers.type_level, methods=["GET", "POST"]),
        Route(f"{b}/{{rtype}}/{{rid}}", handlers.instance, methods=["GET", "PUT", "DELETE"]),
        *_admin.routes(state),
    ]
    app = Starlette(
        routes=routes,
        lifespan=lifespan,
        exception_handlers={
            FhirError: _fhir_error,
            HTTPException: _http_error,
            Exception: _unexpected,
        },
    )
    app.router.redirect_slashes = False
    return _JournalMiddleware(FaultMiddleware(app, state.faults), state)


# -- responses ---------------------------------------------------------------------------


def fhir_response(
    body: bytes | dict[str, Any], status: int = 200, headers: dict[str, str] | None = None
) -> Response:
    content = body if isinstance(body, bytes) else dumps(body)
    return Response(content, status_code=status, headers=headers, media_type=_CONTENT_TYPE)


def _outcome_response(exc: FhirError) -> Response:
    return fhir_response(exc.outcome(), exc.status, exc.headers)


async def _fhir_error(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, FhirError)
    return _outcome_response(exc)


async def _http_error(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    code = {404: "not-found", 405: "not-supported"}.get(exc.status_code, "exception")
    text = {404: "no such endpoint", 405: "method not supported here"}.get(
        exc.status_code, "request failed"
    )
    return fhir_response(operation_outcome(code, text), exc.status_code, dict(exc.headers or {}))


async def _unexpected(request: Request, exc: Exception) -> Response:
    log.error("internal error %s on %s %s", type(exc).__name__, request.method, request.url.path)
    log.debug("traceback", exc_info=exc)
    return fhir_response(operation_outcome("exception", "internal server error"), 500)


class _JournalMiddleware:
    """Logs method, path (never the query), status and time; keeps a journal for tests; dates
    every answer by the server's clock."""

    def __init__(self, app: ASGIApp, state: ReferenceState) -> None:
        self.app = app
        self.state = state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 0

        async def watch(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                # `Date` from the server's clock, read per answer (uvicorn's is off: it is
                # the wall clock, cached for a second). Clients judge cursors by it.
                date = http_date(self.state.config.clock() // 1000).encode("latin-1")
                message = {**message, "headers": [*message.get("headers", ()), (b"date", date)]}
            await send(message)

        try:
            await self.app(scope, receive, watch)
        finally:
            elapsed_ms = (time.perf_counter() - started) * 1000
            log.debug("%s %s %s %.1f ms", scope["method"], scope["path"], status or "-", elapsed_ms)
            self.state.journal.append(
                {
                    "method": scope["method"],
                    "path": scope["path"],
                    "query": scope.get("query_string", b"").decode("latin-1"),
                    "status": status or None,
                    "ms": round(elapsed_ms, 2),
                }
            )


# -- handlers ----------------------------------------------------------------------------


def _prefer(request: Request) -> dict[str, str]:
    out = {}
    for part in request.headers.get("prefer", "").replace(";", ",").split(","):
        key, _, value = part.strip().partition("=")
        if key:
            out[key.lower()] = value.strip().strip('"')
    return out


def _json_body(raw: bytes, content_type: str) -> Any:
    media = content_type.split(";")[0].strip().lower()
    if media not in _JSON_TYPES:
        raise FhirError(415, "not-supported", "send application/fhir+json")
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise FhirError(400, "invalid", "the body is not valid JSON") from None


def _check_accept(request: Request) -> None:
    fmt = request.query_params.get("_format")
    if fmt and "json" not in fmt:
        raise FhirError(406, "not-supported", "only JSON is served")
    accept = request.headers.get("accept", "")
    if accept and "xml" in accept and not any(t in accept for t in ("json", "*/*")):
        raise FhirError(406, "not-supported", "only JSON is served")


class _Handlers:
    def __init__(self, state: ReferenceState) -> None:
        self.s = state

    def _now_ms(self) -> int:
        return self.s.config.clock() // 1000

    # urls
    def base(self, request: Request) -> str:
        host = request.headers.get("host") or "{}:{}".format(*request.scope["server"])
        return f"{request.url.scheme}://{host}{self.s.config.base_path}"

    def root(self, request: Request) -> str:
        return self.base(request)[: -len(self.s.config.base_path) or None]

    def principal(self, request: Request) -> Principal:
        return self.s.auth.authenticate(request.headers.get("authorization"))

    def rtype(self, request: Request) -> str:
        rtype = request.path_params["rtype"]
        if rtype not in SUPPORTED_TYPES:
            raise FhirError(404, "not-supported", "resource type not supported here")
        return rtype

    @staticmethod
    def require(principal: Principal, rtype: str, letter: str) -> None:
        if not principal.may(rtype, letter):
            raise FhirError(403, "forbidden", f"this client's scopes do not allow this on {rtype}")

    # discovery
    async def metadata(self, request: Request) -> Response:
        _check_accept(request)
        return fhir_response(
            capability_statement(
                self.base(request),
                f"{self.root(request)}/oauth/token",
                history=self.s.settings.history,
                bulk_export=self.s.settings.bulk_export,
                now=instant(self._now_ms()),
            )
        )

    async def smart(self, request: Request) -> Response:
        scopes = sorted(set(scopes_for(TABLET)) | set(scopes_for(ADMIN)))
        return Response(
            dumps(smart_configuration(f"{self.root(request)}/oauth/token", scopes)),
            media_type="application/json",
        )

    async def token(self, request: Request) -> Response:
        media = request.headers.get("content-type", "").split(";")[0].strip().lower()
        status, body = 400, {"error": "invalid_request"}
        headers: dict[str, str] = {}
        if media == "application/x-www-form-urlencoded":
            pairs = parse_qsl(
                (await request.body()).decode("utf-8", "replace"), keep_blank_values=True
            )
            form = dict(pairs)
            if len(form) == len(pairs):  # RFC 6749 3.2: no parameter twice
                status, body, headers = self.s.auth.issue(
                    form, request.headers.get("authorization"), self.s.settings.token_lifetime_s
                )
        headers = {**headers, "Cache-Control": "no-store", "Pragma": "no-cache"}
        return Response(
            dumps(body), status_code=status, headers=headers, media_type="application/json"
        )

    async def device_policy(self, request: Request) -> Response:
        principal = self.principal(request)
        policy = self.s.auth.policy(principal.client_id)
        params = [
            {"name": "device-status", "valueCode": "active"},
            *({"name": k, "valueInteger": v} for k, v in policy.items()),
            {"name": "checked", "valueInstant": instant(self._now_ms())},
        ]
        return fhir_response(
            {
                "resourceType": "Parameters",
                "meta": {"profile": [DEVICE_POLICY_DEFINITION]},
                "parameter": params,
            }
        )

    # Bulk Data export (IG v2; see _export.py)
    async def export_kickoff(self, request: Request) -> Response:
        if not self.s.settings.bulk_export:
            raise FhirError(404, "not-supported", "$export is not offered by this server")
        accept = request.headers.get("accept", "")
        if accept and not any(t in accept for t in ("application/fhir+json", "*/*")):
            raise FhirError(
                400, "not-supported", "$export kick-off takes Accept: application/fhir+json"
            )
        prefer = _prefer(request)
        if "respond-async" not in prefer:
            raise FhirError(400, "invalid", "$export needs Prefer: respond-async")
        principal = self.principal(request)
        group_id = request.path_params.get("gid")
        if group_id is not None:
            self.require(principal, "Group", "r")
        asked, since = parse_kickoff(
            request.query_params.multi_items(),
            lenient=prefer.get("handling") == "lenient",
            group=group_id is not None,
        )
        types = asked or tuple(t for t in SUPPORTED_TYPES if principal.may(t, "r"))
        for rtype in types:
            self.require(principal, rtype, "r")
        job = self.s.exports.start(
            client_id=principal.client_id,
            request_url=str(request.url),
            types=types,
            since=since,
            group_id=group_id,
            fault=self.s.settings.export_fault,
        )
        status_url = f"{self.base(request)}/{STATUS_PATH}/{job.id}"
        return Response(status_code=202, headers={"Content-Location": status_url})

    async def export_status(self, request: Request) -> Response:
        principal = self.principal(request)
        job_id = request.path_params["job"]
        if request.method == "DELETE":
            self.s.exports.cancel(job_id, principal.client_id)
            return Response(status_code=202)
        job = self.s.exports.get(job_id, principal.client_id)
        # A small job is usually done within moments: answer with its result instead of
        # sending the client away for Retry-After seconds (the wait yields to other requests).
        for _ in range(_STATUS_HOLD_STEPS):
            if job.finished.is_set():
                break
            await asyncio.sleep(0.01)
        if job.state == "in-progress":
            return Response(
                status_code=202,
                headers={
                    "X-Progress": f"{job.types_done} of {len(job.types)} types",
                    "Retry-After": str(self.s.settings.export_retry_after_s),
                },
            )
        if job.state == "failed":
            outcome = operation_outcome(
                "exception", job.failure or "the export failed", severity="fatal"
            )
            return fhir_response(outcome, 500)
        body = manifest(job, f"{self.base(request)}/{FILES_PATH}")
        return Response(dumps(body), media_type="application/json")

    async def export_file(self, request: Request) -> Response:
        principal = self.principal(request)
        path = self.s.exports.file_path(
            request.path_params["job"], principal.client_id, request.path_params["name"]
        )
        size = path.stat().st_size
        headers = {"Content-Type": NDJSON}
        offset = None
        if self.s.settings.export_ranges:
            headers["Accept-Ranges"] = "bytes"
            offset = parse_range(request.headers.get("range"), size)
        if offset is None:
            headers["Content-Length"] = str(size)
            return StreamingResponse(read_file(path, 0), headers=headers)
        headers["Content-Length"] = str(size - offset)
        headers["Content-Range"] = f"bytes {offset}-{size - 1}/{size}"
        return StreamingResponse(read_file(path, offset), status_code=206, headers=headers)

    # [base]
    async def system(self, request: Request) -> Response:
        if request.method == "POST":
            bundle = _json_body(await request.body(), request.headers.get("content-type", ""))
            if isinstance(bundle, dict) and bundle.get("type") == "batch":
                return self.batch(request, bundle)
            return self.transaction(request, bundle)
        _check_accept(request)
        token = request.query_params.get("_getpages")
        if token is None:
            raise FhirError(400, "not-supported", "system-level search is not supported")
        payload = self.s.tokens.decode(token, self._now_ms())
        principal = self.principal(request)
        rtype = str(payload.get("t"))
        if rtype not in SUPPORTED_TYPES:
            raise FhirError(400, "invalid", "damaged page token")
        self.require(principal, rtype, "s" if payload.get("k") == "s" else "r")
        self_url = f"{self.base(request)}?_getpages={token}"
        if payload.get("k") == "h":
            return self._history_page(
                request,
                rtype,
                payload["q"],
                count=int(payload["n"]),
                after=tuple(payload["a"]),
                offset=None,
                self_url=self_url,
            )
        q = self._parse(rtype, [tuple(p) for p in payload["q"]], lenient=False)
        q.count = int(payload["n"])
        return self._search_page(request, q, after=tuple(payload["a"]), self_url=self_url)

    # search
    def _parse(self, rtype: str, params: list[tuple[str, str]], *, lenient: bool) -> Query:
        return parse_search(
            rtype,
            params,
            default_count=self.s.config.default_count,
            max_count=self.s.config.max_count,
            lenient=lenient,
        )

    async def type_level(self, request: Request) -> Response:
        rtype = self.rtype(request)
        if request.method == "POST":
            return await self.create(request, rtype)
        return self._search(request, rtype, request.query_params.multi_items())

    async def search_post(self, request: Request) -> Response:
        rtype = self.rtype(request)
        media = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if media != "application/x-www-form-urlencoded":
            raise FhirError(415, "not-supported", "_search takes a form-encoded body")
        body = (await request.body()).decode("utf-8", "replace")
        params = [*request.query_params.multi_items(), *parse_qsl(body, keep_blank_values=True)]
        return self._search(request, rtype, params)

    def _search(self, request: Request, rtype: str, params: list[tuple[str, str]]) -> Response:
        _check_accept(request)
        principal = self.principal(request)
        self.require(principal, rtype, "s")
        lenient = _prefer(request).get("handling") == "lenient"
        q = self._parse(rtype, params, lenient=lenient)
        self._note_search(principal, q)
        offset_style = self.s.settings.paging == "offset" or any(k == "_offset" for k, _ in params)
        if offset_style:
            return self._search_page(request, q, after=None, offset=q.offset)
        return self._search_page(request, q, after=None)

    def _search_page(
        self,
        request: Request,
        q: Query,
        *,
        after: tuple[Any, ...] | None,
        offset: int | None = None,
        self_url: str | None = None,
    ) -> Response:
        """One searchset page; keyset (`after`) unless `offset` is given."""
        return fhir_response(
            self._searchset(self.base(request), q, after=after, offset=offset, self_url=self_url)
        )

    def _searchset(
        self,
        base: str,
        q: Query,
        *,
        after: tuple[Any, ...] | None,
        offset: int | None = None,
        self_url: str | None = None,
    ) -> bytes:
        """One searchset page as JSON bytes (an answer, or a batch entry's resource)."""
        store = self.s.store
        rows = (
            store.search(q, after=after, offset=offset or 0, limit=q.count + 1) if q.count else []
        )
        more = len(rows) > q.count
        rows = rows[: q.count]
        links = [("self", self_url or self._search_url(base, q, offset))]
        if more:
            if offset is not None:
                links.append(("next", self._search_url(base, q, offset + q.count)))
            else:
                last = rows[-1]
                links.append(
                    (
                        "next",
                        self._page_url(base, "s", q.rtype, q.used, q.count, [last[1], last[0]]),
                    )
                )
        head: dict[str, Any] = {
            "resourceType": "Bundle",
            "id": str(uuid.uuid4()),
            "meta": {"lastUpdated": instant(self._now_ms())},
            "type": "searchset",
        }
        if q.total:
            head["total"] = store.count(q)
        head["link"] = [{"relation": r, "url": u} for r, u in links]
        prefix = dumps(f"{base}/{q.rtype}/")[1:-1]
        if q.elements:
            rows = [
                (rid, lu, dumps(subset(q.rtype, orjson.loads(body), q.elements)))
                for rid, lu, body in rows
            ]
        entries = [
            b'{"fullUrl":"'
            + prefix
            + rid.encode()
            + b'","resource":'
            + body
            + b',"search":{"mode":"match"}}'
            for rid, _lu, body in rows
        ]
        return dumps(head)[:-1] + b',"entry":[' + b",".join(entries) + b"]}"

    def _search_url(self, base: str, q: Query, offset: int | None) -> str:
        pairs = [*q.used, ("_count", str(q.count))]
        if offset:
            pairs.append(("_offset", str(offset)))
        return f"{base}/{q.rtype}?{urlencode(pairs, quote_via=quote, safe=':|,')}"

    def _page_url(
        self,
        base: str,
        kind: str,
        rtype: str,
        used: list[tuple[str, str]],
        count: int,
        after: list[Any],
    ) -> str:
        token = self.s.tokens.encode(
            {"k": kind, "t": rtype, "q": used, "n": count, "a": after, "i": self._now_ms()}
        )
        return f"{base}?_getpages={token}"

    # history
    async def type_history(self, request: Request) -> Response:
        rtype = self.rtype(request)
        _check_accept(request)
        if not self.s.settings.history:
            raise FhirError(404, "not-supported", "this server keeps no history")
        self.require(self.principal(request), rtype, "r")
        lenient = _prefer(request).get("handling") == "lenient"
        used: list[tuple[str, str]] = []
        count, offset = self.s.config.default_count, None
        for name, value in request.query_params.multi_items():
            if name == "_since":
                since_us(value)  # validate now, 400 if bad
                used.append((name, value))
            elif name == "_count":
                try:
                    count = min(max(0, int(value)), self.s.config.max_count)
                except ValueError:
                    raise FhirError(400, "invalid", "_count must be an integer") from None
            elif name == "_offset":
                try:
                    offset = max(0, int(value))
                except ValueError:
                    raise FhirError(400, "invalid", "_offset must be an integer") from None
            elif name in ("_format", "_pretty"):
                continue
            elif not lenient:
                raise FhirError(400, "not-supported", f"history does not support {name!r}")
        if offset is None and self.s.settings.paging == "offset":
            offset = 0
        return self._history_page(request, rtype, used, count=count, after=None, offset=offset)

    def _history_page(
        self,
        request: Request,
        rtype: str,
        used: list[Any],
        *,
        count: int,
        after: tuple[Any, ...] | None,
        offset: int | None,
        self_url: str | None = None,
    ) -> Response:
        if not self.s.settings.history:
            raise FhirError(404, "not-supported", "this server keeps no history")
        base = self.base(request)
        since = next((since_us(v) for k, v in used if k == "_since"), None)
        newest_first = self.s.settings.history_order == "newest-first"
        rows = (
            self.s.store.history(
                rtype,
                since,
                newest_first=newest_first,
                after=(int(after[0]), int(after[1])) if after else None,
                offset=offset or 0,
                limit=count + 1,
            )
            if count
            else []
        )
        more = len(rows) > count
        rows = rows[:count]

        def offset_url(off: int | None) -> str:
            pairs = [*used, ("_count", str(count))] + ([("_offset", str(off))] if off else [])
            return f"{base}/{rtype}/_history?{urlencode(pairs, quote_via=quote, safe=':')}"

        links = [("self", self_url or offset_url(offset))]
        if more:
            if offset is not None:
                links.append(("next", offset_url(offset + count)))
            else:
                links.append(
                    (
                        "next",
                        self._page_url(base, "h", rtype, used, count, [rows[-1].lu, rows[-1].seq]),
                    )
                )
        head = {
            "resourceType": "Bundle",
            "id": str(uuid.uuid4()),
            "meta": {"lastUpdated": instant(self._now_ms())},
            "type": "history",
            "link": [{"relation": r, "url": u} for r, u in links],
        }
        entries = []
        stamped = self.s.store.instant_text
        for v in rows:
            full = dumps(f"{base}/{rtype}/{v.rid}")
            if v.body is None:
                entries.append(
                    b'{"fullUrl":'
                    + full
                    + b',"request":'
                    + dumps({"method": "DELETE", "url": f"{rtype}/{v.rid}"})
                    + b',"response":'
                    + dumps({"status": "204 No Content", "lastModified": stamped(v.lu)})
                    + b"}"
                )
                continue
            request_part = {
                "method": v.method,
                "url": rtype if v.method == "POST" else f"{rtype}/{v.rid}",
            }
            response_part = {
                "status": "201 Created" if v.vid == 1 else "200 OK",
                "etag": etag(v.vid),
                "lastModified": stamped(v.lu),
            }
            entries.append(
                b'{"fullUrl":'
                + full
                + b',"resource":'
                + v.body
                + b',"request":'
                + dumps(request_part)
                + b',"response":'
                + dumps(response_part)
                + b"}"
            )
        return fhir_response(dumps(head)[:-1] + b',"entry":[' + b",".join(entries) + b"]}")

    # read / vread
    def _rid(self, request: Request) -> str:
        rid = request.path_params["rid"]
        if not ID_RE.match(rid):
            raise FhirError(
                400 if not rid.startswith("_") else 404,
                "invalid" if not rid.startswith("_") else "not-supported",
                "not a valid id" if not rid.startswith("_") else "not supported",
            )
        return rid

    async def instance(self, request: Request) -> Response:
        rtype, rid = self.rtype(request), self._rid(request)
        if request.method == "PUT":
            return await self.update(request, rtype, rid)
        if request.method == "DELETE":
            return await self.delete(request, rtype, rid)
        _check_accept(request)
        principal = self.principal(request)
        self.require(principal, rtype, "r")
        current = self._current(rtype, rid)
        self._note_resource_read(principal, rtype, rid, current.body)
        headers = {"ETag": etag(current.vid), "Last-Modified": http_date(current.lu // 1000)}
        if request.headers.get("if-none-match") == headers["ETag"]:
            return Response(status_code=304, headers=headers)
        assert current.body is not None
        return fhir_response(current.body, headers=headers)

    # record reads against purposes of use (_access.py)
    def _note_resource_read(
        self, principal: Principal, rtype: str, rid: str, body: bytes | None
    ) -> None:
        if principal.role == ADMIN or body is None:
            return
        resource = orjson.loads(body) if rtype != "Patient" else {}
        patients = reads_of_resource(rtype, rid, resource)
        if patients:
            self._note_read(principal, READ, rtype, patients)

    def _note_search(self, principal: Principal, q: Query) -> None:
        if principal.role == ADMIN:
            return
        read = reads_of_search(q)
        if read is not None:
            self._note_read(principal, read[0], q.rtype, read[1])

    def _note_read(
        self, principal: Principal, kind: str, rtype: str, patients: tuple[str, ...]
    ) -> None:
        check_read(
            self.s.store,
            principal.client_id,
            kind,
            rtype,
            patients,
            self.s.config.clock(),
            self.s.settings.purpose_window_s,
        )

    def _current(self, rtype: str, rid: str) -> Current:
        """The live version of a resource, or 404 (410 where deletions are tracked)."""
        current = self.s.store.read(rtype, rid)
        if current is None or (current.deleted and not self.s.settings.history):
            raise FhirError(404, "not-found", f"no {rtype} with this id")
        if current.deleted:
            raise FhirError(410, "deleted", f"this {rtype} has been deleted")
        return current

    async def vread(self, request: Request) -> Response:
        rtype, rid = self.rtype(request), self._rid(request)
        _check_accept(request)
        principal = self.principal(request)
        self.require(principal, rtype, "r")
        try:
            vid = int(request.path_params["vid"])
        except ValueError:
            raise FhirError(404, "not-found", "no such version") from None
        version = self.s.store.vread(rtype, rid, vid)
        if version is None or (version.body is None and not self.s.settings.history):
            raise FhirError(404, "not-found", "no such version")
        if version.body is None:
            raise FhirError(410, "deleted", "this version is a deletion")
        self._note_resource_read(principal, rtype, rid, version.body)
        return fhir_response(
            version.body,
            headers={"ETag": etag(vid), "Last-Modified": http_date(version.lu // 1000)},
        )

    # writes
    def _backdate(self, request: Request) -> int:
        return int(request.scope.get("state", {}).get("kerbside.backdate_ms", 0))

    def _apply(self, request: Request, principal: Principal, entries: list[Entry]) -> list[Outcome]:
        return apply(
            self.s.store,
            principal,
            entries,
            backdate_ms=self._backdate(request),
            max_count=self.s.config.max_count,
        )

    def _write_response(self, request: Request, outcome: Outcome) -> Response:
        base = self.base(request)
        e = outcome.entry
        if outcome.status == 204:
            return Response(status_code=204)
        assert outcome.vid is not None and outcome.lu is not None
        headers = {
            "ETag": etag(outcome.vid),
            "Last-Modified": http_date(outcome.lu // 1000),
            "Location": f"{base}/{e.rtype}/{outcome.rid}/_history/{outcome.vid}",
        }
        mode = _prefer(request).get("return", "representation")
        if mode == "minimal" or outcome.body is None:
            return Response(status_code=outcome.status, headers=headers)
        if mode.lower() == "operationoutcome":
            return fhir_response(
                operation_outcome("informational", "ok", severity="information"),
                outcome.status,
                headers,
            )
        return fhir_response(outcome.body, outcome.status, headers)

    async def create(self, request: Request, rtype: str) -> Response:
        principal = self.principal(request)
        resource = _json_body(await request.body(), request.headers.get("content-type", ""))
        entry = Entry(
            None,
            "POST",
            rtype,
            resource=check_structure(rtype, resource, rtype),
            if_none_exist=request.headers.get("if-none-exist"),
        )
        return self._write_response(request, self._apply(request, principal, [entry])[0])

    async def update(self, request: Request, rtype: str, rid: str) -> Response:
        principal = self.principal(request)
        resource = _json_body(await request.body(), request.headers.get("content-type", ""))
        entry = Entry(
            None,
            "PUT",
            rtype,
            rid,
            resource=check_structure(rtype, resource, rtype),
            if_match=parse_if_match(request.headers.get("if-match")),
        )
        return self._write_response(request, self._apply(request, principal, [entry])[0])

    async def delete(self, request: Request, rtype: str, rid: str) -> Response:
        principal = self.principal(request)
        entry = Entry(None, "DELETE", rtype, rid)
        return self._write_response(request, self._apply(request, principal, [entry])[0])

    def transaction(self, request: Request, bundle: Any) -> Response:
        principal = self.principal(request)
        outcomes = self._apply(request, principal, entries_from_bundle(bundle, self.base(request)))
        representation = _prefer(request).get("return") == "representation"
        entries = []
        for o in outcomes:
            e = o.entry
            response: dict[str, Any] = {"status": _STATUS_TEXT[o.status]}
            if o.status != 204 or o.vid is not None:
                response["location"] = f"{e.rtype}/{o.rid}/_history/{o.vid}"
                response["etag"] = etag(o.vid or 0)
                response["lastModified"] = self.s.store.instant_text(o.lu or 0)
            item = b'{"fullUrl":' + dumps(f"{self.base(request)}/{e.rtype}/{o.rid}")
            if representation and o.body is not None:
                item += b',"resource":' + o.body
            entries.append(item + b',"response":' + dumps(response) + b"}")
        head = {"resourceType": "Bundle", "id": str(uuid.uuid4()), "type": "transaction-response"}
        return fhir_response(dumps(head)[:-1] + b',"entry":[' + b",".join(entries) + b"]}")

    # batch (R4 http.html#transaction: each entry on its own, one answer per entry)
    def batch(self, request: Request, bundle: dict[str, Any]) -> Response:
        """A batch of reads and searches (GET entries only): each entry succeeds or fails on
        its own, its failure an OperationOutcome in `response.outcome`. Authentication is
        for the whole request (a bad token is a 401, not seven)."""
        principal = self.principal(request)
        raw = bundle.get("entry") or []
        if not isinstance(raw, list):
            raise FhirError(400, "invalid", "Bundle.entry must be a list")
        base = self.base(request)
        entries = []
        for index, item in enumerate(raw):
            try:
                entries.append(self._batch_entry(principal, base, index, item))
            except FhirError as exc:
                response = {"status": _status_line(exc.status), "outcome": exc.outcome()}
                entries.append(dumps({"response": response}))
        head = {"resourceType": "Bundle", "id": str(uuid.uuid4()), "type": "batch-response"}
        return fhir_response(dumps(head)[:-1] + b',"entry":[' + b",".join(entries) + b"]}")

    def _batch_entry(self, principal: Principal, base: str, index: int, item: Any) -> bytes:
        where = f"Bundle.entry[{index}]"
        request = item.get("request") if isinstance(item, dict) else None
        if not isinstance(request, dict):
            raise FhirError(400, "invalid", "entry.request is required", expression=where)
        if str(request.get("method", "")).upper() != "GET":
            raise FhirError(
                405,
                "not-supported",
                "this server answers GET entries in a batch; write with a transaction",
                expression=f"{where}.request.method",
            )
        url = str(request.get("url") or "")
        if url.startswith(base + "/"):
            url = url[len(base) + 1 :]
        path, _, query = url.partition("?")
        parts = path.split("/")
        rtype = parts[0]
        if rtype not in SUPPORTED_TYPES or len(parts) > 2:
            raise FhirError(
                404, "not-supported", "unsupported request.url", expression=f"{where}.request.url"
            )
        if len(parts) == 2:
            rid = parts[1]
            if query or not ID_RE.match(rid):
                raise FhirError(
                    400, "invalid", "not a read of Type/id", expression=f"{where}.request.url"
                )
            self.require(principal, rtype, "r")
            current = self._current(rtype, rid)
            self._note_resource_read(principal, rtype, rid, current.body)
            response = {
                "status": "200 OK",
                "etag": etag(current.vid),
                "lastModified": self.s.store.instant_text(current.lu),
            }
            assert current.body is not None
            return (
                b'{"fullUrl":'
                + dumps(f"{base}/{rtype}/{rid}")
                + b',"resource":'
                + current.body
                + b',"response":'
                + dumps(response)
                + b"}"
            )
        self.require(principal, rtype, "s")
        q = self._parse(rtype, parse_qsl(query, keep_blank_values=True), lenient=False)
        self._note_search(principal, q)
        page = self._searchset(base, q, after=None)
        return b'{"resource":' + page + b',"response":{"status":"200 OK"}}'
