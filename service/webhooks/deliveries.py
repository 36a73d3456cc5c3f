"""Deliveries: one durable record per (status change, destination), and the attempts made.

A delivery's id is `{job id}:{version}:{destination}`, so recording the same status change
again, whether the same event redelivered by Kafka or the same change under another event id,
inserts nothing. A destination is an endpoint id, or `notify` for the request's notify_url.

Dispatchers claim due deliveries with a compare-and-set that moves `due_at` to the end of a
lease and stamps a claim token; the result of an attempt is written only under that token. A
dispatcher that dies mid-attempt leaves a claim that lapses, and the delivery is sent again; two
dispatchers never hold the same delivery at once.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from pymongo import ASCENDING, DESCENDING, IndexModel
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import BulkWriteError

from service.clock import as_utc, utcnow
from service.webhooks.delivery_records import (
    NOTIFY,
    Attempt,
    Claim,
    Delivery,
    DeliveryStatus,
    Destination,
    Recorded,
    delivery_id,
)
from service.webhooks.payload import WebhookMessage

DELIVERIES_COLLECTION = "webhook_deliveries"

# Enough for a full retry schedule and a few redeliveries; older attempts make room.
MAX_LOGGED_ATTEMPTS = 50
_DUPLICATE_KEY = 11000
_DUE = [DeliveryStatus.PENDING.value, DeliveryStatus.SENDING.value]

__all__ = [
    "DELIVERIES_COLLECTION",
    "MAX_LOGGED_ATTEMPTS",
    "NOTIFY",
    "Attempt",
    "Claim",
    "Delivery",
    "DeliveryStatus",
    "DeliveryStore",
    "Destination",
    "Recorded",
    "delivery_id",
]


class DeliveryStore:
    def __init__(self, database: AsyncDatabase[dict[str, Any]], *, retention: timedelta) -> None:
        self._deliveries = database[DELIVERIES_COLLECTION]
        self._retention = retention

    async def ensure_indexes(self) -> None:
        await self._deliveries.create_indexes(
            [
                IndexModel([("status", ASCENDING), ("due_at", ASCENDING)]),
                IndexModel([("event_id", ASCENDING)]),
                IndexModel([("endpoint_id", ASCENDING), ("created_at", DESCENDING)]),
                IndexModel([("job_id", ASCENDING), ("created_at", DESCENDING)]),
                # Each delivery carries its own expiry, so changing the retention setting never
                # conflicts with an existing index.
                IndexModel([("expire_at", ASCENDING)], expireAfterSeconds=0),
            ]
        )

    async def record(self, message: WebhookMessage, destinations: Sequence[Destination]) -> int:
        """One pending delivery per destination, due now; returns how many were new."""
        return len((await self.record_many([(message, destinations)])).new)

    async def record_many(
        self,
        batch: Sequence[tuple[WebhookMessage, Sequence[Destination]]],
        *,
        claim: Claim | None = None,
    ) -> Recorded:
        """`record` for many messages in one write. With `claim`, the first `claim.limit` new
        deliveries are recorded already claimed by its owner, who sends them at once rather than
        finding them again with a query; the rest are pending, for any dispatcher."""
        now = utcnow()
        deliveries = [
            Delivery(
                id=delivery_id(message.job_id, message.version, destination.key),
                event_id=message.event_id,
                event_type=message.event_type,
                project_id=message.project_id,
                job_id=message.job_id,
                version=message.version,
                endpoint_id=destination.endpoint_id,
                url=destination.url,
                body=message.body,
                status=DeliveryStatus.PENDING,
                due_at=now,
                created_at=now,
                updated_at=now,
                expire_at=now + self._retention,
            )
            for message, destinations in batch
            for destination in destinations
        ]
        if claim is not None:
            token = uuid.uuid4().hex
            held = {
                "status": DeliveryStatus.SENDING,
                "due_at": now + claim.lease,
                "claim": token,
                "claimed_by": claim.owner,
            }
            deliveries[: claim.limit] = [
                d.model_copy(update=held) for d in deliveries[: claim.limit]
            ]
        if not deliveries:
            return Recorded([])
        documents = [d.model_dump(by_alias=True, exclude_none=True) for d in deliveries]
        try:
            await self._deliveries.insert_many(documents, ordered=False)
        except BulkWriteError as exc:
            errors = exc.details.get("writeErrors", [])
            if any(error.get("code") != _DUPLICATE_KEY for error in errors):
                raise
            # Those were recorded before (a redelivered event); they are not new, nor ours.
            repeated = {int(error["index"]) for error in errors}
            return Recorded([d for n, d in enumerate(deliveries) if n not in repeated])
        return Recorded(deliveries)

    async def claim(self, owner: str, *, limit: int, lease: timedelta) -> list[Delivery]:
        """Up to `limit` due deliveries, oldest due first, now held by `owner` for `lease`.

        Three round trips whatever the batch size: find candidates, take them in one update
        whose filter is checked again per document as it is written (what another dispatcher
        took meanwhile has a future `due_at` and is left alone), read back what carries this
        claim's token. Claiming one at a time would cost a query per webhook.
        """
        now = utcnow()
        due = {"status": {"$in": _DUE}, "due_at": {"$lte": now}}
        candidates = self._deliveries.find(due, {"_id": 1}).sort("due_at", ASCENDING).limit(limit)
        ids = [document["_id"] async for document in candidates]
        if not ids:
            return []
        token = uuid.uuid4().hex
        await self._deliveries.update_many(
            {"_id": {"$in": ids}, **due},
            {
                "$set": {
                    "status": DeliveryStatus.SENDING.value,
                    "due_at": now + lease,
                    "claim": token,
                    "claimed_by": owner,
                }
            },
        )
        claimed = self._deliveries.find({"_id": {"$in": ids}, "claim": token})
        return sorted(
            [Delivery.model_validate(document) async for document in claimed],
            key=lambda delivery: ids.index(delivery.id),
        )

    async def next_due(self) -> datetime | None:
        document = await self._deliveries.find_one(
            {"status": {"$in": _DUE}}, {"due_at": 1}, sort=[("due_at", ASCENDING)]
        )
        return None if document is None else as_utc(document["due_at"])

    async def finish(
        self,
        delivery: Delivery,
        *,
        attempt: Attempt | None,
        status: DeliveryStatus,
        retry_at: datetime | None = None,
        error: str | None = None,
    ) -> bool:
        """Write the outcome of the claimed attempt; False when the claim had lapsed and was
        taken over (the new holder's outcome counts)."""
        now = utcnow()
        fields: dict[str, Any] = {"status": status.value, "updated_at": now}
        update: dict[str, Any] = {"$unset": {"claim": "", "claimed_by": ""}}
        if retry_at is not None:
            fields["due_at"] = retry_at
        if status is DeliveryStatus.SUCCEEDED:
            fields["delivered_at"] = now
        if attempt is not None:
            fields["last_status_code"] = attempt.status_code
            fields["last_error"] = attempt.error
            update["$inc"] = {"attempts": 1, "cycle_attempts": 1}
            update["$push"] = {
                "attempt_log": {"$each": [attempt.model_dump()], "$slice": -MAX_LOGGED_ATTEMPTS}
            }
        if error is not None:
            fields["last_error"] = error
        update["$set"] = fields
        result = await self._deliveries.update_one(
            {"_id": delivery.id, "claim": delivery.claim}, update
        )
        return result.modified_count == 1

    async def release(self, delivery: Delivery) -> None:
        """Hand a claimed delivery back unsent (dispatcher stopping): due again at once."""
        await self._deliveries.update_one(
            {"_id": delivery.id, "claim": delivery.claim},
            {
                "$set": {"status": DeliveryStatus.PENDING.value, "due_at": utcnow()},
                "$unset": {"claim": "", "claimed_by": ""},
            },
        )

    async def redeliver(self, event_id: str, *, endpoint_id: str | None = None) -> list[Delivery]:
        """Send an event's deliveries again, with a fresh retry schedule and the same
        `webhook-id`. Deliveries being sent right now are left to finish."""
        query: dict[str, Any] = {"event_id": event_id, "status": {"$ne": "sending"}}
        if endpoint_id is not None:
            query["endpoint_id"] = endpoint_id
        now = utcnow()
        matched = [Delivery.model_validate(d) async for d in self._deliveries.find(query)]
        if matched:
            await self._deliveries.update_many(
                {"_id": {"$in": [delivery.id for delivery in matched]}, **query},
                {
                    "$set": {
                        "status": DeliveryStatus.PENDING.value,
                        "due_at": now,
                        "cycle_attempts": 0,
                        "updated_at": now,
                        "expire_at": now + self._retention,
                    }
                },
            )
        return matched

    async def for_event(self, event_id: str) -> list[Delivery]:
        cursor = self._deliveries.find({"event_id": event_id})
        return [Delivery.model_validate(document) async for document in cursor]

    async def recent(
        self, *, endpoint_id: str | None = None, job_id: str | None = None, limit: int = 20
    ) -> list[Delivery]:
        """Newest first, for one endpoint or one job."""
        if (endpoint_id is None) == (job_id is None):
            raise ValueError("give exactly one of endpoint_id and job_id")
        query = {"endpoint_id": endpoint_id} if endpoint_id is not None else {"job_id": job_id}
        cursor = self._deliveries.find(query).sort("created_at", DESCENDING).limit(limit)
        return [Delivery.model_validate(document) async for document in cursor]
