"""The runner against a real MongoDB, with executors that misbehave on cue: transient failures
are retried with backoff, permanent ones fail at once, cancellation stops running work quickly,
and shutdown hands running jobs back."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from datetime import timedelta

import pytest
from pymongo.errors import AutoReconnect

from service.config import WorkerSettings
from service.errors import InvalidRequestError
from service.jobs.context import JobContext
from service.jobs.ledger import Ledger
from service.jobs.model import ExportResult, Job
from service.jobs.runner import Runner
from service.jobs.status import FINISHED, JobStatus
from tests.integration.conftest import new_job

pytestmark = pytest.mark.integration

RESULT = ExportResult(object_key="k", row_count=1, file_size_bytes=1, file_sha256="x")


class ScriptedExecutor:
    """Runs `script(attempt)` for each attempt: it returns, raises, or blocks."""

    def __init__(self, script: Callable[[int], object]) -> None:
        self.script = script
        self.attempts: list[int] = []
        self.cancelled = asyncio.Event()

    async def run(self, job: Job, context: JobContext) -> ExportResult:
        self.attempts.append(job.attempt)
        outcome = self.script(job.attempt)
        if isinstance(outcome, BaseException):
            raise outcome
        if outcome == "block":
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                self.cancelled.set()
                raise
        return RESULT


def settings(**overrides: float) -> WorkerSettings:
    values: dict[str, float] = {
        "concurrency": 2,
        "lease_seconds": 5,
        "heartbeat_seconds": 1,
        "poll_seconds": 0.05,
        "cancel_check_seconds": 0.2,
        "retry_backoff_seconds": 0.1,
        "max_attempts": 3,
        "shutdown_grace_seconds": 0.3,
    }
    values.update(overrides)
    return WorkerSettings.model_validate(values)


@pytest.fixture
async def running(ledger: Ledger) -> AsyncIterator[Callable[[ScriptedExecutor], Runner]]:
    stop = asyncio.Event()
    tasks: list[asyncio.Task[None]] = []

    def start(executor: ScriptedExecutor, **overrides: float) -> Runner:
        runner = Runner(
            ledger,
            {"export": executor},
            settings(**overrides),
            owner="w",
            retention=timedelta(days=1),
        )
        tasks.append(asyncio.create_task(runner.run(stop)))
        return runner

    yield start
    stop.set()
    await asyncio.gather(*tasks)


async def finished(ledger: Ledger, job_id: str, timeout: float = 15.0) -> Job:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = await ledger.get(job_id)
        if job is not None and job.status in FINISHED:
            return job
        await asyncio.sleep(0.05)
    raise AssertionError(f"job {job_id} did not finish: {await ledger.get(job_id)}")


async def test_transient_failures_are_retried_with_backoff_then_succeed(
    ledger: Ledger, running: Callable[[ScriptedExecutor], Runner]
) -> None:
    executor = ScriptedExecutor(lambda attempt: AutoReconnect("reset") if attempt < 3 else None)
    job = new_job()
    await ledger.accept(job)
    running(executor)
    done = await finished(ledger, job.id)
    assert done.status is JobStatus.COMPLETED
    assert executor.attempts == [1, 2, 3]
    assert done.last_error is not None
    assert done.last_error.code == "DATABASE_UNAVAILABLE"


async def test_a_job_that_keeps_failing_transiently_fails_with_the_last_code(
    ledger: Ledger, running: Callable[[ScriptedExecutor], Runner]
) -> None:
    executor = ScriptedExecutor(lambda _: ConnectionRefusedError("store down"))
    job = new_job()
    await ledger.accept(job)
    running(executor)
    done = await finished(ledger, job.id)
    assert (done.status, done.error_code, done.attempt) == (JobStatus.FAILED, "NETWORK_ERROR", 3)
    assert "store down" in (done.error_message or "")


async def test_a_permanent_failure_fails_at_once(
    ledger: Ledger, running: Callable[[ScriptedExecutor], Runner]
) -> None:
    executor = ScriptedExecutor(
        lambda _: InvalidRequestError("no such column", code="INVALID_COLUMNS")
    )
    job = new_job()
    await ledger.accept(job)
    running(executor)
    done = await finished(ledger, job.id)
    assert (done.status, done.error_code, done.attempt) == (JobStatus.FAILED, "INVALID_COLUMNS", 1)
    assert executor.attempts == [1]


async def test_a_running_job_is_cancelled_within_two_seconds(
    ledger: Ledger, running: Callable[[ScriptedExecutor], Runner]
) -> None:
    executor = ScriptedExecutor(lambda _: "block")
    job = new_job("cancel-me")
    await ledger.accept(job)
    running(executor)
    while (
        current := await ledger.get(job.id)
    ) is None or current.status is not JobStatus.PROCESSING:
        await asyncio.sleep(0.05)
    asked = time.monotonic()
    assert (await ledger.request_cancel("cancel-me", job.id, "no longer needed"))[
        0
    ] == "cancel_requested"
    done = await finished(ledger, job.id)
    took = time.monotonic() - asked
    assert done.status is JobStatus.CANCELLED
    assert done.error_message == "cancelled on request: no longer needed"
    assert executor.cancelled.is_set()
    assert took < 2.0, f"cancellation took {took:.2f}s"


async def test_shutdown_hands_running_jobs_back_at_once(ledger: Ledger) -> None:
    executor = ScriptedExecutor(lambda _: "block")
    job = new_job()
    await ledger.accept(job)
    stop = asyncio.Event()
    runner = Runner(
        ledger, {"export": executor}, settings(), owner="w", retention=timedelta(days=1)
    )
    task = asyncio.create_task(runner.run(stop))
    while runner.running == 0:
        await asyncio.sleep(0.05)
    stop.set()
    await asyncio.wait_for(task, timeout=5)
    back = await ledger.get(job.id)
    assert back is not None
    assert (back.status, back.lease_owner, back.attempt) == (JobStatus.PENDING, None, 1)
    assert executor.cancelled.is_set()


async def test_a_job_over_its_time_limit_fails_with_job_timeout_and_frees_its_slot(
    ledger: Ledger,
) -> None:
    # The first job never ends (a source trickling forever); the second, of the same project,
    # can only run once the first has given back the project's single slot.
    script = iter(["block", None])
    executor = ScriptedExecutor(lambda _: next(script))
    stuck, after = new_job("slow"), new_job("slow")
    await ledger.accept(stuck)
    stop = asyncio.Event()
    runner = Runner(
        ledger,
        {"export": executor},
        settings(max_running_per_project=1),
        owner="w",
        retention=timedelta(days=1),
        time_limits={"export": 1.0},
    )
    task = asyncio.create_task(runner.run(stop))
    try:
        while runner.running == 0:
            await asyncio.sleep(0.05)
        await ledger.accept(after)
        failed = await finished(ledger, stuck.id)
        assert (failed.status, failed.error_code, failed.attempt) == (
            JobStatus.FAILED,
            "JOB_TIMEOUT",
            1,
        )
        assert failed.error_message is not None
        assert "time limit of 1 s" in failed.error_message
        assert executor.cancelled.is_set()  # its work was stopped, not left running
        assert failed.started_at is not None
        assert failed.completed_at is not None
        assert (failed.completed_at - failed.started_at).total_seconds() >= 1.0
        assert (await finished(ledger, after.id)).status is JobStatus.COMPLETED
    finally:
        stop.set()
        await asyncio.wait_for(task, timeout=10)
