"""The outbox relay against a real MongoDB (and, last, a real broker): each job's events go out
in order, exactly what was acknowledged is removed, superseded progress is dropped, an event
that can never be published is dead-lettered without holding anything up, and relays share
the shards and take over a dead one's."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable
from datetime import timedelta
from typing import Any

import pytest

from service.clock import utcnow
from service.config import Settings
from service.database import Database
from service.events.kafka import KafkaStatusPublisher, make_broker
from service.events.outbox import outbox_backlog, outbox_is_fresh
from service.events.relay import OutboxRelay
from service.events.relay_shards import RELAYS_COLLECTION, SHARD_LEASES_COLLECTION, ShardLeases
from service.events.status_publishing import UndeliverableEventError
from service.jobs.ledger import ClaimPolicy, Lease, Ledger
from service.jobs.model import JOBS_COLLECTION, Progress
from service.jobs.outbox import OUTBOX_SHARDS
from tests.integration.conftest import events_of, new_job
from tests.support.kafka import read_topic

pytestmark = pytest.mark.integration

POLICY = ClaimPolicy(lease=timedelta(seconds=30), max_lost_leases=3, max_running_per_project=10)


class RecordingPublisher:
    """Acknowledges at once (or fails the events `fail` picks); records what was sent."""

    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []
        self.dead: list[tuple[bytes, dict[str, str]]] = []
        self.outage: set[int] = set()  # versions whose acknowledgement fails (broker away)

    async def send(self, key: str, payload: bytes) -> Awaitable[object]:
        event = json.loads(payload)
        version = event["data"]["version"]
        self.sent.append(event)
        future: asyncio.Future[object] = asyncio.get_running_loop().create_future()
        if version in self.outage:
            future.set_exception(ConnectionError("broker away"))
        else:
            future.set_result(None)
        return future

    async def dead_letter(self, key: str, payload: bytes, headers: dict[str, str]) -> None:
        self.dead.append((payload, headers))

    def versions(self, job_id: str) -> list[int]:
        return [event["data"]["version"] for event in self.sent if event["subject"] == job_id]


@pytest.fixture
async def clean_shards(database: Database) -> None:
    for collection in (SHARD_LEASES_COLLECTION, RELAYS_COLLECTION):
        await database[collection].delete_many({})


def relay_of(database: Database, publisher: Any, owner: str = "t", ttl: float = 5) -> OutboxRelay:
    leases = ShardLeases(database, owner=owner, ttl=timedelta(seconds=ttl))
    return OutboxRelay(database, publisher, leases, watch_changes=False)


async def test_events_go_out_in_order_and_late_ones_wait_for_the_next_round(
    ledger: Ledger, database: Database, clean_shards: None
) -> None:
    jobs = [new_job(), new_job()]
    for job in jobs:
        await ledger.accept(job)
    claimed = await ledger.claim("w", POLICY)
    assert claimed is not None
    other = next(job.id for job in jobs if job.id != claimed.id)
    lease = Lease(claimed.id, "w", claimed.attempt)

    class ChangingMeanwhile(RecordingPublisher):
        async def send(self, key: str, payload: bytes) -> Awaitable[object]:
            ack = await super().send(key, payload)
            if len(self.sent) == 1:
                # A change lands while the relay is between reading and removing: it must stay.
                await ledger.save_progress(
                    lease, Progress(rows_processed=7), extend_by=timedelta(seconds=30)
                )
            return ack

    publisher = ChangingMeanwhile()
    relay = relay_of(database, publisher)
    assert len(await relay.refresh_shards()) == OUTBOX_SHARDS  # alone: every shard
    assert (await outbox_backlog(database))[0] == 3  # two created, one claimed
    assert await relay.drain_once() == 2
    assert publisher.versions(claimed.id) == [1, 2]
    assert publisher.versions(other) == [1]
    late = await events_of(database, claimed.id)
    assert [event["data"]["version"] for event in late] == [3]  # the progress written meanwhile
    assert await relay.drain_once() == 1
    assert publisher.versions(claimed.id) == [1, 2, 3]
    assert await outbox_backlog(database) == (0, None)
    assert await relay.drain_once() == 0
    pending = await database[JOBS_COLLECTION].count_documents({"outbox_pending": True})
    assert pending == 0


async def test_superseded_progress_is_dropped_and_the_last_state_published(
    ledger: Ledger, database: Database, clean_shards: None
) -> None:
    await ledger.accept(new_job())
    claimed = await ledger.claim("w", POLICY)
    assert claimed is not None
    lease = Lease(claimed.id, "w", claimed.attempt)
    for rows in (10, 20, 30):
        await ledger.save_progress(
            lease, Progress(rows_processed=rows), extend_by=timedelta(seconds=30)
        )
    publisher = RecordingPublisher()
    relay = relay_of(database, publisher)
    await relay.refresh_shards()
    assert await relay.drain_once() == 1
    # created (1), claimed (2) are status changes; progress 3 and 4 are superseded by 5.
    assert publisher.versions(claimed.id) == [1, 2, 5]
    assert publisher.sent[-1]["data"]["progress"]["rows_processed"] == 30
    assert await outbox_backlog(database) == (0, None)


async def test_an_undeliverable_event_is_dead_lettered_and_holds_nothing_up(
    ledger: Ledger, database: Database, clean_shards: None
) -> None:
    poisoned, healthy = new_job("p1"), new_job("p2")
    await ledger.accept(poisoned)
    await ledger.accept(healthy)

    class RefuseOne(RecordingPublisher):
        async def send(self, key: str, payload: bytes) -> Awaitable[object]:
            if key == poisoned.id and json.loads(payload)["data"]["version"] == 1:
                raise UndeliverableEventError("MessageSizeTooLargeError: too large")
            return await super().send(key, payload)

    publisher = RefuseOne()
    relay = relay_of(database, publisher)
    await relay.refresh_shards()
    assert await relay.drain_once() == 2
    assert publisher.versions(healthy.id) == [1]
    assert publisher.versions(poisoned.id) == []
    [(excerpt, headers)] = publisher.dead
    assert headers["ferry-dlq-code"] == "EVENT_UNDELIVERABLE"
    assert headers["ferry-job-id"] == poisoned.id
    assert headers["ferry-event-version"] == "1"
    assert int(headers["ferry-original-size"]) >= len(excerpt)
    assert len(headers["ferry-original-sha256"]) == 64
    # The poisoned job's later events still leave, in order (claims take the oldest job).
    claimed = await ledger.claim("w", POLICY)
    assert claimed is not None
    assert claimed.id == poisoned.id
    await relay.drain_once()
    assert publisher.versions(poisoned.id) == [2]
    assert await outbox_backlog(database) == (0, None)


async def test_an_oversize_entry_is_dead_lettered_without_trying_the_broker(
    ledger: Ledger, database: Database, clean_shards: None
) -> None:
    job = new_job()
    await ledger.accept(job)
    await database[JOBS_COLLECTION].update_one(
        {"_id": job.id}, {"$set": {"outbox.0.oversize": 2_000_000}}
    )
    publisher = RecordingPublisher()
    relay = relay_of(database, publisher)
    await relay.refresh_shards()
    assert await relay.drain_once() == 1
    assert publisher.sent == []
    assert [headers["ferry-event-version"] for _, headers in publisher.dead] == ["1"]
    assert await outbox_backlog(database) == (0, None)


async def test_a_failed_send_keeps_that_event_and_the_jobs_later_ones(
    ledger: Ledger, database: Database, clean_shards: None
) -> None:
    await ledger.accept(new_job())
    claimed = await ledger.claim("w", POLICY)
    assert claimed is not None
    publisher = RecordingPublisher()
    publisher.outage = {1}
    relay = relay_of(database, publisher)
    await relay.refresh_shards()
    await relay.drain_once()
    kept = [event["data"]["version"] for event in await events_of(database, claimed.id)]
    assert kept == [1, 2]  # version 2 was acknowledged, but stays behind the failed 1
    publisher.outage = set()
    await relay.drain_once()
    assert publisher.versions(claimed.id) == [1, 2, 1, 2]  # repeats, dropped by version
    assert await outbox_backlog(database) == (0, None)


async def test_relays_share_the_shards_and_take_over_a_dead_ones(
    database: Database, clean_shards: None
) -> None:
    ttl = timedelta(seconds=1.5)
    first = ShardLeases(database, owner="first", ttl=ttl)
    second = ShardLeases(database, owner="second", ttl=ttl)
    assert len(await first.refresh()) == OUTBOX_SHARDS
    # The second finds everything held; the first gives back its extra share at its next
    # refresh, and the second takes it.
    assert await second.refresh() == frozenset()
    kept = await first.refresh()
    assert len(kept) == OUTBOX_SHARDS // 2
    taken = await second.refresh()
    assert len(taken) == OUTBOX_SHARDS // 2
    assert kept.isdisjoint(taken)
    # The first dies (stops renewing): its membership and leases lapse, the second takes all.
    deadline = asyncio.get_running_loop().time() + 10 * ttl.total_seconds()
    while len(taken) < OUTBOX_SHARDS:
        assert asyncio.get_running_loop().time() < deadline, f"took over {len(taken)} shards"
        await asyncio.sleep(0.2)
        taken = await second.refresh()
    await second.release()
    assert await database[SHARD_LEASES_COLLECTION].count_documents({"owner": "second"}) == 0


async def test_two_relays_publish_every_job_once_between_them(
    ledger: Ledger, database: Database, clean_shards: None
) -> None:
    jobs = [new_job(f"p{index % 3}") for index in range(40)]
    for job in jobs:
        await ledger.accept(job)
    one, two = RecordingPublisher(), RecordingPublisher()
    relays = [relay_of(database, one, "one"), relay_of(database, two, "two")]
    for _ in range(2):  # two refreshes each settle the fair split
        for relay in relays:
            await relay.refresh_shards(force=True)
    assert relays[0].held_shards.isdisjoint(relays[1].held_shards)
    assert len(relays[0].held_shards | relays[1].held_shards) == OUTBOX_SHARDS
    for relay in relays:
        await relay.drain_once()
    subjects = [event["subject"] for event in one.sent + two.sent]
    assert sorted(subjects) == sorted(job.id for job in jobs)
    assert one.sent
    assert two.sent


async def test_a_relay_killed_mid_batch_loses_nothing_on_a_real_broker(
    ledger: Ledger, database: Database, settings: Settings, clean_shards: None
) -> None:
    """Cancelled while its sends are in flight, the relay removed nothing it had not had
    acknowledged: the next relay sends the rest, and every job's events reach the topic, each
    job's in increasing version order once repeats are dropped by version."""
    topic = f"ferry.status.test.{ledger.__hash__()}"
    kafka = settings.kafka.model_copy(update={"status_topic": topic})
    broker = make_broker(kafka, client_id="relay-test")
    await broker.start()
    try:
        jobs = [new_job(f"p{index % 4}") for index in range(60)]
        for job in jobs:
            await ledger.accept(job)
        for _ in range(30):  # half the jobs get a second status change
            claimed = await ledger.claim("w", POLICY)
            assert claimed is not None
        publisher = KafkaStatusPublisher(broker, kafka)
        victim = relay_of(database, publisher, "victim")
        await victim.refresh_shards()
        drain = asyncio.create_task(victim.drain_once())
        await asyncio.sleep(0.05)
        drain.cancel()
        await asyncio.gather(drain, return_exceptions=True)
        await victim._shards.release()  # as its lease would lapse
        survivor = relay_of(database, publisher, "survivor")
        await survivor.refresh_shards()
        for _ in range(20):  # bounded: a relay that cannot drain fails the test
            if not await survivor.drain_once():
                break
        assert await database[JOBS_COLLECTION].count_documents({"outbox_pending": True}) == 0
        assert await outbox_backlog(database) == (0, None)
        expected = {job.id: [1] for job in jobs}
        for document in await database[JOBS_COLLECTION].find({"version": 2}).to_list():
            expected[document["_id"]] = [1, 2]

        def complete(records: list[Any]) -> bool:
            seen = {(r.key.decode(), json.loads(r.value)["data"]["version"]) for r in records}
            return len(seen) == sum(len(v) for v in expected.values())

        records = await read_topic(kafka, topic, until=complete, timeout=30)
        by_job = applied_versions(records)
        for job_id, versions in by_job.items():
            assert versions == expected[job_id], (job_id, versions)
        assert set(by_job) == set(expected)
    finally:
        await broker.stop()


