"""The job ledger in MongoDB: recording jobs, cancelling them, and the outcomes of attempts.

Every change is a compare-and-set on one job document (the expected status, and for a running
job its lease: owner and attempt) that names its target status and appends the change's status
event to the job's own outbox in the same single-document write (service/jobs/changes.py), so
an event exists exactly when the change happened. Claiming is in service/jobs/claims.py, what
a running attempt writes under its lease in service/jobs/attempts.py.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from service.clock import utcnow
from service.counters import PROCESS_IDS, Counters
from service.error_codes import ErrorCode
from service.jobs.attempts import Lease, RunningAttempts
from service.jobs.changes import Change, ChangeOf, JobChanges, LedgerContentionError, finished
from service.jobs.claims import ClaimPolicy, Claims
from service.jobs.idempotency import request_fingerprint, reused_key_job
from service.jobs.model import JOB_INDEXES, JOBS_COLLECTION, Job, JobResult, LastError, Progress
from service.jobs.outbox import OUTBOX_INDEXES, new_outbox, status_entry
from service.jobs.slots import ProjectSlots, holder_of
from service.jobs.status import JobStatus, allowed_from

__all__ = [
    "Accepted",
    "CancelOutcome",
    "ClaimPolicy",
    "Lease",
    "Ledger",
    "LedgerContentionError",
]

# A job handed back (shutdown, transient failure) keeps its upload and checkpoint for the
# next attempt; only the lease goes.
_HANDED_BACK = frozenset({"lease_owner", "lease_expires_at", "slot_id"})


@dataclass(frozen=True)
class Accepted:
    """Outcome of recording a new job: created, a duplicate of an existing one, or a clash."""

    outcome: Literal["created", "duplicate", "conflict", "reused"]
    job_id: str
    # "reused": the job that first used the idempotency key (`job_id` is the failed job that
    # says so).
    first_job_id: str | None = None


CancelOutcome = Literal["cancelled", "cancel_requested", "finished", "not_found"]


class Ledger:
    """Jobs and their lifecycle. `on_event` is called after each commit that wrote an event."""

    def __init__(
        self,
        database: AsyncDatabase[dict[str, Any]],
        *,
        event_source: str,
        record_retention: timedelta = timedelta(days=90),
        on_event: Callable[[], None] = lambda: None,
    ) -> None:
        self._db = database
        self._jobs = database[JOBS_COLLECTION]
        self._slots = ProjectSlots(database)
        self._counters = Counters(database)
        self._source = event_source
        self._record_retention = record_retention
        self._on_event = on_event
        self._changes = JobChanges(self._jobs, event_source=event_source, on_event=on_event)
        self._claims = Claims(
            self._jobs, self._changes, self._slots, record_retention=record_retention
        )
        self._attempts = RunningAttempts(self._jobs, self._changes, self._slots)

    async def ensure_indexes(self) -> None:
        await self._jobs.create_indexes([*JOB_INDEXES, *OUTBOX_INDEXES])
        await self._slots.ensure_indexes()

    # Intake ------------------------------------------------------------------------------------

    async def accept(self, job: Job) -> Accepted:
        """Record a new job, once: a repeat of its job id, idempotency key or CloudEvent
        (source + id) makes no second job."""
        # Taken before the insert (see service/counters.py); a duplicate skips its number.
        process_id = await self._counters.take(PROCESS_IDS)
        job = job.model_copy(
            update={
                "process_id": process_id,
                "request_fingerprint": job.request_fingerprint or request_fingerprint(job),
                "run_after": job.created_at,
                "purge_at": job.created_at + self._record_retention
                if job.status is JobStatus.FAILED
                else None,
            }
        )

        document = {
            **job.to_document(),
            "revision": 1,
            **new_outbox(status_entry(job, None, source=self._source), job.id),
        }
        try:
            await self._jobs.insert_one(document)
        except DuplicateKeyError:
            return await self._duplicate_of(job)
        self._on_event()
        return Accepted("created", job.id)

    async def _duplicate_of(self, job: Job) -> Accepted:
        fields = {"project_id": 1, "request_fingerprint": 1}
        # The same job id or CloudEvent first: a redelivered request is a duplicate of what it
        # made the first time, even when that was the failed job of a reused key.
        existing = await self._jobs.find_one(
            {
                "$or": [
                    {"_id": job.id},
                    {"request_source": job.request_source, "request_id": job.request_id},
                ]
            },
            fields,
        )
        if existing is None and job.idempotency_key is not None:
            existing = await self._jobs.find_one(
                {"project_id": job.project_id, "idempotency_key": job.idempotency_key}, fields
            )
            if existing is not None and existing.get("request_fingerprint") not in {
                None,  # recorded before fingerprints: taken to be the same request
                job.request_fingerprint,
            }:
                failed = await self.accept(reused_key_job(job, str(existing["_id"])))
                return Accepted("reused", failed.job_id, first_job_id=str(existing["_id"]))
        if existing is None:  # pragma: no cover - the unique index just said it exists
            raise RuntimeError(f"duplicate job {job.id} vanished")
        outcome: Literal["duplicate", "conflict"] = (
            "duplicate" if existing["project_id"] == job.project_id else "conflict"
        )
        return Accepted(outcome, str(existing["_id"]))

    async def get(self, job_id: str) -> Job | None:
        document = await self._jobs.find_one({"_id": job_id})
        return None if document is None else Job.from_document(document)

    async def request_cancel(
        self, project_id: str, job_id: str, reason: str | None
    ) -> tuple[CancelOutcome, JobStatus | None]:
        """Cancel a pending job now; flag a running one for its worker to stop."""
        message = f"cancelled on request: {reason}" if reason else "cancelled on request"
        now = utcnow()
        job = await self._changes.apply(
            {"_id": job_id, "project_id": project_id, "status": JobStatus.PENDING.value},
            self._finished(
                JobStatus.CANCELLED, now, error_code=ErrorCode.CANCELLED, error_message=message
            ),
        )
        if job is not None:
            return "cancelled", job.status
        flagged = await self._changes.apply(
            {
                "_id": job_id,
                "project_id": project_id,
                "status": JobStatus.PROCESSING.value,
                "cancel_requested_at": {"$exists": False},
            },
            lambda _, at: Change(
                JobStatus.PROCESSING, set={"cancel_requested_at": at, "cancel_reason": reason}
            ),
        )
        if flagged is not None:
            return "cancel_requested", JobStatus.PROCESSING
        existing = await self._jobs.find_one(
            {"_id": job_id, "project_id": project_id}, {"status": 1}
        )
        if existing is None:
            return "not_found", None
        status = JobStatus(existing["status"])
        # A repeated request for a job already stopping is a no-op, like one for a finished job.
        return ("cancel_requested" if status is JobStatus.PROCESSING else "finished"), status

    # Claiming and leases ---------------------------------------------------------------------

    async def claim(self, owner: str, policy: ClaimPolicy) -> Job | None:
        """Take a job whose worker stopped heartbeating, else the oldest ready pending job, in
        either case only with a free slot of its project (service/jobs/claims.py)."""
        return await self._claims.claim(owner, policy)

    async def heartbeat(self, lease: Lease, *, extend_by: timedelta) -> bool:
        """Extend the lease; False when it is no longer ours. Not a published change."""
        return await self._attempts.heartbeat(lease, extend_by=extend_by)

    async def cancel_requested(self, lease: Lease) -> bool:
        """Whether someone asked to cancel this running job. Raises LeaseLostError if not ours."""
        return await self._attempts.cancel_requested(lease)

    async def record_upload(self, lease: Lease, upload_id: str) -> None:
        await self._attempts.record_upload(lease, upload_id)

    async def save_checkpoint(self, lease: Lease, checkpoint: Mapping[str, Any]) -> None:
        """Where the running attempt got to (no event: progress is published separately)."""
        await self._attempts.save_checkpoint(lease, checkpoint)

    async def save_progress(
        self, lease: Lease, progress: Progress, *, extend_by: timedelta
    ) -> None:
        await self._attempts.save_progress(lease, progress, extend_by=extend_by)

    # Outcomes ------------------------------------------------------------------------------

    async def complete(self, lease: Lease, result: JobResult, *, retention: timedelta) -> Job:
        def change(job: Job, now: datetime) -> Change:
            # A chunked export ends with all its chunks done; others have no chunk counts.
            chunks = job.progress.chunks_total
            done = {"rows_processed": result.row_count, "percent": 100.0}
            progress = Progress(**done, chunks_done=chunks, chunks_total=chunks)
            return self._finished(
                JobStatus.COMPLETED,
                now,
                result=result.model_dump(),
                expires_at=now + retention,
                purge_at=now + retention + self._record_retention,
                progress=progress.model_dump(),
            )

        return await self._fenced(lease, change)

    async def fail(self, lease: Lease, *, code: str, message: str) -> Job:
        change = self._finished(JobStatus.FAILED, utcnow(), error_code=code, error_message=message)
        return await self._fenced(lease, change)

    async def cancel(self, lease: Lease) -> Job:
        """The running attempt stopped because a cancellation was requested."""
        reason = await self._attempts.cancel_reason(lease)
        message = f"cancelled on request: {reason}" if reason else "cancelled on request"
        change = self._finished(
            JobStatus.CANCELLED, utcnow(), error_code=ErrorCode.CANCELLED, error_message=message
        )
        return await self._fenced(lease, change)

    async def retry(self, lease: Lease, *, code: str, message: str, run_after: datetime) -> Job:
        """A transient failure: pending again, not claimed before `run_after`."""
        change = Change(
            JobStatus.PENDING,
            set={
                "run_after": run_after,
                "last_error": LastError(code=code, message=message).model_dump(),
            },
            unset=_HANDED_BACK,
        )
        return await self._fenced(lease, change)

    async def release(self, lease: Lease) -> Job | None:
        """Hand a running job back (worker shutting down): pending again, at once."""
        job = await self._changes.apply(
            lease.fence(), Change(JobStatus.PENDING, unset=_HANDED_BACK)
        )
        if job is not None:
            await self._free_slot(lease)
        return job

    # Expiry --------------------------------------------------------------------------------

    async def due_for_expiry(self, now: datetime, *, limit: int) -> list[Job]:
        cursor = self._jobs.find(
            {"status": JobStatus.COMPLETED.value, "expires_at": {"$lte": now}}, limit=limit
        )
        return [Job.from_document(document) async for document in cursor]

    async def expire(self, job_id: str) -> Job | None:
        return await self._changes.apply(
            {"_id": job_id, "status": {"$in": allowed_from(JobStatus.EXPIRED)}},
            Change(JobStatus.EXPIRED, set={"purge_at": utcnow() + self._record_retention}),
        )

    # Mechanics -----------------------------------------------------------------------------

    async def _fenced(self, lease: Lease, change: ChangeOf) -> Job:
        """The attempt's outcome, then its slot back: if the worker dies in between, the slot
        expires with the lease it is renewed with."""
        job = await self._changes.apply(lease.fence(), change)
        if job is None:
            raise lease.lost()
        await self._free_slot(lease)
        return job

    async def _free_slot(self, lease: Lease) -> None:
        await self._slots.release(holder_of(lease.job_id, lease.attempt))

    def _finished(self, status: JobStatus, now: datetime, **fields: object) -> Change:
        purge_at = fields.pop("purge_at", now + self._record_retention)
        assert isinstance(purge_at, datetime)  # noqa: S101 - the callers pass datetimes
        return finished(status, now, purge_at, **fields)
