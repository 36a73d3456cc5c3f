"""The job as the ledger stores it (one MongoDB document per job)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from service.clock import as_utc
from service.imports.model import ImportOptions, ImportResult, ImportSource
from service.jobs.status import JobStatus

JobKind = Literal["export", "import"]
ExportFormat = Literal["csv", "jsonl", "parquet"]
Compression = Literal["none", "gzip"]


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


class LastError(BaseModel):
    """Why the previous attempt did not finish (a transient failure that will be retried)."""

    code: str
    message: str


class ExportFile(BaseModel):
    """One file of a finished export."""

    key: str
    # The file's number from 1 in a split export; None for the file of a one-file export.
    part: int | None = None
    rows: int
    size_bytes: int
    sha256: str


class ExportResult(BaseModel):
    """What a finished export produced. Exports finished before files were split have only
    `object_key` and the file fields; `files` then stays empty."""

    object_key: str  # the first (or only) file
    row_count: int
    file_size_bytes: int  # all files together
    file_sha256: str | None  # the only file's; None when there are several (see `files`)
    files: list[ExportFile] = Field(default_factory=list)
    manifest_key: str | None = None

    def object_keys(self) -> list[str]:
        """Every object the export left: its files, then its manifest."""
        keys = [file.key for file in self.files] or [self.object_key]
        return keys + ([self.manifest_key] if self.manifest_key else [])


# Told apart by their fields: an export's has `object_key`, an import's `counts`.
JobResult = ExportResult | ImportResult


class Job(BaseModel):
    """A job in the ledger. `version` increases by one with every change that is published."""

    model_config = ConfigDict(populate_by_name=True)

    id: str = Field(alias="_id")
    project_id: str
    kind: JobKind = "export"
    # Brevo's integer id of the job (`/v3/processes/{id}`), unique and increasing per
    # installation; assigned when the job is recorded.
    process_id: int | None = None
    dataset: str
    format: ExportFormat = "csv"
    compression: Compression = "none"
    columns: list[str] | None = None
    # Exports only: split the output into numbered files of at most this many stored bytes /
    # rows each (either, both or neither).
    max_file_bytes: int | None = None
    max_rows_per_file: int | None = None
    # As requested, in JSON form; the dataset re-validates them when the job runs.
    filters: dict[str, Any] = Field(default_factory=dict)
    idempotency_key: str | None = None
    # SHA-256 of the request's parameters (service/jobs/idempotency.py): a reused key with
    # other parameters is told from a retry of the same request.
    request_fingerprint: str | None = None
    # Where the requester wants this job's status changes delivered, besides the project's
    # webhook endpoints; checked as an http(s) URL at intake.
    notify_url: str | None = None
    request_source: str
    request_id: str
    # Imports only: where the file is and how to read and apply it.
    source: ImportSource | None = None
    options: ImportOptions | None = None

    status: JobStatus
    version: int = 1
    attempt: int = 0
    lost_leases: int = 0
    # A pending job is not claimed before this instant (set later by a retry's backoff).
    run_after: datetime | None = None
    lease_owner: str | None = None
    lease_expires_at: datetime | None = None
    slot_id: str | None = None  # the project slot the running attempt holds
    # The multipart upload of the running attempt, so a later attempt can abort it if this
    # attempt's worker dies.
    upload_id: str | None = None
    # Where the running job got to, for a later attempt to continue from; its shape belongs
    # to the job's kind (exports: service/exports/checkpoints.py). Cleared when the job ends.
    checkpoint: dict[str, Any] | None = None
    cancel_requested_at: datetime | None = None
    cancel_reason: str | None = None
    progress: Progress = Field(default_factory=Progress)

    result: JobResult | None = None
    last_error: LastError | None = None
    error_code: str | None = None
    error_message: str | None = None

    created_at: datetime
    updated_at: datetime
    started_at: datetime | None = None
    completed_at: datetime | None = None
    expires_at: datetime | None = None
    # The ledger's TTL index removes the record at this instant (record retention).
    purge_at: datetime | None = None

    @field_validator(
        "run_after",
        "lease_expires_at",
        "cancel_requested_at",
        "created_at",
        "updated_at",
        "started_at",
        "completed_at",
        "expires_at",
        "purge_at",
    )
    @classmethod
    def _aware(cls, value: datetime | None) -> datetime | None:
        return None if value is None else as_utc(value)

    @classmethod
    def from_document(cls, document: dict[str, Any]) -> Job:
        return cls.model_validate(document)

    def to_document(self) -> dict[str, Any]:
        # Unset fields are left out, not stored as null: `$min` and `$exists` then behave.
        return self.model_dump(by_alias=True, mode="python", exclude_none=True)
