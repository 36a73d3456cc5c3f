"""A real HTTP receiver on loopback for webhook tests: it answers by a script and records every
request (time, headers, body), so tests can verify signatures and count retries."""

from __future__ import annotations

import asyncio
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Self


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    # The default backlog of 5 refuses connections when a dispatcher sends dozens at once.
    request_queue_size = 256


@dataclass(frozen=True)
class Received:
    at: float  # time.time() when the request arrived
    method: str
    path: str
    headers: dict[str, str]  # names in lower case
    body: bytes


@dataclass(frozen=True)
class Reply:
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b"ok"
    delay: float = 0.0  # seconds to wait before answering (a slow or hanging receiver)


class Receiver:
    """Answers each path by its script (one reply per request, in order), then by `default`."""

    def __init__(
        self, default: Reply | None = None, *, check: Callable[[Received], None] | None = None
    ) -> None:
        """`check` runs on each request as it arrives (e.g. to verify its signature while its
        timestamp is fresh); what it raises is kept in `failures`."""
        self.default = default or Reply()
        self.failures: list[BaseException] = []
        self._check = check
        self._lock = threading.Lock()
        self._received: list[Received] = []
        self._scripts: dict[str, list[Reply]] = {}
        self._server = _Server(("127.0.0.1", 0), self._handler_class())
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def url(self, path: str = "/hook") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def wrap_socket(self, context: ssl.SSLContext) -> None:
        """Serve HTTPS with `context` (call before requests arrive)."""
        self._server.socket = context.wrap_socket(self._server.socket, server_side=True)

    def script(self, path: str, *replies: Reply) -> None:
        with self._lock:
            self._scripts[path] = list(replies)

    def received(self, path: str | None = None) -> list[Received]:
        with self._lock:
            return [r for r in self._received if path is None or r.path == path]

    async def wait_for(
        self,
        condition: Callable[[list[Received]], bool],
        *,
        path: str | None = None,
        timeout: float = 30.0,
    ) -> list[Received]:
        """Poll until `condition(requests so far)` holds; fails with what arrived if it never
        does."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            received = self.received(path)
            if condition(received):
                return received
            await asyncio.sleep(0.05)
        received = self.received(path)
        shown = "; ".join(
            f"{r.method} {r.path} {r.headers.get('webhook-id')}" for r in received[-10:]
        )
        raise AssertionError(
            f"receiver condition not met in {timeout}s; got {len(received)} requests, the last: "
            + shown
        )

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _next_reply(self, path: str) -> Reply:
        with self._lock:
            script = self._scripts.get(path)
            return script.pop(0) if script else self.default

    def _record(self, received: Received) -> None:
        with self._lock:
            self._received.append(received)
        if self._check is not None:
            try:
                self._check(received)
            except Exception as exc:  # noqa: BLE001 - kept for the test to report
                with self._lock:
                    self.failures.append(exc)

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(length) if length else b""
                receiver._record(
                    Received(
                        at=time.time(),
                        method=self.command,
                        path=self.path,
                        headers={name.lower(): value for name, value in self.headers.items()},
                        body=body,
                    )
                )
                reply = receiver._next_reply(self.path)
                if reply.delay:
                    time.sleep(reply.delay)
                try:
                    self.send_response(reply.status)
                    for name, value in reply.headers.items():
                        self.send_header(name, value)
                    self.send_header("content-length", str(len(reply.body)))
                    self.end_headers()
                    self.wfile.write(reply.body)
                except OSError:
                    pass  # the client gave up waiting (a timeout under test)

            do_POST = do_GET = do_PUT = _answer  # noqa: N815 - http.server's naming

            def log_message(self, format: str, *args: object) -> None:  # noqa: A002
                del format, args  # quiet: tests look at `received` instead

        return Handler
