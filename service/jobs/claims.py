"""Claiming jobs: a worker takes a job whose worker stopped heartbeating, else the oldest ready
pending job, in either case only with a free slot of its project (service/jobs/slots.py)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import structlog
from pymongo import ASCENDING
from pymongo.asynchronous.collection import AsyncCollection

from service.clock import utcnow
from service.contracts.job_view import Progress
from service.error_codes import ErrorCode
from service.jobs.changes import Change, ChangeContended, JobChanges, finished
from service.jobs.model import Job
from service.jobs.slots import ProjectSlots, holder_of
from service.jobs.status import JobStatus

log = structlog.get_logger(__name__)

_CLAIM_CANDIDATES = 20


@dataclass(frozen=True)
class ClaimPolicy:
    lease: timedelta
    max_lost_leases: int
    max_running_per_project: int


class Claims:
    """The claiming half of the ledger (service/jobs/ledger.py)."""

    def __init__(
        self,
        jobs: AsyncCollection[dict[str, Any]],
        changes: JobChanges,
        slots: ProjectSlots,
        *,
        record_retention: timedelta,
    ) -> None:
        self._jobs = jobs
        self._changes = changes
        self._slots = slots
        self._record_retention = record_retention

    async def claim(self, owner: str, policy: ClaimPolicy) -> Job | None:
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

        def change(job: Job, now: datetime) -> Change:
            # The lease starts now, not when the claim began: reads before this write can take
            # seconds while the database recovers, and a lease computed from a stale clock
            # would lapse at once and get the job run twice.
            return Change(
                JobStatus.PROCESSING,
                set={
                    "lease_owner": owner,
                    "lease_expires_at": now + policy.lease,
                    "slot_id": slot,
                    # Each attempt reports its own progress: a new one starts from zero, so
                    # the figures never mix two attempts (they went backwards after a crash).
                    "progress": Progress().model_dump(),
                    "attempt": job.attempt + 1,
                    # A lapsed lease is a lost one; the first start is kept across attempts.
                    "lost_leases": job.lost_leases + 1 if reclaim else job.lost_leases,
                    "started_at": job.started_at or now,
                },
            )

        try:
            job = await self._changes.apply(match, change, fail_fast=True)
        except ChangeContended:
            job = None  # another worker is claiming this very job
        if job is None:
            await self._slots.release(holder)
        return job

    async def _fail_exhausted(self, policy: ClaimPolicy) -> None:
        """A job that has lost its worker too often fails instead of taking down more."""
        while True:
            now = utcnow()
            job = await self._changes.apply(
                {
                    "status": JobStatus.PROCESSING.value,
                    "lease_expires_at": {"$lt": now},
                    "lost_leases": {"$gte": policy.max_lost_leases - 1},
                },
                finished(
                    JobStatus.FAILED,
                    now,
                    now + self._record_retention,
                    error_code=ErrorCode.WORKER_LOST,
                    error_message=f"the job's worker stopped responding "
                    f"{policy.max_lost_leases} times; the job was not retried again",
                    lost_leases=policy.max_lost_leases,
                ),
            )
            if job is None:
                return
            log.warning("job.worker_lost", job_id=job.id, attempt=job.attempt)
