"""Checkpoints against real MongoDB and S3: an attempt stopped mid-upload leaves a checkpoint
per stored part, and the next attempt continues the same multipart upload from it, reading only
the rows after it; the file holds every row once, in order, and its SHA-256 is the real one."""

from __future__ import annotations

import asyncio
import csv
import gzip
import hashlib
import io
import random
import time
import uuid
from datetime import timedelta
from typing import Any

import pytest
from pymongo import UpdateOne

from service.config import Settings
from service.database import Database
from service.exports.checkpoints import Checkpoint
from service.exports.exporter import Exporter
from service.jobs.context import JobContext
from service.jobs.ledger import ClaimPolicy, Lease, Ledger
from service.jobs.model import JOBS_COLLECTION, ExportResult, Job
from service.observability.metrics import ROWS
from service.storage import ObjectStore
from tests.integration.conftest import new_job
from tests.integration.test_exporter import PART, claimed, seed

pytestmark = pytest.mark.integration

LEASE = timedelta(seconds=30)
BATCH = 200
FILES = 30  # of the split export: 3000 rows, 100 per file
FILTERS = {"start_time": "2025-12-01T00:00:00Z", "end_time": "2025-12-02T00:00:00Z"}


def rows_read() -> float:
    value: float = ROWS.labels(kind="export", dataset="messages")._value.get()
    return value


def exporter(database: Database, store: ObjectStore) -> Exporter:
    return Exporter(database, store, batch_size=BATCH, part_size=PART, escape_formulas=True)


async def checkpoint_of(database: Database, job_id: str) -> Checkpoint | None:
    document = await database[JOBS_COLLECTION].find_one({"_id": job_id}, {"checkpoint": 1})
    found = (document or {}).get("checkpoint")
    return None if found is None else Checkpoint.from_document(found)


