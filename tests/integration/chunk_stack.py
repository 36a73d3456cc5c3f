"""A chunked export's moving parts against the real servers, for the integration tests: one
job runner and any number of chunk pools, each a worker of its own."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

from service.config import WorkerSettings
from service.database import Database
from service.exports.chunk_export import ChunkExport
from service.exports.chunk_ledger import ChunkLedger
from service.exports.chunk_workers import ChunkWorkers
from service.exports.chunked import ChunkedExport, ChunkSettings
from service.exports.exporter import Exporter
from service.jobs.ledger import Ledger
from service.jobs.runner import Runner
from service.storage import ObjectStore

PART = 5 * 1024 * 1024
CHUNK_ROWS = 700


def worker_settings(**overrides: Any) -> WorkerSettings:
    values: dict[str, Any] = {
        "lease_seconds": 10.0,
        "heartbeat_seconds": 1.0,
        "poll_seconds": 0.1,
        "cancel_check_seconds": 0.1,
        "progress_interval_seconds": 0.1,
        "batch_size": 200,
    }
    values.update(overrides)
    return WorkerSettings(**values)


class Stack:
    """One job runner and any number of chunk pools, each a worker of its own."""

    def __init__(self, database: Database, store: ObjectStore, ledger: Ledger) -> None:
        self.chunk_rows = CHUNK_ROWS
        self.database = database
        self.store = store
        self.ledger = ledger
        self.chunks = ChunkLedger(database)
        self.stop = asyncio.Event()
        self.tasks: list[asyncio.Task[None]] = []
        self.pools: dict[str, tuple[asyncio.Event, asyncio.Task[None], ChunkWorkers]] = {}

    def exporter(self, *, chunked: bool) -> Exporter:
        plan = ChunkedExport(
            self.database,
            self.store,
            self.chunks,
            ChunkSettings(chunk_rows=self.chunk_rows, max_chunks=8, poll_seconds=0.1),
        )
        return Exporter(
            self.database,
            self.store,
            batch_size=200,
            part_size=PART,
            escape_formulas=True,
            chunked=plan if chunked else None,
        )

    def start_runner(self) -> None:
        runner = Runner(
            self.ledger,
            {"export": self.exporter(chunked=True)},
            worker_settings(),
            owner="job-worker",
            retention=timedelta(days=1),
        )
        self.tasks.append(asyncio.create_task(runner.run(self.stop)))

    def start_pool(
        self,
        owner: str,
        chunks: ChunkLedger | None = None,
        *,
        progress_interval: float = 0.1,
        **overrides: Any,
    ) -> ChunkWorkers:
        """`progress_interval`: 0 records a chunk's rows read after every batch, which a test
        that waits for such a record needs: a fast machine reads a whole chunk within 0.1 s."""
        export = ChunkExport(
            self.database,
            self.store,
            chunks or self.chunks,
            batch_size=200,
            part_size=PART,
            escape_formulas=True,
            progress_interval=progress_interval,
        )
        pool = ChunkWorkers(
            self.ledger,
            self.chunks,
            export,
            worker_settings(**overrides),
            owner=owner,
            concurrency=1,
            per_job=1,
        )
        stop = asyncio.Event()
        self.pools[owner] = (stop, asyncio.create_task(pool.run(stop)), pool)
        return pool

    async def stop_pool(self, owner: str) -> None:
        stop, task, _ = self.pools.pop(owner)
        stop.set()
        await asyncio.wait_for(task, timeout=60)

    async def close(self) -> None:
        self.stop.set()
        for owner in list(self.pools):
            await self.stop_pool(owner)
        await asyncio.gather(*self.tasks)
