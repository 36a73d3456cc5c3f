"""Scenarios 2 and 3: the broker restarted during 200 requests, the database restarted while
jobs run. Nothing is lost, nothing is doubled."""

from __future__ import annotations

import asyncio
import json
import time
import uuid

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from service.database import Database
from service.devstack import DevStack
from service.events.submit import export_request
from service.jobs.model import JOBS_COLLECTION
from service.jobs.status import JobStatus
from tests.chaos.conftest import Scenario, record
from tests.chaos.helpers import FILTERS, request_exports, seed, until_finished

pytestmark = pytest.mark.chaos

REQUESTS = 200


@pytest.mark.parametrize(
    "scenario", [{"stack": "durable", "FERRY_WORKER__MAX_RUNNING_PER_PROJECT": "50"}], indirect=True
)
async def test_a_broker_restart_during_200_requests_makes_exactly_one_job_each(
    scenario: Scenario, scenario_db: Database
) -> None:
    project = f"broker-{uuid.uuid4().hex[:6]}"
    for _ in range(2):
        scenario.start_worker()
    requests = [export_request(project_id=project, filters=FILTERS) for _ in range(REQUESTS)]
    settings = scenario.settings
    producer = AIOKafkaProducer(
        bootstrap_servers=settings.kafka.bootstrap_servers,
        acks="all",
        request_timeout_ms=5000,
        retry_backoff_ms=200,
    )
    await producer.start()
    repeats = 0
    restarted_at = None
    try:
        for index, request in enumerate(requests):
            if index == REQUESTS // 2:
                restarted_at = time.monotonic()
                await asyncio.to_thread(scenario.stack.restart, "kafka")
            payload = json.dumps(request).encode()
            while True:
                try:
                    await producer.send_and_wait(
                        settings.kafka.requests_topic, payload, key=project.encode()
                    )
                    break
                except KafkaError:
                    # Not acknowledged: send again, as a careful producer does. The repeat may
                    # be a duplicate on the topic; the intake must make it one job anyway.
                    repeats += 1
                    await asyncio.sleep(0.2)
    finally:
        await producer.stop()
    published = time.monotonic() - (restarted_at or time.monotonic())

    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        count = await scenario_db[JOBS_COLLECTION].count_documents({"project_id": project})
        if count >= REQUESTS:
            break
        await asyncio.sleep(0.5)
    jobs = await scenario_db[JOBS_COLLECTION].find({"project_id": project}).to_list()
    request_ids = sorted(job["request_id"] for job in jobs)
    finished = await until_finished(
        scenario_db, [job["_id"] for job in jobs], timeout=180, logs=scenario.logs()
    )
    record("2 broker restart", "requests / jobs", f"{REQUESTS} / {len(jobs)}")
    record("2 broker restart", "sends repeated by the producer", repeats)
    record("2 broker restart", "publishing after the restart took", f"{published:.1f}s")
    record(
        "2 broker restart",
        "jobs completed",
        sum(job.status is JobStatus.COMPLETED for job in finished),
    )
    assert request_ids == sorted(request["id"] for request in requests)
    assert all(job.status is JobStatus.COMPLETED for job in finished)


@pytest.mark.parametrize(
    "scenario",
    [
        {
            "stack": "durable_db",
            "FERRY_WORKER__MAX_RUNNING_PER_PROJECT": "50",
            "FERRY_MONGO__TIMEOUT_SECONDS": "5",
        }
    ],
    indirect=True,
)
async def test_a_database_restart_mid_run_loses_and_doubles_nothing(
    scenario: Scenario, scenario_db: Database, durable_db_stack: DevStack
) -> None:
    project = f"db-{uuid.uuid4().hex[:6]}"
    expected = await seed(scenario_db, project, 4000)
    for _ in range(2):
        scenario.start_worker()
    before = await request_exports(scenario.settings, project, 10)
    while not await scenario_db[JOBS_COLLECTION].count_documents(
        {"project_id": project, "status": "processing"}
    ):
        await asyncio.sleep(0.05)
    down = time.monotonic()
    durable_db_stack.kill("mongodb")
    # Requests keep arriving while the database is away: the intake must not lose them.
    during = await request_exports(scenario.settings, project, 10)
    await asyncio.sleep(3)
    await asyncio.to_thread(durable_db_stack.restart, "mongodb")
    outage = time.monotonic() - down
    jobs = await until_finished(scenario_db, before + during, timeout=240, logs=scenario.logs())

    total = await scenario_db[JOBS_COLLECTION].count_documents({"project_id": project})
    completed = [job for job in jobs if job.status is JobStatus.COMPLETED]
    record("3 database restart", "outage", f"{outage:.1f}s (killed, restarted)")
    record("3 database restart", "jobs completed / recorded", f"{len(completed)}/20 / {total}")
    record(
        "3 database restart", "jobs that needed another attempt", sum(j.attempt > 1 for j in jobs)
    )
    assert total == 20
    assert len(completed) == 20, [(j.id, j.status, j.error_code, j.error_message) for j in jobs]
    assert all(job.result and job.result.row_count == len(expected) for job in completed)
