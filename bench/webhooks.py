"""Webhook latency and throughput on the embedded stack (a benchmark, not a test).

    .venv/bin/python bench/webhooks.py [--jobs 200] [--burst 1000]

Jobs: JOBS small exports requested over Kafka, run by two `ferry worker` processes, announced
by one `ferry webhooks` dispatcher to an endpoint per project (subscribed to export.completed),
and followed by one `ferry api` (status change -> visible in its read model, from its own
`ferry_status_consumer_lag_seconds` histogram: bucket bounds, target p99 under 250 ms),
received by an HTTP server on loopback. Latency is from the status change (the payload's
`timestamp`, when the ledger committed `completed`) to the moment the receiver has the request:
outbox relay, Kafka, the dispatcher's consumer, the delivery record, the claim, signing and the
POST. Target: p99 under 1 s.

Burst: BURST status events published at once straight to the status topic (as the outbox relay
would) for one endpoint: how many deliveries per second one dispatcher sustains.

Every delivery is checked with `standardwebhooks` and counted once per webhook-id.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path

import httpx
from aiokafka import AIOKafkaProducer
from standardwebhooks import Webhook

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from service.api.keys import ApiKeys  # noqa: E402
from service.clock import as_utc, rfc3339, utcnow  # noqa: E402
from service.config import DEV_SECRET_ENCRYPTION_KEY, Settings, settings_from_env  # noqa: E402
from service.database import Database, connect  # noqa: E402
from service.demo import demo_messages, load_messages  # noqa: E402
from service.devstack import DevStack, Ports, free_port  # noqa: E402
from service.events.submit import export_request  # noqa: E402
from service.provisioning import provision  # noqa: E402
from service.webhooks.deliveries import DELIVERIES_COLLECTION  # noqa: E402
from service.webhooks.endpoints import EndpointStore  # noqa: E402
from service.webhooks.secret_cipher import SecretCipher  # noqa: E402
from service.webhooks.secret_store import ProjectSecrets  # noqa: E402
from tests.support.ferry import FerryProcess, await_log_line, ferry_command  # noqa: E402
from tests.support.infra import isolated  # noqa: E402
from tests.support.receiver import Received, Receiver  # noqa: E402
from tests.support.status_events import a_job, encoded, status_event  # noqa: E402

# The key the dispatcher encrypts secrets with in development, as the bench runs it.
DEV_CIPHER = SecretCipher([DEV_SECRET_ENCRYPTION_KEY])
PROJECTS = 20  # a project runs 2 jobs at once (FERRY_WORKER__MAX_RUNNING_PER_PROJECT)
ROWS_PER_PROJECT = 50


async def endpoints_for(
    database: Database, receiver: Receiver, projects: list[str]
) -> dict[str, str]:
    """An export.completed endpoint per project; each project's secret."""
    store = EndpointStore(database)
    await store.ensure_indexes()
    secrets = {}
    for project in projects:
        await store.add(project, receiver.url(f"/{project}"), ["export.completed"])
        secret = await ProjectSecrets(database, cipher=DEV_CIPHER).create_if_missing(project)
        if secret is None:
            raise SystemExit(f"project {project} already had a secret")
        secrets[project] = secret
    return secrets


def latencies(received: list[Received]) -> list[float]:
    """Seconds from each status change to its arrival."""
    out = []
    for request in received:
        changed = datetime.fromisoformat(json.loads(request.body)["timestamp"])
        out.append(request.at - changed.timestamp())
    return out


def verifier(secrets: dict[str, str]) -> Callable[[Received], None]:
    """Checks each delivery's signature as it arrives (its timestamp must be fresh)."""

    def verify(request: Received) -> None:
        Webhook(secrets[request.path.strip("/")]).verify(request.body, request.headers)

    return verify


def check(receiver: Receiver, received: list[Received]) -> None:
    ids = [request.headers["webhook-id"] for request in received]
    if len(ids) != len(set(ids)):
        raise SystemExit("a webhook was delivered twice")
    if receiver.failures:
        raise SystemExit(f"{len(receiver.failures)} signatures failed: {receiver.failures[0]}")


