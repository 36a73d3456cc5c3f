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
from service.webhooks.recorder import DeliveryRecorder

if TYPE_CHECKING:
    from faststream.kafka.subscriber.usecase import BatchSubscriber

log = structlog.get_logger(__name__)

# A failing handler (database away) is redelivered; this pause keeps that from spinning.
_REDELIVERY_PAUSE_SECONDS = 1.0
_MAX_BATCH = 500
_BATCH_TIMEOUT_MS = 25
_FETCH_MAX_WAIT_MS = 100


def subscribe_status_events(
    broker: KafkaBroker, settings: KafkaSettings, recorder: DeliveryRecorder
) -> BatchSubscriber:
    subscriber = broker.subscriber(
        settings.status_topic,
        group_id=settings.webhooks_group,
        # Commit only once the deliveries are recorded; on error rewind and redeliver.
        ack_policy=AckPolicy.NACK_ON_ERROR,
        # A new group starts from what the topic still holds: nothing published before the
        # dispatcher first ran is missed, and endpoints only get what happened after they
        # were added, so a replay sends nothing stale.
        auto_offset_reset="earliest",
        # Batches: one read, one write and one commit for up to MAX_BATCH events, instead of
        # per event (which capped a dispatcher at a few dozen events per second). An idle
        # consumer looks again every ~2 x batch_timeout_ms, which bounds the added latency.
        batch=True,
        max_records=_MAX_BATCH,
        batch_timeout_ms=_BATCH_TIMEOUT_MS,
        # How long the broker may hold a fetch with no new data. Real Kafka answers as soon as
        # a record arrives whatever this is; the embedded broker, with records on several
        # partitions, held fetches this long (~200 ms of every webhook's latency at the
        # default 500). 100 ms costs an idle consumer a few small requests a second.
        fetch_max_wait_ms=_FETCH_MAX_WAIT_MS,
        title="ferry.status (webhooks)",
        description="Job status changes recorded as webhook deliveries, then acknowledged.",
    )

    @subscriber
    async def on_status(message: KafkaMessage) -> None:
        raw = message.raw_message
        records = raw if isinstance(raw, tuple) else (raw,)
        try:
            await recorder.record_batch([record.value or b"" for record in records])
        except Exception:
            first = records[0]
            log.exception(
                "webhooks.redelivery",
                records=len(records),
                partition=first.partition,
                offset=first.offset,
            )
            await asyncio.sleep(_REDELIVERY_PAUSE_SECONDS)
            raise

    return subscriber
