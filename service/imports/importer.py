"""The importer: runs import jobs (the runner's executor for kind `import`).

1. Locate the source (copying a URL's file into the bucket first) and check its size: over the
   limit fails with FILE_TOO_LARGE before anything is read.
2. Scan the whole file on a worker thread: rows counted, bytes hashed, decoding and header
   checked. A file over the row limit, not text, or with an unusable header fails here, before
   any contact is written.
3. Read it again in batches (the next batch parsed on a thread while the current one is
   matched and written), validate and deduplicate rows, upsert the good ones, stream the
   rejected ones into the reports, and record progress.
4. Confirm the lease, make the reports visible, and return the counts.

Memory: a chunk of the source, one record, two batches (bounded by rows and by bytes), the report
writers' buffers and the duplicate table (bounded by the row limit); nothing holds the file,
whatever its shape. docs/reliability.md states the bound and the peaks measured on hostile files.

Cancellation, lease loss and failures abort the reports (none stays visible). Contacts written
before stay written: running the import again applies the rest, and matches what was written
to the contacts it made (see matching.py), so nothing is duplicated.
"""

from __future__ import annotations

import asyncio
import threading
from collections import Counter
from collections.abc import Callable, Generator
from typing import Any, TypeVar

import structlog
from pymongo.asynchronous.database import AsyncDatabase

from service.clock import utcnow
from service.config import ImportSettings
from service.error_codes import ErrorCode
from service.errors import JobFailedError
from service.imports.contacts_store import ContactStore
from service.imports.errors import FileTooLargeError
from service.imports.matching import Outcome, plan_batch
from service.imports.model import ImportCounts, ImportOptions, ImportResult
from service.imports.parsing import Batch, ContactFile, scan
from service.imports.reports import Reports
from service.imports.sources import Sources
from service.imports.validation import ContactRow, Rejection
from service.jobs.context import JobContext
from service.jobs.model import Job
from service.observability.metrics import ROWS, record_import_rows
from service.storage import ObjectStore, StoredObject

log = structlog.get_logger(__name__)

CHUNK_BYTES = 1 << 20
# Rounds of matching again the rows whose writes lost a race to another import of the project.
_MAX_ROUNDS = 5
T = TypeVar("T")


class Importer:
    def __init__(
        self,
        database: AsyncDatabase[dict[str, Any]],
        store: ObjectStore,
        sources: Sources,
        settings: ImportSettings,
        *,
        part_size: int,
        escape_formulas: bool,
    ) -> None:
        self._db = database
        self._store = store
        self._sources = sources
        self._settings = settings
        self._contacts = ContactStore(database)
        self._part_size = part_size
        self._escape_formulas = escape_formulas

    async def run(self, job: Job, context: JobContext) -> ImportResult:
        options = job.options or ImportOptions()
        located = await self._sources.locate(job)
        try:
            source = located.stored
            if source.size > self._settings.max_file_bytes:
                raise FileTooLargeError(
                    f"the file is {source.size} bytes; the limit is "
                    f"{self._settings.max_file_bytes} (FERRY_IMPORTS__MAX_FILE_BYTES)"
                )
            stop = threading.Event()
            summary = await _on_thread(
                stop,
                lambda: scan(
                    self._store.chunks(source, chunk_size=CHUNK_BYTES),
                    encoding=options.encoding,
                    max_bytes=self._settings.max_file_bytes,
                    max_rows=self._settings.max_rows,
                    stop=stop,
                ),
            )
            counts, reports = await self._import(job, context, source, options, summary.rows)
        finally:
            await asyncio.shield(self._sources.release(located))
        return ImportResult(
            counts=counts,
            reports=reports,
            dry_run=options.dry_run,
            source_size_bytes=summary.size,
            source_sha256=summary.sha256,
        )

    async def _import(
        self,
        job: Job,
        context: JobContext,
        source: StoredObject,
        options: ImportOptions,
        rows: int,
    ) -> tuple[ImportCounts, dict[str, Any]]:
        stop = threading.Event()
        contact_file = await _on_thread(
            stop,
            lambda: ContactFile(
                self._store.chunks(source, chunk_size=CHUNK_BYTES),
                encoding=options.encoding,
                max_field_chars=self._settings.max_field_chars,
                stop=stop,
                expected_rows=rows,
            ),
        )
        reports = Reports(
            self._store,
            project_id=job.project_id,
            job_id=job.id,
            columns=contact_file.header.names,
            part_size=self._part_size,
            escape_formulas=self._escape_formulas,
        )
        if job.attempt > 1:
            await reports.delete_stale()
        if not options.dry_run:
            await self._contacts.prepare(job.project_id)
        counts = ImportCounts()
        batches = _ThreadedBatches(
            contact_file.batches(self._settings.batch_size, self._settings.batch_max_bytes), stop
        )
        try:
            while (batch := await batches.next()) is not None:
                outcomes, conflicts = await self._apply(job, options, batch.rows)
                rejections = batch.rejections + conflicts
                _count(counts, outcomes, rejections)
                await reports.add(rejections)
                ROWS.labels(kind=job.kind, dataset=job.dataset).inc(len(batch))
                record_import_rows(outcomes, [rejection.reason for rejection in rejections])
                await context.progress(counts.rows_read, batch.bytes_read / max(source.size, 1))
            # Reports become visible on close: make sure no other attempt has taken over.
            await context.confirm_lease()
            files = await reports.close()
        except BaseException:
            await asyncio.shield(reports.abort())
            raise
        finally:
            await batches.aclose()
        log.info("import.counted", job_id=job.id, counts=counts.model_dump())
        return counts, files

    async def _apply(
        self, job: Job, options: ImportOptions, rows: list[ContactRow]
    ) -> tuple[list[Outcome], list[Rejection]]:
        """Match and write `rows`; rows that lost a race are matched again (see contacts_store)."""
        outcomes: list[Outcome] = []
        rejections: list[Rejection] = []
        pending = rows
        for _ in range(_MAX_ROUNDS):
            if not pending:
                break
            stored = await self._contacts.touched(job.project_id, pending)
            if options.dry_run and not stored:
                # Nothing stored shares a value with these rows, nor does any earlier row of the
                # file (the duplicate finder rejected those): each would create a contact, as
                # plan_batch would find a row at a time.
                outcomes += ["created"] * len(pending)
                pending = []
                break
            plan = plan_batch(
                pending,
                stored,
                project_id=job.project_id,
                options=options,
                job_id=job.id,
                now=utcnow(),
            )
            redo = set() if options.dry_run else await self._contacts.write(job.project_id, plan)
            outcomes += [outcome for row, outcome in plan.outcomes if row.line not in redo]
            rejections += plan.rejections
            pending = [row for row in pending if row.line in redo]
        if pending:
            raise JobFailedError(
                ErrorCode.WRITE_CONFLICT,
                f"rows kept colliding with concurrent writes to the same contacts (lines "
                f"{[row.line for row in pending[:10]]}); run the import again",
            )
        return outcomes, rejections


