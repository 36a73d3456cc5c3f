"""An export request becomes a job: pending when it can run, failed (with the reason) when not."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from pydantic import ValidationError

from service.contracts.envelope import CloudEvent
from service.contracts.requests import ExportRequestedData
from service.datasets import get_dataset
from service.datasets.base import describe_validation_error
from service.error_codes import ErrorCode
from service.errors import InvalidRequestError
from service.jobs.from_request import failed_job, job_from_request
from service.jobs.model import Job
from service.jobs.status import JobStatus


def export_job_from_request(event: CloudEvent, data: Mapping[str, Any], now: datetime) -> Job:
    """`data` is known to hold a valid project_id; everything else is checked here."""
    job = job_from_request(
        event,
        data,
        now,
        kind="export",
        default_dataset="messages",
        filters=data["filters"] if isinstance(data.get("filters"), dict) else {},
    )
    if job.status is JobStatus.FAILED:
        return job
    try:
        request = ExportRequestedData.model_validate(data)
        dataset = get_dataset(request.dataset)
        dataset.parse_filters(request.filters)
        dataset.select_columns(request.columns)
    except ValidationError as exc:
        return failed_job(
            job, ErrorCode.INVALID_REQUEST, describe_validation_error(exc, prefix="data")
        )
    except InvalidRequestError as exc:
        return failed_job(job, exc.code, exc.message)
    return job.model_copy(
        update={
            "format": request.format,
            "compression": request.compression,
            "columns": request.columns,
            "max_file_bytes": request.max_file_bytes,
            "max_rows_per_file": request.max_rows_per_file,
        }
    )
