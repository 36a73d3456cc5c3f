"""What the outbox relay publishes through (StatusPublisher), and how it tells an event the
broker will never take (a verdict: dead-lettered with these headers) from an outage."""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable
from typing import Any, Protocol

from service.error_codes import ErrorCode
from service.errors import FerryError

# What a status dead letter keeps of an event that is too large: enough to see what it was.
DEAD_LETTER_EXCERPT_BYTES = 16 * 1024


class UndeliverableEventError(FerryError):
    """The broker will never take this event (too large, malformed): a verdict, not an outage."""

    code = ErrorCode.EVENT_UNDELIVERABLE


class StatusPublisher(Protocol):
    async def send(self, key: str, payload: bytes) -> Awaitable[object]:
        """Hand one event to the producer; the awaitable returned resolves once the broker
        has acknowledged it. Either raises UndeliverableEventError for a verdict."""

    async def dead_letter(self, key: str, payload: bytes, headers: dict[str, str]) -> None:
        """Publish to the status dead-letter topic and wait for the acknowledgement."""


def dead_letter_headers(
    entry: dict[str, Any], verdict: UndeliverableEventError, payload: bytes
) -> dict[str, str]:
    """Why an outbox entry was dead-lettered and what it was, each value capped."""
    data = entry["event"].get("data") or {}
    return {
        "ferry-dlq-code": verdict.code,
        "ferry-dlq-reason": str(verdict)[:500],
        "ferry-job-id": str(entry["key"])[:100],
        "ferry-event-type": str(entry["event"].get("type"))[:100],
        "ferry-event-version": str(data.get("version")),
        "ferry-original-size": str(len(payload)),
        "ferry-original-sha256": hashlib.sha256(payload).hexdigest(),
        "ferry-truncated": str(len(payload) > DEAD_LETTER_EXCERPT_BYTES).lower(),
    }


async def failure_of(outcome: object) -> BaseException | None:
    """What became of one send: None once acknowledged, else the error (a verdict or not)."""
    if isinstance(outcome, BaseException):
        return outcome
    try:
        await outcome  # type: ignore[misc]  # the acknowledgement StatusPublisher.send returned
    except Exception as exc:  # noqa: BLE001 - reported to the caller, which decides
        return exc
    return None
