"""Outbox relay throughput on the embedded stack (a benchmark, not a test).

    .venv/bin/python bench/relay.py [--events 20000] [--per-job 4]

A backlog of EVENTS status events (PER_JOB status changes for each of EVENTS / PER_JOB jobs,
each event the full job view as the ledger writes it) is seeded into the ledger, then drained
to Kafka by relay processes (`ferry worker`'s relay, alone: `--drain` below), timed from the
moment they are told to start to the moment the outbox is empty:

- anchor: the same payloads sent by one bare producer, all futures at once (the broker's rate);
- floor: the backlog read and cleared in the same rounds with no broker (the database's rate,
  which on the embedded database is the limit);
- one relay process, then two relay processes sharing the shards.

Printed: events per second of each, the relay against the anchor and the floor, and two
relays against one.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaProducer

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from service.config import Settings, settings_from_env  # noqa: E402
from service.database import Database, connect  # noqa: E402
from service.events.kafka import KafkaStatusPublisher, make_broker  # noqa: E402
from service.events.outbox import outbox_backlog  # noqa: E402
from service.events.relay import OutboxRelay  # noqa: E402
from service.events.relay_shards import (  # noqa: E402
    RELAYS_COLLECTION,
    SHARD_LEASES_COLLECTION,
    ShardLeases,
)
from service.jobs.ledger import Ledger  # noqa: E402
from service.jobs.model import JOBS_COLLECTION  # noqa: E402
from service.jobs.outbox import OUTBOX_SHARDS, encode_event, outbox_entry, shard_of  # noqa: E402
from service.jobs.status import JobStatus  # noqa: E402
from service.provisioning import provision  # noqa: E402
from tests.support.infra import isolated  # noqa: E402
from tests.support.status_events import a_job, status_event  # noqa: E402

STATUSES = (JobStatus.PENDING, JobStatus.PROCESSING, JobStatus.COMPLETED, JobStatus.EXPIRED)


def backlog_documents(events: int, per_job: int) -> list[dict[str, Any]]:
    documents = []
    for n in range(events // per_job):
        job = a_job(f"bench{n % 20:02d}")
        entries = [
            outbox_entry(
                key=job.id,
                event=status_event(
                    job.model_copy(update={"version": v + 1, "status": STATUSES[v % 4]})
                ),
            )
            for v in range(per_job)
        ]
        documents.append(
            {
                "_id": job.id,
                "outbox": entries,
                "outbox_pending": True,
                "outbox_shard": shard_of(job.id),
                "request_source": job.request_source,
                "request_id": job.request_id,
                "updated_at": job.updated_at,
                "revision": 1,
            }
        )
    return documents


async def seed(database: Database, documents: list[dict[str, Any]]) -> None:
    await database[JOBS_COLLECTION].delete_many({})
    for collection in (SHARD_LEASES_COLLECTION, RELAYS_COLLECTION):
        await database[collection].delete_many({})
    for start in range(0, len(documents), 1000):
        await database[JOBS_COLLECTION].insert_many(documents[start : start + 1000])


async def anchor(settings: Settings, documents: list[dict[str, Any]]) -> float:
    payloads = [(e["key"], encode_event(e["event"])) for d in documents for e in d["outbox"]]
    producer = AIOKafkaProducer(
        bootstrap_servers=settings.kafka.bootstrap_servers, acks="all", linger_ms=5
    )
    await producer.start()
    try:
        started = time.perf_counter()
        futures = [
            await producer.send(settings.kafka.status_topic, payload, key=key.encode())
            for key, payload in payloads
        ]
        await asyncio.gather(*futures)
        return len(payloads) / (time.perf_counter() - started)
    finally:
        await producer.stop()


async def database_floor(database: Database, events: int) -> float:
    """What the relay cannot go below: read the backlog in rounds of 500 jobs and clear each
    round with one write, with no broker at all."""
    jobs = database[JOBS_COLLECTION]
    started = time.perf_counter()
    while True:
        found = (
            await jobs.find({"outbox_pending": True}, {"outbox": 1})
            .sort("updated_at", 1)
            .limit(500)
            .to_list()
        )
        if not found:
            return events / (time.perf_counter() - started)
        await jobs.update_many(
            {"_id": {"$in": [document["_id"] for document in found]}},
            {"$set": {"outbox": []}, "$unset": {"outbox_pending": ""}},
        )


async def drain(owner: str, relays: int) -> None:
    """A relay process: take its share of the shards, say so, wait for the go, drain."""
    settings = settings_from_env(dict(os.environ))
    client = connect(settings.mongo, app_name=f"bench-{owner}")
    database = client[settings.mongo.database]
    broker = make_broker(settings.kafka, client_id=owner)
    await broker.start()
    leases = ShardLeases(database, owner=owner, ttl=timedelta(seconds=30))
    relay = OutboxRelay(
        database, KafkaStatusPublisher(broker, settings.kafka), leases, watch_changes=False
    )
    share = OUTBOX_SHARDS // relays
    while len(await relay.refresh_shards(force=True)) != share:  # noqa: ASYNC110 - polls the database
        await asyncio.sleep(0.2)
    print("ready", flush=True)
    sys.stdin.readline()
    while await relay.drain_once():
        pass
    print("done", flush=True)
    await broker.stop()
    await client.close()


async def relay_rate(env: dict[str, str], database: Database, events: int, relays: int) -> float:
    children = [
        subprocess.Popen(  # noqa: ASYNC220 - started before anything is timed
            [sys.executable, __file__, "--drain", f"relay-{n}", "--relays", str(relays)],
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for n in range(relays)
    ]
    for child in children:
        # The relay's own log lines go to stdout too: wait for the word.
        lines = iter(child.stdout.readline, "") if child.stdout else iter(())
        if not any(line.strip() == "ready" for line in lines):
            raise SystemExit("a relay process did not start")
    started = time.perf_counter()
    for child in children:
        if child.stdin is not None:
            child.stdin.write("go\n")
            child.stdin.flush()
    # Each relay stops when its shards are empty; polling the backlog here would load the
    # database the relays are measured against.
    for child in children:
        lines = iter(child.stdout.readline, "") if child.stdout else iter(())
        any(line.strip() == "done" for line in lines)
    elapsed = time.perf_counter() - started
    for child in children:
        child.wait(timeout=60)
    left, _ = await outbox_backlog(database)
    if left:
        raise SystemExit(f"{left} events were left unpublished")
    return events / elapsed


async def main(events: int, per_job: int) -> None:
    from service.devstack import DevStack, Ports  # noqa: PLC0415 - not needed by relay children

    with tempfile.TemporaryDirectory() as scratch, DevStack(Path(scratch), Ports.free()) as stack:
        env = {**os.environ, **isolated(stack.env(), fast_timings=False)}
        settings = settings_from_env(env)
        await provision(settings)
        client = connect(settings.mongo, app_name="bench")
        database = client[settings.mongo.database]
        await Ledger(database, event_source="/bench").ensure_indexes()  # the relay's index too
        try:
            documents = backlog_documents(events, per_job)
            total = len(documents) * per_job
            size = sum(len(encode_event(e["event"])) for e in documents[0]["outbox"]) / per_job
            print(f"backlog: {total} events of ~{size:.0f} B, {len(documents)} jobs")
            bare = await anchor(settings, documents)
            print(f"anchor (bare producer)  {bare:9.0f} events/s")
            await seed(database, documents)
            floor = await database_floor(database, total)
            print(f"floor (database alone)  {floor:9.0f} events/s")
            rates = {}
            for relays in (1, 2):
                await seed(database, backlog_documents(events, per_job))
                rates[relays] = await relay_rate(env, database, total, relays)
                print(f"{relays} relay process(es)   {rates[relays]:9.0f} events/s")
            print(f"one relay / anchor      {rates[1] / bare:9.2f}")
            print(f"one relay / floor       {rates[1] / floor:9.2f}")
            print(f"two relays / one        {rates[2] / rates[1]:9.2f}")
        finally:
            await client.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--events", type=int, default=20_000, help="status events to drain")
    parser.add_argument("--per-job", type=int, default=4, help="status changes per job")
    parser.add_argument("--drain", help=argparse.SUPPRESS)
    parser.add_argument("--relays", type=int, default=1, help=argparse.SUPPRESS)
    arguments = parser.parse_args()
    if arguments.drain:
        asyncio.run(drain(arguments.drain, arguments.relays))
    else:
        asyncio.run(main(arguments.events, arguments.per_job))
