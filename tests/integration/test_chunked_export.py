"""Chunked exports against real MongoDB and S3: a job's worker (a Runner) exports the first
rows itself and splits the rest, two chunk pools (two workers) export its chunks, and the file
composed from them is the same bytes as an unchunked export; a chunk stopped mid-way is resumed
by the other worker from its checkpoint, every row once; a cancelled chunked job leaves no chunk
object behind."""

from __future__ import annotations

import asyncio
import gzip
import time
import uuid
from collections.abc import Callable, Mapping
from typing import Any

import pytest

from service.database import Database
from service.exports.chunk_ledger import Chunk, ChunkLease, ChunkLedger
from service.exports.chunk_plan import ChunkRange, Plan
from service.jobs.model import ExportResult, Job
from service.jobs.status import JobStatus
from service.observability.metrics import ROWS
from service.storage import ObjectStore
from tests.integration.chunk_stack import Stack
from tests.integration.conftest import new_job
from tests.integration.test_exporter import claimed, seed

pytestmark = pytest.mark.integration

ROW_COUNT = 3000
NOTE = 5000  # ~15 MB in all: chunks of ~5 MB, so the composer both copies and buffers
# For a chunk stopped after its first stored part: rows of ~10 KB, split after 1,000 rows into
# a head and chunks of ~1,000 rows, each ~10 MB, so a 5 MiB part is stored mid-chunk.
WIDE_NOTE = 10_000
WIDE_CHUNK_ROWS = 1000


def rows_read() -> float:
    value: float = ROWS.labels(kind="export", dataset="messages")._value.get()
    return value


class FreezingChunks(ChunkLedger):
    """A worker that stops making progress right after a chunk's first stored part, as one
    stalled or about to die: the chunk has a checkpoint naming part 1 and nothing more."""

    def __init__(self, database: Database) -> None:
        super().__init__(database)
        self.frozen = asyncio.Event()

    async def save_checkpoint(self, lease: ChunkLease, checkpoint: Mapping[str, Any]) -> None:
        await super().save_checkpoint(lease, checkpoint)
        if (checkpoint.get("open_file") or {}).get("parts"):
            self.frozen.set()
            await asyncio.Event().wait()  # until the worker is stopped


class FreezingReads(ChunkLedger):
    """A worker that stops right after it first records a chunk's rows read, before any part
    of the chunk is stored: only its rows read say how far it got."""

    def __init__(self, database: Database) -> None:
        super().__init__(database)
        self.frozen = asyncio.Event()
        self.reported = 0

    async def report_rows(self, lease: ChunkLease, rows: int) -> None:
        await super().report_rows(lease, rows)
        self.reported = rows
        self.frozen.set()
        await asyncio.Event().wait()  # until the worker is stopped


async def until(check: Callable[[], Any], *, what: str, seconds: float = 180) -> Any:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        found = await check()
        if found:
            return found
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


async def unchunked_bytes(stack: Stack, project: str, **fields: Any) -> bytes:
    job = new_job(project, **fields)
    context = await claimed(stack.ledger, job)
    result = await stack.exporter(chunked=False).run(job, context)
    return await stack.store.read(result.object_key)


async def finished(stack: Stack, job_id: str) -> Job:
    async def done() -> Job | None:
        job = await stack.ledger.get(job_id)
        assert job is not None
        assert job.status is not JobStatus.FAILED, job.error_message
        return job if job.status is JobStatus.COMPLETED else None

    found: Job = await until(done, what="the chunked job to complete")
    return found


async def chunk_holders(stack: Stack, job_id: str, seen: set[str], totals: set[int]) -> None:
    """Who held the job's chunks, and how many there were, while it ran."""
    while True:
        for chunk in await stack.chunks.of_job(job_id):
            totals.add(chunk.total)
            if chunk.holder:
                seen.add(chunk.holder)
        await asyncio.sleep(0.05)


@pytest.mark.parametrize("compression", ["none", "gzip"])
async def test_two_workers_export_chunks_and_the_file_is_the_unchunked_bytes(
    stack: Stack, database: Database, compression: str
) -> None:
    project = f"p-{uuid.uuid4()}"
    await seed(database, project, ROW_COUNT, NOTE)
    expected = await unchunked_bytes(stack, project)
    await stack.ledger.ensure_indexes()
    stack.start_runner()
    stack.start_pool("worker-a")
    stack.start_pool("worker-b")
    job = new_job(project, compression=compression)
    await stack.ledger.accept(job)
    seen: set[str] = set()
    totals: set[int] = set()
    watching = asyncio.create_task(chunk_holders(stack, job.id, seen, totals))
    try:
        done = await finished(stack, job.id)
    finally:
        watching.cancel()
    assert isinstance(done.result, ExportResult)
    stored = await stack.store.read(done.result.object_key)
    data = gzip.decompress(stored) if compression == "gzip" else stored
    assert data == expected  # same rows, same order, same bytes
    assert done.result.row_count == ROW_COUNT
    assert len(totals) == 1
    assert min(totals) >= 2
    assert seen == {"worker-a", "worker-b"}  # both workers exported chunks of the one job
    assert await stack.chunks.of_job(job.id) == []  # chunk records and objects removed
    assert done.progress.chunks_total in totals


