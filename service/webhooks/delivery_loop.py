"""The delivery loop: claims due deliveries, sends them signed, and records what happened.

Any number of dispatchers run it against the same collection; a claim is a compare-and-set,
so each delivery is sent by one of them at a time. Nothing is held in memory
that a crash could lose: a pending retry is a document with a `due_at`, and a delivery claimed
by a dispatcher that died is due again when its claim lapses.

Claims are made in batches into a short local queue that `concurrency` senders take from: one
claim per delivery would cap a dispatcher at one database round trip per webhook. The claims
and the recorder's hand-overs each fill the queue up to `concurrency`, so a queued delivery
waits at most two attempts of the senders before its own, and the lease (longer than three
attempts) still covers it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta

import structlog

from service.clock import utcnow
from service.config import WebhookSettings
from service.observability.metrics import WebhookOutcome
from service.webhooks.deliveries import Attempt, Claim, Delivery, DeliveryStatus, DeliveryStore
from service.webhooks.endpoints import DisabledReason, Endpoint, EndpointStore
from service.webhooks.metrics import record_delivery_attempt, record_endpoint_disabled
from service.webhooks.schedule import next_delay, verdict
from service.webhooks.secret_store import ProjectSecrets
from service.webhooks.sender import AttemptResult, Sender
from service.webhooks.signing import signed_headers

log = structlog.get_logger(__name__)

# Never spin: even when something looks due at once, wait this long before looking again.
_MIN_WAIT_SECONDS = 0.005


@dataclass(frozen=True)
class _Claimed:
    """A delivery this dispatcher holds, with what sending it needs."""

    delivery: Delivery
    endpoint: Endpoint | None
    secrets: Sequence[str]


class DeliveryLoop:
    def __init__(
        self,
        deliveries: DeliveryStore,
        endpoints: EndpointStore,
        secrets: ProjectSecrets,
        sender: Sender,
        settings: WebhookSettings,
        *,
        owner: str,
    ) -> None:
        self._deliveries = deliveries
        self._endpoints = endpoints
        self._secrets = secrets
        self._sender = sender
        self._settings = settings
        self._owner = owner
        self._lease = timedelta(seconds=settings.lease_seconds)
        self._disable_after = timedelta(seconds=settings.disable_after_failing_seconds)
        self._delays = settings.retry_delays
        self._wakeup = asyncio.Event()
        self._queue: asyncio.Queue[_Claimed | None] = asyncio.Queue()

    def wake(self) -> None:
        """Deliveries were just recorded: look now rather than at the next poll."""
        self._wakeup.set()

    def room(self) -> Claim | None:
        """The claim under which the recorder may hand over new deliveries: as many as the
        queue has room for, so none waits longer than its lease allows."""
        free = self._settings.concurrency - self._queue.qsize()
        return Claim(self._owner, self._lease, free) if free > 0 else None

    async def take(self, claimed: Sequence[Delivery], endpoints: Mapping[str, Endpoint]) -> None:
        """Send deliveries the recorder has just recorded as claimed for this loop."""
        secrets = await self._secrets.signing_secrets(d.project_id for d in claimed)
        self._enqueue(claimed, endpoints, secrets)

    async def run(self, stop: asyncio.Event) -> None:
        senders = [
            asyncio.create_task(self._send_queued(), name=f"webhook-sender-{n}")
            for n in range(self._settings.concurrency)
        ]
        try:
            while not stop.is_set():
                room = self._settings.concurrency - self._queue.qsize()
                claimed = await self._claim(room) if room > 0 else 0
                if room > 0 and claimed == room:
                    continue  # there may be more due right now
                await self._idle(stop, look_for_due=room > 0)
        finally:
            await self._shutdown(senders)

    async def _claim(self, limit: int) -> int:
        """Claim up to `limit` due deliveries into the queue; how many were claimed."""
        self._wakeup.clear()  # what is recorded from now on wakes the next wait
        try:
            claimed = await self._deliveries.claim(self._owner, limit=limit, lease=self._lease)
            if not claimed:
                return 0
            endpoints, secrets = await asyncio.gather(
                self._endpoints.many(d.endpoint_id for d in claimed if d.endpoint_id),
                self._secrets.signing_secrets(d.project_id for d in claimed),
            )
        except Exception:
            # The database is away: what was claimed lapses and is sent later.
            log.exception("webhooks.claim_failed")
            return 0
        self._enqueue(claimed, endpoints, secrets)
        return len(claimed)

    def _enqueue(
        self,
        claimed: Sequence[Delivery],
        endpoints: Mapping[str, Endpoint],
        secrets: Mapping[str, list[str]],
    ) -> None:
        for delivery in claimed:
            endpoint = endpoints.get(delivery.endpoint_id) if delivery.endpoint_id else None
            self._queue.put_nowait(
                _Claimed(delivery, endpoint, secrets.get(delivery.project_id, []))
            )

    async def _idle(self, stop: asyncio.Event, *, look_for_due: bool) -> None:
        timeout = self._settings.poll_seconds
        if look_for_due:
            try:
                due = await self._deliveries.next_due()
            except Exception:
                log.exception("webhooks.poll_failed")
                due = None
            if due is not None:
                timeout = min(timeout, (due - utcnow()).total_seconds())
        waits = {asyncio.ensure_future(self._wakeup.wait()), asyncio.ensure_future(stop.wait())}
        await asyncio.wait(
            waits, timeout=max(timeout, _MIN_WAIT_SECONDS), return_when="FIRST_COMPLETED"
        )
        for waiter in waits:
            waiter.cancel()

    async def _send_queued(self) -> None:
        while (claimed := await self._queue.get()) is not None:
            self._wakeup.set()  # room in the queue: claim more
            await self._deliver(claimed.delivery, claimed.endpoint, claimed.secrets)

    async def _shutdown(self, senders: list[asyncio.Task[None]]) -> None:
        # What waits in the queue goes back at once; what is being sent gets the time of one
        # attempt to finish, then is handed back too.
        while not self._queue.empty():
            queued = self._queue.get_nowait()
            if queued is not None:
                with contextlib.suppress(Exception):
                    await self._deliveries.release(queued.delivery)
        for _ in senders:
            self._queue.put_nowait(None)
        _, unfinished = await asyncio.wait(senders, timeout=self._settings.timeout_seconds + 1)
        for task in unfinished:
            task.cancel()
        await asyncio.gather(*senders, return_exceptions=True)

    # One delivery -------------------------------------------------------------------------

    async def _deliver(
        self, delivery: Delivery, endpoint: Endpoint | None, secrets: Sequence[str]
    ) -> None:
        bound = log.bind(
            delivery_id=delivery.id,
            event_id=delivery.event_id,
            endpoint_id=delivery.endpoint_id,
            project_id=delivery.project_id,
        )
        try:
            if delivery.endpoint_id is not None and (endpoint is None or not endpoint.enabled):
                reason = (
                    "the endpoint was removed"
                    if endpoint is None
                    else f"the endpoint is disabled ({endpoint.disabled_reason})"
                )
                await self._deliveries.finish(
                    delivery, attempt=None, status=DeliveryStatus.FAILED, error=reason
                )
                bound.info("webhook.not_sent", reason=reason)
                return
            result = await self._attempt(delivery, secrets)
            await self._record(delivery, endpoint, result, bound)
        except asyncio.CancelledError:
            # Stopping: hand the delivery back so it is sent at once, by us or another.
            await asyncio.shield(self._hand_back(delivery, bound))
            raise
        except Exception as exc:  # noqa: BLE001 - logged, and counted as a failed attempt
            bound.exception("webhook.delivery_crashed")
            # Counted as a failed attempt, so a delivery that keeps crashing runs through its
            # schedule and fails, instead of being claimed again for ever. If even that cannot
            # be written, its claim lapses and it is tried again: nothing is lost.
            crashed = Attempt(
                at=utcnow(), latency_ms=0.0, error=f"internal error: {type(exc).__name__}: {exc}"
            )
            with contextlib.suppress(Exception):
                await self._record(delivery, endpoint, AttemptResult(crashed), bound)

    async def _attempt(self, delivery: Delivery, secrets: Sequence[str]) -> AttemptResult:
        if not secrets:
            # Never sent unsigned. This is a notify_url of a project that has no secret yet;
            # the retries give its owner time to make one.
            message = (
                f"project {delivery.project_id} has no webhook signing secret; make one with "
                f"`ferry webhooks rotate-secret --project {delivery.project_id}`"
            )
            return AttemptResult(Attempt(at=utcnow(), latency_ms=0.0, error=message))
        headers = signed_headers(
            secrets, message_id=delivery.event_id, sent_at=utcnow(), body=delivery.body
        )
        return await self._sender.send(delivery.url, delivery.body, headers)

    async def _record(
        self,
        delivery: Delivery,
        endpoint: Endpoint | None,
        result: AttemptResult,
        bound: structlog.typing.FilteringBoundLogger,
    ) -> None:
        attempt = result.attempt
        outcome: WebhookOutcome
        match verdict(attempt.status_code):
            case "succeeded":
                outcome = "succeeded"
                status = DeliveryStatus.SUCCEEDED
                retry_at = None
                if endpoint is not None and endpoint.failing_since is not None:
                    await self._endpoints.note_success(endpoint.id)
            case "gone":
                # The receiver wants nothing more: no retry; an endpoint is turned off too.
                status, retry_at = DeliveryStatus.FAILED, None
                outcome = "failed_permanent" if endpoint is None else "endpoint_disabled"
                if endpoint is not None:
                    await self._disable(endpoint, "gone")
            case "failed":
                delay = next_delay(
                    delivery.cycle_attempts + 1, self._delays, retry_after=result.retry_after
                )
                disabled = endpoint is not None and await self._failing_too_long(endpoint)
                if disabled:
                    outcome, status, retry_at = "endpoint_disabled", DeliveryStatus.FAILED, None
                elif delay is None:
                    outcome, status, retry_at = "failed_permanent", DeliveryStatus.FAILED, None
                else:
                    outcome = "blocked" if result.refused else "retry_scheduled"
                    status = DeliveryStatus.PENDING
                    retry_at = utcnow() + timedelta(seconds=delay)
        if not await self._deliveries.finish(
            delivery, attempt=attempt, status=status, retry_at=retry_at
        ):
            bound.warning("webhook.claim_lost")  # it lapsed; the new holder's attempt counts
        record_delivery_attempt(
            outcome,
            attempt.latency_ms / 1000,
            delivery_id=delivery.id,
            event_id=delivery.event_id,
            event_type=delivery.event_type,
            endpoint_id=delivery.endpoint_id,
            project_id=delivery.project_id,
            attempt=delivery.cycle_attempts + 1,
            status_code=attempt.status_code,
            error=attempt.error,
            retry_at=retry_at.isoformat() if retry_at else None,
        )

    async def _failing_too_long(self, endpoint: Endpoint) -> bool:
        """Note the failure; True when it made the endpoint disabled."""
        now = utcnow()
        noted = await self._endpoints.note_failure(endpoint.id, now)
        if noted is None or noted.failing_since is None:
            return False
        if now - noted.failing_since < self._disable_after:
            return False
        return await self._disable(noted, "failing")

    async def _disable(self, endpoint: Endpoint, reason: DisabledReason) -> bool:
        disabled = await self._endpoints.disable_if_enabled(endpoint.id, reason)
        if disabled:
            record_endpoint_disabled(endpoint.id, endpoint.project_id, reason=reason)
        return disabled

    async def _hand_back(
        self, delivery: Delivery, bound: structlog.typing.FilteringBoundLogger
    ) -> None:
        try:
            await self._deliveries.release(delivery)
        except Exception:  # noqa: BLE001 - logged; the claim lapses instead
            bound.exception("webhook.hand_back_failed")
