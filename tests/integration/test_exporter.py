"""The exporter against real MongoDB and S3: multipart files, gzip, hashes, aborts, fencing."""

from __future__ import annotations

import asyncio
import csv
import gzip
import hashlib
import io
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from service.config import Settings
from service.database import Database
from service.errors import LeaseLostError
from service.exports.exporter import Exporter
from service.jobs.context import JobContext
from service.jobs.ledger import ClaimPolicy, Lease, Ledger
from service.jobs.model import Job
from service.storage import ObjectStore
from service.storage.writer import ObjectWriter
from tests.integration.conftest import new_job

pytestmark = pytest.mark.integration

PART = 5 * 1024 * 1024
LEASE = timedelta(seconds=30)
# The day the seeded rows fall in.
DAY = {"start_time": "2025-12-01T00:00:00Z", "end_time": "2025-12-02T00:00:00Z"}
START = datetime(2025, 12, 1, tzinfo=UTC)


async def test_object_writer_multipart_with_gzip_round_trips(store: ObjectStore) -> None:
    key = f"tests/{uuid.uuid4()}.bin.gz"
    writer = ObjectWriter(store, key, content_type="application/gzip", part_size=PART, gzip=True)
    # Random bytes do not compress, so 12 MiB in makes three parts out.
    chunks = [uuid.uuid4().bytes * 65536 for _ in range(12)]
    for chunk in chunks:
        await writer.write(chunk)
    written = await writer.close()
    stored = await store.read(key)
    assert gzip.decompress(stored) == b"".join(chunks)
    assert written.size == len(stored)
    assert written.sha256 == hashlib.sha256(stored).hexdigest()


async def test_a_small_file_is_one_plain_upload(store: ObjectStore) -> None:
    key = f"tests/{uuid.uuid4()}.csv"
    writer = ObjectWriter(store, key, content_type="text/csv", part_size=PART, gzip=False)
    await writer.write(b"a,b\r\n")
    assert (await writer.close()).size == 5
    assert await store.read(key) == b"a,b\r\n"


async def test_an_aborted_upload_leaves_no_object(store: ObjectStore) -> None:
    key = f"tests/{uuid.uuid4()}.bin"
    writer = ObjectWriter(store, key, content_type="x/y", part_size=PART, gzip=False)
    await writer.write(b"x" * (PART + 10))  # one part uploaded, a multipart upload open
    await writer.abort()
    assert await store.size(key) is None


async def seed(database: Database, project: str, rows: int, note_size: int) -> list[dict[str, Any]]:
    docs = [
        {
            "_id": f"{project}-{n:06d}",
            "project_id": project,
            "direction": "outbound",
            "endpoint_id": None,
            "inbound_endpoint_id": None,
            "status": "failed_permanent",
            "event_type": "order.created",
            "attempt_count": n % 7,
            "last_response_status": 500,
            "last_error": f"={n}" + "e" * note_size,
            "created_at": START + timedelta(seconds=n),
            "delivered_at": None,
        }
        for n in range(rows)
    ]
    await database["messages"].insert_many(docs)
    return docs


async def claimed(ledger: Ledger, job: Job) -> JobContext:
    await ledger.accept(job)
    claim = await ledger.claim("w", ClaimPolicy(LEASE, 3, 100))
    assert claim is not None
    assert claim.id == job.id
    return JobContext(
        ledger, Lease(job.id, "w", claim.attempt), lease_duration=LEASE, progress_interval=0.0
    )


def exporter(database: Database, store: ObjectStore, settings: Settings) -> Exporter:
    return Exporter(database, store, batch_size=500, part_size=PART, escape_formulas=True)


async def test_a_large_export_streams_in_parts_and_records_progress(
    database: Database, store: ObjectStore, settings: Settings, ledger: Ledger
) -> None:
    project = f"p{uuid.uuid4().hex[:8]}"
    docs = await seed(database, project, rows=2500, note_size=5000)  # ~12.5 MB of CSV
    job = new_job(
        project,
        filters=DAY,
        compression="gzip",
    )
    context = await claimed(ledger, job)
    result = await exporter(database, store, settings).run(job, context)

    stored = await store.read(result.object_key)
    assert result.object_key == f"exports/{project}/{job.id}.csv.gz"
    assert (result.row_count, result.file_size_bytes) == (2500, len(stored))
    assert result.file_sha256 == hashlib.sha256(stored).hexdigest()
    rows = list(csv.DictReader(io.StringIO(gzip.decompress(stored).decode(), newline="")))
    assert [row["id"] for row in rows] == [doc["_id"] for doc in docs]
    assert all(row["last_error"].startswith("'=") for row in rows)
    progress = await ledger.get(job.id)
    assert progress is not None
    assert progress.progress.rows_processed == 2500
    assert progress.progress.percent is not None
    # The worker's own rate gives an ETA; the CLI's side is tests/integration/test_cli_follow.py.
    assert progress.progress.eta is not None


async def test_an_export_that_lost_its_lease_publishes_no_file(
    database: Database, store: ObjectStore, settings: Settings, ledger: Ledger
) -> None:
    project, job = await small_export(database)
    context = await claimed(ledger, job)
    await ledger.release(context.lease)  # another party took the job away
    with pytest.raises(LeaseLostError):
        await exporter(database, store, settings).run(job, context)
    assert await store.size(f"exports/{project}/{job.id}.csv") is None


async def small_export(database: Database) -> tuple[str, Job]:
    """A project of 50 rows and a job exporting its day."""
    project = f"p{uuid.uuid4().hex[:8]}"
    await seed(database, project, rows=50, note_size=10)
    return project, new_job(project, filters=DAY)


class HeldManifests(ObjectStore):
    """The object store, holding every manifest upload until the test lets go: the moment a
    job's files are closed and visible but the job has no result yet."""

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings.s3)
        self.reached = asyncio.Event()

    async def put(self, key: str, data: bytes, *, content_type: str) -> None:
        if key.endswith(".manifest.json"):
            self.reached.set()
            await asyncio.Event().wait()  # until the attempt is stopped
        await super().put(key, data, content_type=content_type)


async def test_an_export_stopped_for_good_after_its_file_closed_leaves_no_file(
    database: Database, settings: Settings, ledger: Ledger
) -> None:
    project, job = await small_export(database)
    context = await claimed(ledger, job)
    store = HeldManifests(settings)
    running = asyncio.create_task(exporter(database, store, settings).run(job, context))
    await asyncio.wait_for(store.reached.wait(), timeout=30)
    assert await store.size(f"exports/{project}/{job.id}.csv") is not None  # closed, visible
    context.end_here()  # as the runner does for a cancel
    running.cancel()
    with pytest.raises(asyncio.CancelledError):
        await running
    assert await store.size(f"exports/{project}/{job.id}.csv") is None
    assert await store.size(f"exports/{project}/{job.id}.manifest.json") is None
