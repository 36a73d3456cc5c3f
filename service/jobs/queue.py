"""Where a pending job stands and what holds it, from what the workers actually hold.

A pending job waits for one of three things, checked in this order: its retry backoff (it is not
claimed before `run_after`), its project's limit of running jobs (every slot of the project is
held, see service/jobs/slots.py), or a worker with room for one more job (every running worker
is at its concurrency, or none is running). Its place in line counts, across all projects, the
ready jobs that workers would claim before it: pending, past their backoff, created earlier,
and not held back by a full project other than its own (those of its own project go first).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pymongo.asynchronous.database import AsyncDatabase

from service.clock import as_utc, utcnow
from service.jobs.model import JOBS_COLLECTION
from service.jobs.slots import ProjectSlots
from service.jobs.status import JobStatus
from service.jobs.view import backoff_reason
from service.jobs.workers import WorkerPresence


@dataclass(frozen=True)
class Waiting:
    """`position`: 1 = next to be claimed; None while a retry backoff holds the job."""

    position: int | None
    reason: str


class Queue:
    def __init__(
        self, database: AsyncDatabase[dict[str, Any]], *, max_running_per_project: int
    ) -> None:
        self._jobs = database[JOBS_COLLECTION]
        self._slots = ProjectSlots(database)
        self._workers = WorkerPresence(database)
        self._limit = max_running_per_project

    async def waiting(self, job_id: str) -> Waiting | None:
        """For a job the ledger holds as pending; None if it is not (any more)."""
        job = await self._jobs.find_one(
            {"_id": job_id, "status": JobStatus.PENDING.value},
            {"project_id": 1, "created_at": 1, "run_after": 1, "attempt": 1, "last_error": 1},
        )
        if job is None:
            return None
        now = utcnow()
        run_after = job.get("run_after")
        if run_after is not None and as_utc(run_after) > now:
            code = (job.get("last_error") or {}).get("code", "a transient error")
            return Waiting(
                None, backoff_reason(code, as_utc(run_after), int(job.get("attempt", 0)))
            )
        project = str(job["project_id"])
        full = await self._slots.full_projects(self._limit, now)
        others_full = [name for name in full if name != project]
        ahead = await self._jobs.count_documents(
            {
                "status": JobStatus.PENDING.value,
                "run_after": {"$lte": now},
                "project_id": {"$nin": others_full},
                "$or": [
                    {"created_at": {"$lt": job["created_at"]}},
                    {"created_at": job["created_at"], "_id": {"$lt": job_id}},
                ],
            }
        )
        return Waiting(ahead + 1, await self._reason(ahead, project_full=project in full, now=now))

    async def _reason(self, ahead: int, *, project_full: bool, now: datetime) -> str:
        if project_full:
            return f"project limit of {self._limit} running jobs reached"
        capacity = await self._workers.capacity()
        if capacity.workers == 0:
            return "no worker is running"
        running = await self._jobs.count_documents(
            {"status": JobStatus.PROCESSING.value, "lease_expires_at": {"$gt": now}}
        )
        if running >= capacity.slots:
            return (
                f"all {capacity.slots} job slots of the {capacity.workers} running workers are busy"
            )
        if ahead:
            return (
                f"{ahead} job ahead of it starts first"
                if ahead == 1
                else (f"{ahead} jobs ahead of it start first")
            )
        return "next: a worker with a free slot takes it at its next poll"
