"""The status machine: which changes are allowed, from where."""

from __future__ import annotations

import pytest

from service.jobs.status import FINISHED, JobStatus, allowed_from, can_transition

P, R, C, F, E, X = (
    JobStatus.PENDING,
    JobStatus.PROCESSING,
    JobStatus.COMPLETED,
    JobStatus.FAILED,
    JobStatus.EXPIRED,
    JobStatus.CANCELLED,
)


@pytest.mark.parametrize(
    ("current", "target"),
    [(None, P), (None, F), (P, R), (P, F), (P, X), (R, C), (R, F), (R, P), (R, X), (C, E)],
)
def test_allowed(current: JobStatus | None, target: JobStatus) -> None:
    assert can_transition(current, target)


@pytest.mark.parametrize(
    ("current", "target"),
    [
        (None, R),
        (None, C),
        (None, X),
        (P, C),
        (P, E),
        (C, R),
        (C, F),
        (C, X),
        (F, P),
        (F, R),
        (E, C),
        (R, E),
        (X, P),
        (X, R),
    ],
)
def test_refused(current: JobStatus | None, target: JobStatus) -> None:
    assert not can_transition(current, target)


def test_finished_statuses_lead_nowhere_but_expiry() -> None:
    for status in FINISHED:
        targets = {t for t in JobStatus if can_transition(status, t)}
        assert targets <= {E}


def test_allowed_from_is_what_compare_and_set_matches() -> None:
    assert allowed_from(E) == ["completed"]
    assert allowed_from(F) == ["pending", "processing"]
    assert allowed_from(X) == ["pending", "processing"]
