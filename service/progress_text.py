"""How a job's progress reads on a terminal or in a log: the CLI's `--wait` lines."""

from __future__ import annotations

from datetime import datetime

from service.jobs.model import Job
from service.jobs.queue import Waiting
from service.jobs.status import JobStatus


def eta_text(eta: str | None, now: datetime) -> str:
    """`ETA 12:03:05Z (in 1m 20s)`, or "" while there is no estimate."""
    if eta is None:
        return ""
    end = datetime.fromisoformat(eta)
    seconds = max(0, round((end - now).total_seconds()))
    minutes, rest = divmod(seconds, 60)
    left = f"{minutes}m {rest:02d}s" if minutes else f"{rest}s"
    return f"ETA {end.strftime('%H:%M:%S')}Z (in {left})"


def progress_line(job: Job, waiting: Waiting | None, now: datetime) -> str:
    """One line of where the job stands, e.g. `processing: 45.0%, 9000 rows, ETA ...`
    (with `chunks 2/5` for a chunked export)."""
    if job.status is JobStatus.PENDING:
        if waiting is None:
            return "pending"
        place = f" (#{waiting.position} in line)" if waiting.position is not None else ""
        return f"pending{place}: {waiting.reason}"
    parts = [f"{job.progress.rows_processed} rows"]
    if job.progress.percent is not None:
        parts.insert(0, f"{job.progress.percent:.1f}%")
    if job.progress.chunks_total is not None:
        parts.append(f"chunks {job.progress.chunks_done or 0}/{job.progress.chunks_total}")
    if job.status is JobStatus.PROCESSING and (eta := eta_text(job.progress.eta, now)):
        parts.append(eta)
    return f"{job.status.value}: {', '.join(parts)}"
