"""What a running attempt writes under its lease: heartbeats, its upload, its checkpoint and its
progress. Every write is fenced by the lease (owner and attempt): a worker whose lease was
taken over matches nothing, writes nothing, and learns it (LeaseLostError or False)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from pymongo.asynchronous.collection import AsyncCollection

from service.contracts.job_view import Progress
from service.errors import LeaseLostError
from service.jobs.changes import Change, JobChanges
from service.jobs.leases import Leases
from service.jobs.model import Job
from service.jobs.slots import ProjectSlots, holder_of
from service.jobs.status import JobStatus


@dataclass(frozen=True)
class Lease:
    """A worker's claim on a job. Owner and attempt together fence out stale workers."""

    job_id: str
    owner: str
    attempt: int

    def fence(self) -> dict[str, Any]:
        """The match of every write of this attempt."""
        return {
            "_id": self.job_id,
            "status": JobStatus.PROCESSING.value,
            "lease_owner": self.owner,
            "attempt": self.attempt,
        }

    def lost(self) -> LeaseLostError:
        return LeaseLostError(self.job_id, self.attempt)


class RunningAttempts:
    """The running attempt's half of the ledger (service/jobs/ledger.py)."""

    def __init__(
        self, jobs: AsyncCollection[dict[str, Any]], changes: JobChanges, slots: ProjectSlots
    ) -> None:
        self._jobs = jobs
        self._changes = changes
        self._slots = slots
        self._leases = Leases(jobs, holder="lease_owner", expires="lease_expires_at")

    async def heartbeat(self, lease: Lease, *, extend_by: timedelta) -> bool:
        """Extend the lease; False when it is no longer ours. Not a published change."""
        # A lease fenced by its attempt; counting a revision makes a change computed from an
        # older read of the job compute again (service/jobs/changes.py).
        if not await self._leases.renew(
            lease.owner, extend_by, fence=lease.fence(), count="revision"
        ):
            return False
        await self._slots.renew(holder_of(lease.job_id, lease.attempt), lease=extend_by)
        return True

    async def cancel_requested(self, lease: Lease) -> bool:
        """Whether someone asked to cancel this running job. Raises LeaseLostError if not ours."""
        document = await self._jobs.find_one(lease.fence(), {"cancel_requested_at": 1})
        if document is None:
            raise lease.lost()
        return document.get("cancel_requested_at") is not None

    async def cancel_reason(self, lease: Lease) -> str | None:
        document = await self._jobs.find_one(lease.fence(), {"cancel_reason": 1})
        reason = (document or {}).get("cancel_reason")
        return reason if isinstance(reason, str) else None

    async def record_upload(self, lease: Lease, upload_id: str) -> None:
        if not await self._fenced_set(lease, {"upload_id": upload_id}):
            raise lease.lost()

    async def save_checkpoint(self, lease: Lease, checkpoint: Mapping[str, Any]) -> None:
        """Where the running attempt got to (no event: progress is published separately)."""
        if not await self._fenced_set(lease, {"checkpoint": dict(checkpoint)}):
            raise lease.lost()

    async def save_progress(
        self, lease: Lease, progress: Progress, *, extend_by: timedelta
    ) -> None:
        """A published tick: the progress and the lease's new expiry, as a `$set` of those two
        fields (with the event), leaving every other field as the document has it."""

        def change(job: Job, now: datetime) -> Change:
            del job  # the tick does not depend on the job's other fields
            return Change(
                JobStatus.PROCESSING,
                set={"progress": progress.model_dump(), "lease_expires_at": now + extend_by},
            )

        if await self._changes.apply(lease.fence(), change) is None:
            raise lease.lost()

    async def _fenced_set(self, lease: Lease, fields: Mapping[str, Any]) -> bool:
        # Every write bumps `revision`, so a change computed from an older read is retried.
        result = await self._jobs.update_one(
            lease.fence(), {"$set": dict(fields), "$inc": {"revision": 1}}
        )
        return result.matched_count == 1
