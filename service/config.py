"""Ferry's settings: one object, read once at start from `FERRY_*` variables.

Nested groups use `__`, e.g. `FERRY_KAFKA__BOOTSTRAP_SERVERS`. When `.ferry/dev.env` exists (written
by `ferry dev`), every command reads it too, so commands run next to a dev stack just work;
real environment variables always win over that file.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from datetime import timedelta
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

DEV_ENV_FILE = Path(".ferry") / "dev.env"

# Credentials `ferry dev` hands to the embedded object store. The embedded server accepts
# anything; outside development they are refused so a deployment cannot run on them by mistake.
DEV_S3_ACCESS_KEY = "ferry-dev"
DEV_S3_SECRET_KEY = "ferry-dev-secret"  # noqa: S105 - a published placeholder, refused in production
# Likewise the key encrypting webhook signing secrets when development sets none.
DEV_SECRET_ENCRYPTION_KEY = "ZmVycnktZGV2LXdlYmhvb2stc2VjcmV0LWtleS0zMmI="  # noqa: S105 - as above


class KafkaSettings(BaseModel):
    """Where requests arrive and status events leave."""

    bootstrap_servers: str = Field("127.0.0.1:9092", description="Comma-separated host:port list.")
    requests_topic: str = Field(
        "ferry.requests", description="Export/import requests (key: project id)."
    )
    status_topic: str = Field("ferry.status", description="Job status events (key: job id).")
    dead_letter_topic: str = Field(
        "ferry.requests.dlq",
        description="Requests that cannot be parsed, with the reason in headers.",
    )
    status_dead_letter_topic: str = Field(
        "ferry.status.dlq",
        description="Status events that can never be published (too large, refused), with the "
        "reason in headers and at most 16 KB of the event.",
    )
    producer_linger_ms: int = Field(
        5,
        ge=0,
        description="How long the producer waits to batch records: status events leave in batches.",
    )
    intake_group: str = Field(
        "ferry-intake", description="Consumer group of the workers' request intake."
    )
    read_model_group: str = Field(
        "ferry-api", description="Consumer group of the API's read model (shared by API replicas)."
    )
    webhooks_group: str = Field(
        "ferry-webhooks",
        description="Consumer group of the webhook dispatchers (shared by their replicas).",
    )
    idempotent_producer: bool = Field(
        default=True,
        description="Idempotent producer (the embedded broker lacks it: off in `ferry dev`).",
    )
    max_event_bytes: int = Field(
        1_048_576, gt=0, description="Requests larger than this go to the dead-letter topic."
    )
    # No single record may stop the intake: see service/events/intake.py.
    intake_max_attempts: int = Field(
        3,
        ge=1,
        description="Attempts at a request that keeps failing for a reason other than an outage "
        "(database or broker unreachable) before it is dead-lettered with the error.",
    )
    dead_letter_max_bytes: int = Field(
        1_048_576,
        ge=16_384,
        description="The largest record the broker takes (its `message.max.bytes`, the "
        "producer's `max_request_size`); a dead letter that would be larger carries a "
        "truncated copy of the request, with its size and sha256.",
    )
    topic_partitions: int = Field(
        4, gt=0, description="Partitions of topics `ferry provision` creates."
    )
    topic_replication_factor: int = Field(
        1, gt=0, description="Replicas of topics `ferry provision` creates (3 on a real cluster)."
    )


class OutboxSettings(BaseModel):
    """The outbox relay that publishes status events; every worker runs one."""

    batch_jobs: int = Field(
        500, gt=0, description="Jobs whose events one relay round reads and publishes."
    )
    poll_seconds: float = Field(
        1.0,
        gt=0,
        description="Fallback poll interval; the relay wakes on changes (in-process and change "
        "stream) at once.",
    )
    shard_lease_seconds: float = Field(
        10.0,
        gt=0,
        description="Lease on a relay's share of the outbox shards: a dead relay's shards are "
        "taken over within this and a quarter of it.",
    )
    max_lag_seconds: float = Field(
        30.0,
        gt=0,
        description="A worker reports not ready while the oldest unpublished status event is "
        "older than this.",
    )


class MongoSettings(BaseModel):
    """The job ledger, the outbox, datasets, API keys and the API's read model."""

    url: SecretStr = Field(
        SecretStr("mongodb://127.0.0.1:27017/?directConnection=true"),
        description="MongoDB URL. A replica set is advised: writes wait for a journaled majority.",
    )
    database: str = Field("ferry", description="Database holding every Ferry collection.")
    timeout_seconds: float = Field(
        10.0, gt=0, description="How long an operation waits for a reachable server."
    )


