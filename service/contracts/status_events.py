"""The status events (version 1): every published change of a job, carrying its public view.

Written by the ledger's outbox and read by the API's read model and the webhooks as these same
models; `StatusEvent` tells the two apart by `type`.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, TypeAdapter

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
STATUS_EVENT: TypeAdapter[JobStatusChanged | JobUpdated] = TypeAdapter(StatusEvent)
