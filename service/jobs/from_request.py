"""What every request handler does alike: the job id, the idempotency key, the notify URL, and
failing a job whose request cannot run (so its requester can read why)."""

from __future__ import annotations

from uuid import UUID

from service.clock import uuid7
from service.jobs.model import Job
from service.jobs.status import JobStatus
from service.outbound.urls import check_http_url

MAX_IDEMPOTENCY_KEY = 255


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
