"""Scenario 1: 50 exports while `kill -9` hits a worker five times at random moments; and one
big export whose worker is killed twice mid-upload, continued each time from its checkpoint."""

from __future__ import annotations

import asyncio
import csv
import gzip
import hashlib
import io
import json
import random
import time
import uuid
from typing import Any

import pytest

from service.clock import utcnow
from service.config import Settings
from service.database import Database
from service.events.submit import export_request
from service.exports.checkpoints import Checkpoint
from service.jobs.model import JOBS_COLLECTION, ExportResult
from service.jobs.status import JobStatus
from tests.chaos.conftest import Scenario, record
from tests.chaos.helpers import (
    FILTERS,
    _minio,
    exported_ids,
    incomplete_uploads,
    jobs_of,
    object_keys,
    request_exports,
    seed,
    until_finished,
)
from tests.support.ferry import FerryProcess
from tests.support.kafka import publish

pytestmark = pytest.mark.chaos

JOBS = 50
BIG_JOBS = 10
KILLS = 5


async def busy_worker(scenario: Scenario, database: Database, rng: random.Random) -> FerryProcess:
    """A worker holding a lease right now, so that every kill interrupts a job."""
    while True:
        owners = await database[JOBS_COLLECTION].distinct(
            "lease_owner", {"status": "processing", "lease_expires_at": {"$gt": utcnow()}}
        )
        pids = [int(owner.split(":")[1]) for owner in owners if owner]
        candidates = [w for pid in pids if (w := scenario.worker_with_pid(pid)) is not None]
        if candidates:
            return rng.choice(candidates)
        await asyncio.sleep(0.05)


@pytest.mark.parametrize(
    "scenario",
    [
        {
            # Every job of this one project may run at once, so kills hit many in flight.
            "FERRY_WORKER__MAX_RUNNING_PER_PROJECT": "50",
            "FERRY_WORKER__CONCURRENCY": "4",
            "FERRY_WORKER__LEASE_SECONDS": "3",
            "FERRY_WORKER__HEARTBEAT_SECONDS": "1",
            # Kills aimed at busy workers can hit one job repeatedly; the crash-loop guard
            # (WORKER_LOST) is tested on its own and must not end this scenario's jobs.
            "FERRY_WORKER__MAX_LOST_LEASES": str(KILLS + 1),
        }
    ],
    indirect=True,
)
async def test_killed_workers_lose_no_job_and_leave_no_debris(
    scenario: Scenario, scenario_db: Database
) -> None:
    # Ten big files (~5.5 MB, more than one 5 MiB part, so kills land in multipart uploads)
    # and forty small ones.
    big, small = "kills-big", "kills"
    expected = {
        big: await seed(scenario_db, big, 550, padding=10_000),
        small: await seed(scenario_db, small, 300),
    }
    for _ in range(3):
        scenario.start_worker()
    started = time.monotonic()
    big_ids = await request_exports(scenario.settings, big, BIG_JOBS)
    job_ids = big_ids + await request_exports(scenario.settings, small, JOBS - BIG_JOBS)
    # Kills are aimed at running jobs; the intake's consumer group under churn is what the
    # broker and redelivery scenarios are about, so every request is recorded first.
    while len(await jobs_of(scenario_db, job_ids)) < JOBS:
        await asyncio.sleep(0.1)

    rng = random.Random(2026)
    for _ in range(KILLS):
        await asyncio.sleep(rng.uniform(0.2, 1.5))
        victim = await busy_worker(scenario, scenario_db, rng)
        scenario.kill(victim)
        scenario.start_worker()
    jobs = await until_finished(scenario_db, job_ids, timeout=240, logs=scenario.logs())
    took = time.monotonic() - started

    completed = [job for job in jobs if job.status is JobStatus.COMPLETED]
    retried = [job for job in jobs if job.attempt > 1]
    keys = object_keys(scenario.settings, "exports/")
    leftovers = incomplete_uploads(scenario.settings)
    record("1 worker kills", "jobs completed", f"{len(completed)}/{JOBS} with {KILLS} kill -9")
    record("1 worker kills", "jobs that needed another attempt", len(retried))
    record("1 worker kills", "objects / incomplete uploads", f"{len(keys)} / {len(leftovers)}")
    record("1 worker kills", "time to finish all", f"{took:.1f}s")

    assert len(completed) == JOBS, [
        (job.id, job.status.value, job.error_code, job.error_message, job.attempt)
        for job in jobs
        if job.status is not JobStatus.COMPLETED
    ]
    assert retried, "the kills should have interrupted some jobs"
    assert keys == sorted(
        key
        for job in jobs
        for key in (
            f"exports/{job.project_id}/{job.id}.csv",
            f"exports/{job.project_id}/{job.id}.manifest.json",
        )
    )
    for job in completed:
        assert isinstance(job.result, ExportResult)
        assert job.result.row_count == len(expected[job.project_id])
        assert exported_ids(scenario.settings, job.result.object_key) == expected[job.project_id]
    assert leftovers == []


PART = 5 * 1024 * 1024
BATCH = 200