class S3Settings(BaseModel):
    """The object store export files are written to."""

    endpoint: str = Field(
        "http://127.0.0.1:9000", description="S3/MinIO endpoint URL (http or https)."
    )
    public_endpoint: str | None = Field(
        None,
        description="Endpoint URL in download links, when clients reach the store by another name.",
    )
    access_key: SecretStr = Field(description="Access key. No default: set it, or run `ferry dev`.")
    secret_key: SecretStr = Field(description="Secret key. No default: set it, or run `ferry dev`.")
    bucket: str = Field("ferry", description="Bucket for export files.")
    region: str = Field(
        "us-east-1", description="Region; fixed so presigning needs no network call."
    )
    part_size_bytes: int = Field(
        8 * 1024 * 1024,
        ge=5 * 1024 * 1024,
        description="Multipart part size; at least 5 MiB (S3). Bounds the exporter's memory.",
    )
    timeout_seconds: float = Field(
        30.0,
        gt=0,
        description="Connect and read timeout of each request; an unreachable store then "
        "fails fast and the job is retried.",
    )
    presign_ttl_seconds: int = Field(
        900, gt=0, description="Lifetime of a download link; never beyond the export's expiry."
    )

    def split_endpoint(self, *, public: bool = False) -> tuple[str, bool]:
        """Host:port and whether TLS is used, as the minio client wants them."""
        url = urlsplit(self.public_endpoint if public and self.public_endpoint else self.endpoint)
        if url.scheme not in {"http", "https"} or not url.netloc:
            raise ValueError(f"S3 endpoint must be an http(s) URL, got {url.geturl()!r}")
        return url.netloc, url.scheme == "https"


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


class ExportSettings(BaseModel):
    """How export files are written and kept."""

    retention_seconds: int = Field(
        7 * 24 * 3600, gt=0, description="A completed export expires this long after completion."
    )
    record_retention_seconds: int = Field(
        90 * 24 * 3600,
        gt=0,
        description="Job records are deleted this long after the job finished (or its file "
        "expired); idempotency keys are remembered as long.",
    )
    expiry_sweep_seconds: float = Field(
        30.0, gt=0, description="How often expired exports are looked for and deleted."
    )
    escape_formulas: bool = Field(
        default=True,
        description="Prefix CSV cells starting with = + - @ tab or CR with ' (formula injection).",
    )
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

    @property
    def retention(self) -> timedelta:
        return timedelta(seconds=self.retention_seconds)

    @property
    def record_retention(self) -> timedelta:
        return timedelta(seconds=self.record_retention_seconds)


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


class ApiSettings(BaseModel):
    """The read-only lookup API."""

    host: str = Field("127.0.0.1", description="Interface the API listens on.")
    port: int = Field(8000, gt=0, lt=65536, description="Port the API listens on.")
    # Rate limit: a token bucket per API key, in each API process (not shared between replicas).
    rate_limit_per_second: float = Field(
        10.0,
        ge=0,
        description="Requests per second one API key may make to one API replica, sustained; "
        "beyond it the API answers 429 with Retry-After. 0 turns the limit off.",
    )
    rate_limit_burst: int = Field(
        50, gt=0, description="Requests one API key may make at once before the rate applies."
    )


class OutboundSettings(BaseModel):
    """Which networks Ferry may reach on a user's behalf (webhook endpoints, notify URLs).

    Every address a user's URL resolves to must be globally routable; these open exceptions.
    Link-local (cloud metadata), unspecified, multicast and reserved addresses are never allowed.
    """

    allow_loopback: bool = Field(
        default=False,
        description="Allow loopback addresses (127.0.0.0/8, ::1): for development and tests only; "
        "`ferry dev` turns it on.",
    )
    allow_private: bool = Field(
        default=False,
        description="Allow private addresses (10/8, 172.16/12, 192.168/16, 100.64/10, fc00::/7), "
        "for deployments whose receivers live on their own network.",
    )


