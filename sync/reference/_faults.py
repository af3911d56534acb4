"""Fault injection: what a flaky network, proxy or overloaded server does to a client.

A `FaultRule` matches requests by path prefix (and optionally method and a query substring)
and fires `count` times (or forever), each matching request with probability `rate` drawn
from the rule's own seeded RNG, after letting the first `skip` matches through. Rules are
checked in the order added; all matching `latency` rules apply, then the first other rule.
`/admin` is never faulted, so a test can always switch faults off again.

Kinds (what the client sees; "processed" means the request reached the FHIR handlers, so a
write was committed):

    status          `status` (default 503) + Retry-After `retry_after_s` + OperationOutcome;
                    not processed. Shorthands: `unavailable` (503), `throttle` (429).
    html            a proxy's 502 text/html page; not processed.
    reset           TCP reset before any response; not processed.
    latency         waits `delay_s` before handling.
    drop            processed; headers + `after_bytes` of the body, then the connection closes
                    (IncompleteRead / ChunkedEncodingError). `after_bytes` None: nothing is sent.
    apply-then-drop processed (the write commits); the connection closes with no answer.
    truncate        processed; a complete HTTP response whose body is cut to `after_bytes` or
                    `fraction` of it (Content-Length matches): the JSON does not parse.
    trickle         processed; the body arrives `chunk_bytes` every `interval_s`.
    invalid-json    processed; 200 with a body that is not JSON.
    wrong-type      processed; the body's resourceType replaced by `resource_type`.
    missing-ids     processed; `id` removed from the resource or from every Bundle entry.
    huge            processed; a valid JSON Bundle of `size_bytes` (default 32 MiB).
    late-commit     processed with lastUpdated set `backdate_ms` in the past, as when a slow
                    transaction on a real server commits after later ones are visible.

Dropping a connection needs its transport, which ASGI does not expose: `TrackingH11Protocol`
(uvicorn's h11 protocol, plus a registry of live transports) provides it. Run the app with
`_server.py`'s runners to have it.
"""

from __future__ import annotations

import asyncio
import logging
import random
import socket
import struct
import threading
from dataclasses import dataclass, field, fields
from typing import Any

import orjson
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from uvicorn.protocols.http.h11_impl import H11Protocol

from ._model import FHIR_JSON, dumps, operation_outcome

log = logging.getLogger(__name__)

FAULT_KINDS = (
    "status",
    "unavailable",
    "throttle",
    "html",
    "reset",
    "latency",
    "drop",
    "apply-then-drop",
    "truncate",
    "trickle",
    "invalid-json",
    "wrong-type",
    "missing-ids",
    "huge",
    "late-commit",
)
_NOT_PROCESSED = frozenset({"status", "unavailable", "throttle", "html", "reset"})
_STATE_FIELDS = ("id", "hits", "matched")


