"""An export request becomes a job: pending when it can run, failed (with the reason) when not."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from pydantic import ValidationError

from service.datasets import get_dataset
from service.datasets.base import describe_validation_error
from service.errors import InvalidRequestError
from service.events.contracts import CloudEvent, ExportRequestedData
from service.jobs.from_request import failed_job, idempotency_key, job_id, notify_url
from service.jobs.model import Job
from service.jobs.status import JobStatus


def export_job_from_request(event: CloudEvent, data: Mapping[str, Any], now: datetime) -> Job:
    """`data` is known to hold a valid project_id; everything else is checked here."""
    notify, notify_problem = notify_url(data.get("notify_url"))
    job = Job(
        id=job_id(data.get("job_id")),
        project_id=data["project_id"],
        dataset=data.get("dataset") if isinstance(data.get("dataset"), str) else "messages",
        filters=data["filters"] if isinstance(data.get("filters"), dict) else {},
        idempotency_key=idempotency_key(data.get("idempotency_key")),
        notify_url=notify,
        request_source=event.source,
        request_id=event.id,
        status=JobStatus.PENDING,
        created_at=now,
        updated_at=now,
    )
    if notify_problem is not None:
        return failed_job(job, "INVALID_NOTIFY_URL", f"data.notify_url: {notify_problem}")
    try:
        request = ExportRequestedData.model_validate(data)
        dataset = get_dataset(request.dataset)
        dataset.parse_filters(request.filters)
        dataset.select_columns(request.columns)
    except ValidationError as exc:
        return failed_job(job, "INVALID_REQUEST", describe_validation_error(exc, prefix="data"))
    except InvalidRequestError as exc:
        return failed_job(job, exc.code, exc.message)
    return job.model_copy(
        update={
            "format": request.format,
            "compression": request.compression,
            "columns": request.columns,
        }
    )
