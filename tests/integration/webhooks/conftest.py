"""Webhook integration fixtures: the stores on clean collections, fast settings, a receiver."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Self

import httpx
import pytest

from service.config import WebhookSettings
from service.database import Database
from service.outbound.addresses import AddressPolicy
from service.outbound.guard import DestinationGuard
from service.outbound.transport import guarded_client
from service.webhooks.deliveries import DELIVERIES_COLLECTION, Delivery, DeliveryStore
from service.webhooks.delivery_loop import DeliveryLoop
from service.webhooks.endpoints import ENDPOINTS_COLLECTION, EndpointStore
from service.webhooks.recorder import DeliveryRecorder
from service.webhooks.secret_cipher import SecretCipher, new_encryption_key
from service.webhooks.secret_store import SECRETS_COLLECTION, ProjectSecrets
from service.webhooks.sender import Sender
from tests.support.receiver import Receiver

# One key for the session, as one deployment has.
CIPHER = SecretCipher([new_encryption_key()])


class Stores:
    """The three webhook collections of the test database, emptied first (claims take any due
    delivery, so tests must not see each other's)."""

    def __init__(self, database: Database) -> None:
        self.database = database
        self.endpoints = EndpointStore(database)
        self.deliveries = DeliveryStore(database, retention=timedelta(days=1))
        self.secrets = ProjectSecrets(database, cipher=CIPHER)

    async def reset(self) -> Stores:
        for name in (DELIVERIES_COLLECTION, ENDPOINTS_COLLECTION, SECRETS_COLLECTION):
            await self.database[name].delete_many({})
        await self.endpoints.ensure_indexes()
        await self.deliveries.ensure_indexes()
        return self


def fast_settings(**overrides: float) -> WebhookSettings:
    values: dict[str, float] = {
        "timeout_seconds": 2.0,
        "lease_seconds": 7.0,
        "poll_seconds": 0.1,
        "retry_schedule_scale": 0.004,  # 0, 20 ms, 1.2 s, 7.2 s, ...
    }
    values.update(overrides)
    return WebhookSettings.model_validate(values)


@pytest.fixture
async def stores(database: Database) -> Stores:
    return await Stores(database).reset()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with Receiver() as running:
        yield running


class RunningLoop:
    """A delivery loop (one dispatcher's sending half) running in this event loop."""

    def __init__(self, stores: Stores, settings: WebhookSettings, *, owner: str = "test") -> None:
        self.stores = stores
        self.settings = settings
        self._owner = owner
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._client: httpx.AsyncClient | None = None
        self.loop: DeliveryLoop | None = None

    async def __aenter__(self) -> Self:
        self._client = guarded_client(
            DestinationGuard(AddressPolicy(allow_loopback=True)),
            timeout=self.settings.timeout_seconds,
        )
        self.loop = DeliveryLoop(
            self.stores.deliveries,
            self.stores.endpoints,
            self.stores.secrets,
            Sender(self._client, timeout=self.settings.timeout_seconds),
            self.settings,
            owner=self._owner,
        )
        self._task = asyncio.create_task(self.loop.run(self._stop))
        return self

    async def __aexit__(self, *_: object) -> None:
        self._stop.set()
        if self._task is not None:
            await self._task
        if self._client is not None:
            await self._client.aclose()

    def recorder(self) -> DeliveryRecorder:
        assert self.loop is not None
        return DeliveryRecorder(self.stores.endpoints, self.stores.deliveries, handoff=self.loop)


async def wait_for_delivery(
    stores: Stores,
    event_id: str,
    condition: Callable[[list[Delivery]], bool],
    *,
    timeout: float = 30.0,
) -> list[Delivery]:
    """Poll the event's deliveries until `condition` holds."""
    deadline = time.monotonic() + timeout
    found: list[Delivery] = []
    while time.monotonic() < deadline:
        found = await stores.deliveries.for_event(event_id)
        if condition(found):
            return found
        await asyncio.sleep(0.05)
    states = [(d.destination, d.status.value, d.attempts, d.last_error) for d in found]
    raise AssertionError(f"deliveries of {event_id} never met the condition: {states}")
