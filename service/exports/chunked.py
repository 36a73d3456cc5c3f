"""The job's side of a chunked export: plan its chunks, wait while the workers' chunk pools
(service/exports/chunk_workers.py) export them, then compose the one file and remove the chunks.

Which exports are chunked: CSV and JSON Lines without max_file_bytes / max_rows_per_file, whose
estimated row count passes `chunk_rows` (service/exports/chunk_plan.py). Split files and Parquet
run unchunked: a Parquet file cannot be laid end to end from parts, and composing split files
on row boundaries across chunks is left for later.

The decision and the plan are saved in the job's checkpoint before any chunk exists, so every
later attempt of the job continues the same chunks (a new plan would sample other split keys).
Once the file is composed, its size, rows and SHA-256 are saved there too: the chunk objects
are then removed, and an attempt after a crash at that point finishes without them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

import structlog
from pymongo.asynchronous.database import AsyncDatabase

from service.clock import as_utc, utcnow
from service.datasets.base import Dataset
from service.errors import FerryError
from service.exports import files
from service.exports.chunk_ledger import DONE, FAILED, Chunk, ChunkLedger
from service.exports.chunk_plan import ChunkRange, Plan, plan_chunks
from service.exports.compose import compose
from service.exports.file_shapes import WrittenFile
from service.jobs.context import JobContext
from service.jobs.model import Job
from service.storage import ObjectStore

log = structlog.get_logger(__name__)


class ChunkFailedError(FerryError):
    """A chunk failed for good: the job fails with the chunk's own code and message."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code  # type: ignore[misc]  # the chunk's code, e.g. WORKER_LOST


class ComposedFileMissingError(FerryError):
    transient = False

    def __init__(self, key: str) -> None:
        super().__init__(f"the composed file {key} is gone before the export completed")


@dataclass(frozen=True)
class ChunkSettings:
    chunk_rows: int
    max_chunks: int
    poll_seconds: float = 0.5


def eligible(job: Job) -> bool:
    return (
        job.format in {"csv", "jsonl"}
        and job.max_file_bytes is None
        and job.max_rows_per_file is None
    )


class ChunkedExport:
    def __init__(
        self,
        database: AsyncDatabase[dict[str, Any]],
        store: ObjectStore,
        chunks: ChunkLedger,
        settings: ChunkSettings,
    ) -> None:
        self._db = database
        self._store = store
        self._chunks = chunks
        self._settings = settings

    async def run(
        self, job: Job, context: JobContext, dataset: Dataset[Any], query: dict[str, Any]
    ) -> tuple[WrittenFile, datetime] | None:
        """The composed file and the time its data reflects, or None: run the job unchunked."""
        marker = job.checkpoint or {}
        if not marker.get("chunked"):
            if job.checkpoint is not None:
                return None  # an unchunked attempt began: continue it as it began
            plan = await plan_chunks(
                self._db[dataset.collection],
                query,
                dataset.sort,
                chunk_rows=self._settings.chunk_rows,
                max_chunks=self._settings.max_chunks,
            )
            if plan is None:
                return None
            marker = {
                "chunked": True,
                "estimated_rows": plan.estimated_rows,
                "ranges": [asdict(part) for part in plan.ranges],
                "data_as_of": utcnow(),
            }
            await context.save_checkpoint(marker)
            log.info("export.chunked", job_id=job.id, chunks=len(plan.ranges))
        data_as_of = as_utc(marker["data_as_of"])
        key = files.file_key(job.project_id, job.id, job.format, job.compression, part=None)
        composed = marker.get("composed")
        if composed is None:
            plan = Plan(
                estimated_rows=int(marker["estimated_rows"]),
                ranges=[ChunkRange(**part) for part in marker["ranges"]],
            )
            chunks = await self._chunks.create(job, plan, self._key_for(job))
            chunks = await self._wait(job, context, chunks, plan.estimated_rows)
            if job.upload_id is not None:
                await self._store.abort_upload(key, job.upload_id)  # a dead attempt's compose
            await context.confirm_lease()
            size = await compose(
                self._store,
                key,
                [(chunk.key, chunk.size_bytes) for chunk in chunks],
                content_type=files.content_type(job.format, job.compression),
                on_upload_started=context.record_upload,
            )
            composed = {
                "rows": sum(chunk.rows for chunk in chunks),
                "size_bytes": size,
                "sha256": await self._store.sha256(key),
            }
            await context.save_checkpoint({**marker, "composed": composed})
            await self._remove_chunks(job, chunks)
        elif await self._store.size(key) != composed["size_bytes"]:
            raise ComposedFileMissingError(key)
        written = WrittenFile(
            key, None, int(composed["rows"]), int(composed["size_bytes"]), composed["sha256"]
        )
        return written, data_as_of

    async def discard(self, job: Job) -> None:
        """The job ends without a result: abort every chunk's upload, remove every chunk object,
        the composed file if there was one, and the chunks' records."""
        for chunk in await self._chunks.of_job(job.id):
            if chunk.upload_id is not None:
                await self._store.abort_upload(chunk.key, chunk.upload_id)
            await self._store.delete(chunk.key)
        await self._chunks.delete_job(job.id)
        await self._store.delete(
            files.file_key(job.project_id, job.id, job.format, job.compression, part=None)
        )

    def _key_for(self, job: Job) -> Callable[[int], str]:
        return lambda index: files.chunk_key(
            job.project_id, job.id, index, job.format, job.compression
        )

    async def _wait(
        self, job: Job, context: JobContext, chunks: list[Chunk], estimated_rows: int
    ) -> list[Chunk]:
        """Until every chunk is done, publishing progress; raises when one failed for good."""
        first = True
        while True:
            failed = [chunk for chunk in chunks if chunk.state == FAILED]
            if failed:
                raise ChunkFailedError(
                    failed[0].error_code or "INTERNAL_ERROR",
                    failed[0].error_message or "a chunk of the export failed",
                )
            done = sum(1 for chunk in chunks if chunk.state == DONE)
            rows = sum(
                chunk.rows if chunk.state == DONE else int((chunk.checkpoint or {}).get("rows", 0))
                for chunk in chunks
            )
            fraction = min(0.99, rows / estimated_rows) if estimated_rows else None
            if first and fraction:
                context.resumed_from(fraction)  # the ETA counts only what happens from now
            # The first and last figures always go out: chunks_total is known from the start.
            await context.progress(
                rows, fraction, chunks=(done, len(chunks)), force=first or done == len(chunks)
            )
            first = False
            if done == len(chunks):
                return chunks
            await asyncio.sleep(self._settings.poll_seconds)
            chunks = await self._chunks.of_job(job.id)

    async def _remove_chunks(self, job: Job, chunks: list[Chunk]) -> None:
        for chunk in chunks:
            await self._store.delete(chunk.key)
        await self._chunks.delete_job(job.id)
