"""A chunked export across two worker processes, `kill -9` of the worker holding a chunk
mid-way: the chunk's lease lapses, another worker resumes it from its checkpoint, and the job
completes with every row once, in order, and no chunk object or upload left behind."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import time
import uuid

import pytest

from service.clock import utcnow
from service.database import Database
from service.events.submit import export_request
from service.exports.chunk_ledger import CHUNKS_COLLECTION
from service.jobs.model import ExportResult
from service.jobs.status import JobStatus
from tests.chaos.conftest import Scenario, record
from tests.chaos.helpers import (
    FILTERS,
    _minio,
    incomplete_uploads,
    object_keys,
    seed,
    until_finished,
)
from tests.support.kafka import publish

pytestmark = pytest.mark.chaos

ROWS = 6000  # ~30 MB: four chunks of ~7.5 MB, each stores a 5 MiB part mid-way


async def holder_mid_chunk(database: Database, job_id: str, timeout: float = 180) -> str:
    """The owner of a live chunk lease whose chunk has stored a part."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        async for chunk in database[CHUNKS_COLLECTION].find({"job_id": job_id}):
            parts = ((chunk.get("checkpoint") or {}).get("open_file") or {}).get("parts")
            if chunk.get("holder") and parts and chunk["expires_at"] > utcnow():
                return str(chunk["holder"])
        await asyncio.sleep(0.05)
    raise AssertionError("no chunk got a part stored")


@pytest.mark.parametrize(
    "scenario",
    [
        {
            "FERRY_WORKER__LEASE_SECONDS": "3",
            "FERRY_WORKER__HEARTBEAT_SECONDS": "1",
            "FERRY_WORKER__BATCH_SIZE": "200",
            "FERRY_EXPORT__CHUNK_ROWS": "1500",
        }
    ],
    indirect=True,
)
async def test_a_killed_chunk_worker_costs_only_its_chunk_and_the_job_completes(
    scenario: Scenario, scenario_db: Database
) -> None:
    project = "chunk-kills"
    expected = await seed(scenario_db, project, ROWS, padding=5000)
    scenario.start_worker()
    scenario.start_worker()
    job_id = str(uuid.uuid4())
    request = export_request(project_id=project, job_id=job_id, filters=FILTERS)
    await publish(scenario.settings.kafka, [request], key=project.encode())

    owner = await holder_mid_chunk(scenario_db, job_id)
    victim = scenario.worker_with_pid(int(owner.split(":")[1]))
    assert victim is not None
    scenario.kill(victim)
    scenario.start_worker()

    jobs = await until_finished(scenario_db, [job_id], timeout=300, logs=scenario.logs())
    job = jobs[0]
    assert job.status is JobStatus.COMPLETED, (job.error_code, job.error_message)
    result = job.result
    assert isinstance(result, ExportResult)
    response = _minio(scenario.settings).get_object(scenario.settings.s3.bucket, result.object_key)
    try:
        text = response.read().decode()
    finally:
        response.close()
        response.release_conn()
    ids = [row["id"] for row in csv.DictReader(io.StringIO(text, newline=""))]
    assert ids == expected  # every row once, in order
    assert object_keys(scenario.settings, f"exports/{project}/{job_id}/") == []  # no chunks
    assert incomplete_uploads(scenario.settings) == []
    logs = "\n".join(path.read_text() for path in sorted(scenario.workdir.glob("worker-*.log")))
    lines = [json.loads(line) for line in logs.splitlines() if line.startswith("{")]
    resumed = [
        line for line in lines if line.get("event") == "export.chunk_started" and line["resumed"]
    ]
    assert resumed, "the killed worker's chunk was continued from its checkpoint"
    total = max(line["chunks"] for line in lines if line.get("event") == "export.chunked")
    record("1c chunked export, worker killed", "rows / chunks / kills", f"{ROWS} / {total} / 1")
