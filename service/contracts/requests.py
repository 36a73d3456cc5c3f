"""The typed requests (version 1): export, import and cancel. Every request is a CloudEvent
(service/contracts/envelope.py) whose `data` is one of these models."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Annotated, Any, Literal
from uuid import UUID

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, PositiveInt, model_validator

from service.contracts.envelope import CloudEvent
from service.contracts.exports import Compression, ExportFormat
from service.contracts.urls import MAX_URL_LENGTH, check_http_url

# A split export's files: small enough to be useful, few enough to be listed in one manifest.
MIN_FILE_BYTES = 64 * 1024
MAX_FILE_BYTES = 5 * 1024**4  # S3's largest object
MAX_ROWS_PER_FILE = 1_000_000_000

# Project ids become part of object keys, so they are kept to a safe alphabet.
PROJECT_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$"
_PROJECT_ID_RE = re.compile(PROJECT_ID_PATTERN)


def is_valid_project_id(value: object) -> bool:
    return isinstance(value, str) and bool(_PROJECT_ID_RE.fullmatch(value)) and ".." not in value


def _project_id(value: str) -> str:
    if not is_valid_project_id(value):
        raise ValueError(f"must match {PROJECT_ID_PATTERN} and not contain '..'")
    return value


ProjectId = Annotated[
    str,
    Field(pattern=PROJECT_ID_PATTERN, examples=["proj_abc123"]),
    AfterValidator(_project_id),
]


NotifyUrl = Annotated[
    str,
    Field(
        max_length=MAX_URL_LENGTH,
        json_schema_extra={"format": "uri"},
        examples=["https://crm.example.com/hooks/ferry"],
    ),
    AfterValidator(check_http_url),
]


class JobRequestData(BaseModel):
    """What every request for a new job carries, whatever its kind."""

    model_config = ConfigDict(extra="forbid")

    project_id: ProjectId
    job_id: UUID | None = Field(
        None,
        description="Chosen by the caller to know the job id up front; else Ferry makes a UUIDv7.",
    )
    idempotency_key: str | None = Field(
        None,
        min_length=1,
        max_length=255,
        description="Requests repeating a key make no second job.",
    )
    notify_url: NotifyUrl | None = Field(
        None,
        description="An http(s) URL that also receives every status change of this job as a "
        "signed webhook (signed with the project's webhook secret).",
    )


class ExportRequestedData(JobRequestData):
    """`data` of `ferry.export.requested.v1`: export a dataset's rows to a file."""

    dataset: str = Field("messages", description="What to export, e.g. `messages`.")
    filters: dict[str, Any] = Field(
        description="The dataset's filters; for `messages`: start_time and end_time (required, "
        "RFC 3339), status, endpoint_id, inbound_endpoint_id, direction (outbound|inbound)."
    )
    format: ExportFormat = Field(
        "csv",
        description="csv (RFC 4180, UTF-8, CRLF), jsonl (JSON Lines) or parquet (typed columns, "
        "zstd-compressed inside the file).",
    )
    compression: Compression = Field(
        "none", description="gzip the file (csv and jsonl; Parquet compresses its own pages)."
    )
    columns: list[str] | None = Field(
        None, min_length=1, description="A subset of the dataset's columns, in the order wanted."
    )
    max_file_bytes: int | None = Field(
        None,
        ge=MIN_FILE_BYTES,
        le=MAX_FILE_BYTES,
        description="Split the output into numbered files of at most this many bytes each (as "
        "stored, i.e. compressed when gzip), cut on row boundaries; every file is valid on its "
        "own (CSV: with the header). A single row larger than this gets a file of its own. "
        "Not with parquet (use max_rows_per_file).",
    )
    max_rows_per_file: int | None = Field(
        None,
        ge=1,
        le=MAX_ROWS_PER_FILE,
        description="Split the output into numbered files of at most this many rows each.",
    )

    @model_validator(mode="after")
    def _compression_fits_format(self) -> ExportRequestedData:
        if self.format == "parquet" and self.compression != "none":
            raise ValueError(
                "parquet files are compressed inside (zstd); use compression 'none' with parquet"
            )
        if self.format == "parquet" and self.max_file_bytes is not None:
            raise ValueError(
                "max_file_bytes is not supported with parquet (its writer buffers whole row "
                "groups, so a file's size is not known until it is cut); use max_rows_per_file "
                "to split parquet output"
            )
        return self


class ExportRequested(CloudEvent):
    type: Literal["ferry.export.requested.v1"]
    data: ExportRequestedData


class ObjectSource(BaseModel):
    """An object already uploaded to the object store."""

    model_config = ConfigDict(extra="forbid")

    bucket: str = Field(
        min_length=3,
        max_length=63,
        description="Ferry's bucket (keys under `uploads/{project_id}/`), or one the operator "
        "allows with FERRY_IMPORTS__SOURCE_BUCKETS.",
    )
    key: str = Field(min_length=1, max_length=1024)


class UrlSource(BaseModel):
    """A file Ferry fetches over HTTP(S), through the same SSRF guard as webhooks: the host must
    resolve to public addresses only; redirects are not followed."""

    model_config = ConfigDict(extra="forbid")

    url: Annotated[str, AfterValidator(check_http_url)] = Field(examples=["https://x.test/c.csv"])


class ImportRequestedData(JobRequestData):
    """`data` of `ferry.import.requested.v1`: import a CSV file into a dataset (`contacts`)."""

    dataset: str = Field("contacts", description="What to import into: `contacts`.")
    source: ObjectSource | UrlSource
    format: Literal["csv"] = "csv"
    encoding: str | None = Field(
        None,
        max_length=40,
        description="The file's encoding (a codec name such as `latin-1` or `cp1252`). Default: "
        "UTF-8 with or without a BOM (or UTF-16 when the file starts with its BOM).",
    )
    update_existing: bool = Field(
        default=True,
        description="Rows matching an existing contact update it; false leaves it untouched.",
    )
    empty_attributes: bool = Field(
        default=False,
        description="Blank attribute cells clear the attribute; by default they leave it as is.",
    )
    list_ids: list[PositiveInt] = Field(
        default_factory=list,
        max_length=100,
        description="Lists every created or updated contact is added to.",
    )
    dry_run: bool = Field(
        default=False,
        description="Count and write the reports as a real import would; write no contact.",
    )


class ImportRequested(CloudEvent):
    type: Literal["ferry.import.requested.v1"]
    data: ImportRequestedData


class CancelRequestedData(BaseModel):
    """`data` of `ferry.job.cancel_requested.v1`: stop a job. A pending job is cancelled at
    once, a running one within seconds; a finished one is left as it is."""

    model_config = ConfigDict(extra="forbid")

    project_id: ProjectId
    job_id: UUID
    reason: str | None = Field(None, max_length=500, description="Shown on the cancelled job.")


class CancelRequested(CloudEvent):
    type: Literal["ferry.job.cancel_requested.v1"]
    data: CancelRequestedData


@dataclass(frozen=True)
class Rejected:
    """A request that cannot be acted on: it goes to the dead-letter topic with this code and
    reason (there is no job to fail)."""

    code: str
    reason: str
