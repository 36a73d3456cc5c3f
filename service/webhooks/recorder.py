"""From a status event to durable deliveries: who wants it, and one record per destination.

This is all the Kafka handler does (a few indexed reads and one insert), so it acknowledges in
milliseconds; the sending, which may wait on a slow receiver, is the delivery loop's.
"""

from __future__ import annotations

from collections.abc import Callable

import structlog

from service.webhooks.deliveries import DeliveryStore, Destination
from service.webhooks.endpoints import EndpointStore
from service.webhooks.payload import webhook_message

log = structlog.get_logger(__name__)


class DeliveryRecorder:
    def __init__(
        self,
        endpoints: EndpointStore,
        deliveries: DeliveryStore,
        *,
        on_recorded: Callable[[], None] = lambda: None,
    ) -> None:
        self._endpoints = endpoints
        self._deliveries = deliveries
        self._on_recorded = on_recorded

    async def record(self, raw: bytes) -> int:
        """Deliveries recorded for one status event (0 for other events and repeats). Raises
        UnreadableEventError for an event that breaks its contract."""
        message = webhook_message(raw)
        if message is None:
            return 0
        endpoints = await self._endpoints.subscribed(
            message.project_id, message.event_type, at=message.occurred_at
        )
        destinations = [Destination(url=e.url, endpoint_id=e.id) for e in endpoints]
        if message.notify_url is not None:
            destinations.append(Destination(url=message.notify_url))
        created = await self._deliveries.record(message, destinations)
        if created:
            self._on_recorded()
            log.debug(
                "webhook.recorded",
                event_id=message.event_id,
                event_type=message.event_type,
                job_id=message.job_id,
                version=message.version,
                deliveries=created,
            )
        return created
