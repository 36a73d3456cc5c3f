"""Settings of the clients Ferry keeps: the Kafka broker and the outbox relay onto it, MongoDB,
the object store."""

from __future__ import annotations

from urllib.parse import urlsplit

from pydantic import BaseModel, Field, SecretStr


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
