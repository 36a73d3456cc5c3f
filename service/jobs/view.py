"""The job as the API shows it. Status events carry exactly this, so the API's read model, the
webhooks and any other consumer see one shape, built in one place."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from pydantic import BaseModel, ConfigDict, Field

from service.clock import rfc3339
from service.datasets import get_dataset
from service.echo import capped, capped_value
from service.errors import InvalidRequestError
from service.imports.model import ImportCounts, ImportOptions, ImportResult
from service.jobs.model import (
    Compression,
    ExportFormat,
    ExportResult,
    Job,
    JobKind,
    LastError,
    Progress,
)
from service.jobs.status import JobStatus

# The time range of a job that selects no time range: every job has `filter_start_time` and
# `filter_end_time` (HookBridge's clients require both), and these bounds say "unbounded".
OPEN_START = "1970-01-01T00:00:00Z"
OPEN_END = "9999-12-31T23:59:59Z"


class ReportLink(BaseModel):
    """One report of an import: its rows and a link. Status events carry no link (`url` and
    `expires_at` null: a link in an event would go stale); the API signs one on every read."""

    model_config = ConfigDict(extra="forbid")

    rows: int = Field(description="Rows in the report.")
    url: str | None = Field(
        description="A freshly signed link (API); null in events and once the report expired."
    )
    expires_at: str | None = Field(description="When the link stops working.")


# A status event must fit the broker and a page of views be signed quickly: a split export
# shows its first files only (each entry is ~200 bytes; the manifest lists every file).
MAX_FILES_SHOWN = 100


class ExportFileView(BaseModel):
    """One file of a completed export. Status events carry no links; the API adds a fresh one."""

    part: int | None = Field(
        description="The file's number from 1 in a split export; null for a one-file export."
    )
    name: str = Field(description="The file's name, relative to the manifest.")
    rows: int
    size_bytes: int
    sha256: str = Field(description="SHA-256 of the file as stored (hex).")
    url: str | None = Field(None, description="API only: a freshly signed link to the file.")
    expires_at: str | None = Field(None, description="API only: when `url` stops working.")


class ManifestView(BaseModel):
    """Where a completed export's manifest is: the files with their rows, bytes and SHA-256,
    the columns and their types, the request and the time the data reflects."""

    name: str = Field(description="`manifest.json` beside split files, else `{id}.manifest.json`.")
    url: str | None = Field(None, description="API only: a freshly signed link to the manifest.")
    expires_at: str | None = Field(None, description="API only: when `url` stops working.")


class JobView(BaseModel):
    """A job in HookBridge's export shape, plus Ferry's additions (`progress`, `version`, ...).

    Every job of every kind, dataset and state has `filter_start_time` and `filter_end_time`
    (date-times, as HookBridge's clients require): a message export's time range; a contact
    export's `modified_since` (or the open start) to the open end; an import's, and a request's
    whose filters could not be understood, the open range `1970-01-01T00:00:00Z` to
    `9999-12-31T23:59:59Z`, with what was asked for in `requested_filters`.
    Imports have the same shape plus `source`, `options`, `counts` and `reports`.
    Each dataset adds its export filters as `filter_<name>` fields (for `messages`:
    `filter_status`, `filter_endpoint_id`, `filter_inbound_endpoint_id`, and `direction`), so
    they are allowed as extra properties. Timestamps are RFC 3339 in UTC with `Z`, as the seed's
    (`2025-12-06T12:00:30Z`; milliseconds when the instant has them, so jobs keep their order).
    """

    model_config = ConfigDict(extra="allow")

    id: str = Field(description="Job id (a UUID; UUIDv7 when Ferry chose it).")
    process_id: int | None = Field(
        None,
        description="Brevo's process id (`/v3/processes/{id}`): unique and increasing per "
        "installation.",
    )
    project_id: str
    kind: JobKind
    dataset: str
    status: JobStatus
    format: ExportFormat
    compression: Compression
    columns: list[str] | None = None
    idempotency_key: str | None = None
    filter_start_time: str = Field(
        OPEN_START, description="Start of the job's time range (RFC 3339; see above)."
    )
    filter_end_time: str = Field(
        OPEN_END, description="End of the job's time range (RFC 3339; see above)."
    )
    requested_filters: dict[str, Any] | None = Field(
        None,
        description="The filters as requested, when they could not be understood (the job "
        "failed; `error_code` and `error_message` say why). Capped.",
    )
    notify_url: str | None = Field(
        None, description="Where the requester asked for this job's status changes (webhooks)."
    )
    max_file_bytes: int | None = Field(
        None, description="Exports: split into files of at most this many bytes, when asked."
    )
    max_rows_per_file: int | None = Field(
        None, description="Exports: split into files of at most this many rows, when asked."
    )
    row_count: int | None = Field(
        None, description="Rows in the file(s), after completion (imports: rows read)."
    )
    file_size_bytes: int | None = Field(
        None,
        description="Bytes as stored, after completion: all files together (imports: the source).",
    )
    file_sha256: str | None = Field(
        None,
        description="SHA-256 of the file as stored (hex; imports: the source); null when an "
        "export has several files (each has its own in `files`).",
    )
    file_count: int | None = Field(None, description="Completed exports: how many files.")
    files: list[ExportFileView] | None = Field(
        None,
        description="Completed exports: the files, in order, with rows, bytes and SHA-256 (and, "
        f"from the API, a fresh link to each); the first {MAX_FILES_SHOWN} of a larger export "
        "(the manifest lists them all; `/download?part=N` reaches any).",
    )
    manifest: ManifestView | None = Field(
        None, description="Completed exports: the manifest stored beside the files."
    )
    source: dict[str, str] | None = Field(
        None,
        description="Imports: the file imported, `{bucket, key}` or `{url}` (shown without its "
        "query string, which may hold a signature).",
    )
    options: ImportOptions | None = Field(None, description="Imports: the options asked for.")
    counts: ImportCounts | None = Field(None, description="Imports: rows by outcome, when done.")
    reports: dict[str, ReportLink] | None = Field(
        None,
        description="Imports: the reports that have rows, by name: a Brevo category "
        "(`invalid_emails`, `duplicate_email_id`, ...) or `rejected_rows` (all rejected rows, "
        "with the reason).",
    )
    error_code: str | None = Field(None, description="Machine-readable reason, when failed.")
    error_message: str | None = Field(
        None, description="What went wrong and what to fix, when failed."
    )
    attempt: int = Field(description="How many times a worker has claimed the job.")
    last_error: LastError | None = Field(
        None, description="Why the previous attempt failed transiently, when it did."
    )
    cancel_requested_at: str | None = Field(
        None, description="When cancellation was asked for (a processing job is stopping)."
    )
    next_attempt_at: str | None = Field(
        None, description="When a job waiting after a transient failure is tried again."
    )
    queue_position: int | None = Field(
        None,
        description="API only, pending jobs: place in the line workers claim from, across "
        "projects (1 = next); jobs of other projects at their limit and jobs waiting on a retry "
        "are not ahead. Null while the job itself waits on a retry.",
    )
    waiting_reason: str | None = Field(
        None,
        description="API only, pending jobs: what holds the job: its retry backoff, its "
        "project's limit of running jobs, busy workers, no worker running, or jobs ahead.",
    )
    progress: Progress
    created_at: str
    started_at: str | None = None
    completed_at: str | None = None
    expires_at: str | None = Field(
        None, description="When the file is deleted and the job expires."
    )
    version: int = Field(description="Increases with every published change of this job.")


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
