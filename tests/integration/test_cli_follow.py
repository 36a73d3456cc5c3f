"""`--wait` against a real ledger: the CLI shows a running job's ETA and returns its outcome.

The ledger is driven by the test, not a worker, so how fast a machine runs an export cannot
decide whether the CLI ever sees a job mid-run (it did once: an export ended between polls)."""

from __future__ import annotations

import asyncio
import re
from datetime import timedelta

import pytest

from service.cli.follow import follow_job
from service.clock import rfc3339_seconds, utcnow
from service.config import Settings
from service.jobs.ledger import ClaimPolicy, Lease, Ledger
from service.jobs.model import ExportResult, Progress
from service.jobs.status import JobStatus
from tests.integration.conftest import new_job

pytestmark = pytest.mark.integration

LEASE = timedelta(seconds=30)


async def test_wait_shows_the_eta_of_a_running_job_then_its_outcome(
    settings: Settings, ledger: Ledger, capsys: pytest.CaptureFixture[str]
) -> None:
    job = new_job("cli-follow")
    await ledger.accept(job)
    claim = await ledger.claim("w", ClaimPolicy(LEASE, 3, 100))
    assert claim is not None
    lease = Lease(job.id, "w", claim.attempt)
    eta = utcnow() + timedelta(minutes=3)
    await ledger.save_progress(
        lease,
        Progress(rows_processed=9000, percent=45.0, eta=rfc3339_seconds(eta)),
        extend_by=LEASE,
    )
    following = asyncio.create_task(follow_job(settings, job.id, wait_seconds=30))
    shown = ""
    while "ETA" not in shown:
        assert not following.done(), shown
        await asyncio.sleep(0.1)
        shown += capsys.readouterr().out
    line = re.search(r"processing: 45\.0%, 9000 rows, ETA (\S+) \(in ", shown)
    assert line is not None, shown
    assert line.group(1) == f"{eta:%H:%M:%S}Z"

    result = ExportResult(
        object_key=f"exports/cli-follow/{job.id}.csv",
        row_count=20000,
        file_size_bytes=123,
        file_sha256="0" * 64,
    )
    await ledger.complete(lease, result, retention=timedelta(days=1))
    finished = await asyncio.wait_for(following, timeout=10)
    assert finished is not None
    assert finished.status is JobStatus.COMPLETED
    assert "completed: 100.0%" in capsys.readouterr().out + shown