async def stop_after_parts(
    database: Database, run: asyncio.Task[ExportResult], job_id: str, parts: int
) -> Checkpoint:
    """Let the attempt store `parts` parts, then stop it as a worker going away would."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        found = await checkpoint_of(database, job_id)
        if found is not None and found.open_file and len(found.open_file.parts) >= parts:
            run.cancel()
            await asyncio.gather(run, return_exceptions=True)
            final = await checkpoint_of(database, job_id)
            assert final is not None
            return final
        assert not run.done(), "the attempt finished before it could be stopped"
        await asyncio.sleep(0.02)
    raise AssertionError("no checkpoint appeared")


async def next_attempt(ledger: Ledger, context: JobContext) -> tuple[Job, JobContext]:
    await ledger.release(context.lease)  # as a worker shutting down hands its job back
    job = await ledger.claim("w2", ClaimPolicy(LEASE, 3, 100))
    assert job is not None
    lease = Lease(job.id, "w2", job.attempt)
    return job, JobContext(ledger, lease, lease_duration=LEASE, progress_interval=0.0)


async def random_notes(database: Database, docs: list[dict[str, Any]], size: int) -> None:
    """Notes that compress about 2:1, so that a gzip file needs several parts."""
    rng = random.Random(12)
    for doc in docs:
        doc["last_error"] = "=" + rng.randbytes(size).hex()
    await database["messages"].bulk_write(
        [
            UpdateOne({"_id": doc["_id"]}, {"$set": {"last_error": doc["last_error"]}})
            for doc in docs
        ]
    )


@pytest.mark.parametrize("compression", ["none", "gzip"])
async def test_a_stopped_export_continues_its_upload_from_the_last_checkpoint(
    compression: str, database: Database, store: ObjectStore, settings: Settings, ledger: Ledger
) -> None:
    project = f"p{uuid.uuid4().hex[:8]}"
    docs = await seed(database, project, rows=3000, note_size=10)
    await random_notes(database, docs, 3000 if compression == "gzip" else 2000)
    job = new_job(project, filters=FILTERS, compression=compression)
    context = await claimed(ledger, job)

    before = rows_read()
    first = asyncio.create_task(exporter(database, store).run(job, context))
    checkpoint = await stop_after_parts(database, first, job.id, parts=1)
    read_by_first = rows_read() - before
    opened = checkpoint.open_file
    assert opened is not None
    assert 0 < checkpoint.rows < len(docs)
    assert checkpoint.after["_id"] == docs[checkpoint.rows - 1]["_id"]
    # The upload was left in place for the next attempt, with the parts the checkpoint names.
    stored = await store.uploaded_parts(opened.key, opened.upload_id)
    assert stored is not None
    assert [stored[part.number] for part in opened.parts] == [
        part.etag.strip('"') for part in opened.parts
    ]

    job, context = await next_attempt(ledger, context)
    assert job.upload_id == opened.upload_id
    before = rows_read()
    result = await exporter(database, store).run(job, context)
    read_by_second = rows_read() - before

    # The second attempt read only what came after the checkpoint; what the first had read
    # beyond it is lost: at most the part in flight, the one filling and the batch prefetched.
    assert read_by_second == len(docs) - checkpoint.rows
    rows_per_part = checkpoint.rows / len(opened.parts)
    assert read_by_first - checkpoint.rows <= 2 * rows_per_part + 2 * BATCH
    data = await store.read(result.object_key)
    assert result.file_sha256 == hashlib.sha256(data).hexdigest()  # read back: resumed upload
    assert result.file_size_bytes == len(data)
    text = gzip.decompress(data) if compression == "gzip" else data
    rows = list(csv.DictReader(io.StringIO(text.decode(), newline="")))
    assert [row["id"] for row in rows] == [doc["_id"] for doc in docs]
    assert rows[0]["last_error"] == "'" + docs[0]["last_error"]
    assert await store.uploaded_parts(opened.key, opened.upload_id) is None  # completed
    progress = await ledger.get(job.id)
    assert progress is not None
    assert progress.progress.rows_processed == len(docs)


async def test_split_files_closed_before_a_stop_are_kept_and_numbering_continues(
    database: Database, store: ObjectStore, settings: Settings, ledger: Ledger
) -> None:
    project = f"p{uuid.uuid4().hex[:8]}"
    docs = await seed(database, project, rows=3000, note_size=10)
    job = new_job(project, filters=FILTERS, max_rows_per_file=100)
    context = await claimed(ledger, job)
    # A slow-enough attempt: stop it once two files are closed.
    first = asyncio.create_task(
        Exporter(database, store, batch_size=50, part_size=PART, escape_formulas=True).run(
            job, context
        )
    )
    deadline = time.monotonic() + 120
    checkpoint = None
    while time.monotonic() < deadline and not first.done():
        checkpoint = await checkpoint_of(database, job.id)
        if checkpoint is not None and len(checkpoint.files) >= 2:
            break
        await asyncio.sleep(0.01)
    assert not first.done(), "the export finished before it could be stopped"
    first.cancel()
    await asyncio.gather(first, return_exceptions=True)
    checkpoint = await checkpoint_of(database, job.id)
    assert checkpoint is not None
    assert 2 <= len(checkpoint.files) < FILES
    kept = {file.key: file.sha256 for file in checkpoint.files}

    job, context = await next_attempt(ledger, context)
    result = await exporter(database, store).run(job, context)
    assert [file.part for file in result.files] == list(range(1, FILES + 1))
    assert {f.key: f.sha256 for f in result.files[: len(kept)]} == kept
    rows: list[str] = []
    for file in result.files:
        data = await store.read(file.key)
        assert hashlib.sha256(data).hexdigest() == file.sha256
        rows += [row["id"] for row in csv.DictReader(io.StringIO(data.decode(), newline=""))]
    assert rows == [doc["_id"] for doc in docs]


async def test_a_cancelled_export_leaves_no_files_and_no_upload(
    database: Database, store: ObjectStore, settings: Settings, ledger: Ledger
) -> None:
    project = f"p{uuid.uuid4().hex[:8]}"
    docs = await seed(database, project, rows=4500, note_size=10)
    await random_notes(database, docs, 2000)  # three files of about 6 MiB
    job = new_job(project, filters=FILTERS, max_file_bytes=6 * 1024 * 1024)
    context = await claimed(ledger, job)
    run = asyncio.create_task(exporter(database, store).run(job, context))
    deadline = time.monotonic() + 120
    checkpoint = None
    while time.monotonic() < deadline and not run.done():
        checkpoint = await checkpoint_of(database, job.id)
        if checkpoint is not None and checkpoint.files and checkpoint.open_file:
            break
        await asyncio.sleep(0.01)
    assert not run.done(), "the export finished before it could be cancelled"
    assert checkpoint is not None
    assert checkpoint.open_file is not None
    # What the runner's watcher does when it sees the cancel request.
    await ledger.request_cancel(job.project_id, job.id, reason="test")
    context.end_here()
    run.cancel()
    await asyncio.gather(run, return_exceptions=True)
    for file in checkpoint.files:
        assert await store.size(file.key) is None
    opened = checkpoint.open_file
    assert await store.uploaded_parts(opened.key, opened.upload_id) is None


async def test_an_attempt_after_the_file_was_closed_reads_nothing_again(
    database: Database, store: ObjectStore, settings: Settings, ledger: Ledger
) -> None:
    """A worker that dies between closing the file and recording the result: the next attempt
    finds the file closed in the checkpoint and only writes the manifest and the result."""
    project = f"p{uuid.uuid4().hex[:8]}"
    docs = await seed(database, project, rows=400, note_size=10)
    job = new_job(project, filters=FILTERS)
    context = await claimed(ledger, job)
    first = await exporter(database, store).run(job, context)
    # Rows added since must not be appended to a file that is already complete.
    late = {**docs[-1], "_id": f"{project}-late", "created_at": docs[-1]["created_at"] + LEASE}
    await database["messages"].insert_one(late)
    job, context = await next_attempt(ledger, context)
    before = rows_read()
    second = await exporter(database, store).run(job, context)
    assert rows_read() - before == 0
    assert second.files == first.files
    data = await store.read(second.object_key)
    assert hashlib.sha256(data).hexdigest() == second.file_sha256
    assert len(list(csv.DictReader(io.StringIO(data.decode(), newline="")))) == len(docs)