def applied_versions(records: list[Any]) -> dict[str, list[int]]:
    """Per job, the versions a consumer applies: each one newer than the last it applied."""
    applied: dict[str, list[int]] = {}
    for record in records:
        versions = applied.setdefault(record.key.decode(), [])
        version = json.loads(record.value)["data"]["version"]
        if not versions or version > versions[-1]:
            versions.append(version)
    return applied


async def test_a_job_left_flagged_with_an_empty_outbox_is_cleared(
    ledger: Ledger, database: Database, clean_shards: None
) -> None:
    """A relay stopped between removing a job's entries and clearing its flag."""
    job = new_job()
    await ledger.accept(job)
    await database[JOBS_COLLECTION].update_one({"_id": job.id}, {"$set": {"outbox": []}})
    relay = relay_of(database, RecordingPublisher())
    await relay.refresh_shards()
    assert await relay.drain_once() == 1
    assert await relay.drain_once() == 0


async def test_the_outbox_is_stale_once_its_oldest_event_passes_the_lag(
    ledger: Ledger, database: Database
) -> None:
    assert await outbox_is_fresh(database, max_lag_seconds=1)
    job = new_job()
    await ledger.accept(job)
    assert await outbox_is_fresh(database, max_lag_seconds=60)
    an_hour_ago = utcnow() - timedelta(hours=1)
    await database[JOBS_COLLECTION].update_one(
        {"_id": job.id}, {"$set": {"outbox.0.created_at": an_hour_ago}}
    )
    assert not await outbox_is_fresh(database, max_lag_seconds=60)