def _count(counts: ImportCounts, outcomes: list[Outcome], rejections: list[Rejection]) -> None:
    # Tallied first: setting a field of the model costs more than counting a row.
    counts.rows_read += len(outcomes) + len(rejections)
    for outcome, tally in Counter(outcomes).items():
        setattr(counts, outcome, getattr(counts, outcome) + tally)
    counts.rejected += len(rejections)
    reasons = counts.rejected_by_reason
    for reason, tally in Counter(rejection.reason for rejection in rejections).items():
        reasons[reason] = reasons.get(reason, 0) + tally


async def _on_thread(stop: threading.Event, work: Callable[[], T]) -> T:
    """`work()` on a worker thread. If the caller is cancelled (the job was cancelled, lost its
    lease or ran out of time), `stop` is set and the thread is waited for: it ends at its next
    chunk, so that no abandoned thread goes on reading beside the job that takes the slot."""
    future = asyncio.ensure_future(asyncio.to_thread(work))
    try:
        return await asyncio.shield(future)
    except asyncio.CancelledError:
        stop.set()
        await asyncio.wait([future])
        if not future.cancelled():
            future.exception()  # retrieved: the cancellation is what matters
        raise


class _ThreadedBatches:
    """A blocking iterator of batches, advanced on worker threads, one batch ahead: the next
    batch is parsed while the current one is written."""

    def __init__(self, batches: Generator[Batch, None, None], stop: threading.Event) -> None:
        self._batches = batches
        self._stop = stop
        self._upcoming: asyncio.Future[Batch | None] | None = None

    async def next(self) -> Batch | None:
        upcoming = self._upcoming or self._advance()
        batch = await upcoming
        self._upcoming = self._advance() if batch is not None else None
        return batch

    async def aclose(self) -> None:
        # A thread cannot be interrupted: let the batch being parsed finish before closing the
        # iterator (which closes the source's connection).
        upcoming, self._upcoming = self._upcoming, None
        if upcoming is not None:
            self._stop.set()  # the batch being parsed ends at its next chunk
            await asyncio.wait([upcoming])
            if not upcoming.cancelled():
                upcoming.exception()  # retrieved: the error that matters is already raised
        self._batches.close()

    def _advance(self) -> asyncio.Future[Batch | None]:
        return asyncio.ensure_future(asyncio.to_thread(next, self._batches, None))
