"""A tiny HTTP server on 127.0.0.1 (port from the OS) whose answers a test writes by hand:
for a central record that misbehaves in ways the reference server never would (hostile sizes,
broken shapes, answers about the wrong person)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

Handler = Callable[[BaseHTTPRequestHandler], None]


class Loopback:
    """Routes path -> handler; records how many body bytes each answer really got out."""

    def __init__(self) -> None:
        self.routes: dict[str, Handler] = {}
        self.sent: dict[str, int] = {}
        self.finished = threading.Condition()
        outer = self

        class _H(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _go(self) -> None:
                path = self.path.split("?", 1)[0]
                length = int(self.headers.get("Content-Length") or 0)
                if length:
                    self.rfile.read(length)
                outer.routes.get(path, _not_found)(self)

            do_GET = do_POST = _go

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _H)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.base = f"http://127.0.0.1:{self.server.server_address[1]}"

    def sent_by(self, name: str, timeout_s: float = 30.0) -> int:
        """Bytes the named answer got out, once its handler has finished."""
        with self.finished:
            assert self.finished.wait_for(lambda: name in self.sent, timeout=timeout_s)
            return self.sent[name]

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _not_found(h: BaseHTTPRequestHandler) -> None:
    h.send_response(404)
    h.send_header("Content-Length", "0")
    h.end_headers()
