"""The ledger against a real MongoDB: idempotent intake, compare-and-set claims, lease fencing,
and exactly one outbox event per change with strictly increasing versions."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import timedelta

import pytest

from service.clock import utcnow
from service.contracts.envelope import JOB_STATUS_CHANGED, JOB_UPDATED
from service.database import Database
from service.errors import LeaseLostError
from service.jobs.ledger import ClaimPolicy, Lease, Ledger
from service.jobs.model import JOBS_COLLECTION, ExportResult, Job, Progress
from service.jobs.status import JobStatus
from tests.integration.conftest import events_of, new_job

pytestmark = pytest.mark.integration

LEASE = timedelta(seconds=30)
POLICY = ClaimPolicy(lease=LEASE, max_lost_leases=3, max_running_per_project=100)


async def test_a_new_job_is_recorded_once_with_its_created_event(
    ledger: Ledger, database: Database
) -> None:
    job = new_job()
    assert (await ledger.accept(job)).outcome == "created"
    [event] = await events_of(database, job.id)
    assert event["type"] == JOB_STATUS_CHANGED
    assert event["subject"] == job.id
    assert event["data"]["status"] == "pending"
    assert event["data"]["previous_status"] is None
    assert event["data"]["version"] == 1


@pytest.mark.parametrize("repeat", ["job_id", "idempotency_key", "cloudevent"])
async def test_repeats_make_no_second_job(ledger: Ledger, database: Database, repeat: str) -> None:
    first = new_job(idempotency_key="key-1")
    await ledger.accept(first)
    again = {
        "job_id": new_job(id=first.id),
        "idempotency_key": new_job(idempotency_key="key-1"),
        "cloudevent": new_job(request_id=first.request_id),
    }[repeat]
    accepted = await ledger.accept(again)
    assert (accepted.outcome, accepted.job_id) == ("duplicate", first.id)
    assert await database[JOBS_COLLECTION].count_documents({"project_id": "p1"}) == 1
    assert len(await events_of(database, again.id)) == (1 if repeat == "job_id" else 0)


async def test_the_same_idempotency_key_in_another_project_is_another_job(ledger: Ledger) -> None:
    await ledger.accept(new_job("p1", idempotency_key="shared"))
    assert (await ledger.accept(new_job("p2", idempotency_key="shared"))).outcome == "created"


async def test_a_job_id_of_another_project_is_a_conflict(ledger: Ledger) -> None:
    first = new_job("p1")
    await ledger.accept(first)
    clash = await ledger.accept(new_job("p2", id=first.id))
    assert (clash.outcome, clash.job_id) == ("conflict", first.id)


async def test_concurrent_claims_give_each_job_to_exactly_one_worker(ledger: Ledger) -> None:
    jobs = [new_job() for _ in range(6)]
    for job in jobs:
        await ledger.accept(job)
    # A claim that meets another claim in the same project gives way (returns nothing) rather
    # than waiting; workers simply try again. Over a few rounds every job is taken once.
    claimed: list[Job] = []
    for _ in range(10):
        claims = await asyncio.gather(*(ledger.claim(f"w{n}", POLICY) for n in range(10)))
        claimed += [job for job in claims if job is not None]
        if len(claimed) >= len(jobs):
            break
    assert sorted(job.id for job in claimed) == sorted(job.id for job in jobs)
    assert all(job.attempt == 1 for job in claimed)


async def test_claims_take_the_oldest_pending_job_first(ledger: Ledger) -> None:
    older, newer = new_job(), new_job()
    await ledger.accept(newer.model_copy(update={"created_at": utcnow()}))
    await ledger.accept(older.model_copy(update={"created_at": utcnow() - timedelta(minutes=5)}))
    claimed = await ledger.claim("w", POLICY)
    assert claimed is not None
    assert claimed.id == older.id


async def test_full_lifecycle_publishes_one_event_per_change_with_increasing_versions(
    ledger: Ledger, database: Database
) -> None:
    job = new_job()
    await ledger.accept(job)
    claimed = await ledger.claim("w1", POLICY)
    assert claimed is not None
    lease = Lease(claimed.id, "w1", claimed.attempt)
    await ledger.save_progress(lease, Progress(rows_processed=10, percent=50.0), extend_by=LEASE)
    result = ExportResult(object_key="k", row_count=20, file_size_bytes=99, file_sha256="ab")
    done = await ledger.complete(lease, result, retention=timedelta(days=7))
    assert done.status is JobStatus.COMPLETED
    assert done.expires_at is not None
    assert done.completed_at is not None
    assert done.expires_at - done.completed_at == timedelta(days=7)

    events = await events_of(database, job.id)
    assert [e["type"] for e in events] == [
        JOB_STATUS_CHANGED,
        JOB_STATUS_CHANGED,
        JOB_UPDATED,
        JOB_STATUS_CHANGED,
    ]
    assert [e["data"]["version"] for e in events] == [1, 2, 3, 4]
    assert [e["data"]["status"] for e in events] == [
        "pending",
        "processing",
        "processing",
        "completed",
    ]
    assert [e["data"].get("previous_status") for e in events] == [
        None,
        "pending",
        None,
        "processing",
    ]
    assert events[2]["data"]["progress"] == {
        "rows_processed": 10,
        "percent": 50.0,
        "eta": None,
        "chunks_done": None,
        "chunks_total": None,
    }
    assert events[3]["data"]["row_count"] == 20
    assert len({e["id"] for e in events}) == 4


async def test_a_lapsed_lease_is_claimed_again_and_the_old_worker_is_fenced_out(
    ledger: Ledger, database: Database
) -> None:
    job = new_job()
    await ledger.accept(job)
    first = await ledger.claim("w1", replace(POLICY, lease=timedelta(milliseconds=1)))
    assert first is not None
    stale = Lease(job.id, "w1", first.attempt)
    await asyncio.sleep(0.05)
    second = await ledger.claim("w2", POLICY)
    assert second is not None
    assert (second.id, second.attempt, second.lease_owner) == (job.id, 2, "w2")

    # The first worker wakes up: every write it tries matches nothing.
    assert not await ledger.heartbeat(stale, extend_by=LEASE)
    with pytest.raises(LeaseLostError):
        await ledger.save_progress(stale, Progress(rows_processed=1), extend_by=LEASE)
    result = ExportResult(object_key="k", row_count=1, file_size_bytes=1, file_sha256="x")
    with pytest.raises(LeaseLostError):
        await ledger.complete(stale, result, retention=LEASE)
    with pytest.raises(LeaseLostError):
        await ledger.fail(stale, code="X", message="x")
    current = await ledger.get(job.id)
    assert current is not None
    assert (current.status, current.lease_owner, current.progress.rows_processed) == (
        JobStatus.PROCESSING,
        "w2",
        0,
    )
    reclaim = (await events_of(database, job.id))[-1]
    assert reclaim["type"] == JOB_UPDATED
    assert reclaim["data"]["attempt"] == 2


async def test_a_job_that_keeps_losing_its_worker_fails_with_worker_lost(ledger: Ledger) -> None:
    job = new_job()
    await ledger.accept(job)
    blink = replace(POLICY, lease=timedelta(milliseconds=1), max_lost_leases=2)
    for _ in range(2):
        assert await ledger.claim("w", blink) is not None
        await asyncio.sleep(0.02)
    assert await ledger.claim("w", blink) is None
    failed = await ledger.get(job.id)
    assert failed is not None
    assert (failed.status, failed.error_code) == (JobStatus.FAILED, "WORKER_LOST")


async def test_a_released_job_is_pending_again_at_once(ledger: Ledger) -> None:
    job = new_job()
    await ledger.accept(job)
    claimed = await ledger.claim("w1", POLICY)
    assert claimed is not None
    released = await ledger.release(Lease(job.id, "w1", claimed.attempt))
    assert released is not None
    assert (released.status, released.lease_owner) == (JobStatus.PENDING, None)
    again = await ledger.claim("w2", POLICY)
    assert again is not None
    assert (again.id, again.attempt) == (job.id, 2)
    assert again.started_at == claimed.started_at  # the first start is kept


async def test_only_completed_jobs_past_their_expiry_expire(ledger: Ledger) -> None:
    job = new_job()
    await ledger.accept(job)
    claimed = await ledger.claim("w", POLICY)
    assert claimed is not None
    result = ExportResult(object_key="k", row_count=0, file_size_bytes=0, file_sha256="x")
    await ledger.complete(Lease(job.id, "w", 1), result, retention=timedelta(milliseconds=1))
    pending = new_job()
    await ledger.accept(pending)
    await asyncio.sleep(0.01)
    due = await ledger.due_for_expiry(utcnow(), limit=10)
    assert [j.id for j in due] == [job.id]
    expired = await ledger.expire(job.id)
    assert expired is not None
    assert expired.status is JobStatus.EXPIRED
    assert await ledger.expire(job.id) is None  # once
    assert await ledger.expire(pending.id) is None


async def test_an_idempotency_key_reused_with_other_parameters_makes_a_failed_job(
    ledger: Ledger, database: Database
) -> None:
    first = new_job(idempotency_key="key-r")
    await ledger.accept(first)
    other = new_job(idempotency_key="key-r", format="jsonl")
    accepted = await ledger.accept(other)
    assert (accepted.outcome, accepted.job_id, accepted.first_job_id) == (
        "reused",
        other.id,
        first.id,
    )
    failed = await ledger.get(other.id)
    assert failed is not None
    assert (failed.status, failed.error_code, failed.idempotency_key) == (
        JobStatus.FAILED,
        "IDEMPOTENCY_KEY_REUSED",
        None,
    )
    assert first.id in (failed.error_message or "")
    assert "'key-r'" in (failed.error_message or "")
    [event] = await events_of(database, other.id)
    assert event["data"]["error_code"] == "IDEMPOTENCY_KEY_REUSED"

    # The same reusing request delivered again is a duplicate of its failed job, and the
    # same parameters under the key still find the first job.
    again = await ledger.accept(other.model_copy(update={"id": new_job().id}))
    assert (again.outcome, again.job_id) == ("duplicate", other.id)
    same = await ledger.accept(new_job(idempotency_key="key-r"))
    assert (same.outcome, same.job_id) == ("duplicate", first.id)
    assert await database[JOBS_COLLECTION].count_documents({"project_id": "p1"}) == 2


async def test_each_attempt_reports_its_own_progress_from_zero(ledger: Ledger) -> None:
    job = new_job()
    await ledger.accept(job)
    # The progress save sets the lease to end 1 ms later: the claim's own lease only has to
    # outlast the save, however slowly the database answers.
    first = await ledger.claim("w1", replace(POLICY, lease=timedelta(seconds=10)))
    assert first is not None
    await ledger.save_progress(
        Lease(job.id, "w1", first.attempt),
        Progress(rows_processed=500, percent=40.0),
        extend_by=timedelta(milliseconds=1),
    )
    await asyncio.sleep(0.05)
    second = await ledger.claim("w2", POLICY)
    assert second is not None
    assert (second.id, second.attempt) == (job.id, 2)
    assert second.progress == Progress()
