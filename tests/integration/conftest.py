"""Integration fixtures: a clean ledger per test (claims take the oldest job of any project)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest

from service.clock import utcnow
from service.database import Database
from service.exports.chunk_ledger import CHUNKS_COLLECTION
from service.jobs.ledger import Ledger
from service.jobs.model import JOBS_COLLECTION, Job
from service.jobs.slots import SLOTS_COLLECTION
from service.jobs.status import JobStatus
from service.storage import ObjectStore
from tests.integration.chunk_stack import Stack

FILTERS = {"start_time": "2025-12-01T00:00:00Z", "end_time": "2025-12-07T00:00:00Z"}


@pytest.fixture
async def stack(database: Database, store: ObjectStore, ledger: Ledger) -> AsyncIterator[Stack]:
    """A chunked export's runner and chunk pools (tests/integration/chunk_stack.py), stopped
    at the end; no chunk records left from an earlier test."""
    await database[CHUNKS_COLLECTION].delete_many({})
    built = Stack(database, store, ledger)
    yield built
    await built.close()


@pytest.fixture
async def ledger(database: Database) -> Ledger:
    ledger = Ledger(database, event_source="/tests")
    await ledger.ensure_indexes()
    for collection in (JOBS_COLLECTION, SLOTS_COLLECTION):
        await database[collection].delete_many({})
    return ledger


async def events_of(database: Database, job_id: str) -> list[dict[str, Any]]:
    """The job's events not yet published by a relay, oldest first."""
    document = await database[JOBS_COLLECTION].find_one({"_id": job_id}, {"outbox": 1})
    return [entry["event"] for entry in (document or {}).get("outbox", [])]


def new_job(project: str = "p1", **fields: Any) -> Job:
    now = utcnow()
    values: dict[str, Any] = {
        "id": str(uuid.uuid4()),
        "project_id": project,
        "dataset": "messages",
        "filters": FILTERS,
        "request_source": "/tests",
        "request_id": str(uuid.uuid4()),
        "status": JobStatus.PENDING,
        "created_at": now,
        "updated_at": now,
    }
    values.update(fields)
    return Job(**values)