async def stages(database: Database, received: list[Received]) -> None:
    """Medians of where the time goes: the status change reaching the dispatcher as a recorded
    delivery (outbox relay, Kafka, consumer), the record being claimed and sent, the POST."""
    by_id = {request.headers["webhook-id"]: request for request in received}
    query = {"event_id": {"$in": list(by_id)}}
    # A receiver has the request a moment before the dispatcher has written its outcome.
    for _ in range(100):
        pending = await database[DELIVERIES_COLLECTION].count_documents(
            {**query, "status": {"$ne": "succeeded"}}
        )
        if not pending:
            break
        await asyncio.sleep(0.1)
    recorded, claimed, posted = [], [], []
    retried = 0
    async for document in database[DELIVERIES_COLLECTION].find(query):
        retried += document["attempts"] > 1
        request = by_id[document["event_id"]]
        changed = datetime.fromisoformat(json.loads(request.body)["timestamp"]).timestamp()
        created = as_utc(document["created_at"]).timestamp()
        sent = as_utc(document["attempt_log"][-1]["at"]).timestamp()
        recorded.append(created - changed)
        claimed.append(sent - created)
        posted.append(request.at - sent)
    for name, values in (("recorded", recorded), ("sent", claimed), ("received", posted)):
        print(f"  median {name:9} +{statistics.median(values) * 1000:6.0f} ms")
    print(f"  needed a retry  {retried}")


def report(name: str, received: list[Received], started: float, *, target: bool) -> None:
    seconds = sorted(latencies(received))
    quantiles = statistics.quantiles(seconds, n=100, method="inclusive")
    span = max(request.at for request in received) - started
    print(f"{name}: {len(received)} deliveries")
    print(f"  latency p50   {quantiles[49] * 1000:8.0f} ms")
    print(f"  latency p95   {quantiles[94] * 1000:8.0f} ms")
    goal = "   (target < 1000 ms)" if target else ""
    print(f"  latency p99   {quantiles[98] * 1000:8.0f} ms{goal}")
    print(f"  latency max   {seconds[-1] * 1000:8.0f} ms")
    print(f"  throughput    {len(received) / span:8.1f} deliveries/s over {span:.1f} s")


_API_LAG = "ferry_status_consumer_lag_seconds_bucket"


async def api_following(settings: Settings, database: Database, url: str) -> None:
    """Wait until the API's consumer has joined its group and applies events (a group join
    takes seconds on the embedded broker): a warm-up event, polled for through the API."""
    project = f"warm{uuid.uuid4().hex[:6]}"
    key = await ApiKeys(database).create(project)
    event = status_event(a_job(project))
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka.bootstrap_servers, acks="all")
    await producer.start()
    try:
        await producer.send_and_wait(
            settings.kafka.status_topic, encoded(event), key=event["subject"].encode()
        )
    finally:
        await producer.stop()
    deadline = time.monotonic() + 120
    async with httpx.AsyncClient(base_url=url, timeout=10) as http:
        while time.monotonic() < deadline:
            try:
                answer = await http.get(
                    f"/v1/exports/{event['subject']}", headers={"Authorization": f"Bearer {key}"}
                )
            except httpx.TransportError:  # the API is still starting
                answer = None
            if answer is not None and answer.status_code == httpx.codes.OK:
                return
            await asyncio.sleep(0.2)
    raise SystemExit("the API never showed the warm-up event")


async def api_lag_buckets(url: str) -> dict[float, float]:
    """The API's histogram of status change -> applied to its read model (cumulative)."""
    async with httpx.AsyncClient(timeout=10) as http:
        text = (await http.get(f"{url}/metrics")).text
    buckets: dict[float, float] = {}
    for line in text.splitlines():
        if line.startswith(_API_LAG) and 'consumer="api"' in line:
            bound = line.split('le="')[1].split('"')[0]
            buckets[float("inf") if bound == "+Inf" else float(bound)] = float(line.split()[-1])
    return buckets


async def report_api_lag(url: str, before: dict[float, float]) -> None:
    """Status change -> visible in the API, from the API's own histogram: the smallest bucket
    bound holding 50 % and 99 % of the events applied during the phase."""
    after = await api_lag_buckets(url)
    counts = {bound: after[bound] - before.get(bound, 0.0) for bound in sorted(after)}
    total = counts.get(float("inf"), 0.0)
    if not total:
        print("  API: no status events applied (is the API running?)")
        return
    for share in (0.5, 0.99):
        bound = next(b for b, count in counts.items() if count >= share * total)
        goal = "   (target < 250 ms)" if share == 0.99 else ""
        print(f"  API visible p{share * 100:.0f}  <= {bound * 1000:6.0f} ms{goal}")
    print(f"  API applied   {total:8.0f} status events")


