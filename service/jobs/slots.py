"""Per-project slots: at most N jobs of one project run at once, across all workers.

A project has N slot documents (`{project}:0` .. `{project}:N-1`). A claim takes a free one by
compare-and-set on that one document; the slot expires with the job's lease and is renewed with
it, so a crashed worker's slot frees itself. There is no counter to drift, and nothing shared by
a whole project is written inside a transaction: a worker killed mid-transaction leaves that
transaction's documents locked until the server reaps it (a minute, by default), and a shared
document would freeze every claim of the project for that long.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from pymongo.asynchronous.database import AsyncDatabase

from service.jobs.leases import Leases

SLOTS_COLLECTION = "project_slots"


def holder_of(job_id: str, attempt: int) -> str:
    """Who holds a slot: one attempt of one job, so a stale attempt cannot free a new one's."""
    return f"{job_id}#{attempt}"


class ProjectSlots:
    """The slot documents, each a lease (service/jobs/leases.py) held by one attempt."""

    def __init__(self, database: AsyncDatabase[dict[str, Any]]) -> None:
        self._slots = database[SLOTS_COLLECTION]
        # Not re-entrant: see service/jobs/leases.py.
        self._leases = Leases(self._slots, reentrant=False)

    async def take(
        self, project_id: str, holder: str, *, limit: int, lease: timedelta
    ) -> str | None:
        """A free (or expired) slot of the project for `holder`, or None when all are held."""
        for index in range(limit):
            slot = f"{project_id}:{index}"
            if await self._leases.take(slot, holder, lease, fields={"project_id": project_id}):
                return slot
        return None

    async def ensure_indexes(self) -> None:
        await self._slots.create_index("holder")

    async def renew(self, holder: str, *, lease: timedelta) -> bool:
        return await self._leases.renew(holder, lease)

    async def release(self, holder: str) -> None:
        await self._leases.release(holder)

    async def full_projects(self, limit: int, now: datetime) -> list[str]:
        """Projects whose `limit` slots are all held: a hint to skip their pending jobs."""
        rows = await (
            await self._slots.aggregate(
                [
                    {"$match": {"holder": {"$ne": None}, "expires_at": {"$gt": now}}},
                    {"$group": {"_id": "$project_id", "held": {"$sum": 1}}},
                    {"$match": {"held": {"$gte": limit}}},
                ]
            )
        ).to_list()
        return [str(row["_id"]) for row in rows]
