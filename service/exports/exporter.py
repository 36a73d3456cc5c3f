"""The exporter: a dataset's rows, streamed from MongoDB through an encoder into one object.

The cursor is read in batches, the next batch is fetched while the current one is encoded, and
bytes leave in multipart parts, so memory does not grow with the export and the event loop is
never blocked by encoding.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Sequence
from typing import Any

import structlog
from pymongo.asynchronous.cursor import AsyncCursor
from pymongo.asynchronous.database import AsyncDatabase

from service.datasets import get_dataset
from service.datasets.base import Document
from service.exports import files
from service.exports.encoders import make_encoder
from service.exports.object_writer import ObjectWriter
from service.jobs.context import JobContext
from service.jobs.model import ExportResult, Job
from service.observability.metrics import ROWS
from service.storage import ObjectStore

log = structlog.get_logger(__name__)


class Exporter:
    """Runs export jobs."""

    def __init__(
        self,
        database: AsyncDatabase[dict[str, Any]],
        store: ObjectStore,
        *,
        batch_size: int,
        part_size: int,
        escape_formulas: bool,
    ) -> None:
        self._db = database
        self._store = store
        self._batch_size = batch_size
        self._part_size = part_size
        self._escape_formulas = escape_formulas

    async def run(self, job: Job, context: JobContext) -> ExportResult:
        dataset = get_dataset(job.dataset)
        filters = dataset.parse_filters(job.filters)
        columns = dataset.select_columns(job.columns)
        encoder = make_encoder(job.format, columns, escape_formulas=self._escape_formulas)
        key = files.object_key(job.project_id, job.id, job.format, job.compression)
        if job.upload_id is not None:
            # A previous attempt died mid-upload: its parts would otherwise linger until the
            # bucket's lifecycle rule removes them.
            await self._store.abort_upload(key, job.upload_id)
            log.info("export.stale_upload_aborted", job_id=job.id, upload_id=job.upload_id)
        writer = ObjectWriter(
            self._store,
            key,
            content_type=files.content_type(job.format, job.compression),
            part_size=self._part_size,
            gzip=job.compression == "gzip",
            on_upload_started=context.record_upload,
        )
        cursor = (
            self._db[dataset.collection]
            .find(dataset.query(job.project_id, filters), {column.field: 1 for column in columns})
            .sort(list(dataset.sort))
            .batch_size(self._batch_size)
        )
        rows = 0
        try:
            await writer.write(encoder.header())
            async for batch in _prefetched_batches(cursor, self._batch_size):
                await writer.write(await asyncio.to_thread(encoder.encode, batch))
                rows += len(batch)
                ROWS.labels(kind=job.kind, dataset=job.dataset).inc(len(batch))
                await context.progress(rows, dataset.estimate_progress(filters, batch[-1]))
            # The object becomes visible on close: make sure no other attempt has taken over.
            await context.confirm_lease()
            written = await writer.close()
        except BaseException as exc:
            aborting = time.monotonic()
            with contextlib.suppress(Exception):
                await asyncio.shield(writer.abort())
            log.info(
                "export.aborted",
                job_id=job.id,
                reason=type(exc).__name__,
                seconds=round(time.monotonic() - aborting, 3),
            )
            raise
        finally:
            await cursor.close()
        return ExportResult(
            object_key=key, row_count=rows, file_size_bytes=written.size, file_sha256=written.sha256
        )


async def _prefetched_batches(
    cursor: AsyncCursor[dict[str, Any]], size: int
) -> AsyncIterator[Sequence[Document]]:
    """Batches of the cursor, the next one already being fetched while the caller works."""
    upcoming = asyncio.ensure_future(cursor.to_list(size))
    try:
        while batch := await upcoming:
            upcoming = asyncio.ensure_future(cursor.to_list(size))
            yield batch
    finally:
        upcoming.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await upcoming
