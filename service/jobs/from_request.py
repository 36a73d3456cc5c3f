"""What every request handler does alike: the job id, the idempotency key, the notify URL, and
failing a job whose request cannot run (so its requester can read why)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any
from uuid import UUID

from service.clock import uuid7
from service.contracts.envelope import CloudEvent
from service.contracts.urls import check_http_url
from service.error_codes import ErrorCode
from service.jobs.model import Job, JobKind
from service.jobs.status import JobStatus

MAX_IDEMPOTENCY_KEY = 255


def job_from_request(
    event: CloudEvent,
    data: Mapping[str, Any],
    now: datetime,
    *,
    kind: JobKind,
    default_dataset: str,
    filters: dict[str, Any] | None = None,
) -> Job:
    """The pending job a request asks for, before its kind's own checks; already failed with
    INVALID_NOTIFY_URL when its notify_url is unusable. `data` holds a valid project_id."""
    notify, notify_problem = notify_url(data.get("notify_url"))
    job = Job(
        id=job_id(data.get("job_id")),
        project_id=data["project_id"],
        kind=kind,
        dataset=data.get("dataset") if isinstance(data.get("dataset"), str) else default_dataset,
        idempotency_key=idempotency_key(data.get("idempotency_key")),
        notify_url=notify,
        request_source=event.source,
        request_id=event.id,
        status=JobStatus.PENDING,
        created_at=now,
        updated_at=now,
        filters=filters or {},
    )
    if notify_problem is not None:
        return failed_job(job, ErrorCode.INVALID_NOTIFY_URL, f"data.notify_url: {notify_problem}")
    return job


def failed_job(job: Job, code: str, message: str) -> Job:
    return job.model_copy(
        update={
            "status": JobStatus.FAILED,
            "error_code": code,
            "error_message": message,
            "completed_at": job.created_at,
        }
    )


def job_id(value: object) -> str:
    # An unusable job_id still yields a (failed) job, under an id of Ferry's.
    if isinstance(value, str):
        try:
            return str(UUID(value))
        except ValueError:
            pass
    return uuid7()


def idempotency_key(value: object) -> str | None:
    # Only a key the request model would accept can deduplicate, even on a failed request.
    return value if isinstance(value, str) and 0 < len(value) <= MAX_IDEMPOTENCY_KEY else None


def notify_url(value: object) -> tuple[str | None, str | None]:
    """(the URL, None) when usable; (None, what is wrong) when not; (None, None) when absent.

    A usable notify_url is kept even when the rest of the request is wrong: the requester then
    learns of the failed job there.
    """
    if value is None:
        return None, None
    if not isinstance(value, str):
        return None, "must be a string holding an http(s) URL"
    try:
        return check_http_url(value), None
    except ValueError as exc:
        return None, str(exc)