# Svix's schedule: the delay before each attempt, the first one immediate.
SVIX_RETRY_SCHEDULE_SECONDS = (0, 5, 5 * 60, 30 * 60, 2 * 3600, 5 * 3600, 10 * 3600, 10 * 3600)


class WebhookSettings(BaseModel):
    """The webhook dispatcher (`ferry webhooks`)."""

    timeout_seconds: float = Field(
        15.0, gt=0, description="An attempt that has no answer after this long has failed."
    )
    retry_schedule_scale: float = Field(
        1.0,
        gt=0,
        description="Multiplies every delay of the retry schedule (immediately, 5 s, 5 min, "
        "30 min, 2 h, 5 h, 10 h, 10 h); below 1 compresses it, for tests.",
    )
    disable_after_failing_seconds: float = Field(
        5 * 24 * 3600.0,
        gt=0,
        description="An endpoint whose every attempt has failed for this long is disabled.",
    )
    secret_grace_seconds: float = Field(
        24 * 3600.0,
        ge=0,
        description="After `rotate-secret`, the old secret still signs (beside the new one) "
        "for this long, so receivers can switch without losing a delivery.",
    )
    concurrency: int = Field(
        32, gt=0, description="Deliveries one dispatcher process sends at once."
    )
    lease_seconds: float = Field(
        60.0,
        gt=0,
        description="A delivery claimed by a dispatcher that stops (crash, kill) is sent again "
        "by another after this long; more than three timeouts (a claimed delivery may wait for "
        "two attempts before its own), so a slow answer is not sent twice.",
    )
    poll_seconds: float = Field(
        1.0, gt=0, description="How often an idle dispatcher looks for deliveries that are due."
    )
    retention_seconds: int = Field(
        30 * 24 * 3600,
        gt=0,
        description="Deliveries and their attempt logs are deleted this long after they were "
        "recorded.",
    )
    # Signing secrets at rest.
    secret_encryption_keys: SecretStr | None = Field(
        None,
        description="Comma-separated Fernet keys (`ferry webhooks new-encryption-key`) that "
        "encrypt the projects' signing secrets in MongoDB. The first encrypts, every one "
        "decrypts: to rotate, put a new key first, run `ferry webhooks reencrypt-secrets`, then "
        "drop the old key. Required in production; development falls back to a published "
        "placeholder.",
    )

    @property
    def encryption_keys(self) -> list[str]:
        """The keys of `secret_encryption_keys`, the encrypting one first."""
        return _split_keys(self.secret_encryption_keys)

    @field_validator("secret_encryption_keys")
    @classmethod
    def _fernet_keys(cls, value: SecretStr | None) -> SecretStr | None:
        for number, key in enumerate(_split_keys(value), start=1):
            try:
                valid = len(base64.urlsafe_b64decode(key.encode())) == 32  # noqa: PLR2004
            except (binascii.Error, ValueError):
                valid = False
            if not valid:
                raise ValueError(
                    f"key {number} is not a Fernet key (32 url-safe base64-encoded bytes; "
                    "`ferry webhooks new-encryption-key` makes one)"
                )
        return value

    @property
    def retry_delays(self) -> tuple[float, ...]:
        """Seconds before each attempt (the first is 0): Svix's schedule, scaled."""
        return tuple(delay * self.retry_schedule_scale for delay in SVIX_RETRY_SCHEDULE_SECONDS)

    @model_validator(mode="after")
    def _lease_outlasts_three_attempts(self) -> WebhookSettings:
        if self.lease_seconds <= 3 * self.timeout_seconds:
            raise ValueError(
                "webhooks.lease_seconds must be more than three times webhooks.timeout_seconds"
            )
        return self


def _split_keys(value: SecretStr | None) -> list[str]:
    keys = value.get_secret_value().split(",") if value is not None else []
    return [key.strip() for key in keys if key.strip()]


