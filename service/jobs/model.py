"""The job as the ledger stores it (one MongoDB document per job)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator
from pymongo import ASCENDING, IndexModel

from service.clock import as_utc
from service.contracts.exports import Compression, ExportFile, ExportFormat, ExportResult
from service.contracts.imports import ImportOptions, ImportResult, ImportSource
from service.contracts.job_view import JobKind, LastError, Progress
from service.contracts.status import JobStatus

__all__ = [
    "JOBS_COLLECTION",
    "JOB_INDEXES",
    "Compression",
    "ExportFile",
    "ExportFormat",
    "ExportResult",
    "Job",
    "JobKind",
    "JobResult",
    "LastError",
    "Progress",
]

# The ledger's collection: one document per job, its outbox inside (service/jobs/outbox.py).
JOBS_COLLECTION = "jobs"
# What the ledger looks jobs up by (the outbox's own indexes are in service/jobs/outbox.py).
JOB_INDEXES = (
    IndexModel([("request_source", ASCENDING), ("request_id", ASCENDING)], unique=True),
    IndexModel(
        [("project_id", ASCENDING), ("idempotency_key", ASCENDING)],
        unique=True,
        partialFilterExpression={"idempotency_key": {"$type": "string"}},
    ),
    IndexModel([("status", ASCENDING), ("created_at", ASCENDING)]),
    IndexModel([("status", ASCENDING), ("lease_expires_at", ASCENDING)]),
    IndexModel([("status", ASCENDING), ("expires_at", ASCENDING)]),
    IndexModel([("project_id", ASCENDING), ("status", ASCENDING)]),
    # Finished jobs are deleted once their record retention has passed.
    IndexModel([("purge_at", ASCENDING)], expireAfterSeconds=0),
)

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
