"""Demo data: a webhook relay's message log, realistic enough to export and look at."""

from __future__ import annotations

import random
from datetime import datetime, timedelta
from typing import Any

from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import BulkWriteError

from service.datasets.messages import MessageStatus

DUPLICATE_KEY = 11000
EVENT_TYPES = ("order.created", "order.paid", "order.shipped", "invoice.sent", "user.signed_up")
ERRORS = (
    "connection timed out after 15s",
    "HTTP 500 from endpoint",
    "TLS handshake failed",
    '=HYPERLINK("http://evil.example")',  # a value a spreadsheet would run: exported escaped
)


def demo_messages(
    project_id: str, count: int, *, end: datetime, span: timedelta, seed: int = 7
) -> list[dict[str, Any]]:
    """`count` messages created in [end - span, end), deterministic for a given seed."""
    rng = random.Random(seed)  # noqa: S311 - demo data, not security
    outbound = [f"00000000-0000-4000-8000-{n:012d}" for n in range(1, 4)]
    inbound = [f"00000000-0000-4000-9000-{n:012d}" for n in range(1, 3)]
    statuses = list(MessageStatus)
    messages = []
    for n in range(count):
        direction = "outbound" if rng.random() < 0.75 else "inbound"  # noqa: PLR2004
        status = rng.choice(statuses)
        created_at = (
            end - span + timedelta(milliseconds=rng.randrange(int(span.total_seconds() * 1000)))
        )
        failed = status in {MessageStatus.FAILED_PERMANENT, MessageStatus.PENDING_RETRY}
        messages.append(
            {
                "_id": f"msg_{project_id}_{seed}_{n:07d}",
                "project_id": project_id,
                "direction": direction,
                "endpoint_id": rng.choice(outbound) if direction == "outbound" else None,
                "inbound_endpoint_id": rng.choice(inbound) if direction == "inbound" else None,
                "status": status.value,
                "event_type": rng.choice(EVENT_TYPES),
                "attempt_count": rng.randint(1, 6) if failed else 1,
                "last_response_status": (
                    rng.choice((500, 502, 504, None))
                    if failed
                    else 200
                    if status == MessageStatus.SUCCEEDED
                    else None  # queued or in flight: no response yet
                ),
                "last_error": rng.choice(ERRORS) if failed else None,
                "created_at": created_at,
                "delivered_at": (
                    created_at + timedelta(milliseconds=rng.randint(20, 3000))
                    if status == MessageStatus.SUCCEEDED
                    else None
                ),
            }
        )
    return messages


async def load_messages(
    database: AsyncDatabase[dict[str, Any]], messages: list[dict[str, Any]], *, batch: int = 5000
) -> None:
    """Insert `messages`; loading the same ones again adds nothing and is not an error.

    pymongo retries a write once after a lost connection; when the first try did land, the retry
    meets its own rows, so duplicate ids are expected and skipped.
    """
    for start in range(0, len(messages), batch):
        try:
            await database["messages"].insert_many(messages[start : start + batch], ordered=False)
        except BulkWriteError as error:
            errors = error.details.get("writeErrors", [])
            if any(item.get("code") != DUPLICATE_KEY for item in errors) or not errors:
                raise
