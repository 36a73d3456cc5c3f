"""From status events to durable deliveries: who wants each, and one record per destination.

This is all the Kafka handler does, for a whole batch of events at once (one indexed read, one
insert), so it acknowledges in milliseconds; the sending, which may wait on a slow receiver, is
the delivery loop's. As many new deliveries as the loop has room for are recorded already
claimed by it and handed over, so a first attempt does not wait for a query to find it again.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol

import structlog

from service.observability.metrics import observe_status_lag
from service.webhooks.deliveries import Claim, Delivery, DeliveryStore, Destination
from service.webhooks.endpoints import Endpoint, EndpointStore
from service.webhooks.payload import UnreadableEventError, WebhookMessage, webhook_message

log = structlog.get_logger(__name__)


class Handoff(Protocol):
    """Who sends what the recorder records (the dispatcher's delivery loop)."""

    def room(self) -> Claim | None:
        """How many new deliveries it can start sending now, or None."""

    async def take(self, claimed: Sequence[Delivery], endpoints: Mapping[str, Endpoint]) -> None:
        """Start sending deliveries recorded as claimed for it."""

    def wake(self) -> None:
        """Pending deliveries were recorded: look for them now."""


class DeliveryRecorder:
    def __init__(
        self, endpoints: EndpointStore, deliveries: DeliveryStore, *, handoff: Handoff | None = None
    ) -> None:
        self._endpoints = endpoints
        self._deliveries = deliveries
        self._handoff = handoff

    async def record(self, raw: bytes) -> int:
        """Deliveries recorded for one status event (0 for other events and repeats). Raises
        UnreadableEventError for an event that breaks its contract."""
        message = webhook_message(raw)
        return 0 if message is None else await self._record([message])

    async def record_batch(self, raws: Sequence[bytes]) -> int:
        """`record` for a batch of events, in one read and one write. An unreadable event is
        logged and skipped: only Ferry writes the topic, so it is a bug to see, and holding the
        rest of the batch back for it would stop every webhook."""
        messages: list[WebhookMessage] = []
        for raw in raws:
            try:
                message = webhook_message(raw)
            except UnreadableEventError:
                log.exception("webhooks.unreadable_event", size=len(raw))
                continue
            if message is not None:
                messages.append(message)
        return await self._record(messages) if messages else 0

    async def _record(self, messages: Sequence[WebhookMessage]) -> int:
        endpoints = await self._endpoints.enabled_in(message.project_id for message in messages)
        batch: list[tuple[WebhookMessage, list[Destination]]] = []
        wanted: dict[str, Endpoint] = {}
        for message in messages:
            destinations = []
            for endpoint in endpoints.get(message.project_id, []):
                if endpoint.wants(message.event_type, at=message.occurred_at):
                    destinations.append(Destination(url=endpoint.url, endpoint_id=endpoint.id))
                    wanted[endpoint.id] = endpoint
            if message.notify_url is not None:
                destinations.append(Destination(url=message.notify_url))
            batch.append((message, destinations))
        claim = self._handoff.room() if self._handoff is not None else None
        recorded = await self._deliveries.record_many(batch, claim=claim)
        for message in messages:
            observe_status_lag("webhooks", message.occurred_at)
        if self._handoff is not None:
            if recorded.claimed:
                await self._handoff.take(recorded.claimed, wanted)
            if len(recorded.new) > len(recorded.claimed):
                self._handoff.wake()
        if recorded.new:
            log.debug(
                "webhook.recorded",
                events=len(messages),
                deliveries=len(recorded.new),
                sent_at_once=len(recorded.claimed),
            )
        return len(recorded.new)
