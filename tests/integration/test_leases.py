"""The lease primitive on real MongoDB: one holder at a time, renewals only by the holder, and
fencing by attempt."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta

import pytest

from service.database import Database
from service.jobs.leases import Leases

pytestmark = pytest.mark.integration

TTL = timedelta(minutes=1)


@pytest.fixture
def leases(database: Database) -> Leases:
    return Leases(database[f"test_leases_{uuid.uuid4().hex[:8]}"])


async def test_of_two_claimers_racing_for_one_lease_exactly_one_wins(leases: Leases) -> None:
    for _ in range(20):
        key = str(uuid.uuid4())
        won = await asyncio.gather(*(leases.take(key, holder, TTL) for holder in ("a", "b")))
        assert sorted(won) == [False, True]


async def test_the_loser_cannot_renew_or_release_the_winners_lease(leases: Leases) -> None:
    key = str(uuid.uuid4())
    assert await leases.take(key, "a", TTL)
    assert not await leases.take(key, "b", TTL)
    assert not await leases.renew("b", TTL)
    assert not await leases.release("b", key=key)
    assert await leases.renew("a", TTL)
    # Still a's: b's attempts changed nothing.
    assert not await leases.take(key, "b", TTL)


async def test_a_lapsed_lease_is_taken_over_and_a_released_one_is_free_at_once(
    leases: Leases,
) -> None:
    lapsed, released = str(uuid.uuid4()), str(uuid.uuid4())
    assert await leases.take(lapsed, "a", timedelta(seconds=-1))
    assert await leases.take(lapsed, "b", TTL)
    assert not await leases.renew("a", TTL)

    assert await leases.take(released, "a", TTL)
    assert await leases.release("a", key=released)
    assert await leases.take(released, "b", TTL)


async def test_renewal_is_fenced_by_attempt_and_counts_with_every_renewal(
    database: Database,
) -> None:
    collection = database[f"test_leases_{uuid.uuid4().hex[:8]}"]
    leases = Leases(collection, holder="lease_owner", expires="lease_expires_at")
    key = str(uuid.uuid4())
    await collection.insert_one({"_id": key, "attempt": 2, "revision": 5})
    assert await leases.take(key, "w1", TTL)
    # The same owner's earlier attempt is fenced out; the current one renews and counts.
    assert not await leases.renew("w1", TTL, fence={"_id": key, "attempt": 1}, count="revision")
    assert await leases.renew("w1", TTL, fence={"_id": key, "attempt": 2}, count="revision")
    document = await collection.find_one({"_id": key})
    assert document is not None
    assert (document["lease_owner"], document["revision"]) == ("w1", 6)


async def test_a_lease_that_is_not_reentrant_is_not_taken_twice_by_one_holder(
    database: Database,
) -> None:
    leases = Leases(database[f"test_leases_{uuid.uuid4().hex[:8]}"], reentrant=False)
    key = str(uuid.uuid4())
    assert await leases.take(key, "job#1", TTL)
    assert not await leases.take(key, "job#1", TTL)
