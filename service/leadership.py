"""Leadership of a singleton task (the outbox relay, the expiry sweep) among many processes.

A lease on one MongoDB document (service/jobs/leases.py): the holder renews it; when the holder
dies, another process takes over once it lapses.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from pymongo.asynchronous.database import AsyncDatabase

from service.jobs.leases import Leases

LEADERSHIP_COLLECTION = "leadership"


class Leadership:
    """One named leadership, held by `owner` as a lease (service/jobs/leases.py) for `ttl`."""

    def __init__(
        self, database: AsyncDatabase[dict[str, Any]], *, name: str, owner: str, ttl: timedelta
    ) -> None:
        self._leases = Leases(database[LEADERSHIP_COLLECTION], holder="owner")
        self._name = name
        self._owner = owner
        self._ttl = ttl

    async def hold(self) -> bool:
        """Take or renew the leadership; False while another live process holds it."""
        return await self._leases.take(self._name, self._owner, self._ttl)

    async def resign(self) -> None:
        """Leave the leadership free at once, for the next process to take without waiting."""
        await self._leases.release(self._owner, key=self._name)
