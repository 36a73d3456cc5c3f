"""What a running job can do with its lease: report progress and confirm it still owns the job."""

from __future__ import annotations

import time
from collections.abc import Mapping
from datetime import timedelta
from typing import Any

from service.clock import rfc3339_seconds, utcnow
from service.errors import LeaseLostError
from service.jobs.eta import estimate_end
from service.jobs.ledger import Lease, Ledger
from service.jobs.model import Progress


class JobContext:
    """Handed to an executor for one attempt of one job."""

    def __init__(
        self, ledger: Ledger, lease: Lease, *, lease_duration: timedelta, progress_interval: float
    ) -> None:
        self.lease = lease
        self._ledger = ledger
        self._lease_duration = lease_duration
        self._interval = progress_interval
        self._last_saved = time.monotonic()
        self._ends_here = False
        # The ETA is this attempt's own rate: its start and the share it started from.
        self._started_at = utcnow()
        self._start_fraction: float | None = None

    @property
    def ends_here(self) -> bool:
        """True once the runner stops this attempt for good (cancelled, timed out): no later
        attempt will continue its work, so it may throw away what it wrote."""
        return self._ends_here

    def end_here(self) -> None:
        self._ends_here = True

    async def progress(
        self,
        rows_processed: int,
        fraction: float | None,
        *,
        chunks: tuple[int, int] | None = None,
        force: bool = False,
    ) -> None:
        """Record progress, at most once per interval (unless `force`): each save is a write
        and an event. `chunks`: (done, total) of a chunked job."""
        now = time.monotonic()
        if not force and now - self._last_saved < self._interval:
            return
        self._last_saved = now
        percent = None if fraction is None else round(fraction * 100, 1)
        end = estimate_end(
            started_at=self._started_at,
            now=utcnow(),
            fraction=fraction,
            start_fraction=self._start_fraction or 0.0,
        )
        await self._ledger.save_progress(
            self.lease,
            Progress(
                rows_processed=rows_processed,
                percent=percent,
                eta=rfc3339_seconds(end) if end is not None else None,
                chunks_done=chunks[0] if chunks else None,
                chunks_total=chunks[1] if chunks else None,
            ),
            extend_by=self._lease_duration,
        )

    def resumed_from(self, fraction: float) -> None:
        """The attempt continues earlier work (a checkpoint) that was `fraction` done: the ETA
        counts only what this attempt does."""
        self._start_fraction = fraction

    async def record_upload(self, upload_id: str) -> None:
        """Remember the attempt's multipart upload, so a later attempt can abort it."""
        await self._ledger.record_upload(self.lease, upload_id)

    async def save_checkpoint(self, checkpoint: Mapping[str, Any]) -> None:
        """Record where this attempt got to, for the next attempt should this one die."""
        await self._ledger.save_checkpoint(self.lease, checkpoint)

    async def confirm_lease(self) -> None:
        """Raise LeaseLostError unless this attempt still owns the job (and extend the lease)."""
        if not await self._ledger.heartbeat(self.lease, extend_by=self._lease_duration):
            raise LeaseLostError(self.lease.job_id, self.lease.attempt)
