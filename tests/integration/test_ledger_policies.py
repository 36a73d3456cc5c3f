"""The ledger's policies against a real MongoDB: per-project limits under concurrent claims,
retry scheduling, cancellation in every state, and record retention."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta

import pytest

from service.api.read_model import READ_MODEL_COLLECTION, ReadModel
from service.clock import utcnow
from service.database import Database
from service.errors import LeaseLostError
from service.jobs.from_request import failed_job
from service.jobs.ledger import ClaimPolicy, Lease, Ledger
from service.jobs.model import JOBS_COLLECTION, ExportResult
from service.jobs.status import JobStatus
from service.jobs.view import job_view
from tests.integration.conftest import events_of, new_job
from tests.support.infra import sweep_expired_now

pytestmark = pytest.mark.integration

LEASE = timedelta(seconds=30)


def policy(limit: int = 2) -> ClaimPolicy:
    return ClaimPolicy(lease=LEASE, max_lost_leases=3, max_running_per_project=limit)


async def test_concurrent_claims_respect_the_per_project_limit(
    ledger: Ledger, database: Database
) -> None:
    busy = [new_job("busy") for _ in range(6)]
    other = new_job("other")  # the newest job of all
    for job in [*busy, other]:
        await ledger.accept(job)
    claimed = []
    for _ in range(10):  # concurrent rounds: contended claims give way and are tried again
        claims = await asyncio.gather(*(ledger.claim(f"w{n}", policy(2)) for n in range(8)))
        claimed += [job for job in claims if job is not None]
        running = await database[JOBS_COLLECTION].count_documents(
            {"project_id": "busy", "status": "processing"}
        )
        assert running <= 2  # never above the limit, even for a moment between rounds
    assert sum(job.project_id == "busy" for job in claimed) == 2
    assert [job.id for job in claimed if job.project_id == "other"] == [other.id]
    # Finishing one of the busy project's jobs frees a place for the next.
    first = next(job for job in claimed if job.project_id == "busy")
    await ledger.fail(
        Lease(first.id, first.lease_owner or "", first.attempt), code="X", message="x"
    )
    again = await ledger.claim("late", policy(2))
    assert again is not None
    assert again.project_id == "busy"


async def test_a_retried_job_waits_for_its_backoff(ledger: Ledger, database: Database) -> None:
    job = new_job()
    await ledger.accept(job)
    claimed = await ledger.claim("w", policy())
    assert claimed is not None
    later = utcnow() + timedelta(milliseconds=400)
    retried = await ledger.retry(
        Lease(job.id, "w", 1), code="STORAGE_UNAVAILABLE", message="refused", run_after=later
    )
    assert retried.status is JobStatus.PENDING
    assert await ledger.claim("w", policy()) is None
    event = (await events_of(database, job.id))[-1]
    assert event["data"]["status"] == "pending"
    assert event["data"]["next_attempt_at"] is not None
    assert event["data"]["last_error"] == {
        "code": "STORAGE_UNAVAILABLE",
        "message": "refused",
    }
    await asyncio.sleep(0.5)
    again = await ledger.claim("w", policy())
    assert again is not None
    assert (again.id, again.attempt) == (job.id, 2)


async def test_cancelling_pending_finished_and_unknown_jobs(ledger: Ledger) -> None:
    done = new_job("c")
    await ledger.accept(done)
    claimed = await ledger.claim("w", policy())
    assert claimed is not None
    result = ExportResult(object_key="k", row_count=0, file_size_bytes=0, file_sha256="x")
    await ledger.complete(Lease(done.id, "w", 1), result, retention=LEASE)
    waiting = new_job("c")
    await ledger.accept(waiting)

    assert await ledger.request_cancel("c", waiting.id, "wrong range") == (
        "cancelled",
        JobStatus.CANCELLED,
    )
    cancelled = await ledger.get(waiting.id)
    assert cancelled is not None
    assert (cancelled.status, cancelled.error_code, cancelled.error_message) == (
        JobStatus.CANCELLED,
        "CANCELLED",
        "cancelled on request: wrong range",
    )
    assert await ledger.claim("w", policy()) is None  # nothing left to run
    assert await ledger.request_cancel("c", done.id, None) == ("finished", JobStatus.COMPLETED)
    assert await ledger.request_cancel("c", waiting.id, None) == ("finished", JobStatus.CANCELLED)
    assert await ledger.request_cancel("other-project", done.id, None) == ("not_found", None)
    assert await ledger.request_cancel("c", str(uuid.uuid4()), None) == ("not_found", None)


async def test_a_running_job_is_flagged_not_stopped_by_the_intake(ledger: Ledger) -> None:
    job = new_job("flag")
    await ledger.accept(job)
    claimed = await ledger.claim("w", policy())
    assert claimed is not None
    lease = Lease(job.id, "w", claimed.attempt)
    assert await ledger.request_cancel("flag", job.id, None) == (
        "cancel_requested",
        JobStatus.PROCESSING,
    )
    still = await ledger.get(job.id)
    assert still is not None
    assert still.status is JobStatus.PROCESSING  # the worker stops it and records `cancelled`
    assert await ledger.cancel_requested(lease)
    assert (await ledger.cancel(lease)).status is JobStatus.CANCELLED


async def test_an_upload_id_is_recorded_only_under_the_lease(ledger: Ledger) -> None:
    job = new_job()
    await ledger.accept(job)
    claimed = await ledger.claim("w", policy())
    assert claimed is not None
    await ledger.record_upload(Lease(job.id, "w", 1), "upload-1")
    stored = await ledger.get(job.id)
    assert stored is not None
    assert stored.upload_id == "upload-1"
    with pytest.raises(LeaseLostError):
        await ledger.record_upload(Lease(job.id, "someone-else", 1), "upload-2")


async def test_finished_records_carry_a_purge_time_under_a_ttl_index(
    ledger: Ledger, database: Database
) -> None:
    retention = timedelta(days=90)
    failed = new_job()
    await ledger.accept(failed)
    claimed = await ledger.claim("w", policy())
    assert claimed is not None
    done = await ledger.fail(Lease(failed.id, "w", 1), code="X", message="x")
    assert done.purge_at is not None
    assert done.completed_at is not None
    assert done.purge_at - done.completed_at == retention
    indexes = await database[JOBS_COLLECTION].index_information()
    ttl = [spec for spec in indexes.values() if spec["key"] == [("purge_at", 1)]]
    assert ttl
    assert ttl[0]["expireAfterSeconds"] == 0


async def test_a_finished_record_and_its_view_are_removed_once_their_retention_passed(
    ledger: Ledger, database: Database
) -> None:
    # A retention of a second: the database's TTL sweep removes both at its next pass (asked
    # for at once on the embedded server; within 60 s on MongoDB).
    short = Ledger(database, event_source="/tests", record_retention=timedelta(seconds=1))
    views = ReadModel(database, record_retention=timedelta(seconds=1))
    await views.ensure_indexes()
    doomed = new_job()
    kept = new_job(created_at=utcnow() + timedelta(days=1))  # still within its retention
    for job in (doomed, kept):
        await short.accept(failed_job(job, "X", "x"))
        stored = await short.get(job.id)
        assert stored is not None
        assert await views.apply({**job_view(stored), "previous_status": None})
    gone = [doomed.id]
    deadline = asyncio.get_running_loop().time() + 180
    while await database[JOBS_COLLECTION].count_documents({"_id": gone[0]}) or (
        await database[READ_MODEL_COLLECTION].count_documents({"_id": gone[0]})
    ):
        assert asyncio.get_running_loop().time() < deadline, "the TTL sweep never removed them"
        await asyncio.sleep(1)
        await sweep_expired_now(database)
    assert await short.get(kept.id) is not None
    assert await views.get(kept.project_id, "export", kept.id) is not None


async def test_a_dead_workers_slot_frees_itself_with_its_lease(ledger: Ledger) -> None:
    first, second = new_job("solo"), new_job("solo")
    await ledger.accept(first)
    await ledger.accept(second)
    # A lease long enough that the second claim surely comes within it, on any machine.
    short = ClaimPolicy(lease=timedelta(seconds=1.5), max_lost_leases=3, max_running_per_project=1)
    taken = await ledger.claim("dies", short)
    assert taken is not None
    assert taken.id == first.id
    assert await ledger.claim("other", short) is None  # the project's only slot is held
    await asyncio.sleep(1.6)  # the worker never heartbeats again: lease and slot lapse together
    again = await ledger.claim("other", short)
    assert again is not None
    assert (again.id, again.attempt) == (first.id, 2)  # the lapsed job comes first
    result = ExportResult(object_key="k", row_count=0, file_size_bytes=0, file_sha256="x")
    await ledger.complete(Lease(first.id, "other", 2), result, retention=LEASE)
    last = await ledger.claim("other", short)
    assert last is not None
    assert last.id == second.id  # finishing gave the slot back at once
