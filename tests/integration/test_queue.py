"""A waiting job's place in line and reason, from what the workers hold (real MongoDB): its
project's slots, the workers' capacity, and retry backoffs, across projects."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from service.database import Database
from service.jobs.ledger import ClaimPolicy, Lease, Ledger
from service.jobs.queue import Queue, Waiting
from service.jobs.slots import ProjectSlots
from service.jobs.workers import WORKERS_COLLECTION, WorkerPresence
from tests.integration.conftest import new_job

pytestmark = pytest.mark.integration

LIMIT = 3
POLICY = ClaimPolicy(lease=timedelta(minutes=5), max_lost_leases=3, max_running_per_project=LIMIT)
T0 = datetime(2025, 12, 1, tzinfo=UTC)


async def test_the_reason_names_the_limit_that_holds_the_job(
    ledger: Ledger, database: Database
) -> None:
    await database[WORKERS_COLLECTION].delete_many({})
    queue = Queue(database, max_running_per_project=LIMIT)
    a1, b1, a2 = (
        new_job(project, created_at=T0 + timedelta(seconds=n))
        for n, project in enumerate(("qa", "qb", "qa"))
    )
    for job in (a1, b1, a2):
        await ledger.accept(job)

    assert await queue.waiting(a1.id) == Waiting(1, "no worker is running")
    await WorkerPresence(database).report("w1", concurrency=2)
    assert await queue.waiting(a1.id) == Waiting(
        1, "next: a worker with a free slot takes it at its next poll"
    )
    assert await queue.waiting(a2.id) == Waiting(3, "2 jobs ahead of it start first")

    # Project qb's slots are all held (by jobs on other workers): its job is held by the
    # project's limit, and the jobs of other projects no longer wait behind it.
    slots = ProjectSlots(database)
    for index in range(LIMIT):
        assert await slots.take("qb", f"elsewhere-{index}#1", limit=LIMIT, lease=POLICY.lease)
    assert await queue.waiting(b1.id) == Waiting(
        2, f"project limit of {LIMIT} running jobs reached"
    )
    assert await queue.waiting(a2.id) == Waiting(2, "1 job ahead of it starts first")

    # The only worker runs two jobs, its concurrency: the next one waits for a worker.
    running = [await ledger.claim("w1", POLICY), await ledger.claim("w1", POLICY)]
    assert [job.id for job in running if job] == [a1.id, a2.id]
    assert await queue.waiting(a2.id) is None  # not pending any more
    a3 = new_job("qa", created_at=T0 + timedelta(seconds=3))
    await ledger.accept(a3)
    assert await queue.waiting(a3.id) == Waiting(
        1, "all 2 job slots of the 1 running workers are busy"
    )

    # A job waiting on its retry backoff says so, and is not ahead of anyone.
    claimed = running[0]
    assert claimed is not None
    await ledger.retry(
        Lease(claimed.id, "w1", claimed.attempt),
        code="STORAGE_UNAVAILABLE",
        message="the store did not answer",
        run_after=datetime(2999, 1, 1, tzinfo=UTC),
    )
    assert await queue.waiting(a1.id) == Waiting(
        None, "retrying after STORAGE_UNAVAILABLE at 2999-01-01T00:00:00Z (attempt 2)"
    )
    assert (await queue.waiting(a3.id) or Waiting(0, "")).position == 1


async def test_a_worker_that_left_or_stopped_reporting_is_not_counted(database: Database) -> None:
    await database[WORKERS_COLLECTION].delete_many({})
    # Reports a minute apart: both still count however slowly the database answers. (With
    # 10 ms apart, w1 had missed its three reports by the second count once, on a busy machine.)
    steady = WorkerPresence(database, interval=timedelta(minutes=1))
    await steady.report("w1", concurrency=4)
    await steady.report("w2", concurrency=2)
    capacity = await steady.capacity()
    assert (capacity.workers, capacity.slots) == (2, 6)
    await steady.leave("w2")
    capacity = await steady.capacity()
    assert (capacity.workers, capacity.slots) == (1, 4)
    # w1 now reports every 10 ms, then stops: three missed reports (30 ms) and it no longer counts.
    await WorkerPresence(database, interval=timedelta(milliseconds=10)).report("w1", concurrency=4)
    deadline = datetime.now(UTC) + timedelta(seconds=30)
    while (await steady.capacity()).workers and datetime.now(UTC) < deadline:
        await asyncio.sleep(0.05)
    assert (await steady.capacity()).workers == 0
