"""The outbox relay against a real MongoDB: each job's events go out in order, exactly what was
published is removed, and an event written while the relay works is kept for the next round."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest

from service.database import Database
from service.events.outbox import OutboxRelay, outbox_backlog
from service.jobs.ledger import ClaimPolicy, Lease, Ledger
from service.jobs.model import Progress
from service.leadership import Leadership
from tests.integration.conftest import events_of, new_job

pytestmark = pytest.mark.integration

POLICY = ClaimPolicy(lease=timedelta(seconds=30), max_lost_leases=3, max_running_per_project=10)


async def test_events_go_out_in_order_and_late_ones_wait_for_the_next_round(
    ledger: Ledger, database: Database
) -> None:
    published: list[tuple[str, dict[str, object]]] = []
    jobs = [new_job(), new_job()]
    for job in jobs:
        await ledger.accept(job)
    claimed = await ledger.claim("w", POLICY)
    assert claimed is not None
    lease = Lease(claimed.id, "w", claimed.attempt)

    async def publish(key: str, payload: bytes) -> None:
        published.append((key, json.loads(payload)))
        if len(published) == 1:
            # A change lands while the relay is between reading and removing: it must survive.
            await ledger.save_progress(
                lease, Progress(rows_processed=7), extend_by=timedelta(seconds=30)
            )

    relay = OutboxRelay(
        database, publish, Leadership(database, name="relay", owner="t", ttl=timedelta(seconds=5))
    )
    assert (await outbox_backlog(database))[0] == 3  # two created, one claimed
    assert await relay.drain_once() == 2
    versions = {
        key: [event["data"]["version"] for other, event in published if other == key]  # type: ignore[index]
        for key, _ in published
    }
    assert versions == {claimed.id: [1, 2], next(j.id for j in jobs if j.id != claimed.id): [1]}
    late = await events_of(database, claimed.id)
    assert [event["data"]["version"] for event in late] == [3]  # the progress written meanwhile
    assert (await outbox_backlog(database))[0] == 1
    assert await relay.drain_once() == 1
    assert await events_of(database, claimed.id) == []
    assert await outbox_backlog(database) == (0, None)
    assert await relay.drain_once() == 0
