"""The job's public view: what the API serves for a job and what every status event carries,
so the API's read model, the webhooks and any other consumer see one shape. Built from the
stored job in one place (service/jobs/view.py)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from service.contracts.exports import Compression, ExportFormat
from service.contracts.imports import ImportCounts, ImportOptions
from service.contracts.status import JobStatus

JobKind = Literal["export", "import"]


class Progress(BaseModel):
    """How far the current attempt has got. Each attempt starts again from zero (a resumed
    attempt from its checkpoint), so within one attempt the figures never go backwards."""

    rows_processed: int = 0
    percent: float | None = Field(None, description="Estimated share done, 0-100, when known.")
    eta: str | None = Field(
        None,
        description="When the attempt is expected to finish (RFC 3339), from its own rate so "
        "far; null until it can be estimated.",
    )
    chunks_done: int | None = Field(
        None,
        description="A chunked export (one split into key ranges that several workers export "
        "at once): chunks finished so far. Null when the export is not chunked.",
    )
    chunks_total: int | None = Field(
        None, description="A chunked export's number of chunks; null when it is not chunked."
    )


class LastError(BaseModel):
    """Why the previous attempt did not finish (a transient failure that will be retried)."""

    code: str
    message: str


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