class ObservabilitySettings(BaseModel):
    """Probes, metrics and tracing of the background roles (the API serves its own on its port)."""

    health_host: str = Field(
        "127.0.0.1",
        description="Interface of the health endpoint of `ferry worker` and `ferry webhooks`.",
    )
    # Off by default so that several workers can run on one machine (`ferry dev`, the tests);
    # the image and the chart turn it on.
    health_port: int = Field(
        0,
        ge=0,
        lt=65536,
        description="Port serving `/healthz`, `/readyz` and `/metrics` in `ferry worker` and "
        "`ferry webhooks`; 0 turns it off. The API serves them on its own port.",
    )
    sample_seconds: float = Field(
        15.0,
        gt=0,
        description="How often metrics that need a query are refreshed: jobs waiting and running "
        "in the ledger, the outbox backlog, consumer lag.",
    )
    tracing: bool = Field(
        default=False,
        description="OpenTelemetry traces of Kafka messages, exported over OTLP to the standard "
        "`OTEL_EXPORTER_OTLP_ENDPOINT`. Needs the `tracing` extra (in the image).",
    )


class Settings(BaseSettings):
    """Everything Ferry can be told. Built once at start; nothing reads the environment later."""

    model_config = SettingsConfigDict(
        env_prefix="FERRY_",
        env_nested_delimiter="__",
        env_file=DEV_ENV_FILE,
        extra="ignore",
    )

    environment: Literal["development", "production"] = Field(
        "production", description="`development` allows the dev stack's placeholder credentials."
    )
    log_level: Literal["debug", "info", "warning", "error"] = Field(
        "info", description="Log level."
    )
    log_format: Literal["auto", "json", "console"] = Field(
        "auto", description="`auto`: pretty on a terminal, JSON otherwise."
    )
    kafka: KafkaSettings = Field(default_factory=KafkaSettings)
    mongo: MongoSettings = Field(default_factory=MongoSettings)
    outbox: OutboxSettings = Field(default_factory=OutboxSettings)
    # Validated even when absent, so the error names the variables to set.
    s3: S3Settings = Field(default_factory=dict, validate_default=True)
    worker: WorkerSettings = Field(default_factory=WorkerSettings)
    export: ExportSettings = Field(default_factory=ExportSettings)
    imports: ImportSettings = Field(default_factory=ImportSettings)
    api: ApiSettings = Field(default_factory=ApiSettings)
    observability: ObservabilitySettings = Field(default_factory=ObservabilitySettings)
    outbound: OutboundSettings = Field(default_factory=OutboundSettings)
    webhooks: WebhookSettings = Field(default_factory=WebhookSettings)

    @model_validator(mode="after")
    def _no_dev_credentials_in_production(self) -> Settings:
        if self.environment == "production" and (
            self.s3.access_key.get_secret_value() == DEV_S3_ACCESS_KEY
            or self.s3.secret_key.get_secret_value() == DEV_S3_SECRET_KEY
        ):
            raise ValueError(
                "the dev stack's placeholder S3 credentials are refused outside development; "
                "set FERRY_S3__ACCESS_KEY and FERRY_S3__SECRET_KEY, "
                "or FERRY_ENVIRONMENT=development"
            )
        return self

    @model_validator(mode="after")
    def _secret_encryption_key_in_production(self) -> Settings:
        keys = self.webhooks.encryption_keys
        if self.environment == "development" and not keys:
            self.webhooks.secret_encryption_keys = SecretStr(DEV_SECRET_ENCRYPTION_KEY)
        elif self.environment == "production" and (not keys or DEV_SECRET_ENCRYPTION_KEY in keys):
            raise ValueError(
                "production needs a key that encrypts webhook signing secrets, and not the "
                "development placeholder: set FERRY_WEBHOOKS__SECRET_ENCRYPTION_KEYS (`ferry "
                "webhooks new-encryption-key` makes one), or FERRY_ENVIRONMENT=development"
            )
        return self


class _ExplicitSettings(Settings):
    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        del settings_cls, env_settings, dotenv_settings, file_secret_settings  # ignored on purpose
        return (init_settings,)


def settings_from(values: Mapping[str, Any]) -> Settings:
    """Settings from `values` alone, ignoring the environment and `.ferry/dev.env`: for tests
    and for documents that must not depend on where they are generated."""
    return _ExplicitSettings(**values)


def settings_from_env(env: Mapping[str, str]) -> Settings:
    """Settings from a `FERRY_*` variable mapping, as a child process given `env` would see them."""
    values: dict[str, Any] = {}
    for name, value in env.items():
        if not name.startswith("FERRY_"):
            continue
        *parents, leaf = name.removeprefix("FERRY_").lower().split("__")
        node = values
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return settings_from(values)


def load_settings() -> Settings:
    """Read the settings from the environment (and `.ferry/dev.env` when present)."""
    return Settings()
