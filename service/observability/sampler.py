"""Metrics that need a query, refreshed on a timer rather than on every scrape, so a scraper
that calls often (or several of them) cannot load MongoDB or Kafka."""

from __future__ import annotations

import asyncio
import contextlib
import typing
from collections.abc import Callable
from typing import Any

import structlog
from aiokafka import AIOKafkaConsumer, TopicPartition
from pymongo.asynchronous.database import AsyncDatabase

from service.clock import utcnow
from service.events.outbox import outbox_backlog
from service.jobs.model import JOBS_COLLECTION, JobKind
from service.jobs.status import JobStatus
from service.observability.metrics import (
    CONSUMER_LAG,
    JOBS_IN_LEDGER,
    OUTBOX_BACKLOG,
    OUTBOX_OLDEST_AGE,
)

log = structlog.get_logger(__name__)

# Finished jobs pile up for ever; waiting and running ones are what an operator acts on, and
# counting them uses the (status, ...) indexes.
_SAMPLED_STATUSES = (JobStatus.PENDING, JobStatus.PROCESSING)
_MIN_SAMPLE_TIMEOUT_SECONDS = 10.0


class MetricsSampler:
    """Samples the ledger, the outbox and this process's consumer lag every `interval` s."""

    def __init__(
        self,
        database: AsyncDatabase[dict[str, Any]],
        *,
        interval: float,
        group: str,
        consumer: Callable[[], AIOKafkaConsumer | None],
    ) -> None:
        self._jobs = database[JOBS_COLLECTION]
        self._database = database
        self._interval = interval
        self._group = group
        self._consumer = consumer

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                # A dependency that hangs must not stall sampling for good.
                async with asyncio.timeout(max(self._interval, _MIN_SAMPLE_TIMEOUT_SECONDS)):
                    await self.sample_once()
            except Exception:
                # A dependency is away: keep the last values, and say so.
                log.warning("metrics.sample_failed", exc_info=True)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=self._interval)

    async def sample_once(self) -> None:
        await self._sample_ledger()
        await self._sample_outbox()
        consumer = self._consumer()
        if consumer is not None:
            lags = await consumer_lag(consumer)
            # Partitions move between workers on rebalances: drop those no longer ours.
            CONSUMER_LAG.clear()
            for partition, lag in lags.items():
                CONSUMER_LAG.labels(
                    group=self._group, topic=partition.topic, partition=str(partition.partition)
                ).set(lag)

    async def _sample_ledger(self) -> None:
        counts = {
            (kind, status.value): 0
            for kind in typing.get_args(JobKind)
            for status in _SAMPLED_STATUSES
        }
        pipeline: list[dict[str, Any]] = [
            {"$match": {"status": {"$in": [status.value for status in _SAMPLED_STATUSES]}}},
            {"$group": {"_id": {"kind": "$kind", "status": "$status"}, "count": {"$sum": 1}}},
        ]
        async for row in await self._jobs.aggregate(pipeline):
            counts[(row["_id"].get("kind", "export"), row["_id"]["status"])] = row["count"]
        for (kind, status), count in counts.items():
            JOBS_IN_LEDGER.labels(kind=kind, status=status).set(count)

    async def _sample_outbox(self) -> None:
        count, oldest = await outbox_backlog(self._database)
        OUTBOX_BACKLOG.set(count)
        age = 0.0 if oldest is None else (utcnow() - oldest).total_seconds()
        OUTBOX_OLDEST_AGE.set(max(age, 0.0))


async def consumer_lag(consumer: AIOKafkaConsumer) -> dict[TopicPartition, int]:
    """Records not yet committed on each partition assigned to `consumer`.

    Measured against the committed offset (what survives a crash), not the fetch position: a
    worker fetches ahead of what it has acknowledged.
    """
    partitions = sorted(consumer.assignment())
    if not partitions:
        return {}
    ends = await consumer.end_offsets(partitions)
    starts = await consumer.beginning_offsets(partitions)
    lags = {}
    for partition in partitions:
        committed = await consumer.committed(partition)
        # Nothing committed yet: with auto_offset_reset=earliest, everything still there counts.
        done = starts[partition] if committed is None else committed
        lags[partition] = max(ends[partition] - done, 0)
    return lags
