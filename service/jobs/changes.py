"""The one compare-and-set on a job document: every change of a job goes through `JobChanges`.

A change names the status it leads to (`Change.target`); the helper reads the document, checks
the transition against the one table (service/jobs/status.py), takes `previous` from the
document it read, and writes only the fields the change sets or removes, with the change's
status event appended to the job's outbox, in one single-document update. The update is
matched on the `revision` read (every writer bumps it), so a change computed from an older
read is computed again from a fresh one. No multi-document transaction is used: under load they
conflict and retry, and one left open by a killed worker locks its documents until the server
reaps it (a minute by default). A worker whose lease was taken over matches nothing and
therefore writes nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from pymongo.asynchronous.collection import AsyncCollection

from service.clock import utcnow
from service.error_codes import ErrorCode
from service.errors import FerryError
from service.jobs.model import Job
from service.jobs.outbox import append_fields, status_entry
from service.jobs.status import JobStatus, can_change

_MAX_CAS_ATTEMPTS = 20
# The fields a running attempt holds; an attempt that ends gives them all up.
ATTEMPT_FIELDS = frozenset(
    {"lease_owner", "lease_expires_at", "upload_id", "slot_id", "checkpoint"}
)
# A query, or a function building it from the current time (so a lease is compared with the
# time of the attempt that writes it).
AtNow = Mapping[str, Any] | Callable[[datetime], Mapping[str, Any]]


@dataclass(frozen=True)
class Change:
    """What one change does to a job: the status it leads to (its own, for a change that keeps
    it), the fields it sets (in document form, as `Job.to_document()` stores them) and those it
    removes. The status, `updated_at`, `version` and the outbox are the helper's to write."""

    target: JobStatus
    set: Mapping[str, Any] = field(default_factory=dict)
    unset: frozenset[str] = frozenset()


# A change computed from the job as read and the time of the attempt to write it.
ChangeOf = Change | Callable[[Job, datetime], Change]


def finished(status: JobStatus, now: datetime, purge_at: datetime, **fields: object) -> Change:
    """The change that ends a job in `status`: the running attempt's fields go."""
    return Change(
        status,
        set={"completed_at": now, "purge_at": purge_at, **fields},
        unset=ATTEMPT_FIELDS,
    )


class TransitionRefusedError(FerryError):
    """A change asked for a transition the status machine does not allow; nothing was written.
    A bug in the caller (its match let through a status it cannot change), not an outage."""

    code = ErrorCode.INTERNAL_ERROR

    def __init__(self, job_id: str, current: JobStatus, target: JobStatus) -> None:
        super().__init__(f"job {job_id} cannot go from {current.value} to {target.value}")
        self.current = current
        self.target = target


class LedgerContentionError(FerryError):
    """A job kept changing under every attempt to change it; transient by nature."""

    code = ErrorCode.LEDGER_CONTENTION
    transient = True

    def __init__(self, job: str) -> None:
        super().__init__(f"job {job} changed under {_MAX_CAS_ATTEMPTS} attempts to update it")


class ChangeContended(Exception):  # noqa: N818 - a signal, not an error
    """Another writer changed the job between our read and our write (with `fail_fast`)."""


class JobChanges:
    """Compare-and-set on the job documents of `jobs`; `on_event` runs after each write."""

    def __init__(
        self,
        jobs: AsyncCollection[dict[str, Any]],
        *,
        event_source: str,
        on_event: Callable[[], None],
    ) -> None:
        self._jobs = jobs
        self._source = event_source
        self._on_event = on_event

    async def apply(self, match: AtNow, change: ChangeOf, *, fail_fast: bool = False) -> Job | None:
        """Apply `change` to the job `match` finds; the job after it, or None when nothing
        matched. Raises TransitionRefusedError (nothing written) when the status machine does
        not allow the change; with `fail_fast`, ChangeContended instead of reading again after
        a lost race. `match` and `change` are evaluated anew at each attempt."""
        query: Mapping[str, Any] = {}
        for _ in range(1 if fail_fast else _MAX_CAS_ATTEMPTS):
            now = utcnow()
            query = match(now) if callable(match) else match
            document = await self._jobs.find_one(query)
            if document is None:
                return None
            current = Job.from_document(document)
            wanted = change(current, now) if callable(change) else change
            if not can_change(current.status, wanted.target):
                raise TransitionRefusedError(current.id, current.status, wanted.target)
            job = _after(document, wanted, now)
            entry = status_entry(job, current.status, source=self._source)
            outbox = append_fields(entry, job.id)
            update: dict[str, Any] = {
                "$set": {
                    **wanted.set,
                    "status": job.status.value,
                    "updated_at": now,
                    "version": job.version,
                    **outbox["$set"],
                },
                "$push": outbox["$push"],
                "$inc": {"revision": 1},
            }
            if wanted.unset:
                update["$unset"] = dict.fromkeys(sorted(wanted.unset), "")
            result = await self._jobs.update_one(
                {**query, "_id": document["_id"], **_at_revision(document)}, update
            )
            if result.matched_count == 1:
                self._on_event()
                return job
        if fail_fast:
            raise ChangeContended
        raise LedgerContentionError(str(query.get("_id", query)))


def _after(document: Mapping[str, Any], change: Change, now: datetime) -> Job:
    """The job as the write leaves it (the write is matched on the revision read, so the stored
    document is exactly this)."""
    changed = {key: value for key, value in document.items() if key not in change.unset}
    changed.update(change.set)
    changed["status"] = change.target.value
    changed["updated_at"] = now
    changed["version"] = int(document.get("version", 0)) + 1
    return Job.from_document(changed)


def _at_revision(document: Mapping[str, Any]) -> dict[str, Any]:
    # A document written before revisions were counted has none: it matches as long as no one
    # has counted one since.
    if "revision" in document:
        return {"revision": document["revision"]}
    return {"revision": {"$exists": False}}
