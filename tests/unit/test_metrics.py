"""The recording helpers: which events count, and how an attempt's outcome is labelled."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import structlog
from prometheus_client import REGISTRY

from service.clock import utcnow
from service.contracts.envelope import JOB_STATUS_CHANGED, JOB_UPDATED
from service.jobs.context import JobContext
from service.jobs.instrumented import InstrumentedExecutor
from service.jobs.model import ExportResult, Job
from service.jobs.status import JobStatus
from service.observability.metrics import record_status_event


def value(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def job(dataset: str = "messages") -> Job:
    now = utcnow()
    return Job(
        id="00000000-0000-4000-8000-00000000abcd",
        project_id="p1",
        dataset=dataset,
        request_source="/tests",
        request_id="r1",
        status=JobStatus.PROCESSING,
        attempt=2,
        created_at=now,
        updated_at=now,
    )


class Scripted:
    """An executor whose outcome the test chooses; it records the log context it ran with."""

    def __init__(self, outcome: BaseException | ExportResult) -> None:
        self.outcome = outcome
        self.context: dict[str, Any] = {}

    async def run(self, job: Job, context: JobContext) -> ExportResult:
        del job, context
        self.context = structlog.contextvars.get_contextvars()
        await asyncio.sleep(0.01)
        if isinstance(self.outcome, BaseException):
            raise self.outcome
        return self.outcome


def test_only_status_changes_count_as_jobs_reaching_a_status() -> None:
    before = value("ferry_jobs_total", kind="export", status="completed")
    record_status_event(
        {"type": JOB_STATUS_CHANGED, "data": {"kind": "export", "status": "completed"}}
    )
    record_status_event({"type": JOB_UPDATED, "data": {"kind": "export", "status": "completed"}})
    assert value("ferry_jobs_total", kind="export", status="completed") == before + 1


@pytest.mark.parametrize(
    ("outcome", "label"),
    [
        (
            ExportResult(object_key="k", row_count=500, file_size_bytes=9, file_sha256="x"),
            "succeeded",
        ),
        (RuntimeError("boom"), "failed"),
        (asyncio.CancelledError(), "interrupted"),
    ],
)
async def test_each_attempt_is_timed_by_outcome_with_its_ids_bound(
    outcome: BaseException | ExportResult, label: str
) -> None:
    executor = Scripted(outcome)
    wrapped = InstrumentedExecutor(executor)
    count = "ferry_job_duration_seconds_count"
    before = value(count, kind="export", outcome=label)
    throughput_before = value("ferry_job_rows_per_second_count", kind="export", dataset="messages")
    context: Any = None  # the scripted executor never touches it
    if isinstance(outcome, BaseException):
        with pytest.raises(type(outcome)):
            await wrapped.run(job(), context)
    else:
        assert await wrapped.run(job(), context) is outcome
    assert value(count, kind="export", outcome=label) == before + 1
    throughput = value("ferry_job_rows_per_second_count", kind="export", dataset="messages")
    assert throughput == throughput_before + (1 if label == "succeeded" else 0)
    assert executor.context == {
        "job_id": "00000000-0000-4000-8000-00000000abcd",
        "project_id": "p1",
        "kind": "export",
        "attempt": 2,
    }
    assert structlog.contextvars.get_contextvars() == {}  # unbound again afterwards


def test_import_rows_are_counted_by_outcome_and_reason() -> None:
    from service.observability.metrics import record_import_rows  # noqa: PLC0415

    before = {
        name: value("ferry_import_rows_total", outcome=name)
        for name in ("created", "unchanged", "rejected")
    }
    reason = value("ferry_import_rejected_rows_total", reason="invalid_email")
    record_import_rows(["created", "created", "unchanged"], ["invalid_email", "ragged_row"])
    assert value("ferry_import_rows_total", outcome="created") == before["created"] + 2
    assert value("ferry_import_rows_total", outcome="unchanged") == before["unchanged"] + 1
    assert value("ferry_import_rows_total", outcome="rejected") == before["rejected"] + 2
    assert value("ferry_import_rejected_rows_total", reason="invalid_email") == reason + 1
