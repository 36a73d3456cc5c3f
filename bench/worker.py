"""A real `ferry worker` process for the benchmarks: jobs run through it by publishing their
request to Kafka, and its peak memory is read from /proc."""

from __future__ import annotations

import asyncio
import signal
import uuid
from pathlib import Path
from typing import Any, Self

from service.clock import as_utc
from service.config import Settings
from service.database import connect
from service.events.submit import publish_request
from service.jobs.ledger import Ledger
from service.jobs.model import Job
from tests.support.ferry import FerryProcess, ferry_command


class BenchWorker:
    def __init__(self, settings: Settings, env: dict[str, str], workdir: Path) -> None:
        self._settings = settings
        self._process = FerryProcess(
            f"worker-{uuid.uuid4().hex[:6]}", ferry_command("worker"), env, workdir
        )

    def __enter__(self) -> Self:
        self._process.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._process.stop()

    @property
    def pid(self) -> int:
        if self._process.process is None:
            raise RuntimeError("the worker is not running")
        return self._process.process.pid

    @property
    def log_path(self) -> Path:
        return self._process.log_path

    def kill(self) -> None:
        """`kill -9`: no shutdown, no hand-back; its leases lapse."""
        self._process.stop(signal.SIGKILL)

    def peak_rss_kib(self) -> int:
        """The worker's peak resident memory so far (VmHWM)."""
        if self._process.process is None:
            raise RuntimeError("the worker is not running")
        status = Path(f"/proc/{self._process.process.pid}/status").read_text()
        for line in status.splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
        raise RuntimeError("no VmHWM in /proc (Linux only)")

    async def run(self, request: dict[str, Any]) -> tuple[Job, float]:
        """Publish `request` and wait for its job to complete: the job, and the seconds from its
        start to its completion as the ledger records them. Exits on a failed job."""
        job_id = str(request["data"]["job_id"])
        await publish_request(self._settings.kafka, request)
        client = connect(self._settings.mongo, app_name="bench")
        ledger = Ledger(client[self._settings.mongo.database], event_source="/bench")
        try:
            while True:
                job = await ledger.get(job_id)
                if job is not None and job.status.value in {"completed", "failed"}:
                    break
                await asyncio.sleep(0.1)
        finally:
            await client.close()
        if job.result is None or job.started_at is None or job.completed_at is None:
            raise SystemExit(f"{job.kind} failed: {job.error_code}: {job.error_message}")
        return job, (as_utc(job.completed_at) - as_utc(job.started_at)).total_seconds()
