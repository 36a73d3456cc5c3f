"""The chunks of chunked exports, in a collection of their own: one document per chunk, keyed
`{job_id}:{index}`.

A collection rather than an array on the job because each chunk is leased on its own
(service/jobs/leases.py): a take, a heartbeat or a checkpoint is a compare-and-set on one small
document, so workers exporting chunks of one job never contend on the job's document (whose
revision every one of those writes would bump, retrying the job's own changes), and claiming a
chunk is an indexed query across jobs.

A chunk's lease is fenced by its `attempt`: each take increments it (a compare-and-set on the
attempt read), and every later write of the holder matches holder, attempt and `pending`, so a
worker whose lease lapsed and was taken over writes nothing. A chunk taken too often (its
workers keep dying) fails, and with it the job.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from pymongo import ASCENDING
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import BulkWriteError

from service.clock import utcnow
from service.errors import LeaseLostError
from service.exports.chunk_plan import Plan
from service.jobs.leases import Leases
from service.jobs.model import JOBS_COLLECTION, Job
from service.jobs.status import JobStatus

CHUNKS_COLLECTION = "export_chunks"
PENDING, DONE, FAILED = "pending", "done", "failed"
_CANDIDATES = 20


class Chunk(BaseModel):
    """One key range of a chunked export, and how far its export got."""

    model_config = ConfigDict(arbitrary_types_allowed=True, populate_by_name=True)

    id: str = Field(alias="_id")
    job_id: str
    project_id: str
    index: int
    total: int
    lower: dict[str, Any] | None
    upper: dict[str, Any] | None
    key: str
    state: str = PENDING
    holder: str | None = None
    expires_at: datetime | None = None
    attempt: int = 0
    run_after: datetime
    planned_at: datetime
    estimated_rows: int
    upload_id: str | None = None
    checkpoint: dict[str, Any] | None = None
    rows: int = 0
    # Rows its holder has read so far, stored or not: the job's progress between checkpoints.
    rows_read: int = 0
    size_bytes: int = 0
    error_code: str | None = None
    error_message: str | None = None

    @property
    def rows_reached(self) -> int:
        """Its rows when done; else its rows read so far, or its checkpoint's when a new
        holder has not read past that yet."""
        if self.state == DONE:
            return self.rows
        return max(self.rows_read, int((self.checkpoint or {}).get("rows", 0)))


def rows_reached(chunks: Sequence[Chunk]) -> int:
    return sum(chunk.rows_reached for chunk in chunks)


@dataclass(frozen=True)
class ChunkLease:
    chunk_id: str
    job_id: str
    holder: str
    attempt: int

    def fence(self) -> dict[str, Any]:
        return {
            "_id": self.chunk_id,
            "holder": self.holder,
            "attempt": self.attempt,
            "state": PENDING,
        }

    def lost(self) -> LeaseLostError:
        return LeaseLostError(self.chunk_id, self.attempt)


def chunk_id(job_id: str, index: int) -> str:
    return f"{job_id}:{index:05d}"


class ChunkLedger:
    def __init__(self, database: AsyncDatabase[dict[str, Any]]) -> None:
        self._chunks = database[CHUNKS_COLLECTION]
        self._jobs = database[JOBS_COLLECTION]
        self._leases = Leases(self._chunks, holder="holder", expires="expires_at", reentrant=False)

    async def ensure_indexes(self) -> None:
        await self._chunks.create_index([("state", ASCENDING), ("run_after", ASCENDING)])
        await self._chunks.create_index([("job_id", ASCENDING), ("index", ASCENDING)])

    async def create(
        self, job: Job, plan: Plan, key_for: Callable[[int], str], *, skip: int = 0
    ) -> list[Chunk]:
        """Record a job's chunks (all or, after a crash mid-way, the rest of them). `skip`: the
        first ranges of the plan that are not chunks (the part the job's own worker wrote)."""
        now = utcnow()
        total = len(plan.ranges)
        documents = [
            Chunk(
                id=chunk_id(job.id, index),
                job_id=job.id,
                project_id=job.project_id,
                index=index,
                total=total,
                lower=part.lower,
                upper=part.upper,
                key=key_for(index),
                run_after=now,
                planned_at=now,
                estimated_rows=plan.estimated_rows,
            ).model_dump(by_alias=True)
            for index, part in enumerate(plan.ranges)
            if index >= skip
        ]
        try:
            if documents:
                await self._chunks.insert_many(documents, ordered=False)
        except BulkWriteError as exc:
            if any(error.get("code") != 11000 for error in exc.details.get("writeErrors", [])):  # noqa: PLR2004 - duplicate key
                raise
        return await self.of_job(job.id)

    async def of_job(self, job_id: str) -> list[Chunk]:
        found = await self._chunks.find({"job_id": job_id}).sort("index", ASCENDING).to_list()
        return [Chunk.model_validate(document) for document in found]

    async def job_running(self, job_id: str) -> bool:
        """Whether a chunk's job still runs: processing, and nobody asked to cancel it."""
        found = await self._jobs.find_one({"_id": job_id}, {"status": 1, "cancel_requested_at": 1})
        return (
            found is not None
            and found.get("status") == JobStatus.PROCESSING.value
            and found.get("cancel_requested_at") is None
        )

    async def delete(self, chunk_id: str) -> None:
        await self._chunks.delete_one({"_id": chunk_id})

    async def delete_job(self, job_id: str) -> None:
        await self._chunks.delete_many({"job_id": job_id})

    async def claimable(self, *, exclude_jobs: Sequence[str]) -> list[Chunk]:
        """Pending chunks nobody holds (or whose holder stopped renewing), oldest job first."""
        now = utcnow()
        found = (
            await self._chunks.find(
                {
                    "state": PENDING,
                    "run_after": {"$lte": now},
                    "job_id": {"$nin": list(exclude_jobs)},
                    "$or": [{"holder": None}, {"expires_at": {"$lt": now}}],
                }
            )
            .sort([("planned_at", ASCENDING), ("index", ASCENDING)])
            .limit(_CANDIDATES)
            .to_list()
        )
        return [Chunk.model_validate(document) for document in found]

    async def take(self, chunk: Chunk, holder: str, ttl: timedelta) -> ChunkLease | None:
        """Take a chunk read by `claimable`; None when someone else moved it on first."""
        attempt = chunk.attempt + 1
        taken = await self._leases.take(
            chunk.id,
            holder,
            ttl,
            fields={"attempt": attempt},
            where={"attempt": chunk.attempt, "state": PENDING},
            create=False,
        )
        return ChunkLease(chunk.id, chunk.job_id, holder, attempt) if taken else None

    async def renew(self, lease: ChunkLease, ttl: timedelta) -> bool:
        return await self._leases.renew(lease.holder, ttl, fence=lease.fence())

    async def record_upload(self, lease: ChunkLease, upload_id: str) -> None:
        await self._set(lease, {"upload_id": upload_id})

    async def report_rows(self, lease: ChunkLease, rows: int) -> None:
        await self._set(lease, {"rows_read": rows})

    async def save_checkpoint(self, lease: ChunkLease, checkpoint: Mapping[str, Any]) -> None:
        await self._set(lease, {"checkpoint": dict(checkpoint)})

    async def finish(self, lease: ChunkLease, *, rows: int, size_bytes: int) -> None:
        await self._set(
            lease,
            {"state": DONE, "rows": rows, "size_bytes": size_bytes, "holder": None},
        )

    async def fail(self, chunk_id: str, *, code: str, message: str) -> None:
        await self._chunks.update_one(
            {"_id": chunk_id, "state": PENDING},
            {"$set": {"state": FAILED, "error_code": code, "error_message": message[:1000]}},
        )

    async def release(self, lease: ChunkLease, *, retry_in: timedelta) -> None:
        """Give the chunk back (a transient failure, a worker stopping): the next take resumes
        from its checkpoint, not before `retry_in`."""
        await self._chunks.update_one(
            lease.fence(),
            {"$set": {"holder": None, "expires_at": None, "run_after": utcnow() + retry_in}},
        )

    async def _set(self, lease: ChunkLease, fields: Mapping[str, Any]) -> None:
        result = await self._chunks.update_one(lease.fence(), {"$set": dict(fields)})
        if result.matched_count != 1:
            raise lease.lost()