async def test_a_chunk_stopped_mid_way_is_resumed_by_another_worker_every_row_once(
    stack: Stack, database: Database
) -> None:
    project = f"p-{uuid.uuid4()}"
    await seed(database, project, ROW_COUNT, WIDE_NOTE)
    expected = await unchunked_bytes(stack, project)
    stack.chunk_rows = WIDE_CHUNK_ROWS
    stack.start_runner()
    freezing = FreezingChunks(database)
    stack.start_pool("worker-a", freezing)
    job = new_job(project)
    await stack.ledger.accept(job)
    await asyncio.wait_for(freezing.frozen.wait(), timeout=180)
    await stack.stop_pool("worker-a")  # mid-chunk: its lease given back, its upload kept
    before = rows_read()  # what worker b reads from here on
    resumed = [
        c for c in await stack.chunks.of_job(job.id) if c.checkpoint and c.state == "pending"
    ]
    assert resumed, "the stopped chunk kept its checkpoint"
    stack.start_pool("worker-b")
    done = await finished(stack, job.id)
    assert isinstance(done.result, ExportResult)
    assert await stack.store.read(done.result.object_key) == expected
    # Worker b re-read nothing worker a had stored: at most the rows not yet done.
    already = sum(int((c.checkpoint or {}).get("rows", 0)) for c in resumed)
    assert already > 0
    assert rows_read() - before <= ROW_COUNT - already


async def test_cancelling_a_chunked_job_removes_its_chunk_objects(
    stack: Stack, database: Database
) -> None:
    project = f"p-{uuid.uuid4()}"
    await seed(database, project, ROW_COUNT, WIDE_NOTE)
    stack.chunk_rows = WIDE_CHUNK_ROWS
    stack.start_runner()
    # Worker b stalls in its chunk (an upload with one part), so the job cannot finish; worker
    # a completes the other chunks (whole objects).
    freezing = FreezingChunks(database)
    stack.start_pool("worker-b", freezing)
    job = new_job(project)
    await stack.ledger.accept(job)
    await asyncio.wait_for(freezing.frozen.wait(), timeout=180)
    stack.start_pool("worker-a")

    async def others_done() -> list[Chunk] | None:
        chunks = await stack.chunks.of_job(job.id)
        done = [chunk for chunk in chunks if chunk.state == "done"]
        return chunks if len(done) == len(chunks) - 1 else None

    chunks: list[Chunk] = await until(others_done, what="every chunk but the stalled one")
    objects = [chunk.key for chunk in chunks if chunk.state == "done"]
    uploads = [(chunk.key, chunk.upload_id) for chunk in chunks if chunk.state == "pending"]
    assert all([await stack.store.size(key) for key in objects])
    assert all(upload_id for _, upload_id in uploads)
    await stack.ledger.request_cancel(project, job.id, "test")

    async def cancelled() -> bool:
        found = await stack.ledger.get(job.id)
        assert found is not None
        return found.status is JobStatus.CANCELLED

    await until(cancelled, what="the job to be cancelled")

    async def all_gone() -> bool:
        sizes = [await stack.store.size(chunk.key) for chunk in chunks]
        parts = [await stack.store.uploaded_parts(key, str(upload)) for key, upload in uploads]
        return (
            all(size is None for size in sizes)
            and all(found is None for found in parts)
            and not await stack.chunks.of_job(job.id)
        )

    await until(all_gone, what="the chunk objects and uploads to be removed")


async def test_chunks_of_a_job_that_ended_without_its_worker_are_removed(
    stack: Stack, database: Database, store: ObjectStore
) -> None:
    """Orphans (the job failed while no worker held it) must not stay first in line."""
    project = f"p-{uuid.uuid4()}"
    job = new_job(project)  # never accepted: its record does not exist
    plan = Plan(estimated_rows=10, ranges=[ChunkRange(None, {"x": 1}), ChunkRange({"x": 1}, None)])
    chunks = await stack.chunks.create(job, plan, lambda index: f"tests/{job.id}/{index}.csv")
    await store.put(chunks[0].key, b"rows", content_type="text/csv")
    stack.start_pool("worker-a")

    async def removed() -> bool:
        return not await stack.chunks.of_job(job.id) and await store.size(chunks[0].key) is None

    await until(removed, what="the orphaned chunks to be removed")


async def test_a_chunked_jobs_progress_counts_rows_read_not_yet_stored_and_never_goes_back(
    stack: Stack, database: Database
) -> None:
    project = f"p-{uuid.uuid4()}"
    await seed(database, project, ROW_COUNT, NOTE)  # chunks of ~3.5 MB: stored only at their end
    stack.start_runner()
    freezing = FreezingReads(database)
    # Rows read recorded after every batch: at 0.1 s apart, a machine that reads the chunk's 700
    # rows faster than that records none before the chunk is stored, and nothing freezes.
    stack.start_pool("worker-a", freezing, progress_interval=0.0)
    job = new_job(project)
    await stack.ledger.accept(job)
    await asyncio.wait_for(freezing.frozen.wait(), timeout=180)
    (reading,) = [c for c in await stack.chunks.of_job(job.id) if c.holder == "worker-a"]
    assert reading.checkpoint is None  # nothing of it stored: its rows read are all there is
    assert reading.rows_read == freezing.reported > 0

    async def counted() -> Job | None:
        found = await stack.ledger.get(job.id)
        assert found is not None
        assert found.checkpoint is not None
        head = int(found.checkpoint["head"]["rows"])
        return found if found.progress.rows_processed >= head + freezing.reported else None

    await until(counted, what="the job's progress to count the chunk's rows read")

    shown: list[int] = []

    async def watch() -> None:
        while True:
            found = await stack.ledger.get(job.id)
            if found is not None and found.status is JobStatus.PROCESSING:
                shown.append(found.progress.rows_processed)
            await asyncio.sleep(0.05)

    watching = asyncio.create_task(watch())
    try:
        await stack.stop_pool("worker-a")  # the chunk is read again from its start by b
        stack.start_pool("worker-b")
        done = await finished(stack, job.id)
    finally:
        watching.cancel()
    assert done.progress.rows_processed == ROW_COUNT
    assert shown
    assert shown == sorted(shown)  # while the chunk was read again, the figure waited
