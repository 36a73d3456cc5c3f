"""Which workers are running and how many jobs each can take: what a waiting job's reason is
computed from ("all 8 job slots of the running workers are busy", "no worker is running").

Each runner writes its own document now and then; one that stops writing drops out once its
document is older than a few intervals (a TTL index removes it later).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from pymongo import ASCENDING, IndexModel
from pymongo.asynchronous.database import AsyncDatabase

from service.clock import utcnow

WORKERS_COLLECTION = "workers"
# A worker seen within this many report intervals counts as running.
_MISSED_REPORTS = 3


@dataclass(frozen=True)
class Capacity:
    """The running workers and the jobs they can run at once."""

    workers: int
    slots: int


class WorkerPresence:
    def __init__(
        self, database: AsyncDatabase[dict[str, Any]], *, interval: timedelta = timedelta(seconds=5)
    ) -> None:
        self._workers = database[WORKERS_COLLECTION]
        self._interval = interval
        self._last_report: dict[str, float] = {}

    async def ensure_indexes(self) -> None:
        await self._workers.create_indexes(
            [IndexModel([("gone_at", ASCENDING)], expireAfterSeconds=0)]
        )

    async def report(self, owner: str, *, concurrency: int) -> None:
        """Say that `owner` runs and takes up to `concurrency` jobs (at most once an interval)."""
        now = utcnow()
        last = self._last_report.get(owner)
        if last is not None and now.timestamp() - last < self._interval.total_seconds():
            return
        self._last_report[owner] = now.timestamp()
        await self._workers.update_one(
            {"_id": owner},
            {
                "$set": {
                    "concurrency": concurrency,
                    "seen_at": now,
                    "gone_at": now + self._interval * _MISSED_REPORTS,
                }
            },
            upsert=True,
        )

    async def leave(self, owner: str) -> None:
        """A worker shutting down takes no more jobs."""
        self._last_report.pop(owner, None)
        await self._workers.delete_one({"_id": owner})

    async def capacity(self) -> Capacity:
        rows = await self._workers.find(
            {"gone_at": {"$gt": utcnow()}}, {"concurrency": 1}
        ).to_list()
        return Capacity(workers=len(rows), slots=sum(int(row["concurrency"]) for row in rows))
