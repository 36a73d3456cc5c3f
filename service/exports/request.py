"""An export request becomes a job: pending when it can run, failed (with the reason) when not."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any
from uuid import UUID

from pydantic import ValidationError

from service.clock import uuid7
from service.datasets import get_dataset
from service.datasets.base import describe_validation_error
from service.errors import InvalidRequestError
from service.events.contracts import CloudEvent, ExportRequestedData
from service.jobs.model import Job
from service.jobs.status import JobStatus
from service.outbound.urls import check_http_url

MAX_IDEMPOTENCY_KEY = 255


def export_job_from_request(event: CloudEvent, data: Mapping[str, Any], now: datetime) -> Job:
    """`data` is known to hold a valid project_id; everything else is checked here."""
    # A usable notify_url is kept even when the rest of the request is wrong: the requester then
    # learns of the failed job there.
    notify_url, notify_problem = _notify_url(data.get("notify_url"))
    job = Job(
        id=_job_id(data.get("job_id")),
        project_id=data["project_id"],
        dataset=data.get("dataset") if isinstance(data.get("dataset"), str) else "messages",
        filters=data["filters"] if isinstance(data.get("filters"), dict) else {},
        idempotency_key=_idempotency_key(data.get("idempotency_key")),
        notify_url=notify_url,
        request_source=event.source,
        request_id=event.id,
        status=JobStatus.PENDING,
        created_at=now,
        updated_at=now,
    )
    if notify_problem is not None:
        return _failed(job, "INVALID_NOTIFY_URL", f"data.notify_url: {notify_problem}")
    try:
        request = ExportRequestedData.model_validate(data)
        dataset = get_dataset(request.dataset)
        dataset.parse_filters(request.filters)
        dataset.select_columns(request.columns)
    except ValidationError as exc:
        return _failed(job, "INVALID_REQUEST", describe_validation_error(exc, prefix="data"))
    except InvalidRequestError as exc:
        return _failed(job, exc.code, exc.message)
    return job.model_copy(
        update={
            "format": request.format,
            "compression": request.compression,
            "columns": request.columns,
        }
    )


def _failed(job: Job, code: str, message: str) -> Job:
    return job.model_copy(
        update={
            "status": JobStatus.FAILED,
            "error_code": code,
            "error_message": message,
            "completed_at": job.created_at,
        }
    )


def _job_id(value: object) -> str:
    # An unusable job_id still yields a (failed) job, under an id of Ferry's.
    if isinstance(value, str):
        try:
            return str(UUID(value))
        except ValueError:
            pass
    return uuid7()


def _idempotency_key(value: object) -> str | None:
    # Only a key the request model would accept can deduplicate, even on a failed request.
    return value if isinstance(value, str) and 0 < len(value) <= MAX_IDEMPOTENCY_KEY else None


def _notify_url(value: object) -> tuple[str | None, str | None]:
    """(the URL, None) when usable; (None, what is wrong) when not; (None, None) when absent."""
    if value is None:
        return None, None
    if not isinstance(value, str):
        return None, "must be a string holding an http(s) URL"
    try:
        return check_http_url(value), None
    except ValueError as exc:
        return None, str(exc)
