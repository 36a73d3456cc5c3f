"""The outbox: status events written with the job change that caused them, and the relay that
publishes them to Kafka and then removes them.

Ordering: entries are read in insertion order and a job's events share a partition (key = job
id). Delivery is at least once; every event carries the job's `version`, so consumers drop what
they have already seen.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any

import structlog
from bson import ObjectId
from pymongo import ASCENDING
from pymongo.asynchronous.database import AsyncDatabase

from service.clock import utcnow
from service.leadership import Leadership
from service.observability import metrics

log = structlog.get_logger(__name__)

OUTBOX_COLLECTION = "outbox"

# Sends one event: (key, JSON bytes). Returns once the broker has acknowledged it.
Publish = Callable[[str, bytes], Awaitable[None]]


def outbox_entry(*, key: str, event: dict[str, Any]) -> dict[str, Any]:
    return {"_id": ObjectId(), "key": key, "event": event, "created_at": utcnow()}


class OutboxRelay:
    """Publishes the outbox in order. One relay at a time holds the leadership; others wait."""

    def __init__(
        self,
        database: AsyncDatabase[dict[str, Any]],
        publish: Publish,
        leadership: Leadership,
        *,
        batch_size: int = 500,
        poll_seconds: float = 0.5,
    ) -> None:
        self._outbox = database[OUTBOX_COLLECTION]
        self._publish = publish
        self._leadership = leadership
        self._batch_size = batch_size
        self._poll_seconds = poll_seconds
        self._wakeup = asyncio.Event()

    def wake(self) -> None:
        """Something was just written: publish now instead of at the next poll."""
        self._wakeup.set()

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            published = 0
            try:
                if await self._leadership.hold():
                    published = await self.drain_once()
            except Exception:
                # Broker or database unreachable: keep the entries and try again.
                log.exception("outbox.relay_failed")
            if published < self._batch_size:
                await self._wait(stop)

    async def drain_once(self) -> int:
        """Publish one batch of entries, oldest first, then remove them."""
        entries = await self._outbox.find().sort("_id", ASCENDING).limit(self._batch_size).to_list()
        for entry in entries:
            payload = json.dumps(entry["event"], separators=(",", ":")).encode()
            await self._publish(entry["key"], payload)
            metrics.record_status_event(entry["event"])
        if entries:
            await self._outbox.delete_many({"_id": {"$in": [entry["_id"] for entry in entries]}})
            metrics.OUTBOX_PUBLISHED.inc(len(entries))
            log.debug("outbox.published", count=len(entries))
        return len(entries)

    async def backlog(self) -> int:
        return await self._outbox.count_documents({})

    async def _wait(self, stop: asyncio.Event) -> None:
        self._wakeup.clear()
        waiters = {asyncio.ensure_future(self._wakeup.wait()), asyncio.ensure_future(stop.wait())}
        _, pending = await asyncio.wait(
            waiters, timeout=self._poll_seconds, return_when=asyncio.FIRST_COMPLETED
        )
        for task in pending:
            task.cancel()