async def jobs_phase(
    settings: Settings, database: Database, receiver: Receiver, secrets: dict[str, str], jobs: int
) -> None:
    projects = [f"bench{n:02d}" for n in range(PROJECTS)]
    end = utcnow()
    for project in projects:
        rows = demo_messages(project, ROWS_PER_PROJECT, end=end, span=timedelta(hours=1))
        await load_messages(database, rows)
    secrets.update(await endpoints_for(database, receiver, projects))
    filters = {"start_time": rfc3339(end - timedelta(hours=1)), "end_time": rfc3339(end)}
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka.bootstrap_servers, acks="all")
    await producer.start()
    started = time.time()
    try:
        for n in range(jobs):
            project = projects[n % PROJECTS]
            request = export_request(project_id=project, filters=filters, source="/bench")
            await producer.send_and_wait(
                settings.kafka.requests_topic, json.dumps(request).encode(), key=project.encode()
            )
    finally:
        await producer.stop()
    # Two workers complete ~2-4 small jobs a second on the embedded stack.
    received = await receiver.wait_for(lambda got: len(got) >= jobs, timeout=max(600, jobs))
    check(receiver, received)
    report(f"{jobs} jobs completing", received, started, target=True)
    await stages(database, received)


async def burst_phase(
    settings: Settings, database: Database, receiver: Receiver, secrets: dict[str, str], burst: int
) -> None:
    project = f"burst{uuid.uuid4().hex[:6]}"
    secrets.update(await endpoints_for(database, receiver, [project]))
    events = [status_event(a_job(project)) for _ in range(burst)]
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka.bootstrap_servers, acks="all")
    await producer.start()
    started = time.time()
    try:
        sent = [
            await producer.send(
                settings.kafka.status_topic, encoded(event), key=event["subject"].encode()
            )
            for event in events
        ]
        await asyncio.gather(*sent)
    finally:
        await producer.stop()
    received = await receiver.wait_for(lambda got: len(got) >= burst, timeout=600)
    check(receiver, received)
    # All queued at once: latency here is mostly waiting in line; throughput is the figure.
    report(f"burst of {burst} status events", received, started, target=False)
    await stages(database, received)


async def main(jobs: int, burst: int) -> None:
    with (
        tempfile.TemporaryDirectory() as scratch,
        DevStack(Path(scratch), Ports.free()) as stack,
    ):
        # Default timings and log level, as in production; only loopback is allowed.
        env = {
            **isolated(stack.env(), fast_timings=False),
            "FERRY_OUTBOUND__ALLOW_LOOPBACK": "true",
        }
        settings = settings_from_env(env)
        await provision(settings)
        client = connect(settings.mongo, app_name="bench")
        database = client[settings.mongo.database]
        processes = [
            FerryProcess(f"worker-{n}", ferry_command("worker"), env, Path(scratch))
            for n in range(2)
        ]
        dispatcher = FerryProcess("webhooks", ferry_command("webhooks"), env, Path(scratch))
        api_port = free_port()
        api = FerryProcess(
            "api",
            ferry_command("api"),
            {**env, "FERRY_API__PORT": str(api_port)},
            Path(scratch),
            http_port=api_port,
        )
        try:
            for process in [*processes, dispatcher, api]:
                process.start()
            await_log_line(dispatcher, "webhooks.started", timeout=120)
            await api_following(settings, database, api.url)
            secrets: dict[str, str] = {}
            with Receiver(check=verifier(secrets)) as receiver:
                before = await api_lag_buckets(api.url)
                await jobs_phase(settings, database, receiver, secrets, jobs)
                await report_api_lag(api.url, before)
            with Receiver(check=verifier(secrets)) as receiver:
                await burst_phase(settings, database, receiver, secrets, burst)
        finally:
            for process in [api, dispatcher, *processes]:
                process.stop()
            await client.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--jobs", type=int, default=200, help="exports completing")
    parser.add_argument("--burst", type=int, default=1000, help="status events at once")
    arguments = parser.parse_args()
    asyncio.run(main(arguments.jobs, arguments.burst))
