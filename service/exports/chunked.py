"""The job's side of a chunked export: split the rows left once the export proves large, wait
while the workers' chunk pools (service/exports/chunk_workers.py) export them, then compose the
one file and remove the chunks.

Which exports are chunked: CSV and JSON Lines without max_file_bytes / max_rows_per_file. Split
files and Parquet run unchunked: a Parquet file cannot be laid end to end from parts, and
composing split files on row boundaries across chunks is left for later.

When: every export starts on its own, as one cursor into its file (service/exports/exporter.py).
Once it has written `chunk_rows` rows, the rows left are planned (service/exports/chunk_plan.py);
if they pass `chunk_rows` too, the export stops at the key it reached and closes its file, the
*head*, and the rest become chunks any worker can take. Deciding then, rather than estimating
every export's size before it starts, costs nothing for the exports below the threshold (most
of them; a size estimate is a scan on some servers). The head is the first part of the composed
file, and stays where the job's file goes until the compose replaces it.

The decision and the plan are saved in the job's checkpoint before the head is closed, so every
later attempt continues the same chunks (a new plan would sample other split keys). An attempt
that died before the head was closed leaves no head: its range becomes the first chunk, read
again (one chunk's worth). Once the file is composed, its size, rows and SHA-256 are saved there
too: the chunk objects are then removed, and an attempt after a crash at that point finishes
without them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

import structlog
from pymongo.asynchronous.database import AsyncDatabase

from service.clock import as_utc
from service.datasets.base import Dataset
from service.errors import FerryError
from service.exports import files
from service.exports.chunk_ledger import DONE, FAILED, Chunk, ChunkLedger, rows_reached
from service.exports.chunk_plan import ChunkRange, Plan, plan_chunks
from service.exports.compose import compose
from service.exports.file_shapes import WrittenFile
from service.exports.key_ranges import past_leading_key
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
        *,
        on_chunks: Callable[[], None] = lambda: None,
    ) -> None:
        """`on_chunks`: called once a job's chunks are recorded (wakes this worker's pool)."""
        self._db = database
        self._store = store
        self._chunks = chunks
        self._settings = settings
        self._on_chunks = on_chunks

    def due(self, rows: int) -> bool:
        """Whether an export that has written `rows` rows should try to split the rest."""
        return rows >= self._settings.chunk_rows

    async def split_rest(
        self,
        context: JobContext,
        dataset: Dataset[Any],
        query: dict[str, Any],
        *,
        after: dict[str, Any],
        rows: int,
        data_as_of: datetime,
    ) -> dict[str, Any] | None:
        """Plan the rows of `query` after `after` (the key the export reached, `rows` rows in):
        the marker saved as the job's checkpoint, or None when they are too few to split (the
        export goes on alone)."""
        plan = await plan_chunks(
            self._db[dataset.collection],
            # The rows left but those tying with `after` on its leading field: a flat filter
            # for the sample (key_ranges.py says why); the chunks' ranges are exact regardless.
            past_leading_key(query, dataset.sort, after),
            dataset.sort,
            chunk_rows=self._settings.chunk_rows,
            max_chunks=max(2, self._settings.max_chunks - 1),
            after=after,
        )
        if plan is None:
            return None
        ranges = [ChunkRange(None, after), *plan.ranges]
        marker = {
            "chunked": True,
            "estimated_rows": rows + plan.estimated_rows,
            "ranges": [asdict(part) for part in ranges],
            "data_as_of": data_as_of,
            "head": {"closed": False, "rows": rows},
        }
        await context.save_checkpoint(marker)
        log.info("export.chunked", job_id=context.lease.job_id, chunks=len(ranges), head_rows=rows)
        return marker

    async def head_closed(
        self, context: JobContext, marker: dict[str, Any], head: WrittenFile
    ) -> dict[str, Any]:
        """Record the closed head (the rows up to the split) in the marker."""
        closed = {
            **marker,
            "head": {"closed": True, "rows": head.rows, "size_bytes": head.size_bytes},
        }
        await context.save_checkpoint(closed)
        return closed

    async def run(
        self, job: Job, context: JobContext, marker: dict[str, Any] | None = None
    ) -> tuple[WrittenFile, datetime] | None:
        """The composed file and the time its data reflects, or None: the job is not chunked
        (yet). `marker`: the checkpoint just saved, when the job's object is older than it."""
        marker = marker if marker is not None else job.checkpoint or {}
        if not marker.get("chunked"):
            return None
        data_as_of = as_utc(marker["data_as_of"])
        key = files.file_key(job.project_id, job.id, job.format, job.compression, part=None)
        head = marker.get("head")
        if head is not None and not head["closed"]:
            marker = await self._drop_unclosed_head(job, context, marker, key)
            head = None
        composed = marker.get("composed")
        if composed is None:
            plan = Plan(
                estimated_rows=int(marker["estimated_rows"]),
                ranges=[ChunkRange(**part) for part in marker["ranges"]],
            )
            skip = 0 if head is None else 1
            chunks = await self._chunks.create(job, plan, self._key_for(job), skip=skip)
            self._on_chunks()
            chunks = await self._wait(job, context, chunks, plan, head)
            composed = await self._compose(job, context, key, chunks, head)
            await context.save_checkpoint({**marker, "composed": composed})
            await self._remove_chunks(job, chunks)
        elif await self._store.size(key) != composed["size_bytes"]:
            raise ComposedFileMissingError(key)
        written = WrittenFile(
            key, None, int(composed["rows"]), int(composed["size_bytes"]), composed["sha256"]
        )
        return written, data_as_of

    async def _whole_already(self, key: str, head_size: int, expected: int) -> bool:
        """With a head, the file is composed onto itself: it is whole already when a dead
        attempt finished the compose but not the checkpoint (or every chunk is empty). It
        must otherwise still be the head."""
        found = await self._store.size(key)
        if found == expected:
            return True
        if found != head_size:
            raise ComposedFileMissingError(key)
        return False

    async def _drop_unclosed_head(
        self, job: Job, context: JobContext, marker: dict[str, Any], key: str
    ) -> dict[str, Any]:
        """An attempt died between the split and closing its head: what it wrote is not known
        to be whole, so it goes, and its range becomes the first chunk."""
        if job.upload_id is not None:
            await self._store.abort_upload(key, job.upload_id)
        await self._store.delete(key)
        marker = {**marker, "head": None}
        await context.save_checkpoint(marker)
        log.info("export.head_dropped", job_id=job.id)
        return marker

    async def _compose(
        self,
        job: Job,
        context: JobContext,
        key: str,
        chunks: list[Chunk],
        head: dict[str, Any] | None,
    ) -> dict[str, Any]:
        """Compose the file at `key` from the head (already there) and the chunks: its rows,
        size and SHA-256."""
        sources = [(chunk.key, chunk.size_bytes) for chunk in chunks]
        rows = sum(chunk.rows for chunk in chunks)
        if head is not None:
            sources.insert(0, (key, int(head["size_bytes"])))
            rows += int(head["rows"])
        expected = sum(size for _, size in sources)
        if head is None or not await self._whole_already(key, int(head["size_bytes"]), expected):
            if job.upload_id is not None:
                await self._store.abort_upload(key, job.upload_id)  # a dead attempt's compose
            await context.confirm_lease()
            await compose(
                self._store,
                key,
                sources,
                content_type=files.content_type(job.format, job.compression),
                on_upload_started=context.record_upload,
            )
        return {"rows": rows, "size_bytes": expected, "sha256": await self._store.sha256(key)}

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
        self,
        job: Job,
        context: JobContext,
        chunks: list[Chunk],
        plan: Plan,
        head: dict[str, Any] | None,
    ) -> list[Chunk]:
        """Until every chunk is done, publishing progress; raises when one failed for good."""
        first = True
        head_rows = int(head["rows"]) if head is not None else 0
        shown = 0
        while True:
            failed = [chunk for chunk in chunks if chunk.state == FAILED]
            if failed:
                raise ChunkFailedError(
                    failed[0].error_code or "INTERNAL_ERROR",
                    failed[0].error_message or "a chunk of the export failed",
                )
            done = sum(1 for chunk in chunks if chunk.state == DONE)
            # Never fewer than shown before: a chunk whose worker died is read again from its
            # checkpoint, and the job's figure waits for it to catch up.
            rows = shown = max(shown, head_rows + rows_reached(chunks))
            fraction = min(0.99, rows / plan.estimated_rows) if plan.estimated_rows else None
            if first and fraction:
                context.resumed_from(fraction)  # the ETA counts only what happens from now
            # The first and last figures always go out: chunks_total is known from the start.
            # The head counts as a chunk, done.
            total = len(plan.ranges)
            await context.progress(
                rows,
                fraction,
                chunks=(done + total - len(chunks), total),
                force=first or done == len(chunks),
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
