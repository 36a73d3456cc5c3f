"""Exporting one chunk of a chunked export: the rows strictly after its lower key and up to its
upper key, into an object of its own, checkpointed per stored part like any export.

Only the export's first range writes the CSV header (the head, when the job's own worker split
the export: service/exports/chunked.py); with gzip each chunk object is its own gzip stream
(whole members), so the chunk objects laid end to end are one valid file. A chunk resumes from
its own checkpoint (the sort key reached, its upload's parts) after its worker dies.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from typing import Any

import structlog
from pymongo.asynchronous.database import AsyncDatabase

from service.datasets import get_dataset
from service.exports import files
from service.exports.arrow_batches import RowBatch
from service.exports.arrow_encoders import ArrowCsvEncoder, ArrowJsonLinesEncoder, BatchEncoder
from service.exports.checkpoints import key_of, sort_fields
from service.exports.chunk_ledger import Chunk, ChunkLease, ChunkLedger
from service.exports.dataset_batches import decoded_batches
from service.exports.file_parts import FileLimits, FileSequence, Resumable
from service.exports.key_ranges import key_range_queries
from service.exports.resume import verified_checkpoint
from service.jobs.model import Job
from service.observability.metrics import ROWS
from service.storage import ObjectStore

log = structlog.get_logger(__name__)


class _Headerless:
    """A chunk after the first: the same rows, without the header the first chunk wrote."""

    def __init__(self, encoder: BatchEncoder) -> None:
        self._encoder = encoder

    def header(self) -> bytes:
        return b""

    def encode(self, batch: RowBatch) -> bytes:
        return self._encoder.encode(batch)

    def finish(self) -> bytes:
        return self._encoder.finish()


class ChunkExport:
    """Runs one chunk's export under its lease."""

    def __init__(
        self,
        database: AsyncDatabase[dict[str, Any]],
        store: ObjectStore,
        chunks: ChunkLedger,
        *,
        batch_size: int,
        part_size: int,
        escape_formulas: bool,
        max_rows_per_second: float = 0.0,
        progress_interval: float = 1.0,
    ) -> None:
        """`progress_interval`: how often the rows read so far are recorded on the chunk."""
        self._db = database
        self._store = store
        self._chunks = chunks
        self._batch_size = batch_size
        self._part_size = part_size
        self._escape_formulas = escape_formulas
        self._rows_per_second = max_rows_per_second
        self._progress_interval = progress_interval

    async def discard(self, key: str) -> None:
        await self._store.delete(key)

    async def abort_upload(self, key: str, upload_id: str) -> None:
        await self._store.abort_upload(key, upload_id)

    async def run(
        self,
        job: Job,
        chunk: Chunk,
        lease: ChunkLease,
        *,
        confirm: Callable[[], Awaitable[None]],
        keep: Callable[[BaseException], bool],
    ) -> tuple[int, int]:
        """Export the chunk; its rows and size. `confirm` raises unless the lease still holds;
        `keep` says whether an attempt stopped by an error leaves its upload for the next."""
        dataset = get_dataset(job.dataset)
        filters = dataset.parse_filters(job.filters)
        columns = dataset.select_columns(job.columns)
        start = await verified_checkpoint(self._store, chunk.checkpoint, of=chunk.id)
        continued = start.open_file.upload_id if start and start.open_file else None
        if chunk.upload_id is not None and chunk.upload_id != continued:
            await self._store.abort_upload(chunk.key, chunk.upload_id)
        if start is not None and start.files:
            return start.rows, start.files[0].size_bytes  # closed before it could be marked done

        def encoder() -> BatchEncoder:
            made: BatchEncoder = (
                ArrowJsonLinesEncoder(columns)
                if job.format == "jsonl"
                else ArrowCsvEncoder(columns, escape_formulas=self._escape_formulas)
            )
            # The first range of the export writes the header (after a split, the job's own
            # worker wrote it in the head).
            return made if chunk.lower is None else _Headerless(made)

        output = FileSequence(
            self._store,
            key_for=lambda _: chunk.key,
            new_encoder=encoder,
            sort_fields=sort_fields(dataset.sort),
            content_type=files.content_type(job.format, job.compression),
            part_size=self._part_size,
            gzip=job.compression == "gzip",
            limits=FileLimits(),
            max_files=1,
            on_upload_started=lambda upload_id: self._chunks.record_upload(lease, upload_id),
            resumable=Resumable(
                key_of=lambda row: key_of(dataset.sort, row),
                save=lambda point: self._chunks.save_checkpoint(lease, point.to_document()),
                data_as_of=chunk.planned_at,
                start=start,
            ),
        )
        lower = start.after if start is not None and start.after else chunk.lower
        queries = key_range_queries(
            dataset.query(job.project_id, filters), dataset.sort, lower=lower, upper=chunk.upper
        )
        batches = decoded_batches(
            self._db[dataset.collection],
            dataset,
            columns,
            queries,
            batch_size=self._batch_size,
            rows_per_second=self._rows_per_second,
        )
        try:
            reported = time.monotonic()
            async with contextlib.aclosing(batches):
                async for batch in batches:
                    await output.write(batch)
                    ROWS.labels(kind=job.kind, dataset=job.dataset).inc(batch.row_count)
                    # Checkpoints come once per stored part, minutes apart for a gzipped chunk:
                    # the job's progress also counts what is read and not yet stored.
                    if time.monotonic() - reported >= self._progress_interval:
                        reported = time.monotonic()
                        await self._chunks.report_rows(lease, output.rows)
            await confirm()
            written = await output.close()
        except BaseException as exc:
            try:
                if keep(exc):
                    await asyncio.shield(output.detach())
                else:
                    await asyncio.shield(output.abort())
            except Exception:
                log.warning("export.chunk_cleanup_failed", chunk_id=chunk.id, exc_info=True)
            raise
        return output.rows, written[0].size_bytes
