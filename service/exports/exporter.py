"""The exporter: a dataset's rows, streamed from MongoDB through an encoder into one object.

The cursor is read in raw BSON batches, the next batch is fetched while the current one is
decoded and encoded (column-wise, through Arrow: see arrow_batches.py and arrow_encoders.py), and
bytes leave in multipart parts, so memory does not grow with the export and the event loop is
never blocked by decoding or encoding.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Sequence
from typing import Any

import structlog
from bson.codec_options import CodecOptions
from pymongo.asynchronous.database import AsyncDatabase

from service.datasets import get_dataset
from service.datasets.base import Column, Dataset
from service.exports import files
from service.exports.arrow_batches import (
    BatchDecoder,
    RawBatchCursor,
    RowBatch,
    prefetched_raw_batches,
)
from service.exports.arrow_encoders import ArrowCsvEncoder, ArrowJsonLinesEncoder, BatchEncoder
from service.exports.object_writer import ObjectWriter
from service.exports.parquet_writer import ParquetEncoder
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
        encoder = make_batch_encoder(
            job.format, dataset, columns, escape_formulas=self._escape_formulas
        )
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
        collection = self._db[dataset.collection]
        sort_fields = [field for field, _ in dataset.sort]
        # The sort fields come along so that each batch knows where it ends (progress, resume).
        projection = dict.fromkeys((*(column.field for column in columns), *sort_fields), 1)
        cursor = (
            RawBatchCursor(collection, dataset.query(job.project_id, filters), projection)
            .sort(list(dataset.sort))
            .batch_size(self._batch_size)
        )
        codec: CodecOptions[dict[str, Any]] = collection.codec_options
        decoder = BatchDecoder(columns, dataset.record_model, sort_fields, codec)

        def encoded(raw: bytes) -> tuple[RowBatch, bytes]:
            batch = decoder.decode(raw)
            return batch, encoder.encode(batch)

        rows = 0
        try:
            await writer.write(encoder.header())
            async for raw in prefetched_raw_batches(cursor):
                batch, data = await asyncio.to_thread(encoded, raw)
                await writer.write(data)
                rows += batch.row_count
                ROWS.labels(kind=job.kind, dataset=job.dataset).inc(batch.row_count)
                await context.progress(
                    rows, dataset.estimate_progress(filters, batch.last_document)
                )
            await writer.write(await asyncio.to_thread(encoder.finish))
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
