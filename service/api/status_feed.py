"""Feeds the read model from the status topic (consumer group shared by all API replicas)."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import structlog
from faststream.kafka import KafkaBroker

from service.api.read_model import ReadModel
from service.config import KafkaSettings
from service.events.contracts import JOB_STATUS_CHANGED, JOB_UPDATED
from service.events.kafka import subscribe_records
from service.events.records import IncomingRecord
from service.observability.metrics import observe_status_lag

if TYPE_CHECKING:
    from faststream.kafka.subscriber.usecase import DefaultSubscriber

log = structlog.get_logger(__name__)

_VIEW_EVENTS = frozenset({JOB_STATUS_CHANGED, JOB_UPDATED})


async def apply_status_event(read_model: ReadModel, payload: bytes) -> bool:
    """Apply one status event; False when it was skipped (unreadable, or not newer)."""
    try:
        event = json.loads(payload)
        data = dict(event["data"])
        event_type = event["type"]
    except (ValueError, KeyError, TypeError):
        # Only Ferry writes this topic; an unreadable event is a bug to see, not to retry.
        log.exception("status_feed.unreadable_event", size=len(payload))
        return False
    if event_type not in _VIEW_EVENTS:
        return False
    data.pop("previous_status", None)
    applied = await read_model.apply(data)
    if applied and isinstance(event.get("time"), str):
        observe_status_lag("api", event["time"])
    return applied


def subscribe_status_feed(
    broker: KafkaBroker, settings: KafkaSettings, read_model: ReadModel
) -> DefaultSubscriber:
    async def apply(record: IncomingRecord) -> None:
        await apply_status_event(read_model, record.value)

    return subscribe_records(
        broker,
        settings.status_topic,
        group_id=settings.read_model_group,
        handle=apply,
        title="ferry.status (read model)",
        description="Job status events applied to the API's read model by version.",
    )
