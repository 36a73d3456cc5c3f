"""The job lifecycle in one place: the transitions allowed between the statuses (named in
service/contracts/status.py), which the ledger checks on every change."""

from __future__ import annotations

from service.contracts.status import FINISHED, JobStatus

__all__ = [
    "FINISHED",
    "TRANSITIONS",
    "JobStatus",
    "allowed_from",
    "can_change",
    "can_transition",
]


# Where each status may be reached from. `None` is "the job did not exist yet": a request that
# cannot run is recorded directly as failed, so its requester can read why.
TRANSITIONS: dict[JobStatus | None, frozenset[JobStatus]] = {
    None: frozenset({JobStatus.PENDING, JobStatus.FAILED}),
    JobStatus.PENDING: frozenset({JobStatus.PROCESSING, JobStatus.FAILED, JobStatus.CANCELLED}),
    # processing -> pending: a worker shutting down hands its job back, or a transient failure
    # waits for its next attempt.
    JobStatus.PROCESSING: frozenset(
        {JobStatus.PENDING, JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED}
    ),
    JobStatus.COMPLETED: frozenset({JobStatus.EXPIRED}),
    JobStatus.FAILED: frozenset(),
    JobStatus.EXPIRED: frozenset(),
    JobStatus.CANCELLED: frozenset(),
}


def can_transition(current: JobStatus | None, target: JobStatus) -> bool:
    return target in TRANSITIONS[current]


def can_change(current: JobStatus, target: JobStatus) -> bool:
    """Whether a change may lead a job in `current` to `target`: a transition of the table, or
    a change that keeps an unfinished job's status (progress, a new attempt after a lost lease,
    a cancel flag). A finished job changes only by its transitions (completed -> expired)."""
    if target is current:
        return current not in FINISHED
    return can_transition(current, target)


def allowed_from(target: JobStatus) -> list[str]:
    """The statuses a compare-and-set into `target` may match."""
    return sorted(
        status.value for status, targets in TRANSITIONS.items() if status and target in targets
    )
