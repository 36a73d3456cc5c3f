"""Status events as the ledger's outbox writes them (the job as the API shows it, plus
`previous_status`), for tests that feed the webhook dispatcher directly."""

from __future__ import annotations

import json
import uuid
from datetime import timedelta
from typing import Any

from service.clock import utcnow, uuid7
from service.contracts.envelope import JOB_STATUS_CHANGED, JOB_UPDATED, make_event
from service.jobs.model import Job
from service.jobs.status import JobStatus
from service.jobs.view import job_view

FILTERS = {"start_time": "2025-12-01T00:00:00Z", "end_time": "2025-12-07T00:00:00Z"}


def a_job(
    project: str,
    *,
    status: JobStatus = JobStatus.COMPLETED,
    version: int = 3,
    notify_url: str | None = None,
    job_id: str | None = None,
) -> Job:
    now = utcnow()
    return Job(
        id=job_id or str(uuid.uuid4()),
        project_id=project,
        dataset="messages",
        filters=FILTERS,
        request_source="/tests",
        request_id=str(uuid.uuid4()),
        status=status,
        version=version,
        attempt=1,
        notify_url=notify_url,
        created_at=now - timedelta(seconds=5),
        updated_at=now,
        started_at=now - timedelta(seconds=4) if status is not JobStatus.PENDING else None,
        completed_at=now if status in {JobStatus.COMPLETED, JobStatus.FAILED} else None,
    )


def status_event(
    job: Job,
    *,
    previous: JobStatus | None = JobStatus.PROCESSING,
    event_id: str | None = None,
    event_type: str = JOB_STATUS_CHANGED,
) -> dict[str, Any]:
    data = job_view(job)
    if event_type == JOB_STATUS_CHANGED:
        data["previous_status"] = previous.value if previous else None
    return make_event(
        event_id=event_id or uuid7(),
        source="/ferry",
        event_type=event_type,
        subject=job.id,
        time=job.updated_at,
        data=data,
    )


def progress_event(job: Job) -> dict[str, Any]:
    return status_event(job, event_type=JOB_UPDATED)


def encoded(event: dict[str, Any]) -> bytes:
    return json.dumps(event, separators=(",", ":")).encode()
