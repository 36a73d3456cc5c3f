"""What an operator sees: the running `ferry api` and `ferry worker` processes' /metrics move
with an export, their probes answer, and consumer lag covers every partition."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from service.config import Settings
from service.database import Database
from service.demo import demo_messages, load_messages
from service.events.submit import export_request
from tests.e2e.conftest import api_key, wait_for_job
from tests.support.ferry import RunningFerry
from tests.support.kafka import publish
from tests.support.metrics import Samples, scrape, series, total

pytestmark = pytest.mark.e2e

END = datetime(2025, 6, 1, tzinfo=UTC)


async def scrape_workers(http: httpx.AsyncClient, ferry: RunningFerry) -> Samples:
    """Every worker's samples together: counters are per process, so totals are sums."""
    samples: Samples = []
    for worker in ferry.workers:
        samples += await scrape(http, worker.url)
    return samples


async def test_an_export_moves_the_metrics_of_the_running_processes(
    ferry: RunningFerry, e2e_settings: Settings, e2e_db: Database, http: httpx.AsyncClient
) -> None:
    assert ferry.api is not None
    project = f"met{uuid.uuid4().hex[:6]}"
    rows = demo_messages(project, 400, end=END, span=timedelta(days=1), seed=3)
    await load_messages(e2e_db, rows)
    headers = await api_key(e2e_db, project)
    before = await scrape_workers(http, ferry)
    api_before = await scrape(http, ferry.api.url)

    job_id = str(uuid.uuid4())
    request = export_request(
        project_id=project,
        job_id=job_id,
        filters={
            "start_time": (END - timedelta(days=1)).isoformat(),
            "end_time": END.isoformat(),
            "direction": "outbound",
        },
    )
    await publish(e2e_settings.kafka, [request], key=project.encode())
    view = await wait_for_job(http, job_id, headers)
    assert view["status"] == "completed"
    assert view["row_count"] > 0

    # The relay counts a status change once it has published it: by the time the API shows
    # the job completed, the event has left. Other tests' jobs may finish meanwhile, hence >=.
    after = await scrape_workers(http, ferry)

    def moved(name: str, **labels: str) -> float:
        return total(after, name, **labels) - total(before, name, **labels)

    assert moved("ferry_requests_total", outcome="created") >= 1
    assert moved("ferry_jobs_total", kind="export", status="pending") >= 1
    assert moved("ferry_jobs_total", kind="export", status="processing") >= 1
    assert moved("ferry_jobs_total", kind="export", status="completed") >= 1
    assert moved("ferry_job_duration_seconds_count", kind="export", outcome="succeeded") >= 1
    assert moved("ferry_job_rows_per_second_count", kind="export", dataset="messages") >= 1
    assert (
        moved("ferry_rows_processed_total", kind="export", dataset="messages")
        >= (view["row_count"])
    )
    assert moved("ferry_outbox_published_total") >= 3
    assert series(after, "ferry_build_info")
    assert total(after, "ferry_jobs_running") == 0

    api_after = await scrape(http, ferry.api.url)
    route = "/v1/exports/{export_id}"
    assert (
        total(api_after, "ferry_http_requests_total", method="GET", route=route, status="200")
        - total(api_before, "ferry_http_requests_total", method="GET", route=route, status="200")
        >= 1
    )
    # Routes are templates, never raw paths: a job id never becomes a label.
    assert not [
        labels
        for labels in series(api_after, "ferry_http_requests_total")
        if job_id in labels["route"]
    ]


async def test_sampled_metrics_cover_the_ledger_and_every_request_partition(
    ferry: RunningFerry, e2e_settings: Settings, http: httpx.AsyncClient
) -> None:
    partitions = {str(n) for n in range(e2e_settings.kafka.topic_partitions)}
    deadline = asyncio.get_running_loop().time() + 30
    while True:
        samples = await scrape_workers(http, ferry)
        lag = [
            labels
            for labels in series(samples, "ferry_consumer_lag")
            if labels["topic"] == e2e_settings.kafka.requests_topic
        ]
        # Each partition is assigned to exactly one of the workers.
        if sorted(labels["partition"] for labels in lag) == sorted(partitions):
            break
        if asyncio.get_running_loop().time() > deadline:
            pytest.fail(f"consumer lag does not cover partitions {partitions}: {lag}")
        await asyncio.sleep(0.5)
    assert {labels["group"] for labels in lag} == {e2e_settings.kafka.intake_group}
    for status in ("pending", "processing"):
        assert series(samples, "ferry_jobs_in_ledger")
        assert total(samples, "ferry_jobs_in_ledger", kind="export", status=status) >= 0
    assert series(samples, "ferry_outbox_backlog")


async def test_every_process_answers_its_probes(
    ferry: RunningFerry, http: httpx.AsyncClient
) -> None:
    assert ferry.api is not None
    for process in [ferry.api, *ferry.workers]:
        ready = await http.get(f"{process.url}/readyz")
        assert ready.status_code == httpx.codes.OK, process.name
        dependencies = {"mongodb": True, "kafka": True, "object_store": True}
        if process is not ferry.api:
            dependencies["outbox"] = True  # workers: the oldest unpublished event is fresh
        assert ready.json()["checks"] == dependencies
        alive = await http.get(f"{process.url}/healthz")
        assert alive.status_code == httpx.codes.OK, process.name
    worker_alive = (await http.get(f"{ferry.workers[0].url}/healthz")).json()
    assert worker_alive["checks"] == {
        "runner": True,
        "chunks": True,
        "outbox-relay": True,
        "expiry": True,
        "metrics": True,
    }
