"""The runner: a pool that claims jobs from the ledger and runs them under a lease.

Each running job has a watcher that renews its lease and looks for a cancellation request. If the
lease is lost (another worker claimed the job after this one stalled), the work is cancelled and
nothing more is written. An attempt that runs longer than its kind's time limit is cancelled
the same way and fails with JOB_TIMEOUT, so that no input can hold a slot forever. Transient
failures are retried with exponential backoff; others fail the job at once. On shutdown the
runner stops claiming, gives running jobs a grace period, then hands back the rest at once
instead of leaving them to lapse.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import Awaitable, Mapping
from datetime import timedelta
from enum import Enum

import structlog

from service.clock import utcnow
from service.config import WorkerSettings
from service.error_codes import ErrorCode
from service.errors import LeaseLostError
from service.jobs.context import JobContext
from service.jobs.executor import Executor
from service.jobs.failures import classify
from service.jobs.ledger import ClaimPolicy, Lease, Ledger
from service.jobs.model import Job, JobResult
from service.jobs.workers import WorkerPresence

log = structlog.get_logger(__name__)
BoundLog = structlog.typing.FilteringBoundLogger

_MAX_CLAIM_BACKOFF_SECONDS = 5.0


class _Stop(Enum):
    """Why the watcher stopped a job's work."""

    LEASE_LOST = "lease_lost"
    CANCELLED = "cancelled"
    TIMED_OUT = "timed_out"


