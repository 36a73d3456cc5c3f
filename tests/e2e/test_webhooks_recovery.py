"""The dispatcher as a process, fed status events directly (as the outbox relay publishes them):
a status event delivered twice by Kafka, or republished under another id, makes one delivery;
a dispatcher killed with SIGKILL, mid-retry and mid-attempt, loses nothing after a restart."""

from __future__ import annotations

import asyncio
import signal
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta
from typing import Any

import pytest
import pytest_asyncio
from aiokafka import AIOKafkaProducer
from standardwebhooks import Webhook

from service.config import DEV_SECRET_ENCRYPTION_KEY, Settings, settings_from_env
from service.database import Database, connect
from service.jobs.status import JobStatus
from service.provisioning import provision
from service.webhooks.deliveries import Delivery, DeliveryStatus, DeliveryStore
from service.webhooks.endpoints import EndpointStore
from service.webhooks.secret_cipher import SecretCipher
from service.webhooks.secret_store import ProjectSecrets
from tests.support.ferry import FerryProcess, await_log_line, ferry_command
from tests.support.infra import Infra, drop_test_database, isolated
from tests.support.receiver import Receiver, Reply
from tests.support.status_events import a_job, encoded, status_event

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def recovery_env(infra: Infra) -> dict[str, str]:
    # Its own database, topics and consumer group: nothing else publishes here.
    return {
        **isolated(infra.env),
        "FERRY_OUTBOUND__ALLOW_LOOPBACK": "true",
        "FERRY_WEBHOOKS__RETRY_SCHEDULE_SCALE": "0.01",  # 0, 50 ms, 3 s, 18 s, ...
        "FERRY_WEBHOOKS__POLL_SECONDS": "0.2",
        "FERRY_WEBHOOKS__TIMEOUT_SECONDS": "3",
        "FERRY_WEBHOOKS__LEASE_SECONDS": "10",
    }


# The key the dispatcher encrypts secrets with in development, as the tests run it.
DEV_CIPHER = SecretCipher([DEV_SECRET_ENCRYPTION_KEY])


@pytest.fixture(scope="module")
def recovery_settings(recovery_env: dict[str, str]) -> Settings:
    settings = settings_from_env(recovery_env)
    asyncio.run(provision(settings))
    return settings


@pytest_asyncio.fixture(scope="module")
async def recovery_db(recovery_settings: Settings) -> AsyncIterator[Database]:
    client = connect(recovery_settings.mongo, app_name="ferry-e2e-recovery")
    yield client[recovery_settings.mongo.database]
    await client.close()
    await drop_test_database(recovery_settings.mongo)


