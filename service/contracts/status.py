"""The statuses a job can be in. The transitions between them are the ledger's (jobs/status.py);
the names are a contract: events, the API and the metrics carry them."""

from __future__ import annotations

from enum import StrEnum


class JobStatus(StrEnum):
    PENDING = "pending"
    PROCESSING = "processing"
    COMPLETED = "completed"
    FAILED = "failed"
    EXPIRED = "expired"
    CANCELLED = "cancelled"


# No further work will happen to a job in these statuses.
FINISHED = frozenset(
    {JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.EXPIRED, JobStatus.CANCELLED}
)