class Runner:
    def __init__(
        self,
        ledger: Ledger,
        executors: Mapping[str, Executor],
        settings: WorkerSettings,
        *,
        owner: str,
        retention: timedelta,
        time_limits: Mapping[str, float] | None = None,
        presence: WorkerPresence | None = None,
    ) -> None:
        """`time_limits`: the longest an attempt of each kind may run, in seconds. `presence`:
        where the runner says it runs and how many jobs it takes (for waiting jobs' reasons)."""
        self._ledger = ledger
        self._executors = executors
        self._time_limits = dict(time_limits or {})
        self._presence = presence
        self._settings = settings
        self._owner = owner
        self._retention = retention
        self._lease = timedelta(seconds=settings.lease_seconds)
        self._policy = ClaimPolicy(
            lease=self._lease,
            max_lost_leases=settings.max_lost_leases,
            max_running_per_project=settings.max_running_per_project,
        )
        self._wakeup = asyncio.Event()
        self._running: set[asyncio.Task[None]] = set()
        self._claim_failures = 0

    def wake(self) -> None:
        """A job was just accepted: look now rather than at the next poll."""
        self._wakeup.set()

    @property
    def running(self) -> int:
        return len(self._running)

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            await self._report_presence()
            if len(self._running) < self._settings.concurrency:
                job = await self._claim()
                if job is not None:
                    task = asyncio.create_task(self._execute(job), name=f"job-{job.id}")
                    self._running.add(task)
                    task.add_done_callback(self._finished)
                    continue
            await self._idle(stop)
        await self._leave()
        await self._shutdown()

    async def _report_presence(self) -> None:
        if self._presence is None:
            return
        try:
            await self._presence.report(self._owner, concurrency=self._settings.concurrency)
        except Exception:
            log.debug("runner.presence_failed", exc_info=True)

    async def _leave(self) -> None:
        if self._presence is None:
            return
        try:
            await self._presence.leave(self._owner)
        except Exception:
            log.debug("runner.presence_failed", exc_info=True)

    async def _claim(self) -> Job | None:
        try:
            job = await self._ledger.claim(self._owner, self._policy)
        except Exception:
            # The database is away: say so once in a while, not on every poll.
            self._claim_failures += 1
            if self._claim_failures in {1, 10} or self._claim_failures % 100 == 0:
                log.exception("runner.claim_failed", failures=self._claim_failures)
            await asyncio.sleep(min(0.2 * self._claim_failures, _MAX_CLAIM_BACKOFF_SECONDS))
            return None
        if self._claim_failures:
            log.info("runner.claims_resumed", after_failures=self._claim_failures)
            self._claim_failures = 0
        return job

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
        stopped: list[_Stop] = []
        limit = self._time_limits.get(job.kind)
        deadline = None if limit is None else started + limit
        watcher = asyncio.create_task(self._watch(context, work, stopped, deadline))
        try:
            result = await work
            await self._ledger.complete(lease, result, retention=self._retention)
            bound.info(
                f"{job.kind}.completed",
                rows=result.row_count,
                seconds=round(time.monotonic() - started, 3),
            )
        except LeaseLostError:
            bound.warning("job.lease_lost")
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if current is not None and current.cancelling():
                # Shutting down: hand the job back so another worker starts it now.
                await asyncio.shield(self._record(self._hand_back(lease, bound), bound))
                raise
            if stopped == [_Stop.CANCELLED]:
                await self._record(self._cancelled(lease, bound), bound)
            elif stopped == [_Stop.TIMED_OUT] and limit is not None:
                await self._record(self._timed_out(job, lease, limit, bound), bound)
            else:
                bound.warning("job.lease_lost")
        except Exception as exc:  # noqa: BLE001 - every failure is classified and recorded
            await self._record(self._failed(job, lease, exc, bound), bound)
        finally:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher

    async def _watch(
        self,
        context: JobContext,
        work: asyncio.Task[JobResult],
        stopped: list[_Stop],
        deadline: float | None,
    ) -> None:
        """Renew the lease every heartbeat; look for a cancellation request and the attempt's
        deadline more often."""
        lease = context.lease
        last_beat = time.monotonic()
        while True:
            await asyncio.sleep(self._settings.cancel_check_seconds)
            if deadline is not None and time.monotonic() >= deadline:
                log.info("job.stopping", job_id=lease.job_id, reason="time limit")
                stopped.append(_Stop.TIMED_OUT)
                context.end_here()
                work.cancel()
                return
            try:
                if await self._ledger.cancel_requested(lease):
                    log.info("job.stopping", job_id=lease.job_id, reason="cancel requested")
                    stopped.append(_Stop.CANCELLED)
                    context.end_here()
                    work.cancel()
                    return
                if time.monotonic() - last_beat >= self._settings.heartbeat_seconds:
                    if not await self._ledger.heartbeat(lease, extend_by=self._lease):
                        raise LeaseLostError(lease.job_id, lease.attempt)  # noqa: TRY301
                    last_beat = time.monotonic()
            except LeaseLostError:
                stopped.append(_Stop.LEASE_LOST)
                work.cancel()
                return
            except Exception:
                # The database may be briefly away; the lease outlives a few missed beats.
                log.warning("job.heartbeat_failed", job_id=lease.job_id, exc_info=True)

    async def _failed(self, job: Job, lease: Lease, exc: Exception, bound: BoundLog) -> None:
        failure = classify(exc)
        if failure.transient and await self._cancel_instead(lease, bound):
            return
        if failure.transient and job.attempt < self._settings.max_attempts:
            delay = min(
                self._settings.retry_backoff_seconds * 2 ** (job.attempt - 1),
                self._settings.retry_backoff_max_seconds,
            ) * random.uniform(0.8, 1.2)  # noqa: S311 - jitter spreads retries, no secret here
            await self._ledger.retry(
                lease,
                code=failure.code,
                message=failure.message,
                run_after=utcnow() + timedelta(seconds=delay),
            )
            bound.warning(
                "job.retry_scheduled",
                error_code=failure.code,
                error_message=failure.message,
                delay_seconds=round(delay, 2),
            )
            return
        if failure.code == ErrorCode.INTERNAL_ERROR:
            bound.error("job.crashed", exc_info=exc)
        await self._ledger.fail(lease, code=failure.code, message=failure.message)
        bound.warning("job.failed", error_code=failure.code, error_message=failure.message)

    async def _timed_out(self, job: Job, lease: Lease, limit: float, bound: BoundLog) -> None:
        if await self._cancel_instead(lease, bound):
            return
        message = f"the {job.kind} ran longer than its time limit of {limit:g} s and was stopped"
        await self._ledger.fail(lease, code=ErrorCode.JOB_TIMEOUT, message=message)
        bound.warning("job.failed", error_code=ErrorCode.JOB_TIMEOUT, error_message=message)

    async def _cancelled(self, lease: Lease, bound: BoundLog) -> None:
        job = await self._ledger.cancel(lease)
        asked, stopped = job.cancel_requested_at, job.completed_at
        took = (stopped - asked).total_seconds() if asked and stopped else None
        bound.info("job.cancelled", seconds_since_request=took)

    async def _hand_back(self, lease: Lease, bound: BoundLog) -> None:
        if await self._cancel_instead(lease, bound):
            return
        await self._ledger.release(lease)
        bound.info("job.handed_back")

    async def _cancel_instead(self, lease: Lease, bound: BoundLog) -> bool:
        """A job whose cancellation was asked for is cancelled rather than run again."""
        if not await self._ledger.cancel_requested(lease):
            return False
        await self._cancelled(lease, bound)
        return True

    @staticmethod
    async def _record(outcome: Awaitable[object], bound: BoundLog) -> None:
        """Write an outcome; if that fails, the lease lapses and the job is claimed again."""
        try:
            await outcome
        except LeaseLostError:
            bound.warning("job.lease_lost")
        except Exception:  # noqa: BLE001 - logged; the lease lapses instead
            bound.exception("job.outcome_not_recorded")
