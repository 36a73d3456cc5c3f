"""Sequences on a real MongoDB: concurrent takers never share a number; every job recorded gets
a process id of its own, increasing in the order jobs are recorded."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from service.counters import Counters, contact_ids
from service.database import Database
from service.jobs.ledger import Ledger
from tests.integration.conftest import new_job

pytestmark = pytest.mark.integration


async def test_concurrent_blocks_never_overlap(database: Database) -> None:
    counters = Counters(database)
    name = contact_ids(f"p{uuid.uuid4().hex[:8]}")
    sizes = [1, 7, 3, 50, 2, 9, 1, 20] * 4
    firsts = await asyncio.gather(*(counters.take(name, size) for size in sizes))
    taken = [
        n for first, size in zip(firsts, sizes, strict=True) for n in range(first, first + size)
    ]
    # Every number once. Not necessarily gapless: the embedded server answers the loser of the
    # race to create the sequence with no document, and the retry skips that block.
    assert len(set(taken)) == len(taken)
    assert min(taken) == 1
    assert max(taken) < 2 * sum(sizes)


async def test_separate_sequences_and_a_floor(database: Database) -> None:
    counters = Counters(database)
    first, second = contact_ids(f"a{uuid.uuid4().hex[:8]}"), contact_ids(f"b{uuid.uuid4().hex[:8]}")
    assert await counters.take(first) == 1
    assert await counters.take(second, 5) == 1
    assert await counters.take(first) == 2
    await counters.at_least(first, 100)  # e.g. contacts numbered by another system
    assert await counters.take(first) == 101
    await counters.at_least(first, 3)  # never backwards
    assert await counters.take(first) == 102
    fresh = contact_ids(f"c{uuid.uuid4().hex[:8]}")
    await counters.at_least(fresh, 10)  # on a sequence that did not exist yet
    assert await counters.take(fresh) == 11


async def test_every_recorded_job_gets_its_own_increasing_process_id(ledger: Ledger) -> None:
    jobs = [new_job(f"p{n % 3}") for n in range(12)]
    await asyncio.gather(*(ledger.accept(job) for job in jobs))
    stored = [await ledger.get(job.id) for job in jobs]
    process_ids = [job.process_id for job in stored if job is not None]
    assert len(process_ids) == len(jobs)
    assert len(set(process_ids)) == len(jobs)

    later = new_job("p1")
    await ledger.accept(later)
    after = await ledger.get(later.id)
    assert after is not None
    assert after.process_id is not None
    assert after.process_id > max(pid for pid in process_ids if pid is not None)

    # A repeat of a request makes no new job and keeps the first one's process id.
    again = await ledger.accept(later.model_copy(update={"id": str(uuid.uuid4())}))
    assert (again.outcome, again.job_id) == ("duplicate", later.id)
    kept = await ledger.get(later.id)
    assert kept is not None
    assert kept.process_id == after.process_id