@dataclass
class FaultRule:
    kind: str
    path: str = "/"
    method: str | None = None
    query: str | None = None
    count: int | None = None
    rate: float = 1.0
    skip: int = 0
    seed: int | None = None
    status: int = 503
    retry_after_s: float | None = None
    after_bytes: int | None = None
    fraction: float = 0.5
    delay_s: float = 1.0
    chunk_bytes: int = 64
    interval_s: float = 0.05
    size_bytes: int = 32 * 1024 * 1024
    resource_type: str = "Basic"
    backdate_ms: int = 5000
    # state, reported back
    id: int = 0
    hits: int = 0
    matched: int = 0
    _rng: random.Random = field(default_factory=random.Random, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {self.kind!r}; known: {', '.join(FAULT_KINDS)}")
        if self.kind == "unavailable":
            self.kind, self.status = "status", 503
            self.retry_after_s = 1 if self.retry_after_s is None else self.retry_after_s
        elif self.kind == "throttle":
            self.kind, self.status = "status", 429
            self.retry_after_s = 1 if self.retry_after_s is None else self.retry_after_s
        if not 0.0 <= self.rate <= 1.0:
            raise ValueError("rate must be between 0 and 1")
        if self.count is not None and self.count < 0:
            raise ValueError("count must not be negative")
        if not self.path.startswith("/"):
            raise ValueError("path is a prefix of the request path, starting with '/'")
        if self.method:
            self.method = self.method.upper()

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> FaultRule:
        allowed = {f.name for f in fields(cls)} - set(_STATE_FIELDS) - {"_rng"}
        unknown = set(data) - allowed
        if unknown:
            raise ValueError(f"unknown fault fields: {', '.join(sorted(unknown))}")
        return cls(**data)

    def to_json(self) -> dict[str, Any]:
        data = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "_rng"}
        data["remaining"] = None if self.count is None else max(0, self.count - self.hits)
        return data

    def _matches(self, method: str, path: str, query: str) -> bool:
        return (
            path.startswith(self.path)
            and (self.method is None or self.method == method)
            and (self.query is None or self.query in query)
        )

    def _fires(self) -> bool:
        if self.count is not None and self.hits >= self.count:
            return False
        self.matched += 1
        if self.matched <= self.skip:
            return False
        if self.rate < 1.0 and self._rng.random() >= self.rate:
            return False
        self.hits += 1
        return True


def fault_params(items: list[str]) -> dict[str, Any]:
    """`key=value` words (the CLIs) as `FaultRule` fields, each value coerced to its field's
    type: `after_bytes=100`, `rate=0.2`, `path=/fhir/Patient`, `count=none`."""
    types = {
        f.name: str(f.type)
        for f in fields(FaultRule)
        if f.name not in _STATE_FIELDS and f.name != "_rng"
    }
    out: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        key = key.strip().replace("-", "_")
        if not sep or key not in types:
            raise ValueError(f"expected key=value with key one of {', '.join(sorted(types))}")
        kind = types[key]
        value: Any = raw
        if "None" in kind and raw.lower() in ("", "none", "null"):
            value = None
        elif kind.startswith("int"):
            value = int(raw)
        elif kind.startswith("float"):
            value = float(raw)
        out[key] = value
    return out


def parse_fault_spec(spec: str) -> dict[str, Any]:
    """`kind[,key=value...]` (e.g. `drop,path=/fhir/Patient,after_bytes=100`) as JSON fields."""
    kind, *items = [part.strip() for part in spec.split(",")]
    if kind not in FAULT_KINDS:
        raise ValueError(f"unknown fault kind {kind!r}; known: {', '.join(FAULT_KINDS)}")
    return {"kind": kind, **fault_params([i for i in items if i])}


class FaultInjector:
    """Thread-safe rule list shared by the middleware (event loop) and tests (their thread)."""

    def __init__(self, seed: int = 0) -> None:
        self.seed = seed
        self._rules: list[FaultRule] = []
        self._next_id = 1
        self._lock = threading.Lock()

    def add(self, rule: FaultRule | str, **params: Any) -> FaultRule:
        """Add a rule (or build one: `add("drop", path="/fhir/Patient", after_bytes=100)`)."""
        if isinstance(rule, str):
            rule = FaultRule(rule, **params)
        with self._lock:
            rule.id = self._next_id
            self._next_id += 1
            # Each rule has its own RNG so adding a rule never shifts another's sequence.
            rule._rng = random.Random(
                rule.seed if rule.seed is not None else self.seed * 1_000_003 + rule.id
            )
            self._rules.append(rule)
        log.info("fault rule %d added: %s", rule.id, rule.kind)
        return rule

    def remove(self, rule_id: int) -> bool:
        with self._lock:
            before = len(self._rules)
            self._rules = [r for r in self._rules if r.id != rule_id]
            return len(self._rules) != before

    def clear(self) -> None:
        with self._lock:
            self._rules.clear()

    def rules(self) -> list[dict[str, Any]]:
        with self._lock:
            return [r.to_json() for r in self._rules]

    def get(self, rule_id: int) -> dict[str, Any] | None:
        with self._lock:
            return next((r.to_json() for r in self._rules if r.id == rule_id), None)

    def pick(self, method: str, path: str, query: str) -> tuple[list[FaultRule], FaultRule | None]:
        delays: list[FaultRule] = []
        chosen: FaultRule | None = None
        with self._lock:
            for rule in self._rules:
                if not rule._matches(method, path, query):
                    continue
                if rule.kind == "latency":
                    if rule._fires():
                        delays.append(rule)
                elif chosen is None and rule._fires():
                    chosen = rule
        return delays, chosen