async def checkpoint_past(
    database: Database, job_id: str, *, attempt: int, rows: int, timeout: float = 180
) -> Checkpoint:
    """Wait until attempt `attempt` of the job has a checkpoint past `rows` rows."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        document = await database[JOBS_COLLECTION].find_one({"_id": job_id}) or {}
        assert document.get("status") != "completed", "the export ended before the kill"
        found = document.get("checkpoint")
        if document.get("attempt") == attempt and found and found["rows"] >= rows:
            return Checkpoint.from_document(found)
        await asyncio.sleep(0.05)
    raise AssertionError(f"attempt {attempt} did not get past {rows} rows")


def stored_rows(settings: Settings, keys: list[str], *, gzipped: bool) -> tuple[list[str], bytes]:
    """The ids in the files, in order, and the files' bytes (the last one's)."""
    ids: list[str] = []
    data = b""
    for key in keys:
        response = _minio(settings).get_object(settings.s3.bucket, key)
        try:
            data = response.read()
        finally:
            response.close()
            response.release_conn()
        text = (gzip.decompress(data) if gzipped else data).decode()
        ids += [row["id"] for row in csv.DictReader(io.StringIO(text, newline=""))]
    return ids, data


CASES = {
    # One CSV file of ~30 MB: six parts.
    "csv": {"rows": 6000, "request": {}},
    # Random text gzipped 2:1, ~21 MB in two files of at most 11 MiB, each of several parts
    # (every part its own gzip member).
    "gzip-split": {
        "rows": 8000,
        "request": {"compression": "gzip", "max_file_bytes": 11 * 1024 * 1024},
    },
}


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize(
    "scenario",
    [
        {
            "FERRY_WORKER__LEASE_SECONDS": "3",
            "FERRY_WORKER__HEARTBEAT_SECONDS": "1",
            "FERRY_WORKER__BATCH_SIZE": str(BATCH),
            "FERRY_WORKER__PROGRESS_INTERVAL_SECONDS": "0.1",
            "FERRY_S3__PART_SIZE_BYTES": str(PART),
        }
    ],
    indirect=True,
)
async def test_a_big_export_killed_twice_continues_from_its_checkpoints(
    case: str, scenario: Scenario, scenario_db: Database
) -> None:
    spec: dict[str, Any] = CASES[case]
    project = f"resume-{case}"
    gzipped = spec["request"].get("compression") == "gzip"
    expected = await seed(scenario_db, project, spec["rows"], padding=5000, noise=gzipped)
    scenario.start_worker()
    job_id = str(uuid.uuid4())
    request = export_request(project_id=project, job_id=job_id, filters=FILTERS, **spec["request"])
    await publish(scenario.settings.kafka, [request], key=project.encode())

    lost: list[int] = []
    resumed_from: list[int] = []
    for attempt, share in ((1, 0.2), (2, 0.6)):
        await checkpoint_past(scenario_db, job_id, attempt=attempt, rows=int(len(expected) * share))
        scenario.kill(scenario.workers[0])
        # What the killed attempt had read beyond its last checkpoint is read again: at least
        # the progress it had published past it (saved every 0.1 s, so it may trail the
        # checkpoint: then this says 0).
        document = await scenario_db[JOBS_COLLECTION].find_one({"_id": job_id})
        assert document is not None
        final = Checkpoint.from_document(document["checkpoint"])
        lost.append(max(0, document["progress"]["rows_processed"] - final.rows))
        resumed_from.append(final.rows)
        scenario.start_worker()

    jobs = await until_finished(scenario_db, [job_id], timeout=300, logs=scenario.logs())
    job = jobs[0]
    assert job.status is JobStatus.COMPLETED, (job.error_code, job.error_message)
    assert job.attempt == 3
    result = job.result
    assert isinstance(result, ExportResult)
    if "max_file_bytes" in spec["request"]:
        assert len(result.files) >= 2
        assert all(file.size_bytes <= spec["request"]["max_file_bytes"] for file in result.files)
    ids, last = stored_rows(scenario.settings, [f.key for f in result.files], gzipped=gzipped)
    assert ids == expected  # every row once, in order
    assert hashlib.sha256(last).hexdigest() == result.files[-1].sha256
    assert incomplete_uploads(scenario.settings) == []
    # Each new attempt said where it continued from: the last checkpoint, not row zero.
    logs = "\n".join(path.read_text() for path in sorted(scenario.workdir.glob("worker-*.log")))
    lines = [json.loads(line) for line in logs.splitlines() if line.startswith("{")]
    logged = [line["rows"] for line in lines if line.get("event") == "export.resumed"]
    assert logged == resumed_from, logs[-5000:]
    assert 0 < resumed_from[0] < resumed_from[1] < len(expected)
    # A kill costs at most the part in flight, the one filling and the batches prefetched.
    rows_per_part = PART / (result.file_size_bytes / len(expected))
    assert all(n <= 2 * rows_per_part + 2 * BATCH for n in lost), lost
    name = f"1b resumed export ({case})"
    record(name, "rows / files / kills", f"{len(expected)} / {len(result.files)} / 2")
    record(name, "continued from rows", resumed_from)
    record(name, "rows re-read per kill (at least)", lost)
