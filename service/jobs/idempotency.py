"""What an idempotency key promises: the same key with the same request is the same job; the
same key with a different request is the caller's bug, and says so (as Stripe answers it).

A request is compared by a fingerprint of what it asks for (kind, dataset, filters, format,
columns, source, options, notify URL), not by its CloudEvent, whose id and time change with
every retry of the same request.
"""

from __future__ import annotations

import hashlib
import json

from service.error_codes import ErrorCode
from service.jobs.from_request import failed_job
from service.jobs.model import Job

IDEMPOTENCY_KEY_REUSED = ErrorCode.IDEMPOTENCY_KEY_REUSED
_PARAMETERS = frozenset(
    {"kind", "dataset", "format", "compression", "columns", "filters", "source", "options"}
    | {"notify_url"}
)


def request_fingerprint(job: Job) -> str:
    """SHA-256 of the request's parameters in canonical JSON."""
    parameters = job.model_dump(mode="json", include=set(_PARAMETERS))
    canonical = json.dumps(parameters, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


def reused_key_job(job: Job, first_job_id: str) -> Job:
    """The failed job recorded for a request that reuses another request's key. It does not
    hold the key itself (the first job does), so the message names both."""
    key = job.idempotency_key or ""
    return failed_job(
        job.model_copy(update={"idempotency_key": None}),
        IDEMPOTENCY_KEY_REUSED,
        f"idempotency_key {key!r} was already used by job {first_job_id} with different "
        "parameters; send the same parameters to get that job, or use a new key",
    )
