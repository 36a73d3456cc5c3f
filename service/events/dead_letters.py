"""The dead-letter topic: requests that cannot become a job, kept byte for byte with the reason."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import structlog

from service.clock import rfc3339, utcnow
from service.events.records import IncomingRecord
from service.observability.metrics import DEAD_LETTERS

log = structlog.get_logger(__name__)

# (value, key, headers) -> published and acknowledged
PublishRaw = Callable[[bytes, bytes | None, dict[str, str]], Awaitable[None]]


class DeadLetters:
    def __init__(self, publish: PublishRaw) -> None:
        self._publish = publish

    async def send(self, record: IncomingRecord, *, code: str, reason: str) -> None:
        headers = {name: value.decode(errors="replace") for name, value in record.headers}
        headers.update(
            {
                "ferry-dlq-code": code,
                "ferry-dlq-reason": reason[:1000],
                "ferry-dlq-topic": record.topic,
                "ferry-dlq-partition": str(record.partition),
                "ferry-dlq-offset": str(record.offset),
                "ferry-dlq-at": rfc3339(utcnow()),
            }
        )
        await self._publish(record.value, record.key, headers)
        DEAD_LETTERS.labels(code=code).inc()
        log.warning(
            "request.dead_lettered",
            code=code,
            reason=reason,
            topic=record.topic,
            partition=record.partition,
            offset=record.offset,
        )
