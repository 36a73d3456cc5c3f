"""Expiry: a completed job's files (an export's file, an import's reports) are deleted at
`expires_at` and the job becomes `expired`."""

from __future__ import annotations

import asyncio
import contextlib

import structlog

from service.clock import utcnow
from service.jobs.ledger import Ledger
from service.leadership import Leadership
from service.storage import ObjectStore

log = structlog.get_logger(__name__)


class ExpirySweeper:
    def __init__(
        self,
        ledger: Ledger,
        store: ObjectStore,
        leadership: Leadership,
        *,
        interval_seconds: float,
        batch_size: int = 100,
    ) -> None:
        self._ledger = ledger
        self._store = store
        self._leadership = leadership
        self._interval = interval_seconds
        self._batch_size = batch_size

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                if await self._leadership.hold():
                    await self.sweep_once()
            except Exception:
                log.exception("expiry.sweep_failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=self._interval)

    async def sweep_once(self) -> int:
        expired = 0
        for job in await self._ledger.due_for_expiry(utcnow(), limit=self._batch_size):
            # File first, then the status: a crash in between only repeats a harmless delete.
            for key in job.result.object_keys() if job.result is not None else []:
                await self._store.delete(key)
            if await self._ledger.expire(job.id) is not None:
                expired += 1
                log.info("job.expired", kind=job.kind, job_id=job.id, project_id=job.project_id)
        return expired
