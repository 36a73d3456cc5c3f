"""A webhook delivery as stored: one per (status change, destination), with its attempts
(service/webhooks/deliveries.py keeps them)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field, field_validator

from service.clock import as_utc

# The destination of a request's own notify_url (there is at most one per job).
NOTIFY = "notify"


class DeliveryStatus(StrEnum):
    PENDING = "pending"  # waiting for its next attempt
    SENDING = "sending"  # claimed by a dispatcher; `due_at` is when the claim lapses
    SUCCEEDED = "succeeded"
    FAILED = "failed"  # out of attempts, endpoint gone or disabled; `redeliver` sends it again


class Attempt(BaseModel):
    """One attempt to send, as the attempt log shows it."""

    at: datetime
    status_code: int | None = None
    latency_ms: float
    response: str | None = Field(None, description="The first 2 KB of the response body.")
    error: str | None = None

    @field_validator("at")
    @classmethod
    def _aware(cls, value: datetime) -> datetime:
        return as_utc(value)


class Delivery(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    id: str = Field(alias="_id")
    event_id: str
    event_type: str
    project_id: str
    job_id: str
    version: int
    endpoint_id: str | None = None
    url: str
    body: str
    status: DeliveryStatus
    attempts: int = 0
    # Attempts since the delivery was recorded or redelivered: its place in the retry schedule.
    cycle_attempts: int = 0
    due_at: datetime
    claim: str | None = None
    claimed_by: str | None = None
    last_status_code: int | None = None
    last_error: str | None = None
    attempt_log: list[Attempt] = Field(default_factory=list)
    created_at: datetime
    updated_at: datetime
    delivered_at: datetime | None = None
    expire_at: datetime

    @field_validator("due_at", "created_at", "updated_at", "delivered_at", "expire_at")
    @classmethod
    def _aware(cls, value: datetime | None) -> datetime | None:
        return None if value is None else as_utc(value)

    @property
    def destination(self) -> str:
        return self.endpoint_id or NOTIFY


@dataclass(frozen=True)
class Destination:
    """Where a message goes: an endpoint (its id and URL), or the request's notify_url."""

    url: str
    endpoint_id: str | None = None

    @property
    def key(self) -> str:
        return self.endpoint_id or NOTIFY


@dataclass(frozen=True)
class Claim:
    """Who takes newly recorded deliveries at once, for how long, and how many of them."""

    owner: str
    lease: timedelta
    limit: int


@dataclass(frozen=True)
class Recorded:
    """The deliveries a record call created (repeats of earlier ones left out)."""

    new: list[Delivery]

    @property
    def claimed(self) -> list[Delivery]:
        return [d for d in self.new if d.status is DeliveryStatus.SENDING]


def delivery_id(job_id: str, version: int, destination: str) -> str:
    return f"{job_id}:{version}:{destination}"
