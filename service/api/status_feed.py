"""Feeds the read model from the status topic (consumer group shared by all API replicas).

In batches, as the webhook dispatcher consumes the same topic: one bulk write and one offset
commit per batch, instead of a write and a commit per event, which kept the API seconds behind
the ledger when 200 jobs changed at once.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

import structlog
from faststream.kafka import KafkaBroker

from service.api.read_model import ReadModel
from service.config import KafkaSettings
from service.contracts.status_events import (
    UnreadableStatusEventError,
    read_status_event,
    view_of,
)
from service.events.kafka import subscribe_batches
from service.observability.metrics import observe_status_lag

if TYPE_CHECKING:
    from faststream.kafka.subscriber.usecase import BatchSubscriber

log = structlog.get_logger(__name__)


def _view_of(payload: bytes) -> tuple[dict[str, Any], datetime | None] | None:
    """The job view an event carries, and the event's time; None when it carries none."""
    try:
        event = read_status_event(payload)
    except UnreadableStatusEventError:
        # Only Ferry writes this topic; an unreadable event is a bug to see, not to retry.
        log.exception("status_feed.unreadable_event", size=len(payload))
        return None
    if event is None:
        return None
    return view_of(event), event.time


async def apply_status_events(read_model: ReadModel, payloads: Sequence[bytes]) -> int:
    """Apply a batch of status events; how many views were stored (the rest were unreadable,
    refused, or not newer than what is stored)."""
    views = [view for view in map(_view_of, payloads) if view is not None]
    applied = await read_model.apply_many([data for data, _ in views])
    for _, time in views:
        if time is not None:
            observe_status_lag("api", time)
    return applied


async def apply_status_event(read_model: ReadModel, payload: bytes) -> bool:
    """Apply one status event; False when it was skipped (unreadable, or not newer)."""
    return await apply_status_events(read_model, [payload]) == 1


def subscribe_status_feed(
    broker: KafkaBroker, settings: KafkaSettings, read_model: ReadModel
) -> BatchSubscriber:
    async def apply(values: list[bytes]) -> None:
        await apply_status_events(read_model, values)

    return subscribe_batches(
        broker,
        settings.status_topic,
        group_id=settings.read_model_group,
        handle=apply,
        title="ferry.status (read model)",
        description="Job status events applied to the API's read model by version.",
    )
