"""An executor wrapped for watching: each attempt runs with its job's ids bound to every log
line, and its duration, outcome and throughput become metrics. Wrapping keeps the runner and
the executors free of instrumentation."""

from __future__ import annotations

import asyncio
import time

import structlog

from service.jobs.context import JobContext
from service.jobs.executor import Executor
from service.jobs.model import Job, JobResult
from service.observability.metrics import JOB_DURATION, JOB_ROWS_PER_SECOND


class InstrumentedExecutor:
    def __init__(self, inner: Executor) -> None:
        self._inner = inner

    async def run(self, job: Job, context: JobContext) -> JobResult:
        started = time.perf_counter()
        outcome = "failed"
        # The runner starts each job in its own task, so these bindings stay with this job.
        with structlog.contextvars.bound_contextvars(
            job_id=job.id, project_id=job.project_id, kind=job.kind, attempt=job.attempt
        ):
            try:
                result = await self._inner.run(job, context)
            except asyncio.CancelledError:
                outcome = "interrupted"  # cancelled, handed back on shutdown, or lease lost
                raise
            else:
                outcome = "succeeded"
            finally:
                elapsed = time.perf_counter() - started
                JOB_DURATION.labels(kind=job.kind, outcome=outcome).observe(elapsed)
        if elapsed > 0:
            JOB_ROWS_PER_SECOND.labels(kind=job.kind, dataset=job.dataset).observe(
                result.row_count / elapsed
            )
        return result