# -- transports --------------------------------------------------------------------------

_TRANSPORTS: dict[tuple[Any, Any], asyncio.Transport] = {}


def _addr(info: Any) -> tuple[str, int] | None:
    if isinstance(info, (list, tuple)) and len(info) >= 2:
        return (str(info[0]), int(info[1]))
    return None


class TrackingH11Protocol(H11Protocol):
    """uvicorn's h11 protocol that records each connection's transport for the fault layer."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:  # type: ignore[override]
        super().connection_made(transport)  # type: ignore[arg-type]
        key = (
            _addr(transport.get_extra_info("sockname")),
            _addr(transport.get_extra_info("peername")),
        )
        _TRANSPORTS[key] = transport  # type: ignore[assignment]
        self._kerbside_key = key

    def connection_lost(self, exc: Exception | None) -> None:
        _TRANSPORTS.pop(getattr(self, "_kerbside_key", None), None)  # type: ignore[arg-type]
        super().connection_lost(exc)


def _transport(scope: Scope) -> asyncio.Transport | None:
    key = (_addr(scope.get("server")), _addr(scope.get("client")))
    return _TRANSPORTS.get(key)


async def _kill(scope: Scope, *, reset: bool) -> None:
    """Close the connection now; with `reset`, send a TCP RST instead of a FIN."""
    transport = _transport(scope)
    if transport is None:  # not under our runner: the best we can do is an exception
        raise ConnectionAbortedError("fault injection needs TrackingH11Protocol")
    if reset:
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        transport.abort()
    else:
        transport.close()
    # Let uvicorn see connection_lost before we return, so it does not answer 500 itself.
    for _ in range(3):
        await asyncio.sleep(0)


class FaultMiddleware:
    def __init__(self, app: ASGIApp, injector: FaultInjector) -> None:
        self.app = app
        self.injector = injector

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"].startswith("/admin"):
            await self.app(scope, receive, send)
            return
        query = scope.get("query_string", b"").decode("latin-1")
        delays, rule = self.injector.pick(scope["method"], scope["path"], query)
        for delay in delays:
            await asyncio.sleep(delay.delay_s)
        if rule is None:
            await self.app(scope, receive, send)
            return
        log.info("fault %s (rule %d) on %s %s", rule.kind, rule.id, scope["method"], scope["path"])
        if rule.kind in _NOT_PROCESSED:
            await self._refuse(rule, scope, send)
            return
        if rule.kind == "late-commit":
            scope.setdefault("state", {})["kerbside.backdate_ms"] = rule.backdate_ms
            await self.app(scope, receive, send)
            return
        start, body = await _capture(self.app, scope, receive)
        await self._mangle(rule, scope, send, start, body)

    async def _refuse(self, rule: FaultRule, scope: Scope, send: Send) -> None:
        if rule.kind == "reset":
            await _kill(scope, reset=True)
            return
        if rule.kind == "html":
            body = (
                b"<html><head><title>502 Bad Gateway</title></head><body>"
                b"<center><h1>502 Bad Gateway</h1></center><hr><center>nginx</center>"
                b"</body></html>"
            )
            await _send(send, 502, [(b"content-type", b"text/html")], body)
            return
        code = {429: "throttled", 500: "exception", 501: "not-supported"}.get(
            rule.status, "transient"
        )
        headers = [(b"content-type", FHIR_JSON.encode())]
        if rule.retry_after_s is not None:
            headers.append((b"retry-after", str(max(0, round(rule.retry_after_s))).encode()))
        body = dumps(operation_outcome(code, f"injected fault: HTTP {rule.status}"))
        await _send(send, rule.status, headers, body)

    async def _mangle(
        self, rule: FaultRule, scope: Scope, send: Send, start: Message, body: bytes
    ) -> None:
        status, headers = start["status"], list(start.get("headers", []))
        kind = rule.kind
        if kind == "apply-then-drop" or (kind == "drop" and rule.after_bytes is None):
            await _kill(scope, reset=False)
        elif kind == "drop":
            await send({"type": "http.response.start", "status": status, "headers": headers})
            await send(
                {"type": "http.response.body", "body": body[: rule.after_bytes], "more_body": True}
            )
            await _kill(scope, reset=False)
        elif kind == "truncate":
            cut = (
                rule.after_bytes if rule.after_bytes is not None else int(len(body) * rule.fraction)
            )
            await _send(send, status, headers, body[: max(0, min(cut, len(body) - 1))])
        elif kind == "trickle":
            await send({"type": "http.response.start", "status": status, "headers": headers})
            step = max(1, rule.chunk_bytes)
            for i in range(0, len(body), step):
                await send(
                    {
                        "type": "http.response.body",
                        "body": body[i : i + step],
                        "more_body": i + step < len(body),
                    }
                )
                if i + step < len(body):
                    await asyncio.sleep(rule.interval_s)
            if not body:
                await send({"type": "http.response.body", "body": b""})
        elif kind == "invalid-json":
            await _send(
                send,
                200,
                headers,
                b'{"resourceType": "Bundle", "type": "searchset", "entry": [{"resou',
            )
        elif kind in ("wrong-type", "missing-ids"):
            await _send(send, status, headers, _rewrite(kind, body, rule.resource_type))
        elif kind == "huge":
            await _send_huge(send, headers, rule.size_bytes)
        else:  # pragma: no cover - every kind is handled above
            raise AssertionError(kind)


def _rewrite(kind: str, body: bytes, resource_type: str) -> bytes:
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        return body
    if not isinstance(data, dict):
        return body
    if kind == "wrong-type":
        data["resourceType"] = resource_type
    else:
        data.pop("id", None)
        for entry in data.get("entry") or []:
            if isinstance(entry, dict) and isinstance(entry.get("resource"), dict):
                entry["resource"].pop("id", None)
    return dumps(data)


async def _capture(app: ASGIApp, scope: Scope, receive: Receive) -> tuple[Message, bytes]:
    start: Message = {}
    chunks: list[bytes] = []

    async def capture(message: Message) -> None:
        nonlocal start
        if message["type"] == "http.response.start":
            start = message
        elif message["type"] == "http.response.body":
            chunks.append(message.get("body", b""))

    await app(scope, receive, capture)
    return start, b"".join(chunks)


def _with_length(headers: list[tuple[bytes, bytes]], length: int) -> list[tuple[bytes, bytes]]:
    out = [(k, v) for k, v in headers if k.lower() != b"content-length"]
    out.append((b"content-length", str(length).encode()))
    return out


async def _send(send: Send, status: int, headers: list[tuple[bytes, bytes]], body: bytes) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": _with_length(headers, len(body)),
        }
    )
    await send({"type": "http.response.body", "body": body})


async def _send_huge(send: Send, headers: list[tuple[bytes, bytes]], size: int) -> None:
    head, tail = b'{"resourceType":"Bundle","type":"searchset","id":"', b'"}'
    pad = max(0, size - len(head) - len(tail))
    headers = [(k, v) for k, v in headers if k.lower() != b"content-type"]
    headers.append((b"content-type", FHIR_JSON.encode()))
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": _with_length(headers, len(head) + pad + len(tail)),
        }
    )
    await send({"type": "http.response.body", "body": head, "more_body": True})
    block = b"x" * (1 << 20)
    while pad > 0:
        n = min(pad, len(block))
        await send({"type": "http.response.body", "body": block[:n], "more_body": True})
        pad -= n
    await send({"type": "http.response.body", "body": tail})
