"""The runner: a pool that claims jobs from the ledger and runs them under a lease.

Each running job has a heartbeat that renews its lease; if the lease is lost (the job was claimed
by another worker after this one stalled), the work is cancelled and nothing more is written. On
shutdown the runner stops claiming, gives running jobs a grace period, then hands back the rest
at once instead of leaving them to lapse.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Mapping
from datetime import timedelta
from typing import Protocol

import structlog

from service.config import WorkerSettings
from service.errors import FerryError, LeaseLostError
from service.jobs.context import JobContext
from service.jobs.ledger import Lease, Ledger
from service.jobs.model import ExportResult, Job

log = structlog.get_logger(__name__)


class Executor(Protocol):
    async def run(self, job: Job, context: JobContext) -> ExportResult: ...


class Runner:
    def __init__(
        self,
        ledger: Ledger,
        executors: Mapping[str, Executor],
        settings: WorkerSettings,
        *,
        owner: str,
        retention: timedelta,
    ) -> None:
        self._ledger = ledger
        self._executors = executors
        self._settings = settings
        self._owner = owner
        self._retention = retention
        self._lease = timedelta(seconds=settings.lease_seconds)
        self._wakeup = asyncio.Event()
        self._running: set[asyncio.Task[None]] = set()

    def wake(self) -> None:
        """A job was just accepted: look now rather than at the next poll."""
        self._wakeup.set()

    @property
    def running(self) -> int:
        return len(self._running)

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            if len(self._running) < self._settings.concurrency:
                job = await self._claim()
                if job is not None:
                    task = asyncio.create_task(self._execute(job), name=f"job-{job.id}")
                    self._running.add(task)
                    task.add_done_callback(self._finished)
                    continue
            await self._idle(stop)
        await self._shutdown()

    async def _claim(self) -> Job | None:
        try:
            return await self._ledger.claim(
                self._owner, lease=self._lease, max_lost_leases=self._settings.max_lost_leases
            )
        except Exception:
            log.exception("runner.claim_failed")
            return None

    async def _idle(self, stop: asyncio.Event) -> None:
        self._wakeup.clear()
        waits = {asyncio.ensure_future(self._wakeup.wait()), asyncio.ensure_future(stop.wait())}
        await asyncio.wait(
            waits, timeout=self._settings.poll_seconds, return_when="FIRST_COMPLETED"
        )
        for waiter in waits:
            waiter.cancel()

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._running.discard(task)
        self._wakeup.set()  # a slot is free

    async def _shutdown(self) -> None:
        if not self._running:
            return
        log.info("runner.draining", running=len(self._running))
        _, unfinished = await asyncio.wait(
            set(self._running), timeout=self._settings.shutdown_grace_seconds
        )
        for task in unfinished:
            task.cancel()  # each hands its job back on cancellation
        await asyncio.gather(*unfinished, return_exceptions=True)

    async def _execute(self, job: Job) -> None:
        lease = Lease(job.id, self._owner, job.attempt)
        bound = log.bind(job_id=job.id, project_id=job.project_id, attempt=job.attempt)
        context = JobContext(
            self._ledger,
            lease,
            lease_duration=self._lease,
            progress_interval=self._settings.progress_interval_seconds,
        )
        started = time.monotonic()
        bound.info(f"{job.kind}.started", dataset=job.dataset)
        work = asyncio.create_task(self._executors[job.kind].run(job, context))
        heartbeat = asyncio.create_task(self._heartbeat(lease, work))
        try:
            result = await work
            await self._ledger.complete(lease, result, retention=self._retention)
            bound.info(
                f"{job.kind}.completed",
                rows=result.row_count,
                bytes=result.file_size_bytes,
                seconds=round(time.monotonic() - started, 3),
            )
        except LeaseLostError:
            bound.warning("job.lease_lost")
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if current is not None and current.cancelling():
                # Shutting down: hand the job back so another worker starts it now.
                await asyncio.shield(self._hand_back(lease, bound))
                raise
            bound.warning("job.lease_lost")  # the heartbeat cancelled the work
        except FerryError as exc:
            await self._fail(lease, exc.code, exc.message, bound)
        except Exception as exc:  # noqa: BLE001 - an unforeseen error fails the job, logged
            bound.exception("job.crashed")
            await self._fail(lease, "INTERNAL_ERROR", f"{type(exc).__name__}: {exc}", bound)
        finally:
            heartbeat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await heartbeat

    async def _heartbeat(self, lease: Lease, work: asyncio.Task[ExportResult]) -> None:
        while True:
            await asyncio.sleep(self._settings.heartbeat_seconds)
            try:
                still_ours = await self._ledger.heartbeat(lease, extend_by=self._lease)
            except Exception:
                # The database may be briefly away; the lease outlives a few missed beats.
                log.warning("job.heartbeat_failed", job_id=lease.job_id, exc_info=True)
                continue
            if not still_ours:
                work.cancel()
                return

    async def _fail(
        self, lease: Lease, code: str, message: str, bound: structlog.typing.FilteringBoundLogger
    ) -> None:
        try:
            await self._ledger.fail(lease, code=code, message=message)
            bound.warning("job.failed", error_code=code, error_message=message)
        except LeaseLostError:
            bound.warning("job.lease_lost")

    async def _hand_back(self, lease: Lease, bound: structlog.typing.FilteringBoundLogger) -> None:
        try:
            await self._ledger.release(lease)
            bound.info("job.handed_back")
        except Exception:  # noqa: BLE001 - logged; the lease lapses instead
            bound.exception("job.hand_back_failed")
