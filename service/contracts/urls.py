"""What a user-given callback URL may look like. Checked where it arrives (a request's
`notify_url`, `ferry webhooks add`); where it may connect is the outbound guard's business, at
send time. A contract: the request models validate their URLs with it."""

from __future__ import annotations

import httpx

MAX_URL_LENGTH = 2048
_MAX_PORT = 65535


def check_http_url(value: str) -> str:
    """`value` unchanged if it is an absolute http(s) URL; otherwise ValueError saying why."""
    if len(value) > MAX_URL_LENGTH:
        raise ValueError(f"must be at most {MAX_URL_LENGTH} characters")
    if any(char.isspace() or not char.isprintable() for char in value):
        raise ValueError("must not contain spaces or control characters")
    try:
        url = httpx.URL(value)
    except httpx.InvalidURL as exc:
        raise ValueError(f"is not a valid URL ({exc})") from exc
    if url.scheme not in {"http", "https"}:
        raise ValueError("must be an http:// or https:// URL")
    if not url.host:
        raise ValueError("must name a host")
    if url.port is not None and not 0 < url.port <= _MAX_PORT:
        raise ValueError(f"port {url.port} is out of range")
    if url.userinfo:
        # They would travel in every status event and log line; a secret path segment or the
        # signature is the way to authenticate Ferry.
        raise ValueError("must not contain credentials (user:password@)")
    return value
