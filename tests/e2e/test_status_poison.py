"""Records on the status topic no single one of which may stop its consumers: the API's read
model and the webhook dispatcher, both consuming in batches, are fed every kind of poison the
intake has met (null and non-UTF-8 headers, brackets nested thousands deep, integers of
thousands of digits, bytes that are not JSON), each followed on the same partition by a real
status event, and both must apply every real one."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest
import pytest_asyncio
from aiokafka import AIOKafkaProducer

from service.api.keys import ApiKeys
from service.config import DEV_SECRET_ENCRYPTION_KEY, Settings, settings_from_env
from service.database import Database, connect
from service.devstack import free_port
from service.provisioning import provision
from service.webhooks.endpoints import EndpointStore
from service.webhooks.secret_cipher import SecretCipher
from service.webhooks.secret_store import ProjectSecrets
from tests.support import poison
from tests.support.ferry import FerryProcess, await_log_line, ferry_command
from tests.support.infra import Infra, drop_test_database, isolated
from tests.support.receiver import Receiver
from tests.support.status_events import a_job, encoded, status_event

pytestmark = pytest.mark.e2e

POISONS = 14  # one of each kind in the corpus


@pytest.fixture(scope="module")
def poison_env(infra: Infra) -> dict[str, str]:
    # Its own database and topics: nothing else publishes here.
    return {
        **isolated(infra.env),
        "FERRY_OUTBOUND__ALLOW_LOOPBACK": "true",
        "FERRY_WEBHOOKS__POLL_SECONDS": "0.2",
    }


@pytest.fixture(scope="module")
def poison_settings(poison_env: dict[str, str]) -> Settings:
    settings = settings_from_env(poison_env)
    asyncio.run(provision(settings))
    return settings


@pytest_asyncio.fixture(scope="module")
async def poison_db(poison_settings: Settings) -> AsyncIterator[Database]:
    client = connect(poison_settings.mongo, app_name="ferry-e2e-status-poison")
    yield client[poison_settings.mongo.database]
    await client.close()
    await drop_test_database(poison_settings.mongo)


@pytest.fixture(scope="module")
def consumers(
    poison_env: dict[str, str], poison_settings: Settings, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """`ferry api` and `ferry webhooks`, both consuming the status topic; the API's URL."""
    workdir = tmp_path_factory.mktemp("status-poison")
    port = free_port()
    api = FerryProcess(
        "api",
        ferry_command("api"),
        {**poison_env, "FERRY_API__PORT": str(port)},
        workdir,
        http_port=port,
    )
    webhooks = FerryProcess("webhooks", ferry_command("webhooks"), poison_env, workdir)
    api.start()
    webhooks.start()
    try:
        await_log_line(webhooks, "webhooks.started")
        await_log_line(api, "api.started")
        yield api.url
    finally:
        webhooks.stop()
        api.stop()


async def test_no_record_on_the_status_topic_stops_the_api_or_the_webhooks(
    consumers: str, poison_settings: Settings, poison_db: Database
) -> None:
    project = f"sp{uuid.uuid4().hex[:6]}"
    with Receiver() as receiver:
        await EndpointStore(poison_db).add(project, receiver.url("/hook"), ["*"])
        await ProjectSecrets(
            poison_db, cipher=SecretCipher([DEV_SECRET_ENCRYPTION_KEY])
        ).create_if_missing(project)
        corpus = poison.corpus(project, POISONS, seed=14, near_limit_bytes=60_000)
        assert len({item.kind for item in corpus}) == POISONS
        jobs = [a_job(project) for _ in corpus]
        producer = AIOKafkaProducer(
            bootstrap_servers=poison_settings.kafka.bootstrap_servers, acks="all"
        )
        await producer.start()
        try:
            # One key for all: one partition, so each real event is read after its poison.
            for item, job in zip(corpus, jobs, strict=True):
                await producer.send_and_wait(
                    poison_settings.kafka.status_topic,
                    item.value,
                    key=project.encode(),
                    headers=list(item.headers),  # None on purpose
                )
                await producer.send_and_wait(
                    poison_settings.kafka.status_topic,
                    encoded(status_event(job)),
                    key=project.encode(),
                )
        finally:
            await producer.stop()

        received = await receiver.wait_for(
            lambda got: len(got) >= len(jobs), path="/hook", timeout=60
        )
        delivered = {json.loads(r.body)["data"]["id"] for r in received}
        assert delivered == {job.id for job in jobs}

        key = await ApiKeys(poison_db).create(project)
        async with httpx.AsyncClient(
            base_url=consumers, headers={"Authorization": f"Bearer {key}"}, timeout=10
        ) as http:
            shown = await _until_listed(http, len(jobs))
        assert shown == {job.id for job in jobs}


async def _until_listed(http: httpx.AsyncClient, count: int, timeout: float = 60) -> set[str]:
    """The ids the API lists, once it lists `count` of them (or the last answer at timeout)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    ids: set[str] = set()
    while loop.time() < deadline:
        response = await http.get("/v1/exports", params={"limit": 100})
        if response.status_code == httpx.codes.OK:
            ids = {item["id"] for item in response.json()["data"]}
            if len(ids) >= count:
                break
        await asyncio.sleep(0.2)
    return ids
