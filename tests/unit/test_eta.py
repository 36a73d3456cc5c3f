"""The ETA of a running attempt, from its own rate, and how the CLI shows it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from service.clock import rfc3339_seconds
from service.jobs.eta import estimate_end
from service.jobs.model import Job, Progress
from service.jobs.queue import Waiting
from service.jobs.status import JobStatus
from service.progress_text import eta_text, progress_line

START = datetime(2025, 12, 6, 12, 0, tzinfo=UTC)


def test_the_rest_takes_as_long_per_share_as_the_part_done() -> None:
    now = START + timedelta(minutes=2)
    assert estimate_end(started_at=START, now=now, fraction=0.4) == now + timedelta(minutes=3)


def test_a_resumed_attempt_counts_only_its_own_work() -> None:
    now = START + timedelta(minutes=1)
    # Resumed at 50 %, at 75 % after a minute: a minute more.
    end = estimate_end(started_at=START, now=now, fraction=0.75, start_fraction=0.5)
    assert end == now + timedelta(minutes=1)


def test_no_estimate_without_a_fraction_or_before_any_real_work() -> None:
    now = START + timedelta(seconds=5)
    assert estimate_end(started_at=START, now=now, fraction=None) is None
    assert estimate_end(started_at=START, now=now, fraction=0.001) is None
    assert estimate_end(started_at=START, now=START, fraction=0.5) is None
    assert estimate_end(started_at=START, now=now, fraction=1.0) == now


@given(
    elapsed=st.floats(min_value=0.001, max_value=1e6),
    fraction=st.floats(min_value=0.0, max_value=1.0),
    start=st.floats(min_value=0.0, max_value=1.0),
)
def test_an_estimate_is_never_in_the_past(elapsed: float, fraction: float, start: float) -> None:
    now = START + timedelta(seconds=elapsed)
    end = estimate_end(started_at=START, now=now, fraction=fraction, start_fraction=start)
    assert end is None or end >= now


def job(status: JobStatus, progress: Progress) -> Job:
    return Job(
        id="0193a000-0000-7000-8000-000000000000",
        project_id="p",
        dataset="messages",
        request_source="/t",
        request_id="r",
        status=status,
        progress=progress,
        created_at=START,
        updated_at=START,
    )


def test_the_cli_line_shows_the_eta_while_processing_and_the_reason_while_waiting() -> None:
    now = START + timedelta(minutes=1)
    eta = rfc3339_seconds(now + timedelta(seconds=80))
    running = job(JobStatus.PROCESSING, Progress(rows_processed=9000, percent=45.0, eta=eta))
    assert progress_line(running, None, now) == (
        "processing: 45.0%, 9000 rows, ETA 12:02:20Z (in 1m 20s)"
    )
    waiting = Waiting(3, "project limit of 2 running jobs reached")
    assert progress_line(job(JobStatus.PENDING, Progress()), waiting, now) == (
        "pending (#3 in line): project limit of 2 running jobs reached"
    )
    assert eta_text(None, now) == ""


def test_the_cli_line_counts_a_chunked_exports_chunks() -> None:
    now = START + timedelta(minutes=1)
    eta = rfc3339_seconds(now + timedelta(seconds=80))
    progress = Progress(rows_processed=9000, percent=45.0, eta=eta, chunks_done=2, chunks_total=5)
    assert progress_line(job(JobStatus.PROCESSING, progress), None, now) == (
        "processing: 45.0%, 9000 rows, chunks 2/5, ETA 12:02:20Z (in 1m 20s)"
    )
