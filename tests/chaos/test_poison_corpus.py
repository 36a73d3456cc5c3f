"""Scenario 8: a generated corpus of poisons, each followed by a good request on the same key
(so on the same partition), while another project's requests keep arriving. Every poison ends
as a dead letter or a failed job with a reason; every good request completes, visible through
the API, within 60 s of its publication; the other project's status events keep flowing."""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
import uuid
from dataclasses import dataclass
from datetime import datetime

import httpx
import pytest
from aiokafka import AIOKafkaProducer, ConsumerRecord

from service.api.keys import ApiKeys
from service.clock import utcnow
from service.database import Database
from service.devstack import free_port
from service.events.submit import export_request
from service.jobs.model import JOBS_COLLECTION
from service.jobs.status import JobStatus
from tests.chaos.conftest import Scenario, record
from tests.chaos.helpers import FILTERS, jobs_of, seed, until_finished
from tests.support import poison
from tests.support.ferry import FerryProcess, ferry_command
from tests.support.kafka import read_topic

pytestmark = pytest.mark.chaos

POISONS = 28  # two of each kind
BYSTANDER_REQUESTS = 12
# The bound: the good request behind a poison completes within this many seconds.
BOUND_SECONDS = 60.0
DEAD_LETTER_MAX_BYTES = 1_000_000


@dataclass(frozen=True)
class Sent:
    job_id: str
    at: datetime  # when the broker acknowledged the request
    monotonic: float


async def _publish(
    producer: AIOKafkaProducer, topic: str, value: bytes, key: str, headers: poison.Headers = ()
) -> None:
    await producer.send_and_wait(topic, value, key=key.encode(), headers=list(headers))


async def _request(producer: AIOKafkaProducer, topic: str, project: str) -> Sent:
    job_id = str(uuid.uuid4())
    request = export_request(project_id=project, job_id=job_id, filters=FILTERS)
    await _publish(producer, topic, json.dumps(request).encode(), project)
    return Sent(job_id, utcnow(), time.monotonic())


async def _bystander(
    producer: AIOKafkaProducer, topic: str, project: str, stop: asyncio.Event
) -> list[Sent]:
    """Another project's requests, one every half second while the corpus is published."""
    sent: list[Sent] = []
    while len(sent) < BYSTANDER_REQUESTS and not (stop.is_set() and len(sent) >= 4):
        sent.append(await _request(producer, topic, project))
        await asyncio.sleep(0.5)
    return sent


def _status_events(records: list[ConsumerRecord[bytes, bytes]]) -> dict[str, float]:
    """When each job's `completed` status event was published, by job id."""
    events = (json.loads(r.value) | {"timestamp": r.timestamp / 1000} for r in records)
    return {e["subject"]: e["timestamp"] for e in events if e["data"]["status"] == "completed"}


def _api(scenario: Scenario) -> FerryProcess:
    port = free_port()
    api = FerryProcess(
        "api",
        ferry_command("api"),
        {**scenario.env, "FERRY_API__PORT": str(port)},
        scenario.workdir,
        http_port=port,
    )
    api.start()
    return api


async def _visible(http: httpx.AsyncClient, job_id: str, key: str, deadline: float) -> float:
    """Poll the API until the job is completed there; when it was seen so (or inf)."""
    while time.monotonic() < deadline:
        try:
            response = await http.get(
                f"/v1/exports/{job_id}", headers={"Authorization": f"Bearer {key}"}
            )
        except httpx.TransportError:  # the API still starting
            response = None
        if (
            response is not None
            and response.status_code == httpx.codes.OK
            and response.json()["data"]["status"] == "completed"
        ):
            return time.monotonic()
        await asyncio.sleep(0.25)
    return float("inf")


