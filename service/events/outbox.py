"""What the outbox holds that is not yet published (readiness and the backlog gauge). The
outbox itself, written with each job change, is the ledger's (service/jobs/outbox.py)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pymongo.asynchronous.database import AsyncDatabase

from service.clock import utcnow
from service.jobs.model import JOBS_COLLECTION


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


async def outbox_is_fresh(
    database: AsyncDatabase[dict[str, Any]], *, max_lag_seconds: float
) -> bool:
    """Whether the oldest unpublished event is younger than `max_lag_seconds` (readiness:
    status events are the API's and the webhooks' only source, so a stale outbox is news)."""
    _, oldest = await outbox_backlog(database)
    return oldest is None or (utcnow() - oldest).total_seconds() < max_lag_seconds
