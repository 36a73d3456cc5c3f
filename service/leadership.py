"""Leadership of a singleton task (the outbox relay, the expiry sweep) among many processes.

A compare-and-set on one MongoDB document with an expiry: the holder renews it; when the holder
dies, another process takes over once it lapses.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from service.clock import utcnow

LEADERSHIP_COLLECTION = "leadership"


class Leadership:
    def __init__(
        self, database: AsyncDatabase[dict[str, Any]], *, name: str, owner: str, ttl: timedelta
    ) -> None:
        self._documents = database[LEADERSHIP_COLLECTION]
        self._name = name
        self._owner = owner
        self._ttl = ttl

    async def hold(self) -> bool:
        """Take or renew the leadership; False while another live process holds it."""
        now = utcnow()
        try:
            await self._documents.update_one(
                {"_id": self._name, "$or": [{"owner": self._owner}, {"expires_at": {"$lt": now}}]},
                {"$set": {"owner": self._owner, "expires_at": now + self._ttl}},
                upsert=True,
            )
        except DuplicateKeyError:
            # The document exists and neither matched: someone else leads.
            return False
        return True

    async def resign(self) -> None:
        await self._documents.delete_one({"_id": self._name, "owner": self._owner})
