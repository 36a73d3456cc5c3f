"""The job ledger in MongoDB.

Every change is a compare-and-set on one job document (the expected status, and for a running
job its lease: owner and attempt) that appends the change's status event to the job's own
outbox in the same single-document write, so an event exists exactly when the change happened.
No multi-document transaction is used: under load they conflict and retry, and one left open by
a killed worker locks its documents until the server reaps it. A worker whose lease was taken
over matches nothing and therefore writes nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal, TypeVar

import structlog
from pymongo import ASCENDING, IndexModel
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from service.clock import utcnow, uuid7
from service.contracts.envelope import JOB_STATUS_CHANGED, JOB_UPDATED, make_event
from service.counters import PROCESS_IDS, Counters
from service.errors import FerryError, LeaseLostError
from service.jobs.idempotency import request_fingerprint, reused_key_job
from service.jobs.model import JOBS_COLLECTION, Job, JobResult, LastError, Progress
from service.jobs.outbox import new_outbox, outbox_entry, shard_of
from service.jobs.slots import ProjectSlots, holder_of
from service.jobs.status import JobStatus, allowed_from
from service.jobs.view import job_view

log = structlog.get_logger(__name__)

_CLAIM_CANDIDATES = 20

T = TypeVar("T")
_MAX_CAS_ATTEMPTS = 20
# A query or update, or a function building it from the current time.
AtNow = Mapping[str, Any] | Callable[[datetime], Mapping[str, Any]]


def _at(value: AtNow, now: datetime) -> Mapping[str, Any]:
    return value(now) if callable(value) else value


@dataclass(frozen=True)
class Lease:
    """A worker's claim on a job. Owner and attempt together fence out stale workers."""

    job_id: str
    owner: str
    attempt: int


@dataclass(frozen=True)
class Accepted:
    """Outcome of recording a new job: created, a duplicate of an existing one, or a clash."""

    outcome: Literal["created", "duplicate", "conflict", "reused"]
    job_id: str
    # "reused": the job that first used the idempotency key (`job_id` is the failed job that
    # says so).
    first_job_id: str | None = None


CancelOutcome = Literal["cancelled", "cancel_requested", "finished", "not_found"]


class _ClaimContended(Exception):  # noqa: N818 - a signal, not an error
    """Another worker changed the job between our read and our write."""


class LedgerContentionError(FerryError):
    """A job kept changing under every attempt to change it; transient by nature."""

    code = "LEDGER_CONTENTION"
    transient = True

    def __init__(self, job: str) -> None:
        super().__init__(f"job {job} changed under {_MAX_CAS_ATTEMPTS} attempts to update it")


_SUPPORTED_OPERATORS = frozenset({"$set", "$unset", "$inc", "$min"})


def apply_update(document: Mapping[str, Any], update: Mapping[str, Any]) -> dict[str, Any]:
    """`document` after `update` (top-level $set, $unset, $inc, $min), computed here so the
    event can be built from the new state and written with it in one replace."""
    unknown = set(update) - _SUPPORTED_OPERATORS
    if unknown:
        raise ValueError(f"unsupported update operators {sorted(unknown)}")
    changed = dict(document)
    changed.update(update.get("$set", {}))
    for field in update.get("$unset", {}):
        changed.pop(field, None)
    for field, amount in update.get("$inc", {}).items():
        changed[field] = changed.get(field, 0) + amount
    for field, value in update.get("$min", {}).items():
        # Like MongoDB: a missing (or null) field is set; otherwise the smaller value stays.
        current = changed.get(field)
        changed[field] = value if current is None else min(current, value)
    return changed


