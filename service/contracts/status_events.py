"""The status events (version 1): every published change of a job, carrying its public view.

Written by the ledger's outbox and read by the API's read model and the webhooks as these same
models; `StatusEvent` tells the two apart by `type`.
"""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

from pydantic import Field, TypeAdapter, ValidationError

from service.contracts.envelope import CloudEvent
from service.contracts.job_view import JobView
from service.contracts.status import JobStatus


class StatusChangedData(JobView):
    """`data` of `ferry.job.status_changed.v1`: the job as the API shows it, after the change."""

    previous_status: JobStatus | None = Field(description="Null when the job was just created.")


class JobStatusChanged(CloudEvent):
    type: Literal["ferry.job.status_changed.v1"]
    subject: str = Field(description="The job id.")
    data: StatusChangedData


class JobUpdated(CloudEvent):
    """A published change that is not a status change: progress, or a new attempt."""

    type: Literal["ferry.job.updated.v1"]
    subject: str = Field(description="The job id.")
    data: JobView


StatusEvent = Annotated[JobStatusChanged | JobUpdated, Field(discriminator="type")]
_STATUS_EVENT: TypeAdapter[JobStatusChanged | JobUpdated] = TypeAdapter(StatusEvent)
_STATUS_TYPES = frozenset({"ferry.job.status_changed.v1", "ferry.job.updated.v1"})


class UnreadableStatusEventError(ValueError):
    """A record on the status topic that does not match its contract: a bug to see, not to
    retry (only Ferry writes the topic)."""


def read_status_event(raw: bytes) -> JobStatusChanged | JobUpdated | None:
    """The status event `raw` holds, as its model; None for an event of another type.

    Tolerant of any bytes: whatever is not a status event of the documented form raises
    UnreadableStatusEventError (never anything else), so one bad record cannot stop a consumer.
    """
    try:
        document: Any = json.loads(raw)
    except (ValueError, RecursionError) as exc:  # JSONDecodeError, UnicodeDecodeError, nesting
        raise UnreadableStatusEventError(
            f"not JSON: {type(exc).__name__}: {str(exc)[:200]}"
        ) from exc
    if not isinstance(document, dict):
        raise UnreadableStatusEventError("a status event must be a JSON object")
    if document.get("type") not in _STATUS_TYPES:
        return None
    try:
        return _STATUS_EVENT.validate_python(document)
    except (ValidationError, ValueError, RecursionError) as exc:
        raise UnreadableStatusEventError(str(exc)[:2000]) from exc


def view_of(event: JobStatusChanged | JobUpdated) -> dict[str, Any]:
    """The job's view an event carries, as the API serves it (without `previous_status`)."""
    return event.data.model_dump(mode="json", exclude={"previous_status"})
