"""A worker's start-up steps, each timed in the log: a start that stalls names the step it
stalled in. In the tests it was the indexes (274 s), on an embedded database whose cache was
nearly full (tests/support/infra.py says why it no longer fills)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterator
from typing import Any

import structlog
from pymongo.asynchronous.database import AsyncDatabase

from service.datasets import ensure_dataset_indexes
from service.jobs.ledger import Ledger
from service.jobs.workers import WorkerPresence
from service.storage import ObjectStore

log = structlog.get_logger(__name__)


@contextlib.contextmanager
def start_step(step: str, owner: str) -> Iterator[None]:
    """Log `worker.start_step` with the seconds the block took and how it ended (`done`,
    `stopped`: the worker was told to stop first, or `failed`)."""
    started = time.monotonic()
    ended = "failed"
    try:
        yield
        ended = "done"
    except asyncio.CancelledError:
        ended = "stopped"
        raise
    finally:
        seconds = round(time.monotonic() - started, 3)
        log.info("worker.start_step", owner=owner, step=step, seconds=seconds, ended=ended)


async def prepare_storage(
    ledger: Ledger,
    presence: WorkerPresence,
    database: AsyncDatabase[dict[str, Any]],
    store: ObjectStore,
    *,
    owner: str,
) -> None:
    """The indexes the worker relies on, and its bucket."""
    with start_step("indexes", owner):
        await ledger.ensure_indexes()
        await presence.ensure_indexes()
        # The datasets' indexes: those exports read by and the unique ones imports rely on.
        await ensure_dataset_indexes(database)
    with start_step("bucket", owner):
        await store.ensure_bucket()