@dataclass(frozen=True)
class ClaimPolicy:
    lease: timedelta
    max_lost_leases: int
    max_running_per_project: int


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

    async def ensure_indexes(self) -> None:
        await self._jobs.create_indexes(
            [
                IndexModel([("request_source", ASCENDING), ("request_id", ASCENDING)], unique=True),
                IndexModel(
                    [("project_id", ASCENDING), ("idempotency_key", ASCENDING)],
                    unique=True,
                    partialFilterExpression={"idempotency_key": {"$type": "string"}},
                ),
                IndexModel([("status", ASCENDING), ("created_at", ASCENDING)]),
                IndexModel([("status", ASCENDING), ("lease_expires_at", ASCENDING)]),
                IndexModel([("status", ASCENDING), ("expires_at", ASCENDING)]),
                IndexModel([("project_id", ASCENDING), ("status", ASCENDING)]),
                # Finished jobs are deleted once their record retention has passed.
                IndexModel([("purge_at", ASCENDING)], expireAfterSeconds=0),
                # The outbox relays' work list: jobs with events not yet published, by shard.
                IndexModel(
                    [("outbox_pending", ASCENDING), ("updated_at", ASCENDING)],
                    partialFilterExpression={"outbox_pending": True},
                ),
                IndexModel(
                    [("outbox_pending", ASCENDING), ("outbox_shard", ASCENDING)],
                    partialFilterExpression={"outbox_pending": True},
                ),
            ]
        )
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
            **new_outbox(self._entry(job, JOB_STATUS_CHANGED, None), job.id),
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
        job = await self._change(
            {"_id": job_id, "project_id": project_id, "status": JobStatus.PENDING.value},
            self._finish_update(
                JobStatus.CANCELLED, now, error_code="CANCELLED", error_message=message
            ),
            previous=JobStatus.PENDING,
        )
        if job is not None:
            return "cancelled", job.status
        flagged = await self._change(
            {
                "_id": job_id,
                "project_id": project_id,
                "status": JobStatus.PROCESSING.value,
                "cancel_requested_at": {"$exists": False},
            },
            lambda at: {"$set": {"cancel_requested_at": at, "cancel_reason": reason}},
            previous=JobStatus.PROCESSING,
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
        either case only with a free slot of its project (see service/jobs/slots.py)."""
        await self._fail_exhausted(policy)
        now = utcnow()
        fields = {"project_id": 1, "attempt": 1, "status": 1}
        lapsed = (
            await self._jobs.find(
                {"status": JobStatus.PROCESSING.value, "lease_expires_at": {"$lt": now}}, fields
            )
            .sort("lease_expires_at", ASCENDING)
            .limit(_CLAIM_CANDIDATES)
            .to_list()
        )
        full = await self._slots.full_projects(policy.max_running_per_project, now)
        pending = (
            await self._jobs.find(
                {
                    "status": JobStatus.PENDING.value,
                    "run_after": {"$lte": now},
                    "project_id": {"$nin": full},
                },
                fields,
            )
            .sort("created_at", ASCENDING)
            .limit(_CLAIM_CANDIDATES)
            .to_list()
        )
        for candidate in [*lapsed, *pending]:
            job = await self._claim_candidate(candidate, owner, policy)
            if job is not None:
                return job
        return None

    async def _claim_candidate(
        self, candidate: Mapping[str, Any], owner: str, policy: ClaimPolicy
    ) -> Job | None:
        job_id, project_id = str(candidate["_id"]), str(candidate["project_id"])
        attempt = int(candidate.get("attempt", 0))
        reclaim = candidate["status"] == JobStatus.PROCESSING.value
        holder = holder_of(job_id, attempt + 1)
        slot = await self._slots.take(
            project_id, holder, limit=policy.max_running_per_project, lease=policy.lease
        )
        if slot is None:
            return None  # the project is at its limit of running jobs

        def match(now: datetime) -> dict[str, Any]:
            # `attempt` pins the state the candidate was read in: if anyone moved the job on
            # since, nothing matches.
            if reclaim:
                return {
                    "_id": job_id,
                    "attempt": attempt,
                    "status": JobStatus.PROCESSING.value,
                    "lease_expires_at": {"$lt": now},
                }
            return {"_id": job_id, "attempt": attempt, "status": JobStatus.PENDING.value}

        def update(now: datetime) -> dict[str, Any]:
            # The lease starts now, not when the claim began: reads before this write can take
            # seconds while the database recovers, and a lease computed from a stale clock
            # would lapse at once and get the job run twice.
            changes: dict[str, Any] = {
                "$set": {
                    "status": JobStatus.PROCESSING.value,
                    "lease_owner": owner,
                    "lease_expires_at": now + policy.lease,
                    "slot_id": slot,
                    # Each attempt reports its own progress: a new one starts from zero, so
                    # the figures never mix two attempts (they went backwards after a crash).
                    "progress": Progress().model_dump(),
                },
                "$inc": {"attempt": 1, **({"lost_leases": 1} if reclaim else {})},
            }
            if not reclaim:
                changes["$min"] = {"started_at": now}  # $min sets it when absent: first start
            return changes

        try:
            job = await self._change(
                match,
                update,
                previous=JobStatus.PROCESSING if reclaim else JobStatus.PENDING,
                fail_fast=True,
            )
        except _ClaimContended:
            job = None  # another worker is claiming this very job
        if job is None:
            await self._slots.release(holder)
        return job

    async def _fail_exhausted(self, policy: ClaimPolicy) -> None:
        """A job that has lost its worker too often fails instead of taking down more."""
        while True:
            now = utcnow()
            job = await self._change(
                {
                    "status": JobStatus.PROCESSING.value,
                    "lease_expires_at": {"$lt": now},
                    "lost_leases": {"$gte": policy.max_lost_leases - 1},
                },
                self._finish_update(
                    JobStatus.FAILED,
                    now,
                    error_code="WORKER_LOST",
                    error_message=f"the job's worker stopped responding "
                    f"{policy.max_lost_leases} times; the job was not retried again",
                    lost_leases=policy.max_lost_leases,
                ),
                previous=JobStatus.PROCESSING,
            )
            if job is None:
                return
            log.warning("job.worker_lost", job_id=job.id, attempt=job.attempt)

    async def heartbeat(self, lease: Lease, *, extend_by: timedelta) -> bool:
        """Extend the lease; False when it is no longer ours. Not a published change."""
        result = await self._jobs.update_one(
            self._fence(lease),
            # Every write bumps `revision`, so a change computed from an older read is retried.
            {"$set": {"lease_expires_at": utcnow() + extend_by}, "$inc": {"revision": 1}},
        )
        if result.matched_count != 1:
            return False
        await self._slots.renew(holder_of(lease.job_id, lease.attempt), lease=extend_by)
        return True

    async def cancel_requested(self, lease: Lease) -> bool:
        """Whether someone asked to cancel this running job. Raises LeaseLostError if not ours."""
        document = await self._jobs.find_one(self._fence(lease), {"cancel_requested_at": 1})
        if document is None:
            raise self._lost(lease)
        return document.get("cancel_requested_at") is not None

    async def record_upload(self, lease: Lease, upload_id: str) -> None:
        result = await self._jobs.update_one(
            self._fence(lease), {"$set": {"upload_id": upload_id}, "$inc": {"revision": 1}}
        )
        if result.matched_count != 1:
            raise self._lost(lease)

    async def save_checkpoint(self, lease: Lease, checkpoint: Mapping[str, Any]) -> None:
        """Where the running attempt got to (no event: progress is published separately)."""
        result = await self._jobs.update_one(
            self._fence(lease),
            {"$set": {"checkpoint": dict(checkpoint)}, "$inc": {"revision": 1}},
        )
        if result.matched_count != 1:
            raise self._lost(lease)

    async def save_progress(
        self, lease: Lease, progress: Progress, *, extend_by: timedelta
    ) -> None:
        job = await self._change(
            self._fence(lease),
            lambda now: {
                "$set": {"progress": progress.model_dump(), "lease_expires_at": now + extend_by}
            },
            previous=JobStatus.PROCESSING,
        )
        if job is None:
            raise self._lost(lease)

    # Outcomes ------------------------------------------------------------------------------

    async def complete(self, lease: Lease, result: JobResult, *, retention: timedelta) -> Job:
        now = utcnow()
        update = self._finish_update(
            JobStatus.COMPLETED,
            now,
            result=result.model_dump(),
            expires_at=now + retention,
            purge_at=now + retention + self._record_retention,
            progress=Progress(rows_processed=result.row_count, percent=100.0).model_dump(),
        )
        return await self._fenced(lease, update)

    async def fail(self, lease: Lease, *, code: str, message: str) -> Job:
        update = self._finish_update(
            JobStatus.FAILED, utcnow(), error_code=code, error_message=message
        )
        return await self._fenced(lease, update)

    async def cancel(self, lease: Lease) -> Job:
        """The running attempt stopped because a cancellation was requested."""
        current = await self._jobs.find_one(self._fence(lease), {"cancel_reason": 1})
        reason = (current or {}).get("cancel_reason")
        message = f"cancelled on request: {reason}" if reason else "cancelled on request"
        update = self._finish_update(
            JobStatus.CANCELLED, utcnow(), error_code="CANCELLED", error_message=message
        )
        return await self._fenced(lease, update)

    async def retry(self, lease: Lease, *, code: str, message: str, run_after: datetime) -> Job:
        """A transient failure: pending again, not claimed before `run_after`."""
        update = {
            "$set": {
                "status": JobStatus.PENDING.value,
                "run_after": run_after,
                "last_error": LastError(code=code, message=message).model_dump(),
            },
            "$unset": {"lease_owner": "", "lease_expires_at": "", "slot_id": ""},
        }
        return await self._fenced(lease, update)

    async def release(self, lease: Lease) -> Job | None:
        """Hand a running job back (worker shutting down): pending again, at once."""
        job = await self._change(
            self._fence(lease),
            {
                "$set": {"status": JobStatus.PENDING.value},
                "$unset": {"lease_owner": "", "lease_expires_at": "", "slot_id": ""},
            },
            previous=JobStatus.PROCESSING,
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
        return await self._change(
            {"_id": job_id, "status": {"$in": allowed_from(JobStatus.EXPIRED)}},
            {
                "$set": {
                    "status": JobStatus.EXPIRED.value,
                    "purge_at": utcnow() + self._record_retention,
                }
            },
            previous=JobStatus.COMPLETED,
        )

    # Mechanics -----------------------------------------------------------------------------

    async def _fenced(self, lease: Lease, update: Mapping[str, Any]) -> Job:
        """The attempt's outcome, then its slot back: if the worker dies in between, the slot
        expires with the lease it is renewed with."""
        job = await self._change(self._fence(lease), update, previous=JobStatus.PROCESSING)
        if job is None:
            raise self._lost(lease)
        await self._free_slot(lease)
        return job

    async def _free_slot(self, lease: Lease) -> None:
        await self._slots.release(holder_of(lease.job_id, lease.attempt))

    async def _change(
        self,
        match: AtNow,
        update: AtNow,
        *,
        previous: JobStatus,
        sort: list[tuple[str, int]] | None = None,
        fail_fast: bool = False,
    ) -> Job | None:
        """Compare-and-set one job and append its event to the job's outbox, in one
        single-document write. None when nothing matched.

        The change is computed from the document as read and written only if the document is
        still at the revision read (every writer bumps `revision`); otherwise it is read again
        and the match checked anew. No multi-document transaction is involved: those conflict
        under load, and one left open by a killed worker locks its documents until the server
        reaps it (a minute by default). `match` and `update` may be functions of the current
        time, evaluated at each attempt, so a lease starts when it is written. With `fail_fast`
        a lost race raises _ClaimContended instead of reading again.
        """
        for _ in range(1 if fail_fast else _MAX_CAS_ATTEMPTS):
            now = utcnow()
            query = _at(match, now)
            document = await self._jobs.find_one(query, sort=sort)
            if document is None:
                return None
            changed = apply_update(document, _at(update, now))
            changed["updated_at"] = now
            changed["version"] = int(document.get("version", 0)) + 1
            job = Job.from_document(changed)
            event_type = JOB_STATUS_CHANGED if job.status != previous else JOB_UPDATED
            changed["outbox"] = [
                *document.get("outbox", []),
                self._entry(job, event_type, previous),
            ]
            changed["outbox_pending"] = True
            changed["outbox_shard"] = shard_of(job.id)
            changed["revision"] = int(document.get("revision", 0)) + 1
            result = await self._jobs.replace_one(
                {**query, "_id": document["_id"], "revision": document.get("revision", 0)},
                changed,
            )
            if result.matched_count == 1:
                self._on_event()
                return job
        if fail_fast:
            raise _ClaimContended
        raise LedgerContentionError(str(query.get("_id", query)))

    def _entry(self, job: Job, event_type: str, previous: JobStatus | None) -> dict[str, Any]:
        data = job_view(job)
        if event_type == JOB_STATUS_CHANGED:
            data["previous_status"] = previous.value if previous else None
        event = make_event(
            event_id=uuid7(),
            source=self._source,
            event_type=event_type,
            subject=job.id,
            time=job.updated_at,
            data=data,
        )
        entry = outbox_entry(key=job.id, event=event)
        if "oversize" in entry:
            # Echoed input is capped, so this is a bug to fix; the relay dead-letters the event.
            log.error("outbox.event_oversize", job_id=job.id, size=entry["oversize"])
        return entry

    @staticmethod
    def _fence(lease: Lease) -> dict[str, Any]:
        return {
            "_id": lease.job_id,
            "status": JobStatus.PROCESSING.value,
            "lease_owner": lease.owner,
            "attempt": lease.attempt,
        }

    def _finish_update(self, status: JobStatus, now: datetime, **fields: object) -> dict[str, Any]:
        fields.setdefault("purge_at", now + self._record_retention)
        return {
            "$set": {"status": status.value, "completed_at": now, **fields},
            "$unset": {
                "lease_owner": "",
                "lease_expires_at": "",
                "upload_id": "",
                "slot_id": "",
                "checkpoint": "",
            },
        }

    @staticmethod
    def _lost(lease: Lease) -> LeaseLostError:
        return LeaseLostError(lease.job_id, lease.attempt)
