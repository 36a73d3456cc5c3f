"""Health endpoints, sampled metrics, consumer lag and tracing, against the real servers."""

from __future__ import annotations

import asyncio
import uuid

import httpx
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from minio import Minio
from opentelemetry import trace
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind
from prometheus_client import REGISTRY

from service.config import ObservabilitySettings, Settings, settings_from_env
from service.devstack import free_port
from service.events.kafka import make_broker
from service.jobs.ledger import Ledger
from service.observability.health import Check, serving_health
from service.observability.sampler import MetricsSampler, consumer_lag
from service.observability.tracing import configure_tracing
from service.provisioning import provision
from service.worker import run_worker
from tests.integration.conftest import new_job
from tests.support.infra import Infra, isolated
from tests.support.metrics import scrape

pytestmark = pytest.mark.integration


def check(answer: bool) -> Check:
    async def run() -> bool:
        return answer

    return run


async def never_answers() -> bool:
    await asyncio.sleep(60)
    return True


async def test_health_server_reports_each_check_and_serves_metrics() -> None:
    settings = ObservabilitySettings(health_port=free_port())
    readiness = {"mongodb": check(True), "kafka": never_answers}
    liveness = {"runner": check(False), "outbox-relay": check(True)}
    async with (
        serving_health(settings, readiness=readiness, liveness=liveness) as port,
        httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http,
    ):
        ready = await http.get("/readyz")
        # A check that hangs is a failed check, answered within the probe's timeout.
        assert (ready.status_code, ready.json()) == (
            503,
            {"status": "not_ready", "checks": {"mongodb": True, "kafka": False}},
        )
        alive = await http.get("/healthz")
        assert alive.status_code == httpx.codes.SERVICE_UNAVAILABLE
        assert alive.json()["checks"] == {"runner": False, "outbox-relay": True}
        samples = await scrape(http, "")
        names = {name for name, _, _ in samples}
        assert "ferry_outbox_published_total" in names

        readiness["kafka"] = check(True)
        liveness["runner"] = check(True)
        assert (await http.get("/readyz")).status_code == httpx.codes.OK
        assert (await http.get("/healthz")).json() == {
            "status": "ok",
            "checks": {"runner": True, "outbox-relay": True},
        }


async def test_health_server_is_off_without_a_port() -> None:
    async with serving_health(ObservabilitySettings(), readiness={}, liveness={}) as port:
        assert port is None


@pytest.fixture
async def worker_settings(infra: Infra) -> Settings:
    env = {**isolated(infra.env), "FERRY_OBSERVABILITY__HEALTH_PORT": str(free_port())}
    settings = settings_from_env(env)
    await provision(settings)
    return settings


async def test_worker_readiness_follows_the_object_store(worker_settings: Settings) -> None:
    stop = asyncio.Event()
    ready = asyncio.Event()
    worker = asyncio.create_task(run_worker(worker_settings, stop, ready=ready))
    s3 = worker_settings.s3
    host, secure = s3.split_endpoint()
    minio = Minio(
        host,
        access_key=s3.access_key.get_secret_value(),
        secret_key=s3.secret_key.get_secret_value(),
        secure=secure,
        region=s3.region,
    )
    url = f"http://127.0.0.1:{worker_settings.observability.health_port}"
    try:
        await asyncio.wait_for(ready.wait(), 60)
        async with httpx.AsyncClient(base_url=url, timeout=5) as http:
            answer = await http.get("/readyz")
            assert answer.json() == {
                "status": "ready",
                "checks": {"mongodb": True, "kafka": True, "object_store": True, "outbox": True},
            }
            alive = await http.get("/healthz")
            assert alive.status_code == httpx.codes.OK
            assert set(alive.json()["checks"]) == {
                "runner",
                "chunks",
                "outbox-relay",
                "expiry",
                "metrics",
            }

            await asyncio.to_thread(minio.remove_bucket, s3.bucket)  # empty: nothing exported
            answer = await http.get("/readyz")
            assert answer.status_code == httpx.codes.SERVICE_UNAVAILABLE
            assert answer.json()["checks"] == {
                "mongodb": True,
                "kafka": True,
                "object_store": False,
                "outbox": True,
            }
            # Liveness does not follow dependencies: restarting would not bring the bucket back.
            assert (await http.get("/healthz")).status_code == httpx.codes.OK

            await asyncio.to_thread(minio.make_bucket, s3.bucket)
            assert (await http.get("/readyz")).status_code == httpx.codes.OK
    finally:
        stop.set()
        await asyncio.wait_for(worker, 30)


async def test_sampler_reports_waiting_jobs_and_the_outbox(
    ledger: Ledger, settings: Settings
) -> None:
    for _ in range(3):
        await ledger.accept(new_job(project="sampled"))
    sampler = MetricsSampler(ledger._db, interval=60, group="unused", consumer=lambda: None)
    await sampler.sample_once()
    value = REGISTRY.get_sample_value
    assert value("ferry_jobs_in_ledger", {"kind": "export", "status": "pending"}) == 3
    assert value("ferry_jobs_in_ledger", {"kind": "export", "status": "processing"}) == 0
    assert value("ferry_outbox_backlog") == 3  # one status event per accepted job
    age = value("ferry_outbox_oldest_age_seconds")
    assert age is not None
    assert 0 <= age < 60


async def test_consumer_lag_is_what_the_group_has_not_committed(settings: Settings) -> None:
    topic = f"lag.{uuid.uuid4().hex[:8]}"
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka.bootstrap_servers)
    await producer.start()
    try:
        for n in range(5):
            await producer.send_and_wait(topic, f"record {n}".encode(), partition=n % 2)
    finally:
        await producer.stop()
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka.bootstrap_servers,
        group_id=f"lag-{uuid.uuid4().hex[:8]}",
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    await consumer.start()
    try:
        partitions = [TopicPartition(topic, n) for n in (0, 1)]
        consumer.assign(partitions)
        lags = await consumer_lag(consumer)
        assert lags == {partitions[0]: 3, partitions[1]: 2}
        # Fetched is not done: only a commit moves the lag.
        await consumer.getmany(timeout_ms=2000)
        assert sum((await consumer_lag(consumer)).values()) == 5
        await consumer.commit({partitions[0]: 3, partitions[1]: 1})
        assert await consumer_lag(consumer) == {partitions[0]: 0, partitions[1]: 1}
    finally:
        await consumer.stop()


async def test_tracing_records_a_span_per_kafka_message(settings: Settings) -> None:
    exporter = InMemorySpanExporter()
    configure_tracing("tests", exporter=exporter)
    topic = f"traced.{uuid.uuid4().hex[:8]}"
    broker = make_broker(settings.kafka, client_id="ferry-tests", tracing=True)
    await broker.start()
    try:
        await broker.publish(b"{}", topic=topic)
    finally:
        await broker.stop()
    provider = trace.get_tracer_provider()
    assert provider.force_flush()  # type: ignore[attr-defined]
    spans = exporter.get_finished_spans()
    assert spans
    assert {(span.attributes or {}).get("messaging.destination.name") for span in spans} == {topic}
    assert SpanKind.PRODUCER in {span.kind for span in spans}
    assert spans[0].resource.attributes["service.name"] == "ferry-tests"
