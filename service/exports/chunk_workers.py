"""The chunk pool of a worker: takes chunks of any running chunked export, from any worker's
job, and exports them under a chunk lease (service/exports/chunk_ledger.py).

Chunk leases take no project slot: the job that was split holds its project's slot, so the
per-project limit counts jobs, not chunks. A worker runs at most `concurrency` chunks at once,
and at most `per_job` of one job, so one giant export cannot take every worker's capacity; the
runner claims whole jobs beside this pool, so other projects' jobs are claimed between chunks.

An idle pool polls less and less often (up to IDLE_POLLS times the poll interval): most of the
time no export is chunked, and every worker runs a pool. The pool of the worker that split an
export is woken at once; the others join within the longest idle wait.

Each running chunk has a watcher, as a job has: it renews the chunk's lease every heartbeat and
stops the chunk's work when its job is cancelled or has ended (the chunk's upload is then
aborted and its object removed), or when the lease was lost (the upload stays: the chunk's new
holder continues it from the checkpoint).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter
from datetime import timedelta
from typing import Any

import structlog
from pymongo.asynchronous.database import AsyncDatabase

from service.config import Settings, WorkerSettings
from service.errors import LeaseLostError
from service.exports.chunk_export import ChunkExport
from service.exports.chunk_ledger import Chunk, ChunkLease, ChunkLedger
from service.exports.chunked import ChunkedExport, ChunkSettings
from service.jobs.failures import classify
from service.jobs.ledger import Ledger
from service.jobs.model import Job
from service.jobs.status import JobStatus
from service.storage import ObjectStore

log = structlog.get_logger(__name__)
BoundLog = structlog.typing.FilteringBoundLogger

# A chunk taken this many times without finishing (its workers keep dying) fails its job.
MAX_CHUNK_ATTEMPTS = 5
# An idle pool's wait doubles from the poll interval up to this many times it.
IDLE_POLLS = 8


def next_idle_wait(current: float, *, poll_seconds: float) -> float:
    """The wait after another claim that found nothing."""
    return min(current * 2, poll_seconds * IDLE_POLLS)


class ChunkWorkers:
    def __init__(
        self,
        ledger: Ledger,
        chunks: ChunkLedger,
        export: ChunkExport,
        settings: WorkerSettings,
        *,
        owner: str,
        concurrency: int,
        per_job: int,
    ) -> None:
        self._ledger = ledger
        self._chunks = chunks
        self._export = export
        self._settings = settings
        self._owner = owner
        self._concurrency = concurrency
        self._per_job = per_job
        self._lease = timedelta(seconds=settings.lease_seconds)
        self._running: dict[asyncio.Task[None], str] = {}
        self._wakeup = asyncio.Event()
        self._idle_wait = settings.poll_seconds

    @property
    def running(self) -> int:
        return len(self._running)

    def wake(self) -> None:
        """Chunks were just created (by this worker): look for them now."""
        self._idle_wait = self._settings.poll_seconds
        self._wakeup.set()

    async def run(self, stop: asyncio.Event) -> None:
        await self._chunks.ensure_indexes()
        while not stop.is_set():
            wait = self._settings.poll_seconds
            if len(self._running) < self._concurrency:
                try:
                    taken = await self._claim()
                except Exception:
                    log.warning("chunks.claim_failed", exc_info=True)
                    taken = None
                if taken is not None:
                    self._idle_wait = self._settings.poll_seconds
                    job, chunk, lease = taken
                    task = asyncio.create_task(self._execute(job, chunk, lease))
                    self._running[task] = job.id
                    task.add_done_callback(self._finished)
                    continue
                wait = self._idle_wait
                self._idle_wait = next_idle_wait(wait, poll_seconds=self._settings.poll_seconds)
            self._wakeup.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wakeup.wait(), wait)
        # Stopping: each chunk gives its lease back as it is cancelled, keeping its upload.
        for task in list(self._running):
            task.cancel()
        await asyncio.gather(*self._running, return_exceptions=True)

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._running.pop(task, None)
        self._wakeup.set()

    async def _claim(self) -> tuple[Job, Chunk, ChunkLease] | None:
        per_job = Counter(self._running.values())
        busy = [job_id for job_id, count in per_job.items() if count >= self._per_job]
        for chunk in await self._chunks.claimable(exclude_jobs=busy):
            job = await self._ledger.get(chunk.job_id)
            if job is None or job.status not in {JobStatus.PENDING, JobStatus.PROCESSING}:
                # The job ended without its worker removing its chunks (it failed while no
                # worker held it, or its record is gone): left alone, they would stay first
                # in line for ever.
                await self._remove_orphan(chunk)
                continue
            if job.status is not JobStatus.PROCESSING or job.cancel_requested_at is not None:
                continue  # handed back, or being cancelled by its own worker
            if chunk.attempt >= MAX_CHUNK_ATTEMPTS:
                await self._chunks.fail(
                    chunk.id,
                    code="WORKER_LOST",
                    message=f"chunk {chunk.index + 1} of {chunk.total} lost its worker "
                    f"{chunk.attempt} times; the export was not retried again",
                )
                continue
            lease = await self._chunks.take(chunk, self._owner, self._lease)
            if lease is not None:
                return job, chunk, lease
        return None

    async def _execute(self, job: Job, chunk: Chunk, lease: ChunkLease) -> None:
        bound = log.bind(job_id=job.id, chunk=chunk.index, attempt=lease.attempt)
        ended: list[bool] = []

        async def confirm() -> None:
            if not await self._chunks.renew(lease, self._lease):
                raise lease.lost()

        def keep(exc: BaseException) -> bool:
            if ended:
                return False  # the job is over: nobody will continue this upload
            if isinstance(exc, Exception) and not isinstance(exc, LeaseLostError):
                return classify(exc).transient
            return True

        started = time.monotonic()
        bound.info(
            "export.chunk_started",
            resumed=chunk.checkpoint is not None,
            from_rows=int((chunk.checkpoint or {}).get("rows", 0)),
        )
        work = asyncio.create_task(self._export.run(job, chunk, lease, confirm=confirm, keep=keep))
        watcher = asyncio.create_task(self._watch(lease, work, ended))
        try:
            rows, size = await work
            await self._chunks.finish(lease, rows=rows, size_bytes=size)
            bound.info("export.chunk_done", rows=rows, seconds=round(time.monotonic() - started, 3))
        except LeaseLostError:
            bound.warning("export.chunk_lease_lost")
            await self._remove_if_orphaned(chunk)
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if current is not None and current.cancelling():
                await asyncio.shield(self._chunks.release(lease, retry_in=timedelta(0)))
                raise
            bound.info("export.chunk_stopped", job_ended=bool(ended))
        except Exception as exc:  # noqa: BLE001 - classified: retried later or fails the job
            await self._failed(lease, exc, bound)
        finally:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher

    async def _failed(self, lease: ChunkLease, exc: Exception, bound: BoundLog) -> None:
        failure = classify(exc)
        if failure.transient:
            await self._chunks.release(lease, retry_in=self._backoff(lease.attempt))
            bound.warning("export.chunk_retry", error_code=failure.code)
        else:
            await self._chunks.fail(lease.chunk_id, code=failure.code, message=failure.message)
            bound.warning("export.chunk_failed", error_code=failure.code)

    async def _remove_orphan(self, chunk: Chunk) -> None:
        if chunk.upload_id is not None:
            await self._export.abort_upload(chunk.key, chunk.upload_id)
        await self._export.discard(chunk.key)
        await self._chunks.delete(chunk.id)
        log.info("export.chunk_orphan_removed", job_id=chunk.job_id, chunk=chunk.index)

    async def _remove_if_orphaned(self, chunk: Chunk) -> None:
        """A chunk whose job ended while it was being closed: its object would be left over."""
        if not [found for found in await self._chunks.of_job(chunk.job_id) if found.id == chunk.id]:
            await self._export.discard(chunk.key)

    def _backoff(self, attempt: int) -> timedelta:
        seconds = min(
            self._settings.retry_backoff_seconds * 2 ** max(0, attempt - 1),
            self._settings.retry_backoff_max_seconds,
        )
        return timedelta(seconds=seconds)

    async def _watch(
        self, lease: ChunkLease, work: asyncio.Task[tuple[int, int]], ended: list[bool]
    ) -> None:
        last_beat = time.monotonic()
        while True:
            await asyncio.sleep(self._settings.cancel_check_seconds)
            try:
                if not await self._chunks.job_running(lease.job_id):
                    ended.append(True)
                    work.cancel()
                    return
                if time.monotonic() - last_beat >= self._settings.heartbeat_seconds:
                    if not await self._chunks.renew(lease, self._lease):
                        work.cancel()
                        return
                    last_beat = time.monotonic()
            except Exception:
                log.warning("export.chunk_heartbeat_failed", chunk_id=lease.chunk_id, exc_info=True)


def chunking(
    database: AsyncDatabase[dict[str, Any]],
    store: ObjectStore,
    ledger: Ledger,
    settings: Settings,
    *,
    owner: str,
) -> tuple[ChunkedExport, ChunkWorkers]:
    """A worker's chunking: the job's side (for the exporter) and the chunk pool (a loop of the
    worker)."""
    chunks = ChunkLedger(database)
    export = ChunkExport(
        database,
        store,
        chunks,
        batch_size=settings.worker.batch_size,
        part_size=settings.s3.part_size_bytes,
        escape_formulas=settings.files.escape_formulas,
        max_rows_per_second=settings.export.max_rows_per_second,
        progress_interval=settings.worker.progress_interval_seconds,
    )
    pool = ChunkWorkers(
        ledger,
        chunks,
        export,
        settings.worker,
        owner=owner,
        concurrency=settings.export.chunk_concurrency,
        per_job=settings.export.max_chunks_per_job,
    )
    chunked = ChunkedExport(
        database,
        store,
        chunks,
        ChunkSettings(
            chunk_rows=settings.export.chunk_rows,
            max_chunks=settings.export.max_chunks,
            poll_seconds=settings.worker.poll_seconds,
        ),
        on_chunks=pool.wake,
    )
    return chunked, pool
