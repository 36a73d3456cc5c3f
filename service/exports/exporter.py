"""The exporter: a dataset's rows, streamed from MongoDB through an encoder into one object, or
into numbered files when the request limits their size, plus a manifest beside them.

The cursor is read in raw BSON batches, the next batch is fetched while the current one is
decoded and encoded (column-wise, through Arrow: see batch_decoder.py and arrow_encoders.py), and
bytes leave in multipart parts, so memory does not grow with the export and the event loop is
never blocked by decoding or encoding. A file cut falls inside a batch as a row range of it
(file_parts.py); each file has its own encoder, finished when the file closes.

Parquet resumes only at file boundaries: a Parquet file's footer describes all its row groups,
so a file cannot be continued by another attempt. A split Parquet export continues after its
last closed file; a one-file Parquet export restarts from zero after a crash.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import structlog
from pymongo.asynchronous.database import AsyncDatabase

from service.clock import utcnow
from service.datasets import get_dataset
from service.datasets.base import Column, Dataset
from service.exports import files
from service.exports.arrow_encoders import ArrowCsvEncoder, ArrowJsonLinesEncoder, BatchEncoder
from service.exports.checkpoints import Checkpoint, key_of, sort_fields
from service.exports.chunked import ChunkedExport, eligible
from service.exports.dataset_batches import decoded_batches
from service.exports.export_end import deliver, stop_attempt, worth_continuing
from service.exports.file_parts import FileLimits, FileSequence, Resumable, WrittenFile
from service.exports.key_ranges import key_range_queries
from service.exports.parquet_writer import ParquetEncoder
from service.exports.resume import abort_stale_upload, usable_checkpoint
from service.jobs.context import JobContext
from service.jobs.model import ExportResult, Job
from service.observability.metrics import ROWS
from service.storage import ObjectStore

log = structlog.get_logger(__name__)


@dataclass
class _Split:
    """An attempt's one try at splitting the rows left into chunks, once the export is large."""

    chunked: ChunkedExport | None  # None: this export is never split
    data_as_of: datetime
    reached: dict[str, Any] | None  # the sort key of the last row written
    tried: bool = False
    marker: dict[str, Any] | None = None  # the split's checkpoint, once split


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
        max_rows_per_second: float = 0.0,
        max_files: int = 10_000,
        chunked: ChunkedExport | None = None,
    ) -> None:
        """`chunked`: how large exports are split into chunks for several workers (None: never)."""
        self._db = database
        self._store = store
        self._batch_size = batch_size
        self._part_size = part_size
        self._escape_formulas = escape_formulas
        self._rows_per_second = max_rows_per_second
        self._max_files = max_files
        self._chunked = chunked

    async def run(self, job: Job, context: JobContext) -> ExportResult:
        dataset = get_dataset(job.dataset)
        filters = dataset.parse_filters(job.filters)
        columns = dataset.select_columns(job.columns)
        limits = FileLimits(max_bytes=job.max_file_bytes, max_rows=job.max_rows_per_file)
        chunked = await self._continue_chunked(job, context, dataset, columns)
        if chunked is not None:
            return chunked
        start = await usable_checkpoint(self._store, job)
        data_as_of = start.data_as_of if start else utcnow()
        split = _Split(
            self._chunked if self._chunked is not None and eligible(job) else None,
            data_as_of,
            reached=start.after if start is not None and start.after else None,
        )

        async def save_checkpoint(checkpoint: Checkpoint) -> None:
            # Once the rows left are chunks, the job's checkpoint is the split's marker, which
            # the head's own checkpoints must not overwrite.
            if split.marker is None:
                await context.save_checkpoint(checkpoint.to_document())

        await abort_stale_upload(self._store, job, split=limits.split, checkpoint=start)
        output = FileSequence(
            self._store,
            key_for=lambda part: files.file_key(
                job.project_id, job.id, job.format, job.compression, part=part
            ),
            new_encoder=lambda: make_batch_encoder(
                job.format, dataset, columns, escape_formulas=self._escape_formulas
            ),
            sort_fields=sort_fields(dataset.sort),
            content_type=files.content_type(job.format, job.compression),
            part_size=self._part_size,
            gzip=job.compression == "gzip",
            limits=limits,
            max_files=self._max_files,
            on_upload_started=context.record_upload,
            resumable=Resumable(
                key_of=lambda row: key_of(dataset.sort, row),
                save=save_checkpoint,
                data_as_of=data_as_of,
                start=start,
                mid_file=job.format != "parquet",
            ),
        )
        if start is not None:
            _resumed(job, context, dataset, start)
        # A one-file export whose file was closed has nothing left to read.
        finished = start is not None and not limits.split and bool(start.files)
        queries = key_range_queries(
            dataset.query(job.project_id, filters),
            dataset.sort,
            lower=start.after if start is not None and start.after else None,
        )
        try:
            if not finished:
                await self._write_rows(job, context, dataset, queries, output=output, split=split)
            # Files become visible on close: make sure no other attempt has taken over.
            await context.confirm_lease()
            written = await output.close()
        except BaseException as exc:
            await stop_attempt(self._store, job, context, output, exc)
            raise
        if split.marker is not None:
            chunked = await self._continue_chunked(
                job, context, dataset, columns, split=(split.marker, written[0])
            )
            if chunked is None:
                raise RuntimeError("a split export's marker was not taken as chunked")
            return chunked
        return await deliver(
            self._store,
            job,
            context,
            dataset,
            columns,
            written,
            data_as_of=data_as_of,
            limits=limits,
        )

    async def _write_rows(
        self,
        job: Job,
        context: JobContext,
        dataset: Dataset[Any],
        queries: list[dict[str, Any]],
        *,
        output: FileSequence,
        split: _Split,
    ) -> None:
        """The rows of `queries` (read in turn) into `output`, reporting progress; once the
        export has passed the chunk threshold, the rows left become chunks (their marker goes
        into `split`) and this stops at the key reached."""
        filters = dataset.parse_filters(job.filters)
        whole = dataset.query(job.project_id, filters)
        columns = dataset.select_columns(job.columns)
        batches = decoded_batches(
            self._db[dataset.collection],
            dataset,
            columns,
            queries,
            batch_size=self._batch_size,
            rows_per_second=self._rows_per_second,
        )
        async with contextlib.aclosing(batches):
            async for batch in batches:
                # Tried when a batch comes after the threshold was passed, so that an export
                # ending at the threshold plans nothing; this batch then goes to the chunks.
                if await self._split_here(context, dataset, whole, output=output, split=split):
                    return
                await output.write(batch)
                split.reached = key_of(dataset.sort, batch.last_document)
                ROWS.labels(kind=job.kind, dataset=job.dataset).inc(batch.row_count)
                await context.progress(
                    output.rows, dataset.estimate_progress(filters, batch.last_document)
                )

    async def _split_here(
        self,
        context: JobContext,
        dataset: Dataset[Any],
        query: dict[str, Any],
        *,
        output: FileSequence,
        split: _Split,
    ) -> bool:
        """Whether the rows after those written become chunks now (one try per attempt)."""
        chunked = split.chunked
        if chunked is None or split.tried or split.reached is None:
            return False
        if not chunked.due(output.rows):
            return False
        split.tried = True
        split.marker = await chunked.split_rest(
            context,
            dataset,
            query,
            after=split.reached,
            rows=output.rows,
            data_as_of=split.data_as_of,
        )
        return split.marker is not None

    async def _continue_chunked(
        self,
        job: Job,
        context: JobContext,
        dataset: Dataset[Any],
        columns: Sequence[Column],
        *,
        split: tuple[dict[str, Any], WrittenFile] | None = None,
    ) -> ExportResult | None:
        """The export's chunks (service/exports/chunked.py) waited for and composed, or None
        when it is not split. `split`: the split this attempt just made (newer than
        `job.checkpoint`) and its closed head."""
        if self._chunked is None or not eligible(job):
            return None
        try:
            marker = None
            if split is not None:
                marker = await self._chunked.head_closed(context, *split)
            found = await self._chunked.run(job, context, marker)
        except BaseException as exc:
            if not worth_continuing(exc, context):
                await asyncio.shield(self._chunked.discard(job))
            raise
        if found is None:
            return None
        written, data_as_of = found
        return await deliver(
            self._store,
            job,
            context,
            dataset,
            columns,
            [written],
            data_as_of=data_as_of,
            limits=FileLimits(),
        )


def _resumed(job: Job, context: JobContext, dataset: Dataset[Any], start: Checkpoint) -> None:
    log.info(
        "export.resumed",
        job_id=job.id,
        rows=start.rows,
        files=len(start.files),
        parts=len(start.open_file.parts) if start.open_file else 0,
    )
    # The ETA counts only what this attempt does; rows_processed continues from the
    # checkpoint's rows (the output's row count starts there).
    fraction = dataset.estimate_progress(dataset.parse_filters(job.filters), start.after)
    if fraction is not None:
        context.resumed_from(fraction)


def make_batch_encoder(
    export_format: str,
    dataset: Dataset[Any],
    columns: Sequence[Column],
    *,
    escape_formulas: bool,
) -> BatchEncoder:
    if export_format == "parquet":
        return ParquetEncoder(columns, dataset.record_model)
    if export_format == "jsonl":
        return ArrowJsonLinesEncoder(columns)
    return ArrowCsvEncoder(columns, escape_formulas=escape_formulas)