@pytest.fixture(scope="module")
def dispatcher(
    recovery_env: dict[str, str],
    recovery_settings: Settings,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[FerryProcess]:
    process = FerryProcess(
        "webhooks", ferry_command("webhooks"), recovery_env, tmp_path_factory.mktemp("recovery")
    )
    process.start()
    await_log_line(process, "webhooks.started")
    yield process
    process.stop()


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    with Receiver() as running:
        yield running


async def endpoint(database: Database, url: str) -> tuple[str, str]:
    """A project with one `*` endpoint; (project id, its secret)."""
    project = f"rec{uuid.uuid4().hex[:6]}"
    await EndpointStore(database).add(project, url, ["*"])
    secret = await ProjectSecrets(database, cipher=DEV_CIPHER).create_if_missing(project)
    assert secret is not None
    return project, secret


async def publish_status(settings: Settings, events: list[dict[str, Any]]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka.bootstrap_servers, acks="all")
    await producer.start()
    try:
        for event in events:
            await producer.send_and_wait(
                settings.kafka.status_topic, encoded(event), key=event["subject"].encode()
            )
    finally:
        await producer.stop()


async def deliveries_of(database: Database, event_id: str) -> list[Delivery]:
    return await DeliveryStore(database, retention=timedelta(days=1)).for_event(event_id)


async def test_a_repeated_status_change_makes_one_delivery(
    dispatcher: FerryProcess,
    receiver: Receiver,
    recovery_settings: Settings,
    recovery_db: Database,
) -> None:
    project, secret = await endpoint(recovery_db, receiver.url("/dup"))
    job = a_job(project, status=JobStatus.COMPLETED, version=3)
    event = status_event(job)
    republished = {**event, "id": str(uuid.uuid4())}  # the same change under another id
    sentinel = status_event(job.model_copy(update={"version": 4, "status": JobStatus.EXPIRED}))
    # Same key, same partition: once the sentinel arrives, the three before it were consumed.
    await publish_status(recovery_settings, [event, event, republished, sentinel])
    await receiver.wait_for(lambda got: len(got) >= 2, path="/dup")
    # Both deliveries done: none is left waiting to be sent again.
    for event_id in (event["id"], sentinel["id"]):
        assert {d.status for d in await _settled(recovery_db, event_id)} == {
            DeliveryStatus.SUCCEEDED
        }
    received = receiver.received("/dup")
    assert sorted(r.headers["webhook-id"] for r in received) == sorted(
        [event["id"], sentinel["id"]]
    )
    for request in received:
        Webhook(secret).verify(request.body, request.headers)
    assert len(await deliveries_of(recovery_db, event["id"])) == 1
    assert await deliveries_of(recovery_db, republished["id"]) == []


async def test_a_killed_dispatcher_loses_nothing(
    dispatcher: FerryProcess,
    receiver: Receiver,
    recovery_settings: Settings,
    recovery_db: Database,
) -> None:
    project, secret = await endpoint(recovery_db, receiver.url("/retrying"))
    await EndpointStore(recovery_db).add(project, receiver.url("/in-flight"), ["*"])
    # One delivery fails twice and then waits 3 s for its third attempt; the other hangs in
    # the middle of its first attempt. The dispatcher is killed with both in that state.
    receiver.script("/retrying", Reply(503), Reply(503), Reply(200))
    receiver.script("/in-flight", Reply(200, delay=2.5), Reply(200))
    event = status_event(a_job(project))
    await publish_status(recovery_settings, [event])
    await receiver.wait_for(lambda got: len(got) == 2, path="/retrying")
    await receiver.wait_for(lambda got: len(got) == 1, path="/in-flight")
    await _until_attempts(recovery_db, event["id"], endpoint_attempts=2)

    dispatcher.stop(signal.SIGKILL)
    dispatcher.start()

    retried = await receiver.wait_for(lambda got: len(got) == 3, path="/retrying", timeout=60)
    resent = await receiver.wait_for(lambda got: len(got) == 2, path="/in-flight", timeout=60)
    assert {r.headers["webhook-id"] for r in (*retried, *resent)} == {event["id"]}
    for request in (*retried, *resent):
        Webhook(secret).verify(request.body, request.headers)
    # The third attempt came on schedule, not at once: the retry survived as a due time.
    assert retried[2].at - retried[1].at >= 2.9

    deliveries = await _settled(recovery_db, event["id"])
    by_path = {d.url.rsplit("/", 1)[-1]: d for d in deliveries}
    assert [a.status_code for a in by_path["retrying"].attempt_log] == [503, 503, 200]
    # The killed attempt left no record, only its lapsed claim; the one after it succeeded.
    assert [a.status_code for a in by_path["in-flight"].attempt_log] == [200]
    assert {d.status for d in deliveries} == {DeliveryStatus.SUCCEEDED}


async def _until_attempts(database: Database, event_id: str, *, endpoint_attempts: int) -> None:
    for _ in range(200):
        found = await deliveries_of(database, event_id)
        if any(d.attempts >= endpoint_attempts for d in found):
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"{event_id} never reached {endpoint_attempts} attempts")


async def _settled(database: Database, event_id: str) -> list[Delivery]:
    for _ in range(400):
        found = await deliveries_of(database, event_id)
        if found and all(d.status is DeliveryStatus.SUCCEEDED for d in found):
            return found
        await asyncio.sleep(0.05)
    return await deliveries_of(database, event_id)
