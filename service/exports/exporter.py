"""The exporter: a dataset's rows, streamed from MongoDB through an encoder into one object, or
into numbered files when the request limits their size, plus a manifest beside them.

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

from service.clock import utcnow
from service.datasets import get_dataset
from service.datasets.base import Document
from service.errors import LeaseLostError
from service.exports import files
from service.exports.checkpoints import after_filter, key_of, sort_fields
from service.exports.encoders import make_encoder
from service.exports.file_parts import FileLimits, FileSequence, Resumable, WrittenFile
from service.exports.manifest import build_manifest, encode_manifest
from service.exports.resume import abort_stale_upload, usable_checkpoint
from service.jobs.context import JobContext
from service.jobs.failures import classify
from service.jobs.model import ExportFile, ExportResult, Job
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
        max_files: int = 10_000,
    ) -> None:
        self._db = database
        self._store = store
        self._batch_size = batch_size
        self._part_size = part_size
        self._escape_formulas = escape_formulas
        self._max_files = max_files

    async def run(self, job: Job, context: JobContext) -> ExportResult:
        dataset = get_dataset(job.dataset)
        filters = dataset.parse_filters(job.filters)
        columns = dataset.select_columns(job.columns)
        encoder = make_encoder(job.format, columns, escape_formulas=self._escape_formulas)
        limits = FileLimits(max_bytes=job.max_file_bytes, max_rows=job.max_rows_per_file)
        start = await usable_checkpoint(self._store, job)
        await abort_stale_upload(self._store, job, split=limits.split, checkpoint=start)
        data_as_of = start.data_as_of if start else utcnow()
        output = FileSequence(
            self._store,
            key_for=lambda part: files.file_key(
                job.project_id, job.id, job.format, job.compression, part=part
            ),
            header=encoder.header(),
            encode=encoder.encode,
            content_type=files.content_type(job.format, job.compression),
            part_size=self._part_size,
            gzip=job.compression == "gzip",
            limits=limits,
            max_files=self._max_files,
            on_upload_started=context.record_upload,
            resumable=Resumable(
                key_of=lambda row: key_of(dataset.sort, row),
                save=lambda checkpoint: context.save_checkpoint(checkpoint.to_document()),
                data_as_of=data_as_of,
                start=start,
            ),
        )
        if start is not None:
            log.info(
                "export.resumed",
                job_id=job.id,
                rows=start.rows,
                files=len(start.files),
                parts=len(start.open_file.parts) if start.open_file else 0,
            )
        # A one-file export whose file was closed has nothing left to read.
        finished = start is not None and not limits.split and bool(start.files)
        query = dataset.query(job.project_id, filters)
        if start is not None and start.after:
            query = {"$and": [query, after_filter(dataset.sort, start.after)]}
        projection = {column.field: 1 for column in columns} | dict.fromkeys(
            sort_fields(dataset.sort), 1
        )
        cursor = (
            self._db[dataset.collection]
            .find(query, projection)
            .sort(list(dataset.sort))
            .batch_size(self._batch_size)
        )
        try:
            if not finished:
                async for batch in _prefetched_batches(cursor, self._batch_size):
                    await output.write(batch)
                    ROWS.labels(kind=job.kind, dataset=job.dataset).inc(len(batch))
                    await context.progress(
                        output.rows, dataset.estimate_progress(filters, batch[-1])
                    )
            # Files become visible on close: make sure no other attempt has taken over.
            await context.confirm_lease()
            written = await output.close()
        except BaseException as exc:
            stopping = time.monotonic()
            keep = _worth_continuing(exc, context)
            try:
                await asyncio.shield(output.detach() if keep else self._discard(output))
            except Exception:
                log.warning("export.cleanup_failed", job_id=job.id, exc_info=True)
            log.info(
                "export.stopped",
                job_id=job.id,
                reason=type(exc).__name__,
                kept_for_next_attempt=keep,
                seconds=round(time.monotonic() - stopping, 3),
            )
            raise
        finally:
            await cursor.close()
        manifest_key = files.manifest_key(job.project_id, job.id, split=limits.split)
        names = [
            files.file_name(job.id, job.format, job.compression, part=file.part) for file in written
        ]
        manifest = build_manifest(
            job, dataset, columns, written, data_as_of=data_as_of, names=names
        )
        await context.confirm_lease()
        await self._store.put(
            manifest_key, encode_manifest(manifest), content_type=files.MANIFEST_CONTENT_TYPE
        )
        await self._remove_leftovers(job, limits, written)
        return _result(written, manifest_key)

    async def _discard(self, output: FileSequence) -> None:
        """The job ends without a result: its upload is aborted and its closed files go."""
        await output.abort()
        for file in output.files:
            await self._store.delete(file.key)

    async def _remove_leftovers(
        self, job: Job, limits: FileLimits, written: list[WrittenFile]
    ) -> None:
        """Files a dead attempt closed beyond this attempt's last one (the data may have changed
        in between) would look like part of the export: they go."""
        if not limits.split:
            return
        part = len(written) + 1
        while True:
            key = files.file_key(job.project_id, job.id, job.format, job.compression, part=part)
            if await self._store.size(key) is None:
                return
            await self._store.delete(key)
            part += 1


def _result(written: list[WrittenFile], manifest_key: str) -> ExportResult:
    return ExportResult(
        object_key=written[0].key,
        row_count=sum(file.rows for file in written),
        file_size_bytes=sum(file.size_bytes for file in written),
        file_sha256=written[0].sha256 if len(written) == 1 else None,
        files=[
            ExportFile(
                key=file.key,
                part=file.part,
                rows=file.rows,
                size_bytes=file.size_bytes,
                sha256=file.sha256,
            )
            for file in written
        ],
        manifest_key=manifest_key,
    )


def _worth_continuing(exc: BaseException, context: JobContext) -> bool:
    """Whether the attempt's upload and files stay for a later attempt to continue: yes when
    one will come (a transient failure, a worker handing its jobs back) and when the job is no
    longer this attempt's (its new owner may be continuing them); no when the job ends here
    (cancelled, timed out, or failed for good)."""
    if isinstance(exc, LeaseLostError):
        return True
    if isinstance(exc, asyncio.CancelledError):
        # The runner says when it stops an attempt for good; otherwise this is a shutdown
        # (the job is handed back) or a lost lease.
        return not context.ends_here
    if isinstance(exc, Exception):
        return classify(exc).transient
    return True


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
