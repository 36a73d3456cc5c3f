"""How a job kind plugs into `jobs`: an executor per kind (`exports`, `imports`), registered
with the runner by the kind's name (service/worker.py), so `jobs` imports no kind.

A kind's stored payload and result are contracts (service/contracts/exports.py and
imports.py), which the job model and its view hold without importing the kind.
"""

from __future__ import annotations

from typing import Protocol

from service.jobs.context import JobContext
from service.jobs.model import Job, JobResult


class Executor(Protocol):
    """Runs one attempt of a job of its kind, reporting through `context` (progress,
    checkpoints, the upload it started), and returns what the job produced."""

    async def run(self, job: Job, context: JobContext) -> JobResult: ...
