"""Counts and times every HTTP request, labelled by route template (`/v1/exports/{export_id}`),
never by raw path, and by method, so the number of series stays bounded whatever clients send."""

from __future__ import annotations

import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.observability.metrics import HTTP_DURATION, HTTP_REQUESTS

# Scrapes and probes arrive every few seconds from machines; counting them would drown the
# requests of people and programs that use the API.
_NOT_COUNTED = frozenset({"/metrics", "/healthz", "/readyz"})
# The method is the client's to choose, any token at all: others share one label, so that no
# client can add series at will.
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE"})


class HttpMetrics:
    """Pure ASGI middleware: no buffering, no extra task per request."""

    def __init__(self, app: ASGIApp) -> None:
        self._app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in _NOT_COUNTED:
            await self._app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # what the client gets if the app raises before answering

        async def send_and_note_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self._app(scope, receive, send_and_note_status)
        finally:
            # FastAPI's router records the matched route in the scope; anything else is one label.
            route = getattr(scope.get("route"), "path", "unmatched")
            method = scope["method"] if scope["method"] in _METHODS else "OTHER"
            HTTP_REQUESTS.labels(method=method, route=route, status=str(status)).inc()
            HTTP_DURATION.labels(method=method, route=route).observe(time.perf_counter() - started)
