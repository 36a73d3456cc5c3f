"""The outbox: status events written with the job change that caused them, and the relay that
publishes them to Kafka and then removes them.

Each job document carries its own unpublished events (`outbox`, flagged by `outbox_pending`),
appended in the same single-document write as the change: an event exists exactly when the
change happened, without a multi-document transaction. A job's events are published in the
order they were written and share a partition (key = job id). Delivery is at least once; every
event carries the job's `version`, so consumers drop what they have already seen.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

import structlog
from bson import ObjectId
from pymongo import ASCENDING
from pymongo.asynchronous.database import AsyncDatabase

from service.clock import utcnow
from service.leadership import Leadership
from service.observability import metrics

log = structlog.get_logger(__name__)

# The documents whose `outbox` this module publishes (the job ledger's collection).
JOBS_COLLECTION = "jobs"

# Sends one event: (key, JSON bytes). Returns once the broker has acknowledged it.
Publish = Callable[[str, bytes], Awaitable[None]]


def outbox_entry(*, key: str, event: dict[str, Any]) -> dict[str, Any]:
    return {"_id": ObjectId(), "key": key, "event": event, "created_at": utcnow()}


async def outbox_backlog(database: AsyncDatabase[dict[str, Any]]) -> tuple[int, datetime | None]:
    """Events written but not yet published, and when the oldest of them was written."""
    rows = await (
        await database[JOBS_COLLECTION].aggregate(
            [
                {"$match": {"outbox_pending": True}},
                {"$unwind": "$outbox"},
                {
                    "$group": {
                        "_id": None,
                        "count": {"$sum": 1},
                        "oldest": {"$min": "$outbox.created_at"},
                    }
                },
            ]
        )
    ).to_list()
    return (int(rows[0]["count"]), rows[0]["oldest"]) if rows else (0, None)


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
        self._jobs = database[JOBS_COLLECTION]
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
        """Publish the events of up to `batch_size` jobs, oldest change first; return how many
        jobs had events (the relay goes on at once while there may be more)."""
        jobs = (
            await self._jobs.find({"outbox_pending": True}, {"outbox": 1})
            .sort("updated_at", ASCENDING)
            .limit(self._batch_size)
            .to_list()
        )
        for job in jobs:
            entries = job.get("outbox", [])
            for entry in entries:
                payload = json.dumps(entry["event"], separators=(",", ":")).encode()
                await self._publish(entry["key"], payload)
                metrics.record_status_event(entry["event"])
            # Remove exactly what was published; events appended meanwhile stay. Both writes
            # bump `revision`, so a change computed from an older read is recomputed.
            published = [entry["_id"] for entry in entries]
            await self._jobs.update_one(
                {"_id": job["_id"]},
                {"$pull": {"outbox": {"_id": {"$in": published}}}, "$inc": {"revision": 1}},
            )
            await self._jobs.update_one(
                {"_id": job["_id"], "outbox": {"$size": 0}},
                {"$unset": {"outbox_pending": ""}, "$inc": {"revision": 1}},
            )
            metrics.OUTBOX_PUBLISHED.inc(len(entries))
        if jobs:
            log.debug("outbox.published", jobs=len(jobs))
        return len(jobs)

    async def _wait(self, stop: asyncio.Event) -> None:
        self._wakeup.clear()
        waiters = {asyncio.ensure_future(self._wakeup.wait()), asyncio.ensure_future(stop.wait())}
        _, pending = await asyncio.wait(
            waiters, timeout=self._poll_seconds, return_when=asyncio.FIRST_COMPLETED
        )
        for task in pending:
            task.cancel()
