"""The job's public view (service/contracts/job_view.py), built from the stored job in this one
place: the API serves it and every status event carries it."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from service.clock import rfc3339
from service.contracts.exports import ExportResult
from service.contracts.imports import ImportResult
from service.contracts.job_view import MAX_FILES_SHOWN, OPEN_END, OPEN_START, JobView
from service.contracts.status import JobStatus
from service.datasets import get_dataset
from service.echo import capped, capped_value
from service.errors import InvalidRequestError
from service.jobs.model import Job

__all__ = ["MAX_FILES_SHOWN", "OPEN_END", "OPEN_START", "JobView", "backoff_reason", "job_view"]


def job_view(job: Job) -> dict[str, Any]:
    """The JSON object the API serves for `job` (and status events carry).

    What the job echoes from its request or input (dataset name, raw filters, columns, error
    messages) is capped: an event must fit the broker however large the request was.
    """
    view: dict[str, Any] = {
        "id": job.id,
        "process_id": job.process_id,
        "project_id": job.project_id,
        "kind": job.kind,
        "dataset": capped(job.dataset),
        "status": job.status.value,
        "format": job.format,
        "compression": job.compression,
        "columns": capped_value(job.columns) if job.columns is not None else None,
        "idempotency_key": job.idempotency_key,
        "notify_url": job.notify_url,
        "max_file_bytes": job.max_file_bytes,
        "max_rows_per_file": job.max_rows_per_file,
    }
    view.update(_export_files(job))
    # Every kind carries the import fields (null on exports), so that a status event's data is
    # exactly what /v1 shows for the job, whose model declares them.
    view.update(_import_fields(job))
    view.update(_filter_fields(job) if job.kind != "import" else _OPEN_RANGE)
    result = job.result
    size: int | None = None
    sha256: str | None = None
    if isinstance(result, ImportResult):
        size, sha256 = result.source_size_bytes, result.source_sha256
    elif result is not None:
        size, sha256 = result.file_size_bytes, result.file_sha256
    view.update(
        {
            "row_count": result.row_count if result else None,
            "file_size_bytes": size,
            "file_sha256": sha256,
            "error_code": job.error_code,
            "error_message": capped(job.error_message) if job.error_message else None,
            "attempt": job.attempt,
            "last_error": (
                {"code": job.last_error.code, "message": capped(job.last_error.message)}
                if job.last_error
                else None
            ),
            "cancel_requested_at": (
                rfc3339(job.cancel_requested_at) if job.cancel_requested_at else None
            ),
            "next_attempt_at": (
                rfc3339(job.run_after)
                if job.status is JobStatus.PENDING and job.last_error and job.run_after
                else None
            ),
            # A retry's wait is the job's own: known here, so its events say it too. A place in
            # line is computed by the API when asked (the queue moves without this job's events).
            "queue_position": None,
            "waiting_reason": (
                backoff_reason(job.last_error.code, job.run_after, job.attempt)
                if job.status is JobStatus.PENDING and job.last_error and job.run_after
                else None
            ),
            "progress": job.progress.model_dump(mode="json"),
            "created_at": rfc3339(job.created_at),
            "started_at": rfc3339(job.started_at) if job.started_at else None,
            "completed_at": rfc3339(job.completed_at) if job.completed_at else None,
            "expires_at": rfc3339(job.expires_at) if job.expires_at else None,
            "version": job.version,
        }
    )
    return view


def _export_files(job: Job) -> dict[str, Any]:
    result = job.result
    if not isinstance(result, ExportResult):
        return {"file_count": None, "files": None, "manifest": None}
    if result.files:
        shown = [
            {
                "part": file.part,
                "name": file.key.rsplit("/", 1)[-1],
                "rows": file.rows,
                "size_bytes": file.size_bytes,
                "sha256": file.sha256,
                "url": None,
                "expires_at": None,
            }
            for file in result.files[:MAX_FILES_SHOWN]
        ]
    else:  # finished before exports had several files: its one file
        shown = [
            {
                "part": None,
                "name": result.object_key.rsplit("/", 1)[-1],
                "rows": result.row_count,
                "size_bytes": result.file_size_bytes,
                "sha256": result.file_sha256,
                "url": None,
                "expires_at": None,
            }
        ]
    manifest = (
        {"name": result.manifest_key.rsplit("/", 1)[-1], "url": None, "expires_at": None}
        if result.manifest_key
        else None
    )
    return {"file_count": len(result.files) or 1, "files": shown, "manifest": manifest}


def backoff_reason(code: str, run_after: datetime, attempt: int) -> str:
    """Why a job waits after a transient failure of its attempt `attempt`."""
    return f"retrying after {code} at {rfc3339(run_after)} (attempt {attempt + 1})"


def _import_fields(job: Job) -> dict[str, Any]:
    result = job.result if isinstance(job.result, ImportResult) else None
    return {
        "source": _shown_source(job),
        "options": job.options.model_dump(mode="json") if job.options else None,
        "counts": result.counts.model_dump(mode="json") if result else None,
        "reports": (
            {
                name: {"rows": report.rows, "url": None, "expires_at": None}
                for name, report in result.reports.items()
            }
            if result
            else None
        ),
    }


def _shown_source(job: Job) -> dict[str, str] | None:
    if job.source is None:
        return None
    if job.source.url is not None:
        url = urlsplit(job.source.url)
        return {"url": urlunsplit((url.scheme, url.netloc, url.path, "", ""))}
    return job.source.model_dump(exclude_none=True)


_OPEN_RANGE: dict[str, Any] = {
    "filter_start_time": OPEN_START,
    "filter_end_time": OPEN_END,
    "requested_filters": None,
}


def _filter_fields(job: Job) -> dict[str, Any]:
    try:
        dataset = get_dataset(job.dataset)
        fields = dataset.view_fields(dataset.parse_filters(job.filters))
    except InvalidRequestError:
        # A job that failed because of its request still shows what was asked for, but not as
        # `filter_*` fields: clients read those as typed values ("yesterday" is no date-time).
        # Capped: such a request may hold anything, of any size.
        shown = capped_value(job.filters)
        assert isinstance(shown, dict)  # noqa: S101 - a mapping stays a mapping
        return {**_OPEN_RANGE, "requested_filters": shown}
    return {
        **_OPEN_RANGE,
        **fields,
        "filter_start_time": fields.get("filter_start_time") or OPEN_START,
        "filter_end_time": fields.get("filter_end_time") or OPEN_END,
    }
