"""One attempt: POST the body with its signed headers, through the guarded client, and note
what came back (status, latency, the first 2 KB of the answer) or what went wrong."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

import httpx

from service.clock import utcnow
from service.outbound.guard import UnsafeDestinationError
from service.webhooks.deliveries import Attempt
from service.webhooks.schedule import may_ask_to_wait, parse_retry_after

# Limit what is kept of an answer, so a chatty receiver cannot bloat the attempt log.
RESPONSE_EXCERPT_BYTES = 2048
USER_AGENT = "Ferry-Webhooks/1.0"


@dataclass(frozen=True)
class AttemptResult:
    """An attempt as logged, plus what decides the next step."""

    attempt: Attempt
    retry_after: float | None = None  # seconds a 429/5xx answer asked to wait
    refused: bool = False  # the SSRF guard would not connect


class Sender:
    def __init__(self, client: httpx.AsyncClient, *, timeout: float) -> None:
        self._client = client
        self._timeout = timeout

    async def send(self, url: str, body: str, headers: dict[str, str]) -> AttemptResult:
        started_at = utcnow()
        started = time.monotonic()
        status: int | None = None
        excerpt: str | None = None
        error: str | None = None
        retry_after_header: str | None = None
        refused = False
        request_headers = {
            **headers,
            "content-type": "application/json",
            "user-agent": USER_AGENT,
            # Compressed answers would make the excerpt unreadable, and a small compressed
            # chunk can expand to a great deal.
            "accept-encoding": "identity",
        }
        try:
            # One deadline for the whole attempt: httpx's timeouts apply per operation.
            async with (
                asyncio.timeout(self._timeout),
                self._client.stream(
                    "POST", url, content=body.encode(), headers=request_headers
                ) as response,
            ):
                status = response.status_code
                retry_after_header = response.headers.get("retry-after")
                excerpt = await _excerpt(response)
        except TimeoutError:
            error = f"no complete answer within {self._timeout:g} s"
        except UnsafeDestinationError as exc:
            error = exc.message
            refused = True
        except (httpx.HTTPError, httpx.InvalidURL) as exc:
            error = f"{type(exc).__name__}: {exc}".rstrip(": ")
        attempt = Attempt(
            at=started_at,
            status_code=status,
            latency_ms=round((time.monotonic() - started) * 1000, 1),
            response=excerpt,
            # An answer that arrived counts, even if its body then stalled.
            error=error if status is None else None,
        )
        retry_after = (
            parse_retry_after(retry_after_header, now=started_at)
            if may_ask_to_wait(status)
            else None
        )
        return AttemptResult(attempt, retry_after=retry_after, refused=refused)


async def _excerpt(response: httpx.Response) -> str:
    collected = bytearray()
    try:
        async for chunk in response.aiter_raw():
            collected += chunk
            if len(collected) >= RESPONSE_EXCERPT_BYTES:
                break
    except httpx.HTTPError as exc:
        collected += f"[answer cut short: {type(exc).__name__}]".encode()
    return bytes(collected[:RESPONSE_EXCERPT_BYTES]).decode("utf-8", errors="replace")
