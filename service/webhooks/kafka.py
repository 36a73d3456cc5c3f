"""FastStream wiring of the dispatcher: its own consumer group on the status topic. Thin; the
recorder does the work."""

from __future__ import annotations

from typing import TYPE_CHECKING

from faststream.kafka import KafkaBroker

from service.config import KafkaSettings
from service.events.kafka import subscribe_batches
from service.webhooks.recorder import DeliveryRecorder

if TYPE_CHECKING:
    from faststream.kafka.subscriber.usecase import BatchSubscriber


def subscribe_status_events(
    broker: KafkaBroker, settings: KafkaSettings, recorder: DeliveryRecorder
) -> BatchSubscriber:
    # Commits once the deliveries are recorded. A new group starts from what the topic still
    # holds: nothing published before the dispatcher first ran is missed, and endpoints only
    # get what happened after they were added, so a replay sends nothing stale.
    return subscribe_batches(
        broker,
        settings.status_topic,
        group_id=settings.webhooks_group,
        handle=recorder.record_batch,
        title="ferry.status (webhooks)",
        description="Job status changes recorded as webhook deliveries, then acknowledged.",
    )
