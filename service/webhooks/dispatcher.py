"""The `ferry webhooks` process: records deliveries from status events and sends them.

Start-up order: the delivery loop first, so pending retries resume while the consumer group is
still joining. Shutdown: stop consuming (nothing new is recorded), let attempts in flight finish
or hand them back, then close the connections.
"""

from __future__ import annotations

import asyncio
import os
import socket
import uuid
from datetime import timedelta

import structlog

from service.config import Settings
from service.database import connect
from service.events.kafka import make_broker
from service.observability.health import dependency_checks, serving_health
from service.observability.metrics import set_build_info
from service.outbound.addresses import AddressPolicy
from service.outbound.guard import DestinationGuard
from service.outbound.transport import guarded_client
from service.webhooks.deliveries import DeliveryStore
from service.webhooks.delivery_loop import DeliveryLoop
from service.webhooks.endpoints import EndpointStore
from service.webhooks.kafka import subscribe_status_events
from service.webhooks.recorder import DeliveryRecorder
from service.webhooks.secret_cipher import SecretCipher
from service.webhooks.secret_store import ProjectSecrets
from service.webhooks.sender import Sender

log = structlog.get_logger(__name__)


def dispatcher_identity() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


async def run_dispatcher(
    settings: Settings, stop: asyncio.Event, *, ready: asyncio.Event | None = None
) -> None:
    owner = dispatcher_identity()
    webhooks = settings.webhooks
    log.info("webhooks.starting", owner=owner, concurrency=webhooks.concurrency)
    client = connect(settings.mongo, app_name="ferry-webhooks")
    database = client[settings.mongo.database]
    endpoints = EndpointStore(database)
    deliveries = DeliveryStore(database, retention=timedelta(seconds=webhooks.retention_seconds))
    http = guarded_client(
        DestinationGuard(AddressPolicy.from_settings(settings.outbound)),
        timeout=webhooks.timeout_seconds,
        max_connections=webhooks.concurrency,
    )
    loop = DeliveryLoop(
        deliveries,
        endpoints,
        ProjectSecrets(database, cipher=SecretCipher.from_settings(webhooks)),
        Sender(http, timeout=webhooks.timeout_seconds),
        webhooks,
        owner=owner,
    )
    broker = make_broker(settings.kafka, client_id=f"ferry-webhooks-{owner}")
    subscriber = subscribe_status_events(
        broker, settings.kafka, DeliveryRecorder(endpoints, deliveries, handoff=loop)
    )
    loop_stop = asyncio.Event()
    stopping = asyncio.ensure_future(stop.wait())
    delivering: asyncio.Task[None] | None = None
    starting: asyncio.Task[None] | None = None

    async def delivery_loop_alive() -> bool:
        return delivering is None or not delivering.done() or stop.is_set()

    set_build_info()
    try:
        async with serving_health(
            settings.observability,
            readiness=dependency_checks(database, broker),
            liveness={"deliveries": delivery_loop_alive},
        ):
            await endpoints.ensure_indexes()
            await deliveries.ensure_indexes()
            delivering = asyncio.create_task(loop.run(loop_stop), name="webhook-deliveries")
            # Joining the consumer group can take a while (after a crash, until the dead
            # member's session expires); deliveries go on meanwhile, and a stop request is not
            # held up.
            starting = asyncio.create_task(broker.start(), name="kafka-start")
            await asyncio.wait(
                {starting, stopping, delivering}, return_when=asyncio.FIRST_COMPLETED
            )
            if starting.done():
                starting.result()
                log.info("webhooks.started", owner=owner)
                if ready is not None:
                    ready.set()
                await asyncio.wait({stopping, delivering}, return_when=asyncio.FIRST_COMPLETED)
            if delivering.done():
                # The loop only ends when told to; anything else is a crash the process must not
                # outlive, or it would consume and record but never send.
                delivering.result()
                raise RuntimeError("the delivery loop stopped unexpectedly")
    finally:
        log.info("webhooks.stopping", owner=owner)
        stopping.cancel()
        if starting is not None and not starting.done():
            starting.cancel()
            await asyncio.gather(starting, return_exceptions=True)
        await subscriber.stop()
        loop_stop.set()
        if delivering is not None:
            await delivering
        await broker.stop()
        await http.aclose()
        await client.close()
        log.info("webhooks.stopped", owner=owner)
