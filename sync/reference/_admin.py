"""Admin endpoints: the knobs tests and demos turn while the server runs.

All need a bearer token of an admin client (`--admin-client`); bodies and answers are plain
JSON (`application/json`), errors are OperationOutcomes like everywhere else. Never faulted.

    GET    /admin/clients                       list clients (never secrets)
    GET    /admin/clients/{id}                  one client
    PUT    /admin/clients/{id}                  create/update {secret?, role?, policy?}
    DELETE /admin/clients/{id}                  remove a client and its tokens (-> 204)
    POST   /admin/clients/{id}/revoke           revoke a device (its calls get device-revoked)
    POST   /admin/clients/{id}/reinstate        undo a revocation
    POST   /admin/tokens/expire                 expire all tokens, or {client_id} only
    GET    /admin/settings                      {paging, history, history_order, token_lifetime_s,
                                                 bulk_export, export_ranges, export_fault,
                                                 export_retry_after_s, purpose_window_s}
    PATCH  /admin/settings                      change any of those
    GET    /admin/faults                        fault rules with hits/remaining
    POST   /admin/faults                        add a rule (FaultRule fields as JSON) -> 201
    DELETE /admin/faults                        remove every rule
    GET    /admin/faults/{n}, DELETE /admin/faults/{n}
    GET    /admin/requests                      journal of recent requests (method, path,
                                                query, status, ms); DELETE clears it
    GET    /admin/stats                         live resource counts per type, audit chains
    GET    /admin/audit                         each device's audit chain: gaps, breaks, reports
    GET    /admin/access                        purposes of use recorded and record reads that
                                                arrived without one (_access.py)

Policy keys: cache-ttl-hours, purge-after-hours, idle-lock-minutes (non-negative integers).
"""

from __future__ import annotations

from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ._auth import ADMIN, DEFAULT_POLICY, TABLET
from ._export import EXPORT_FAULTS
from ._faults import FaultRule
from ._model import FhirError, dumps, instant
from ._state import ReferenceState
from ._storage import ClientRow

_ORDERS = ("newest-first", "oldest-first")


def _json(value: Any, status: int = 200) -> Response:
    return Response(dumps(value), status_code=status, media_type="application/json")


async def _body(request: Request) -> dict[str, Any]:
    raw = await request.body()
    if not raw:
        return {}
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise FhirError(400, "invalid", "the body is not JSON") from None
    if not isinstance(data, dict):
        raise FhirError(400, "invalid", "the body must be a JSON object")
    return data


def client_json(row: ClientRow) -> dict[str, Any]:
    return {
        "client_id": row.client_id,
        "role": row.role,
        "revoked": row.revoked_at is not None,
        "revoked_at": instant(row.revoked_at) if row.revoked_at is not None else None,
        "policy": {**DEFAULT_POLICY, **row.policy},
        "created_at": instant(row.created_at),
    }


class _Admin:
    def __init__(self, state: ReferenceState) -> None:
        self.s = state

    def check(self, request: Request) -> None:
        principal = self.s.auth.authenticate(request.headers.get("authorization"))
        if principal.role != ADMIN:
            raise FhirError(403, "forbidden", "admin clients only")

    async def clients(self, request: Request) -> Response:
        self.check(request)
        return _json([client_json(r) for r in self.s.store.clients()])

    async def client(self, request: Request) -> Response:
        self.check(request)
        client_id = request.path_params["client_id"]
        if request.method == "GET":
            row = self.s.store.client(client_id)
            if row is None:
                raise FhirError(404, "not-found", "no such client")
            return _json(client_json(row))
        if request.method == "DELETE":
            self.s.auth.remove(client_id)
            return Response(status_code=204)
        body = await _body(request)
        existed = self.s.store.client(client_id) is not None
        old = self.s.store.client(client_id)
        row = self.s.auth.register(
            client_id,
            body.get("secret"),
            body.get("role") or (old.role if old else TABLET),
            policy=body.get("policy"),
        )
        return _json(client_json(row), 200 if existed else 201)

    async def revoke(self, request: Request) -> Response:
        self.check(request)
        return _json(client_json(self.s.auth.set_revoked(request.path_params["client_id"], True)))

    async def reinstate(self, request: Request) -> Response:
        self.check(request)
        row = self.s.auth.set_revoked(request.path_params["client_id"], False)
        return _json(client_json(row))

    async def expire(self, request: Request) -> Response:
        self.check(request)
        body = await _body(request)
        return _json({"expired": self.s.auth.expire_tokens(body.get("client_id"))})

    async def settings(self, request: Request) -> Response:
        self.check(request)
        if request.method == "PATCH":
            apply_settings(self.s, await _body(request))
        return _json(self.s.settings.to_json())

    async def faults(self, request: Request) -> Response:
        self.check(request)
        if request.method == "POST":
            try:
                rule = self.s.faults.add(FaultRule.from_json(await _body(request)))
            except (TypeError, ValueError) as exc:
                raise FhirError(400, "invalid", str(exc)) from None
            return _json(rule.to_json(), 201)
        if request.method == "DELETE":
            self.s.faults.clear()
        return _json(self.s.faults.rules())

    async def fault(self, request: Request) -> Response:
        self.check(request)
        rule_id = request.path_params["rule_id"]
        rule = self.s.faults.get(rule_id)
        if rule is None:
            raise FhirError(404, "not-found", "no such fault rule")
        if request.method == "DELETE":
            self.s.faults.remove(rule_id)
        return _json(rule)

    async def requests(self, request: Request) -> Response:
        self.check(request)
        if request.method == "DELETE":
            self.s.journal.clear()
        return _json(list(self.s.journal))

    async def stats(self, request: Request) -> Response:
        self.check(request)
        return _json({"resources": self.s.store.counts(), "audit": self._audit()})

    async def audit(self, request: Request) -> Response:
        self.check(request)
        return _json(self._audit())

    async def access(self, request: Request) -> Response:
        self.check(request)
        return _json(access_report(self.s))

    def _audit(self) -> dict[str, Any]:
        from sync.reference._audit_chain import check_chains

        return check_chains(self.s.store.live_bodies("AuditEvent"))


