"""The outbox relay: publishes the status events that job changes wrote into their documents,
then removes them.

It keeps up by batching every step: one read takes the oldest pending jobs of the shards this
relay holds (relay_shards.py), every event of the batch is handed to the producer without
waiting for each acknowledgement (the producer batches and lingers), and the published entries
of all those jobs are removed with one bulk write. It wakes when a job changes (the ledger's
in-process signal, and a change stream for changes made by other processes), and polls only as
a fallback.

Order: a job's events share its partition (key = job id) and are handed to the producer in
`version` order; the producer sends one batch per partition at a time, so they land in that
order. Only the acknowledged prefix of a job's outbox is removed: if a send fails, that event
and every later one of the job stay and are sent again in the next round. Consumers drop what
they have seen by `version`, so a repeat is harmless. Without an idempotent producer (the
embedded broker has none), a later event of a job that was acknowledged in the same round as a
failed earlier one lands before the earlier one's repeat, which consumers then drop as stale.

Bulkhead: an event that can never be published (too large for the broker, or refused as
malformed) is not retried: it goes to the status dead-letter topic with the reason, and the
job's later events follow. Nothing one job writes holds up any other job's events.

A job's `job.updated` (progress) event followed by a later event of the same job is
superseded: every event carries the whole view, so it is dropped instead of published.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import structlog
from pymongo import ASCENDING, UpdateOne
from pymongo.asynchronous.database import AsyncDatabase

from service.clock import utcnow
from service.contracts.envelope import JOB_UPDATED
from service.events.relay_shards import ShardLeases
from service.events.status_publishing import (
    DEAD_LETTER_EXCERPT_BYTES,
    StatusPublisher,
    UndeliverableEventError,
    dead_letter_headers,
    failure_of,
)
from service.jobs.model import JOBS_COLLECTION
from service.jobs.outbox import OUTBOX_SHARDS, encode_event
from service.observability import metrics

log = structlog.get_logger(__name__)


@dataclass
class _Job:
    """One job's outbox in a round: what was sent, and which entries are done."""

    id: str
    entries: list[dict[str, Any]]
    # Per entry: "coalesced", an acknowledgement to await, or the verdict to dead-letter.
    outcomes: list[object] = field(default_factory=list)


