"""FastStream wiring of the dispatcher: its own consumer group on the status topic. Thin; the
recorder does the work."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import structlog
from faststream import AckPolicy
from faststream.kafka import KafkaBroker
from faststream.kafka.annotations import KafkaMessage

from service.config import KafkaSettings
from service.webhooks.payload import UnreadableEventError
from service.webhooks.recorder import DeliveryRecorder

if TYPE_CHECKING:
    from faststream.kafka.subscriber.usecase import DefaultSubscriber

log = structlog.get_logger(__name__)

# A failing handler (database away) is redelivered; this pause keeps that from spinning.
_REDELIVERY_PAUSE_SECONDS = 1.0


def subscribe_status_events(
    broker: KafkaBroker, settings: KafkaSettings, recorder: DeliveryRecorder
) -> DefaultSubscriber:
    subscriber = broker.subscriber(
        settings.status_topic,
        group_id=settings.webhooks_group,
        # Commit only once the deliveries are recorded; on error seek back and redeliver.
        ack_policy=AckPolicy.NACK_ON_ERROR,
        # A new group starts from what the topic still holds: nothing published before the
        # dispatcher first ran is missed, and endpoints only get what happened after they
        # were added, so a replay sends nothing stale.
        auto_offset_reset="earliest",
        title="ferry.status (webhooks)",
        description="Job status changes recorded as webhook deliveries, then acknowledged.",
    )

    @subscriber
    async def on_status(message: KafkaMessage) -> None:
        raw = message.raw_message
        if isinstance(raw, tuple):  # pragma: no cover - not a batch subscriber
            raise TypeError("batch records are not expected here")
        try:
            await recorder.record(raw.value or b"")
        except UnreadableEventError:
            # Only Ferry writes this topic; a broken event is a bug to see, not to retry.
            log.exception("webhooks.unreadable_event", offset=raw.offset, partition=raw.partition)
        except Exception:
            log.exception("webhooks.redelivery", offset=raw.offset, partition=raw.partition)
            await asyncio.sleep(_REDELIVERY_PAUSE_SECONDS)
            raise

    return subscriber