def access_report(state: ReferenceState) -> dict[str, Any]:
    """The purpose-of-use report (shared by the admin endpoint and the test API)."""
    return {"window_s": state.settings.purpose_window_s, **state.store.access_report()}


def apply_settings(state: ReferenceState, changes: dict[str, Any]) -> None:
    """Validate then apply live settings (shared by the admin endpoint and the test API)."""
    unknown = set(changes) - {
        "paging",
        "history",
        "history_order",
        "token_lifetime_s",
        "bulk_export",
        "export_ranges",
        "export_fault",
        "export_retry_after_s",
        "purpose_window_s",
    }
    if unknown:
        raise FhirError(400, "invalid", f"unknown settings: {', '.join(sorted(unknown))}")
    paging = changes.get("paging", state.settings.paging)
    history = changes.get("history", state.settings.history)
    order = changes.get("history_order", state.settings.history_order)
    lifetime = changes.get("token_lifetime_s", state.settings.token_lifetime_s)
    if paging not in ("keyset", "offset"):
        raise FhirError(400, "invalid", "paging must be keyset or offset")
    if not isinstance(history, bool):
        raise FhirError(400, "invalid", "history must be true or false")
    if order not in _ORDERS:
        raise FhirError(400, "invalid", "history_order must be newest-first or oldest-first")
    if not isinstance(lifetime, (int, float)) or lifetime <= 0:
        raise FhirError(400, "invalid", "token_lifetime_s must be a positive number")
    bulk = changes.get("bulk_export", state.settings.bulk_export)
    ranges = changes.get("export_ranges", state.settings.export_ranges)
    fault = changes.get("export_fault", state.settings.export_fault)
    retry_after = changes.get("export_retry_after_s", state.settings.export_retry_after_s)
    if not isinstance(bulk, bool) or not isinstance(ranges, bool):
        raise FhirError(400, "invalid", "bulk_export and export_ranges must be true or false")
    if fault not in EXPORT_FAULTS:
        raise FhirError(400, "invalid", f"export_fault must be one of {', '.join(EXPORT_FAULTS)}")
    if not isinstance(retry_after, int) or isinstance(retry_after, bool) or retry_after < 0:
        raise FhirError(400, "invalid", "export_retry_after_s must be a whole number >= 0")
    window = changes.get("purpose_window_s", state.settings.purpose_window_s)
    if not isinstance(window, (int, float)) or isinstance(window, bool) or window <= 0:
        raise FhirError(400, "invalid", "purpose_window_s must be a positive number")
    state.settings.purpose_window_s = float(window)
    state.settings.bulk_export = bulk
    state.settings.export_ranges = ranges
    state.settings.export_fault = fault
    state.settings.export_retry_after_s = retry_after
    state.settings.paging = paging
    state.settings.history = history
    state.settings.history_order = order
    state.settings.token_lifetime_s = float(lifetime)


def routes(state: ReferenceState) -> list[Route]:
    h = _Admin(state)
    return [
        Route("/admin/clients", h.clients, methods=["GET"]),
        Route("/admin/clients/{client_id}", h.client, methods=["GET", "PUT", "DELETE"]),
        Route("/admin/clients/{client_id}/revoke", h.revoke, methods=["POST"]),
        Route("/admin/clients/{client_id}/reinstate", h.reinstate, methods=["POST"]),
        Route("/admin/tokens/expire", h.expire, methods=["POST"]),
        Route("/admin/settings", h.settings, methods=["GET", "PATCH"]),
        Route("/admin/faults", h.faults, methods=["GET", "POST", "DELETE"]),
        Route("/admin/faults/{rule_id:int}", h.fault, methods=["GET", "DELETE"]),
        Route("/admin/requests", h.requests, methods=["GET", "DELETE"]),
        Route("/admin/stats", h.stats, methods=["GET"]),
        Route("/admin/audit", h.audit, methods=["GET"]),
        Route("/admin/access", h.access, methods=["GET"]),
    ]