@pytest.mark.parametrize(
    "scenario",
    [
        {
            "FERRY_KAFKA__MAX_EVENT_BYTES": "900000",
            "FERRY_KAFKA__DEAD_LETTER_MAX_BYTES": str(DEAD_LETTER_MAX_BYTES),
            "FERRY_WORKER__MAX_RUNNING_PER_PROJECT": "4",
        }
    ],
    indirect=True,
)
async def test_no_poison_stops_the_requests_behind_it(  # noqa: PLR0915 - one scenario, told in order
    scenario: Scenario, scenario_db: Database
) -> None:
    settings = scenario.settings.kafka
    topic = settings.requests_topic
    project, other = f"victim-{uuid.uuid4().hex[:6]}", f"other-{uuid.uuid4().hex[:6]}"
    await seed(scenario_db, project, 20)
    await seed(scenario_db, other, 20)
    corpus = poison.corpus(project, POISONS, seed=9, near_limit_bytes=DEAD_LETTER_MAX_BYTES)
    key = await ApiKeys(scenario_db).create(project)
    api = _api(scenario)
    scenario.start_worker()
    producer = AIOKafkaProducer(bootstrap_servers=settings.bootstrap_servers, acks="all")
    await producer.start()
    try:
        # A first request of the victim, completed, shows the worker has joined its group.
        warm_up = await _request(producer, topic, project)
        await until_finished(scenario_db, [warm_up.job_id], timeout=90, logs=scenario.logs())
        stop = asyncio.Event()
        bystander = asyncio.create_task(_bystander(producer, topic, other, stop))
        good: list[Sent] = []
        for item in corpus:
            await _publish(producer, topic, item.value, project, item.headers)
            good.append(await _request(producer, topic, project))
        stop.set()
        others = await bystander
    finally:
        await producer.stop()

    try:
        async with httpx.AsyncClient(base_url=api.url, timeout=10) as http:
            deadline = time.monotonic() + BOUND_SECONDS + 30
            seen = await asyncio.gather(*(_visible(http, s.job_id, key, deadline) for s in good))
    finally:
        api.stop()
    worst_visible = max(when - sent.monotonic for sent, when in zip(good, seen, strict=True))
    jobs = {job.id: job for job in await jobs_of(scenario_db, [s.job_id for s in good])}
    worst_accept = max(
        (jobs[s.job_id].created_at - s.at).total_seconds() if s.job_id in jobs else float("inf")
        for s in good
    )

    other_jobs = await until_finished(
        scenario_db, [s.job_id for s in others], timeout=BOUND_SECONDS, logs=scenario.logs()
    )
    completed_at = _status_events(
        await read_topic(
            settings,
            settings.status_topic,
            until=lambda records: set(_status_events(records)) >= {s.job_id for s in others},
            timeout=60,
        )
    )
    worst_other = max(completed_at.get(s.job_id, float("inf")) - s.at.timestamp() for s in others)

    expected_failed = sum(item.kind in poison.FAILED_JOB_KINDS for item in corpus)
    dead = [
        r
        for r in await read_topic(
            settings,
            settings.dead_letter_topic,
            until=lambda records: len(records) >= POISONS - expected_failed,
            timeout=60,
        )
        if r.key == project.encode()
    ]
    failed = await scenario_db[JOBS_COLLECTION].count_documents(
        {"project_id": project, "error_code": "UNSUPPORTED_VALUE"}
    )
    figure = "8 poison corpus"
    record(
        figure, "poisons (kinds), each followed by a good request", f"{POISONS} ({POISONS // 2})"
    )
    record(figure, "dead letters / failed jobs", f"{len(dead)} / {failed}")
    record(figure, "worst publish -> accepted, behind a poison", f"{worst_accept:.1f}s")
    record(figure, "worst publish -> completed in the API", f"{worst_visible:.1f}s")
    record(figure, "other project: worst publish -> completed event", f"{worst_other:.1f}s")

    assert all(job.status is JobStatus.COMPLETED for job in jobs.values()), "good requests"
    assert len(jobs) == len(good)
    assert worst_accept <= BOUND_SECONDS
    assert worst_visible <= BOUND_SECONDS
    assert (failed, len(dead)) == (expected_failed, POISONS - expected_failed)
    headers = [{name: value.decode() for name, value in r.headers} for r in dead]
    assert all(h["ferry-dlq-reason"] for h in headers)
    assert not [h for h in headers if h["ferry-dlq-code"] == "INTAKE_FAILED"]
    near_limit = {
        hashlib.sha256(item.value).hexdigest(): item.value
        for item in corpus
        if item.kind == "near the size limit"
    }
    shortened = [(r, h) for r, h in zip(dead, headers, strict=True) if "ferry-dlq-truncated" in h]
    assert len(shortened) == len(near_limit)
    for dead_letter, dead_headers in shortened:
        original = near_limit[dead_headers["ferry-dlq-original-sha256"]]
        assert original.startswith(dead_letter.value)
        assert int(dead_headers["ferry-dlq-original-bytes"]) == len(original)
    assert all(job.status is JobStatus.COMPLETED for job in other_jobs)
    assert worst_other <= BOUND_SECONDS