class OutboxRelay:
    """Publishes the outbox of the shards it holds. Run one per worker; they share the work."""

    def __init__(
        self,
        database: AsyncDatabase[dict[str, Any]],
        publisher: StatusPublisher,
        shards: ShardLeases,
        *,
        batch_jobs: int = 500,
        poll_seconds: float = 1.0,
        watch_changes: bool = True,
    ) -> None:
        self._jobs = database[JOBS_COLLECTION]
        self._publisher = publisher
        self._shards = shards
        self._batch_jobs = batch_jobs
        self._poll_seconds = poll_seconds
        self._watch_changes = watch_changes
        self._wakeup = asyncio.Event()
        self._held: frozenset[int] = frozenset()
        self._refresh_due = datetime.min.replace(tzinfo=UTC)

    @property
    def held_shards(self) -> frozenset[int]:
        return self._held

    def wake(self) -> None:
        """Something was just written: publish now instead of at the next poll."""
        self._wakeup.set()

    async def run(self, stop: asyncio.Event) -> None:
        """Publish until `stop`, then publish what is left of the held shards, then give them
        back so that another relay takes over at once."""
        watcher = asyncio.create_task(self._watch(stop)) if self._watch_changes else None
        try:
            while not stop.is_set():
                read = 0
                # Cleared before reading: a change written while this round runs wakes the next.
                self._wakeup.clear()
                try:
                    await self.refresh_shards()
                    read = await self.drain_once()
                except Exception:
                    # Broker or database unreachable: keep the entries and try again.
                    log.exception("outbox.relay_failed")
                if read < self._batch_jobs:
                    await self._wait(stop)
            with contextlib.suppress(Exception):
                await self.drain_once()
        finally:
            if watcher is not None:
                watcher.cancel()
                await asyncio.gather(watcher, return_exceptions=True)
            with contextlib.suppress(Exception):
                await self._shards.release()
            self._held = frozenset()

    async def refresh_shards(self, *, force: bool = False) -> frozenset[int]:
        """Renew the shard leases when a quarter of the lease time has passed."""
        now = utcnow()
        if force or now >= self._refresh_due:
            held = await self._shards.refresh()
            if held != self._held:
                log.info("outbox.shards", held=len(held), shards=sorted(held))
            self._held = held
            self._refresh_due = now + self._shards.ttl / 4
            metrics.OUTBOX_SHARDS_HELD.set(len(held))
        return self._held

    async def drain_once(self) -> int:
        """Publish the events of up to `batch_jobs` jobs of the held shards, oldest change first;
        return how many jobs were read (the relay goes on at once while there may be more)."""
        if not self._held:
            return 0
        query: dict[str, Any] = {"outbox_pending": True}
        if len(self._held) < OUTBOX_SHARDS:
            shards: list[int | None] = [*sorted(self._held)]
            if 0 in self._held:
                shards.append(None)  # jobs written before shards existed
            query["outbox_shard"] = {"$in": shards}
        documents = (
            await self._jobs.find(query, {"outbox": 1})
            .sort("updated_at", ASCENDING)
            .limit(self._batch_jobs)
            .to_list()
        )
        if not documents:
            return 0
        jobs = [
            _Job(id=document["_id"], entries=document.get("outbox", [])) for document in documents
        ]
        for job in jobs:
            await self._send(job)
        done = {job.id: await self._settle(job) for job in jobs}
        await self._remove(jobs, done)
        return len(jobs)

    async def _send(self, job: _Job) -> None:
        last = len(job.entries) - 1
        for index, entry in enumerate(job.entries):
            if index < last and entry["event"].get("type") == JOB_UPDATED:
                job.outcomes.append("coalesced")
                continue
            payload = encode_event(entry["event"])
            if "oversize" in entry:
                job.outcomes.append(
                    UndeliverableEventError(f"event of {len(payload)} bytes is over the limit")
                )
                continue
            try:
                job.outcomes.append(await self._publisher.send(entry["key"], payload))
            except UndeliverableEventError as exc:
                job.outcomes.append(exc)
            except Exception as exc:  # noqa: BLE001 - an outage: this and later ones wait
                job.outcomes.append(exc)
                break

    async def _settle(self, job: _Job) -> list[Any]:
        """The ids of the job's entries that are done, in order, up to the first that is not."""
        done: list[Any] = []
        for entry, outcome in zip(job.entries, job.outcomes, strict=False):
            if outcome == "coalesced":
                metrics.OUTBOX_COALESCED.inc()
                done.append(entry["_id"])
                continue
            failure = await failure_of(outcome)
            if isinstance(failure, UndeliverableEventError):
                if not await self._dead_letter(entry, failure):
                    break
            elif failure is not None:
                log.warning("outbox.publish_failed", job_id=job.id, error=repr(failure)[:300])
                break
            else:
                metrics.OUTBOX_PUBLISHED.inc()
                metrics.record_status_event(entry["event"])
                metrics.OUTBOX_PUBLISH_LAG.observe(
                    max((utcnow() - entry["created_at"]).total_seconds(), 0.0)
                )
            done.append(entry["_id"])
        return done

    async def _dead_letter(self, entry: dict[str, Any], verdict: UndeliverableEventError) -> bool:
        """Move an event that cannot be published to the status dead-letter topic; False when
        that failed too (an outage: the event stays and blocks only its own job)."""
        payload = encode_event(entry["event"])
        headers = dead_letter_headers(entry, verdict, payload)
        try:
            await self._publisher.dead_letter(
                entry["key"], payload[:DEAD_LETTER_EXCERPT_BYTES], headers
            )
        except Exception:
            log.exception("outbox.dead_letter_failed", job_id=entry["key"])
            return False
        metrics.STATUS_DEAD_LETTERS.labels(code=verdict.code).inc()
        log.error(
            "outbox.event_dead_lettered",
            job_id=entry["key"],
            reason=str(verdict)[:300],
            size=len(payload),
        )
        return True

    async def _remove(self, jobs: list[_Job], done: dict[str, list[Any]]) -> None:
        """Remove exactly what was done; entries appended meanwhile stay. Each write bumps
        `revision`, so a change the ledger computed from an older read is recomputed.

        One write per job, and one request per group: a job whose every entry read is done
        is emptied and unflagged by a write that matches only while its outbox still has the
        size read (entries are only ever appended, and only this relay removes entries of its
        shards). One that grew meanwhile, or was only partly done, has its done entries pulled.
        """
        by_size: dict[int, list[str]] = {}
        partly: list[_Job] = []
        for job in jobs:
            ids = done[job.id]
            if len(ids) == len(job.entries):
                by_size.setdefault(len(ids), []).append(job.id)
            elif ids:
                partly.append(job)
        grew: list[str] = []
        for size, job_ids in by_size.items():
            result = await self._jobs.update_many(
                {"_id": {"$in": job_ids}, "outbox": {"$size": size}},
                {"$set": {"outbox": []}, "$unset": {"outbox_pending": ""}, "$inc": {"revision": 1}},
            )
            if result.matched_count < len(job_ids) and size:
                still = self._jobs.find(
                    {"_id": {"$in": job_ids}, "outbox": {"$not": {"$size": 0}}}, {"_id": 1}
                )
                grew.extend([document["_id"] async for document in still])
        pulls = [
            UpdateOne(
                {"_id": job_id},
                {"$pull": {"outbox": {"_id": {"$in": done[job_id]}}}, "$inc": {"revision": 1}},
            )
            for job_id in [*grew, *(job.id for job in partly)]
        ]
        if pulls:
            await self._jobs.bulk_write(pulls, ordered=False)

    async def _watch(self, stop: asyncio.Event) -> None:
        """Wake on changes other processes make (inserts and the ledger's replacing writes;
        the relay's own updates are left out). Without change streams, polling remains."""
        pipeline: Sequence[dict[str, Any]] = [
            {"$match": {"operationType": {"$in": ["insert", "replace"]}}},
            {"$project": {"_id": 1}},
        ]
        while not stop.is_set():
            try:
                async with await self._jobs.watch(pipeline) as stream:
                    async for _ in stream:
                        self._wakeup.set()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.warning("outbox.watch_failed", exc_info=True)
                await asyncio.sleep(self._poll_seconds * 5)

    async def _wait(self, stop: asyncio.Event) -> None:
        waiters = {asyncio.ensure_future(self._wakeup.wait()), asyncio.ensure_future(stop.wait())}
        _, pending = await asyncio.wait(
            waiters, timeout=self._poll_seconds, return_when=asyncio.FIRST_COMPLETED
        )
        for task in pending:
            task.cancel()
