"""The lease primitive: a holder's time-limited claim on one MongoDB document.

A lease is taken by a compare-and-set that matches only a free, lapsed or already-own document
(upserting it when it does not exist yet), renewed only while the holder still holds it, and
released by its holder alone. Fencing is the caller's `fence`: fields that must still match for
a renewal to count (a job's attempt, say), so a holder whose lease lapsed and was taken over
cannot renew the new holder's.

Shared by the project slots (service/jobs/slots.py), leadership (service/leadership.py) and the
running attempt's heartbeat (service/jobs/attempts.py). Where semantics differ, and why:

- Project slots are not re-entrant: `take` by the holder that already holds a slot does not
  match it, because two workers racing for one job name the same holder (job and attempt), and
  the loser, giving its slot back, would free the winner's. Leadership is re-entrant: taking
  again is how its holder renews it.
- A job's lease is *taken* by a ledger change (service/jobs/claims.py), not by `take`: the claim
  is a status transition and must write its status event in the same update. Renewal is this
  module's `renew`, fenced by owner and attempt, and counts a revision so a change computed
  from an older read of the job is computed again.
- Export chunks (service/exports/chunk_ledger.py) are taken with `where`: the chunk's attempt
  as it was read, so the take is also the attempt's increment and fences the previous holder.
- Webhook deliveries (service/webhooks/deliveries.py) claim whole batches in one update and
  fence by a random claim token, because `due_at` is both the lease's end and the retry time:
  a per-document take would cost a round trip per webhook.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta
from typing import Any

from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import DuplicateKeyError

from service.clock import utcnow


class Leases:
    """Leases on the documents of `collection`, held in its `holder` and `expires` fields.
    With `reentrant`, `take` by the current holder renews its lease (see above)."""

    def __init__(
        self,
        collection: AsyncCollection[dict[str, Any]],
        *,
        holder: str = "holder",
        expires: str = "expires_at",
        reentrant: bool = True,
    ) -> None:
        self._documents = collection
        self._holder = holder
        self._expires = expires
        self._reentrant = reentrant

    async def take(
        self,
        key: str,
        holder: str,
        ttl: timedelta,
        *,
        fields: Mapping[str, Any] | None = None,
        where: Mapping[str, Any] | None = None,
        create: bool = True,
    ) -> bool:
        """Take the lease on document `key` for `ttl` (renew it, when re-entrant and already
        held by `holder`); False while another live holder has it. `fields` are written with
        the lease; `where` must also match (a compare-and-set on the document's state, e.g. the
        attempt it was read in), else the take fails. Without `create`, a missing document is
        not made: the take fails."""
        now = utcnow()
        free: list[dict[str, Any]] = [{self._holder: None}, {self._expires: {"$lt": now}}]
        if self._reentrant:
            free.append({self._holder: holder})
        try:
            result = await self._documents.update_one(
                {**(where or {}), "_id": key, "$or": free},
                {"$set": {**(fields or {}), self._holder: holder, self._expires: now + ttl}},
                upsert=create,
            )
        except DuplicateKeyError:
            # The document exists and matched none of the above: someone else holds it.
            return False
        return create or result.matched_count == 1

    async def renew(
        self,
        holder: str,
        ttl: timedelta,
        *,
        fence: Mapping[str, Any] | None = None,
        count: str | None = None,
    ) -> bool:
        """Extend `holder`'s lease to `ttl` from now; False when it no longer holds it (or the
        fence no longer matches). `count` names a field incremented with every renewal."""
        update: dict[str, Any] = {"$set": {self._expires: utcnow() + ttl}}
        if count is not None:
            update["$inc"] = {count: 1}
        result = await self._documents.update_one({**(fence or {}), self._holder: holder}, update)
        return result.matched_count == 1

    async def release(self, holder: str, *, key: str | None = None) -> bool:
        """Give the lease up (the document stays, free); False when `holder` held none."""
        match: dict[str, Any] = {self._holder: holder}
        if key is not None:
            match["_id"] = key
        result = await self._documents.update_one(
            match, {"$set": {self._holder: None, self._expires: None}}
        )
        return result.matched_count == 1
