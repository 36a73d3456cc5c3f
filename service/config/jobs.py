"""Settings of the jobs: the worker that runs them, what governs every job record and the files
jobs leave, and each job kind's limits."""

from __future__ import annotations

from datetime import timedelta

from pydantic import BaseModel, Field, model_validator


class WorkerSettings(BaseModel):
    """The pool that claims and runs jobs."""

    concurrency: int = Field(4, gt=0, description="Jobs one worker process runs at once.")
    lease_seconds: float = Field(
        30.0,
        gt=0,
        description="A job whose worker stops heartbeating is claimed again after this long.",
    )
    heartbeat_seconds: float = Field(
        10.0, gt=0, description="How often a running job renews its lease."
    )
    poll_seconds: float = Field(0.5, gt=0, description="How often an idle worker looks for jobs.")
    max_attempts: int = Field(
        5,
        gt=0,
        description="Attempts a job gets when it keeps failing transiently (database or object "
        "store unreachable, timeouts); then it fails with the last error's code.",
    )
    retry_backoff_seconds: float = Field(
        2.0, gt=0, description="Wait before the 2nd attempt; doubles for each further attempt."
    )
    retry_backoff_max_seconds: float = Field(
        300.0, gt=0, description="Longest wait between attempts."
    )
    max_running_per_project: int = Field(
        2,
        gt=0,
        description="Jobs of one project running at once across all workers, so one project's "
        "backlog cannot hold up the others.",
    )
    cancel_check_seconds: float = Field(
        0.5, gt=0, description="How often a running job looks for a cancellation request."
    )
    max_lost_leases: int = Field(
        3,
        gt=0,
        description="A job whose worker vanished this many times fails with WORKER_LOST, "
        "so one poisonous job cannot crash every worker in turn.",
    )
    progress_interval_seconds: float = Field(
        1.0, gt=0, description="Progress is saved and published at most this often."
    )
    batch_size: int = Field(2000, gt=0, description="Rows read from the database per batch.")
    shutdown_grace_seconds: float = Field(
        20.0,
        ge=0,
        description="On SIGTERM, time given to running jobs before they are handed back.",
    )

    @model_validator(mode="after")
    def _heartbeat_within_lease(self) -> WorkerSettings:
        if self.heartbeat_seconds >= self.lease_seconds:
            raise ValueError("worker.heartbeat_seconds must be shorter than worker.lease_seconds")
        return self


class JobSettings(BaseModel):
    """What governs every job record, whatever its kind."""

    record_retention_seconds: int = Field(
        90 * 24 * 3600,
        gt=0,
        description="Job records are deleted this long after the job finished (or its file "
        "expired); idempotency keys are remembered as long.",
    )

    @property
    def record_retention(self) -> timedelta:
        return timedelta(seconds=self.record_retention_seconds)


class FileSettings(BaseModel):
    """The files jobs leave in the bucket: export files and import reports alike."""

    retention_seconds: int = Field(
        7 * 24 * 3600,
        gt=0,
        description="A completed export's files, and an import's reports, expire this long "
        "after completion.",
    )
    expiry_sweep_seconds: float = Field(
        30.0, gt=0, description="How often expired files are looked for and deleted."
    )
    escape_formulas: bool = Field(
        default=True,
        description="Prefix CSV cells starting with = + - @ tab or CR with ' (formula injection), "
        "in export files and import reports.",
    )

    @property
    def retention(self) -> timedelta:
        return timedelta(seconds=self.retention_seconds)


class ExportSettings(BaseModel):
    """Limits of an export job."""

    max_running_seconds: float = Field(
        3 * 3600.0,
        gt=0,
        description="An export attempt running longer fails with JOB_TIMEOUT and frees its slot.",
    )
    max_files: int = Field(
        10_000,
        ge=1,
        le=99_999,
        description="The most files one split export may have; one that needs more fails with "
        "TOO_MANY_FILES.",
    )
    chunk_rows: int = Field(
        1_000_000,
        ge=1,
        description="An export that has written this many rows, with more than this many "
        "estimated left, splits the rest into chunks of about this many rows (ranges of its sort "
        "key) that any worker may export, then composes them after what it wrote into its one "
        "file. CSV and JSON Lines without max_file_bytes / max_rows_per_file only.",
    )
    max_chunks: int = Field(
        256, ge=2, le=10_000, description="The most chunks one export is split into."
    )
    chunk_concurrency: int = Field(
        2, ge=1, description="Chunks (of any jobs) one worker exports at once."
    )
    max_chunks_per_job: int = Field(
        1,
        ge=1,
        description="Chunks of one job one worker exports at once, so that one project's giant "
        "export does not take every worker's chunk capacity.",
    )
    max_rows_per_second: float = Field(
        0.0,
        ge=0,
        description="Each export (and each chunk) reads at most this many rows a second from "
        "the application's database, on average, so that exports do not crowd out the "
        "platform's own traffic. 0: as fast as the database serves them.",
    )


class ImportSettings(BaseModel):
    """Contact imports: limits, and where files may come from."""

    max_file_bytes: int = Field(
        100 * 1024 * 1024,
        gt=0,
        description="Larger files fail with FILE_TOO_LARGE before any contact is written.",
    )
    max_rows: int = Field(
        1_000_000,
        gt=0,
        description="Files with more data rows fail with FILE_TOO_LARGE before any contact is "
        "written. Also bounds the memory duplicate detection takes (about 24 bytes per "
        "identifier value).",
    )
    max_field_chars: int = Field(
        1000, gt=0, description="Rows with a longer cell are rejected (`field_too_long`)."
    )
    batch_size: int = Field(
        1000, gt=0, description="Rows matched and written to the database per batch."
    )
    source_buckets: str = Field(
        "",
        description="Comma-separated buckets besides Ferry's own that import requests may "
        "name as their source (with any key). In Ferry's bucket only `uploads/{project_id}/` "
        "may be read.",
    )
    fetch_timeout_seconds: float = Field(
        60.0,
        gt=0,
        description="Connect and read timeout when fetching a source given as a URL.",
    )
    # Bounds that hold whatever the file (issue 9): see docs/reliability.md for the memory bound.
    fetch_deadline_seconds: float = Field(
        900.0,
        gt=0,
        description="A URL source not fully fetched after this long fails with SOURCE_TOO_SLOW, "
        "however steadily it trickles in (the timeout above is per read).",
    )
    batch_max_bytes: int = Field(
        4 * 1024 * 1024,
        gt=0,
        description="A batch also ends once its rows take about this much memory, so that wide "
        "or ragged rows make smaller batches.",
    )
    max_running_seconds: float = Field(
        3600.0,
        gt=0,
        description="An import attempt running longer fails with JOB_TIMEOUT and frees its slot.",
    )

    @model_validator(mode="after")
    def _fetch_within_running_time(self) -> ImportSettings:
        if self.fetch_deadline_seconds >= self.max_running_seconds:
            raise ValueError(
                "imports.fetch_deadline_seconds must be shorter than imports.max_running_seconds"
            )
        return self

    @property
    def extra_source_buckets(self) -> frozenset[str]:
        return frozenset(name.strip() for name in self.source_buckets.split(",") if name.strip())
