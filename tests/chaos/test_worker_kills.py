"""Scenario 1: 50 exports while `kill -9` hits a worker five times at random moments."""

from __future__ import annotations

import asyncio
import random
import time

import pytest

from service.clock import utcnow
from service.database import Database
from service.jobs.ledger import JOBS_COLLECTION
from service.jobs.model import ExportResult
from service.jobs.status import JobStatus
from tests.chaos.conftest import Scenario, record
from tests.chaos.helpers import (
    exported_ids,
    incomplete_uploads,
    jobs_of,
    object_keys,
    request_exports,
    seed,
    until_finished,
)
from tests.support.ferry import FerryProcess

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
    assert keys == sorted(f"exports/{job.project_id}/{job.id}.csv" for job in jobs)
    for job in completed:
        assert isinstance(job.result, ExportResult)
        assert job.result.row_count == len(expected[job.project_id])
        assert exported_ids(scenario.settings, job.result.object_key) == expected[job.project_id]
    assert leftovers == []
