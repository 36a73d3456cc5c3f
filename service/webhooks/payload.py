"""What a webhook carries, built from a status event: `{"type": "export.completed",
"timestamp": <when the status changed>, "data": <the job exactly as /v1 shows it>}`.

The body is serialised once, when the delivery is recorded, so every attempt sends the same
bytes; only the signature's timestamp changes between attempts.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime

from pydantic import BaseModel, Field

from service.clock import rfc3339
from service.contracts.job_view import JobView
from service.contracts.status_events import (
    JobStatusChanged,
    UnreadableStatusEventError,
    read_status_event,
    view_of,
)
from service.webhooks.event_types import event_type


class WebhookPayload(BaseModel):
    """The body of every webhook Ferry sends (the source of `schemas/webhooks/payload.json`)."""

    type: str = Field(
        pattern=r"^[a-z]+\.[a-z_]+$",
        examples=["export.completed"],
        description="`{kind}.{status}`: export.pending, export.processing, export.completed, "
        "export.failed, export.expired (and import.* when imports arrive).",
    )
    timestamp: str = Field(description="When the status changed (RFC 3339, UTC).")
    data: JobView = Field(
        description="The job exactly as `GET /v1/exports/{id}` shows it after the change. "
        "`data.version` increases with every change: keep the highest seen, drop the rest."
    )


class UnreadableEventError(ValueError):
    """A status event that does not match its contract: a bug to see, not to retry."""


@dataclass(frozen=True)
class WebhookMessage:
    """One status change, ready to be delivered to any number of destinations."""

    event_id: str
    event_type: str
    project_id: str
    job_id: str
    version: int
    occurred_at: datetime
    notify_url: str | None
    body: str


def webhook_message(raw: bytes) -> WebhookMessage | None:
    """The message for a status event; None for events that are not a status change."""
    try:
        event = read_status_event(raw)
    except UnreadableStatusEventError as exc:
        raise UnreadableEventError(str(exc)) from exc
    if not isinstance(event, JobStatusChanged):
        return None  # progress and new attempts (ferry.job.updated.v1) are not webhooks
    if event.time is None:
        raise UnreadableEventError(f"status event {event.id} has no time")
    kind_and_status = event_type(event.data.kind, event.data.status.value)
    body = json.dumps(
        {"type": kind_and_status, "timestamp": rfc3339(event.time), "data": view_of(event)},
        separators=(",", ":"),
    )
    return WebhookMessage(
        event_id=event.id,
        event_type=kind_and_status,
        project_id=event.data.project_id,
        job_id=event.data.id,
        version=event.data.version,
        occurred_at=event.time,
        notify_url=event.data.notify_url,
        body=body,
    )
