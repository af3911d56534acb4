"""Running the server: in the foreground (the CLI) or on a background thread (tests, benches).

Both bind the socket themselves so port 0 yields the real port before serving, and both use
`TrackingH11Protocol` so injected faults can really drop connections.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import socket
import threading
from collections.abc import Callable, Coroutine
from dataclasses import replace
from types import FrameType
from typing import Any, Self, TypeVar

import requests
import uvicorn

from ._admin import access_report, apply_settings, client_json
from ._app import create_app
from ._auth import TABLET
from ._faults import FaultInjector, FaultRule, TrackingH11Protocol
from ._state import ReferenceConfig, ReferenceState

log = logging.getLogger("sync.reference")
T = TypeVar("T")


class _Server(uvicorn.Server):
    """uvicorn.Server that reports once it is really listening."""

    def __init__(self, config: uvicorn.Config, on_ready: Callable[[], None]) -> None:
        super().__init__(config)
        self._on_ready = on_ready

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if self.started and not self.should_exit:
            self._on_ready()


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # proto must say TCP: asyncio turns Nagle off (TCP_NODELAY) only for sockets whose proto
    # is IPPROTO_TCP, and with Nagle on every answer (headers, then body) waits ~40 ms for
    # the client's delayed ACK.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    return sock


def _url(sock: socket.socket, base_path: str) -> tuple[str, int]:
    host, port = sock.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}{base_path}", port


def _uvicorn_config(app: Any) -> uvicorn.Config:
    return uvicorn.Config(
        app,
        http=TrackingH11Protocol,
        ws="none",
        lifespan="on",
        interface="asgi3",
        log_config=None,
        access_log=False,  # it would log query strings; we log paths only
        proxy_headers=False,
        server_header=False,
        date_header=False,  # the app sets `Date` from its own clock (_JournalMiddleware)
        timeout_graceful_shutdown=2,
    )


def serve(
    config: ReferenceConfig, on_ready: Callable[[str], None], faults: FaultInjector | None = None
) -> None:
    """Serve in the foreground until SIGINT or SIGTERM, then shut down cleanly.

    `on_ready(base_url)` runs once the store is open (and seeded) and the socket listens;
    `faults` are rules to start with (more can be added through /admin).
    """
    state = ReferenceState(config, faults)
    sock = _bind(config.host, config.port)
    base_url, _ = _url(sock, config.base_path)
    server = _Server(_uvicorn_config(create_app(state)), lambda: on_ready(base_url))
    stopped: list[int] = []

    def remember(signum: int, _frame: FrameType | None) -> None:
        stopped.append(signum)

    # uvicorn re-raises the signal that stopped it once it has shut down; with these
    # handlers in place that ends `serve` normally instead of killing the process.
    previous = {sig: signal.signal(sig, remember) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        server.run(sockets=[sock])
    except SystemExit:  # uvicorn's exit when the app fails to start
        if state.startup_error is not None:
            raise state.startup_error from None
        raise
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        sock.close()


class ReferenceServer:
    """The reference server on a background thread, with a Python handle on its knobs.

    `start()` returns once it listens; `restart()` keeps the port, data directory and fault
    rules (live settings go back to the config, tokens are forgotten: like a process
    restart). Methods that touch server state run on the server's event loop.
    """

    def __init__(self, config: ReferenceConfig, faults: FaultInjector | None = None) -> None:
        self.config = config
        self.faults = faults or FaultInjector(config.fault_seed)
        self.state: ReferenceState | None = None
        self.base_url = ""
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    # -- lifecycle -------------------------------------------------------------------------

    def start(self, timeout_s: float = 120.0) -> Self:
        if self._thread is not None:
            raise RuntimeError("already running")
        state = ReferenceState(self.config, self.faults)
        sock = _bind(self.config.host, self.config.port)
        self.base_url, port = _url(sock, self.config.base_path)
        self.config = replace(self.config, port=port)  # a restart reuses the port
        ready = threading.Event()

        def on_ready() -> None:
            self._loop = asyncio.get_running_loop()
            ready.set()

        server = _Server(_uvicorn_config(create_app(state)), on_ready)

        def run() -> None:
            try:
                server.run(sockets=[sock])
            except SystemExit:  # uvicorn's exit on a failed start-up
                pass
            finally:
                sock.close()
                ready.set()

        thread = threading.Thread(target=run, name=f"reference-server-{port}", daemon=True)
        thread.start()
        ready.wait(timeout_s)
        if self._loop is None or not thread.is_alive():
            thread.join(5)
            error = state.startup_error
            raise RuntimeError(f"reference server did not start: {error!r}") from error
        self.state, self._server, self._thread = state, server, thread
        return self

    def stop(self, timeout_s: float = 10.0) -> None:
        if self._server is None or self._thread is None:
            return
        self._server.should_exit = True
        self._thread.join(timeout_s)
        if self._thread.is_alive():
            self._server.force_exit = True
            self._thread.join(timeout_s)
        self._server = self._thread = self._loop = None

    def restart(self) -> Self:
        self.stop()
        return self.start()

    def __enter__(self) -> Self:
        return self.start() if self._thread is None else self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _call(self, fn: Callable[[], T]) -> T:
        """Run `fn` on the server's loop (the only thread that may touch its store)."""
        if self._loop is None:
            raise RuntimeError("the reference server is not running")

        async def wrapper() -> T:
            return fn()

        coro: Coroutine[Any, Any, T] = wrapper()
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(30)

    @property
    def _state(self) -> ReferenceState:
        if self.state is None:
            raise RuntimeError("the reference server is not running")
        return self.state

    # -- addresses and credentials ---------------------------------------------------------

    @property
    def root_url(self) -> str:
        return self.base_url[: -len(self.config.base_path) or None]

    @property
    def token_url(self) -> str:
        return f"{self.root_url}/oauth/token"

    @property
    def client_id(self) -> str:
        return self.config.clients[0][0]

    @property
    def client_secret(self) -> str:
        return self.config.clients[0][1]

    @property
    def admin_id(self) -> str:
        return self.config.admin_clients[0][0]

    @property
    def admin_secret(self) -> str:
        return self.config.admin_clients[0][1]

    def token(self, client_id: str | None = None, secret: str | None = None) -> str:
        """A fresh access token over HTTP (the first tablet client by default)."""
        cid = client_id or self.client_id
        if secret is None:
            known = dict(self.config.clients + self.config.admin_clients)
            secret = known[cid]
        resp = requests.post(
            self.token_url,
            data={"grant_type": "client_credentials"},
            auth=(cid, secret),
            timeout=30,
        )
        resp.raise_for_status()
        return str(resp.json()["access_token"])

    def session(self, *, admin: bool = False) -> requests.Session:
        """A requests.Session carrying a bearer token (tablet, or admin with admin=True)."""
        s = requests.Session()
        token = self.token(self.admin_id) if admin else self.token()
        s.headers.update({"Authorization": f"Bearer {token}", "Accept": "application/fhir+json"})
        return s

    # -- faults ----------------------------------------------------------------------------

    def inject(self, kind: str, **params: Any) -> FaultRule:
        """Add a fault rule; see `_faults` for kinds and parameters. Returns the live rule."""
        return self.faults.add(kind, **params)

    def clear_faults(self) -> None:
        self.faults.clear()

    # -- live settings and the device registry ---------------------------------------------

    def configure(self, **changes: Any) -> None:
        """Change live settings: paging, history, history_order, token_lifetime_s."""
        self._call(lambda: apply_settings(self._state, changes))

    def set_paging(self, mode: str) -> None:
        self.configure(paging=mode)

    def set_history(self, enabled: bool) -> None:
        self.configure(history=enabled)

    def expire_tokens(self, client_id: str | None = None) -> int:
        return self._call(lambda: self._state.auth.expire_tokens(client_id))

    def register_client(
        self, client_id: str, secret: str, role: str = TABLET, policy: dict[str, int] | None = None
    ) -> dict[str, Any]:
        return self._call(
            lambda: client_json(self._state.auth.register(client_id, secret, role, policy))
        )

    def set_policy(self, client_id: str, **policy: int) -> dict[str, Any]:
        def change() -> dict[str, Any]:
            row = self._state.store.client(client_id)
            if row is None:
                raise KeyError(client_id)
            return client_json(
                self._state.auth.register(
                    client_id, None, row.role, {k.replace("_", "-"): v for k, v in policy.items()}
                )
            )

        return self._call(change)

    def remove_client(self, client_id: str) -> None:
        self._call(lambda: self._state.auth.remove(client_id))

    def clients(self) -> list[dict[str, Any]]:
        """The device registry (never secrets)."""
        return self._call(lambda: [client_json(r) for r in self._state.store.clients()])

    def revoke(self, client_id: str) -> dict[str, Any]:
        return self._call(lambda: client_json(self._state.auth.set_revoked(client_id, True)))

    def reinstate(self, client_id: str) -> dict[str, Any]:
        return self._call(lambda: client_json(self._state.auth.set_revoked(client_id, False)))

    def requests(self) -> list[dict[str, Any]]:
        """Recent requests: method, path, query, status, ms (oldest first)."""
        return self._call(lambda: list(self._state.journal))

    def clear_requests(self) -> None:
        self._call(self._state.journal.clear)

    def counts(self) -> dict[str, int]:
        return self._call(lambda: self._state.store.counts())

    def audit_chains(self) -> dict[str, Any]:
        """Each device's uploaded audit chain: gaps, breaks, conflicts, reported breaks."""
        from sync.reference._audit_chain import check_chains

        return self._call(lambda: check_chains(list(self._state.store.live_bodies("AuditEvent"))))

    def access_report(self) -> dict[str, Any]:
        """Purposes of use recorded (AuditEvents coded from v3-ActReason), counts of record
        reads audited and not, and each read that arrived without a purpose (_access.py)."""
        return self._call(lambda: access_report(self._state))
