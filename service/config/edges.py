"""Settings of the edges: the HTTP API, outbound requests to user-given URLs, webhooks, health
and tracing."""

from __future__ import annotations

import base64
import binascii

from pydantic import BaseModel, Field, SecretStr, field_validator, model_validator


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
