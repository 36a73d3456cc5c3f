"""What every request handler does alike: the job id, the idempotency key, and failing a job
whose request cannot run (so its requester can read why)."""

from __future__ import annotations

from uuid import UUID

from service.clock import uuid7
from service.jobs.model import Job
from service.jobs.status import JobStatus

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
