"""Which outbox shards a relay publishes: leases on the shards, shared fairly among the relays
that are alive.

Each relay keeps a membership document alive and holds at most its fair share of the shards
(ceil(shards / live relays)). A relay that joins finds the others holding everything; at their
next refresh they count it and give back what is over their share, and it takes those. A relay
that dies stops renewing: its membership and leases lapse together, and the others take its
shards at their next refresh, within the lease time and a refresh interval.
"""

from __future__ import annotations

import contextlib
import math
from datetime import datetime, timedelta
from typing import Any

from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from service.clock import utcnow
from service.jobs.outbox import OUTBOX_SHARDS

SHARD_LEASES_COLLECTION = "outbox_shards"
RELAYS_COLLECTION = "outbox_relays"


class ShardLeases:
    """Compare-and-set leases on shard documents (`_id`: the shard number), renewed together."""

    def __init__(
        self,
        database: AsyncDatabase[dict[str, Any]],
        *,
        owner: str,
        ttl: timedelta,
        shards: int = OUTBOX_SHARDS,
    ) -> None:
        self._leases = database[SHARD_LEASES_COLLECTION]
        self._members = database[RELAYS_COLLECTION]
        self._owner = owner
        self._ttl = ttl
        self._shards = shards

    @property
    def ttl(self) -> timedelta:
        return self._ttl

    async def refresh(self) -> frozenset[int]:
        """Renew this relay's membership and leases, give back or take shards toward its fair
        share, and return the shards it now holds."""
        now = utcnow()
        expires = now + self._ttl
        await self._members.update_one(
            {"_id": self._owner}, {"$set": {"expires_at": expires}}, upsert=True
        )
        live = await self._members.count_documents({"expires_at": {"$gt": now}})
        fair = math.ceil(self._shards / max(live, 1))
        leases = await self._leases.find({"expires_at": {"$gt": now}}).to_list()
        mine = sorted(lease["_id"] for lease in leases if lease["owner"] == self._owner)
        taken = {lease["_id"] for lease in leases if lease["owner"] != self._owner}

        keep, extra = mine[:fair], mine[fair:]
        if extra:
            await self._leases.delete_many({"_id": {"$in": extra}, "owner": self._owner})
        if keep:
            await self._leases.update_many(
                {"_id": {"$in": keep}, "owner": self._owner}, {"$set": {"expires_at": expires}}
            )
        free = [shard for shard in range(self._shards) if shard not in taken and shard not in mine]
        for shard in free[: max(fair - len(keep), 0)]:
            await self._take(shard, now, expires)
        # What is ours is what the database says: a lease may have been taken meanwhile.
        held = await self._leases.find(
            {"owner": self._owner, "expires_at": {"$gt": now}}, {"_id": 1}
        ).to_list()
        return frozenset(int(lease["_id"]) for lease in held)

    async def release(self) -> None:
        """Give every shard back at once (on shutdown), so others need not wait for the lease."""
        await self._leases.delete_many({"owner": self._owner})
        await self._members.delete_one({"_id": self._owner})

    async def _take(self, shard: int, now: datetime, expires: datetime) -> None:
        # A duplicate key: the document exists and is another relay's, live.
        with contextlib.suppress(DuplicateKeyError):
            await self._leases.update_one(
                {"_id": shard, "$or": [{"owner": self._owner}, {"expires_at": {"$lte": now}}]},
                {"$set": {"owner": self._owner, "expires_at": expires}},
                upsert=True,
            )
