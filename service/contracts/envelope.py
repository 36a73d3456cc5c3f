"""The CloudEvents 1.0 envelope every Ferry event travels in (structured mode, JSON), and the
event types of version 1.

A contract changes only by adding a new versioned `type`; consumers can rely on v1 staying as
it is. These pydantic models are the source of `schemas/`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import AwareDatetime, BaseModel, Field, field_serializer

from service.clock import rfc3339

EXPORT_REQUESTED = "ferry.export.requested.v1"
IMPORT_REQUESTED = "ferry.import.requested.v1"
JOB_STATUS_CHANGED = "ferry.job.status_changed.v1"
JOB_UPDATED = "ferry.job.updated.v1"
CANCEL_REQUESTED = "ferry.job.cancel_requested.v1"

REQUEST_TYPES = frozenset({EXPORT_REQUESTED, IMPORT_REQUESTED, CANCEL_REQUESTED})

CLOUDEVENTS_CONTENT_TYPE = "application/cloudevents+json; charset=UTF-8"


class CloudEvent(BaseModel):
    """The CloudEvents 1.0 envelope (structured mode, JSON)."""

    specversion: Literal["1.0"]
    id: str = Field(min_length=1, description="Unique per source; duplicates are ignored.")
    source: str = Field(min_length=1, description="URI-reference of the producer.")
    type: str = Field(min_length=1)
    time: AwareDatetime | None = None
    subject: str | None = None
    datacontenttype: str | None = "application/json"
    data: Any = None

    @field_serializer("time", when_used="json-unless-none")
    def _time_on_the_wire(self, value: datetime) -> str:
        # As Ferry has always written it (milliseconds only when there are any), not
        # pydantic's six-digit fraction.
        return rfc3339(value)


def make_event(
    *,
    event_id: str,
    source: str,
    event_type: str,
    subject: str,
    time: datetime,
    data: dict[str, Any],
) -> dict[str, Any]:
    """A CloudEvent as the JSON object that goes on the wire."""
    return {
        "specversion": "1.0",
        "id": event_id,
        "source": source,
        "type": event_type,
        "time": rfc3339(time),
        "subject": subject,
        "datacontenttype": "application/json",
        "data": data,
    }
