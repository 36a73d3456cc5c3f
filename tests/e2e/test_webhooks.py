"""Webhooks through the whole stack: `ferry webhooks add`, an export request with a notify_url,
workers running it, two `ferry webhooks` dispatchers, and a real receiver on loopback that
verifies every signature with `standardwebhooks`. Then the CLI's management commands."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections import Counter
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from standardwebhooks import Webhook

from service.clock import rfc3339, utcnow
from service.config import Settings
from service.database import Database
from service.demo import demo_messages, load_messages
from service.devstack import free_port
from service.events.submit import export_request, import_request
from service.imports.files import upload_key
from service.storage import ObjectStore
from service.webhooks.deliveries import Delivery, DeliveryStatus, DeliveryStore
from tests.e2e.conftest import api_key, unsigned, wait_for_job
from tests.support.ferry import FerryProcess, RunningFerry, await_log_line, ferry_command, run_ferry
from tests.support.kafka import publish
from tests.support.metrics import scrape, total
from tests.support.receiver import Received, Receiver

pytestmark = pytest.mark.e2e

BAD_RANGE = {"start_time": "2025-01-02T00:00:00Z", "end_time": "2025-01-01T00:00:00Z"}


FINAL = {DeliveryStatus.SUCCEEDED, DeliveryStatus.FAILED}


@pytest.fixture(scope="module")
def webhook_env(e2e_env: dict[str, str]) -> dict[str, str]:
    return {
        **e2e_env,
        "FERRY_OUTBOUND__ALLOW_LOOPBACK": "true",
        "FERRY_WEBHOOKS__RETRY_SCHEDULE_SCALE": "0.004",
        "FERRY_WEBHOOKS__POLL_SECONDS": "0.2",
        "FERRY_WEBHOOKS__TIMEOUT_SECONDS": "3",
        "FERRY_WEBHOOKS__LEASE_SECONDS": "10",
    }


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    with Receiver() as running:
        yield running


@pytest.fixture(scope="module")
def dispatchers(
    ferry: RunningFerry, webhook_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[list[FerryProcess]]:
    """Two replicas in one consumer group, sharing the deliveries collection, each with its
    health port as in a pod."""
    workdir = tmp_path_factory.mktemp("webhooks")
    replicas = []
    for n in range(2):
        port = free_port()
        env = {**webhook_env, "FERRY_OBSERVABILITY__HEALTH_PORT": str(port)}
        replicas.append(
            FerryProcess(f"webhooks-{n}", ferry_command("webhooks"), env, workdir, http_port=port)
        )
    for replica in replicas:
        replica.start()
    try:
        for replica in replicas:
            await_log_line(replica, "webhooks.started")
            assert httpx.get(f"{replica.url}/readyz", timeout=5).json()["status"] == "ready"
        yield replicas
    finally:
        for replica in replicas:
            assert replica.stop() == 0, replica.log()[-3000:]


def cli(env: dict[str, str], cwd: Path, *args: str) -> str:
    result = run_ferry(env, cwd, "webhooks", *args)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def add_endpoint(env: dict[str, str], cwd: Path, project: str, url: str, events: str) -> Any:
    return json.loads(
        cli(env, cwd, "add", "--project", project, "--url", url, "--events", events, "--json")
    )


async def settled(database: Database, event_id: str, timeout: float = 30.0) -> list[Delivery]:
    """The event's deliveries once none is waiting or being sent any more."""
    store = DeliveryStore(database, retention=timedelta(days=1))
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        found = await store.for_event(event_id)
        if found and all(d.status in FINAL for d in found):
            return found
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"the deliveries of {event_id} never settled: {found}")
        await asyncio.sleep(0.05)


def types_by_version(requests: list[Received]) -> list[str]:
    payloads = sorted((json.loads(r.body) for r in requests), key=lambda p: p["data"]["version"])
    return [payload["type"] for payload in payloads]


async def test_an_export_is_announced_signed_to_its_endpoints_and_its_notify_url(
    dispatchers: list[FerryProcess],
    receiver: Receiver,
    webhook_env: dict[str, str],
    e2e_settings: Settings,
    e2e_db: Database,
    http: httpx.AsyncClient,
    tmp_path: Path,
) -> None:
    project = f"wh{uuid.uuid4().hex[:6]}"
    everything = add_endpoint(webhook_env, tmp_path, project, receiver.url(f"/all-{project}"), "*")
    completed = add_endpoint(
        webhook_env, tmp_path, project, receiver.url(f"/done-{project}"), "export.completed"
    )
    secret = everything["secret"]
    assert secret.startswith("whsec_")
    assert completed["secret"] is None  # one secret per project, shown once

    end = utcnow()
    await load_messages(e2e_db, demo_messages(project, 200, end=end, span=timedelta(hours=1)))
    job_id = str(uuid.uuid4())
    filters = {"start_time": rfc3339(end - timedelta(hours=1)), "end_time": rfc3339(end)}
    notify = receiver.url(f"/notify-{project}")
    await publish(
        e2e_settings.kafka,
        [export_request(project_id=project, job_id=job_id, filters=filters, notify_url=notify)],
        key=project.encode(),
    )
    headers = await api_key(e2e_db, project)
    job = await wait_for_job(http, job_id, headers)
    assert job["status"] == "completed"
    assert job["notify_url"] == notify

    def announced(wanted: int):  # type: ignore[no-untyped-def]
        return lambda got: len(got) >= wanted

    every = await receiver.wait_for(announced(3), path=f"/all-{project}")
    notified = await receiver.wait_for(announced(3), path=f"/notify-{project}")
    (done,) = await receiver.wait_for(announced(1), path=f"/done-{project}")
    expected = ["export.pending", "export.processing", "export.completed"]
    assert types_by_version(every) == expected
    assert types_by_version(notified) == expected

    verifier = Webhook(secret)
    for request in [*every, *notified, done]:
        payload = verifier.verify(request.body, request.headers)
        assert payload["data"]["id"] == job_id
    final = verifier.verify(done.body, done.headers)
    assert final["type"] == "export.completed"
    assert final["data"] == unsigned(job)  # exactly the job as /v1 shows it, but for its links
    completions = [
        r for r in (done, *every, *notified) if json.loads(r.body)["type"] == final["type"]
    ]
    assert len(completions) == 3
    assert {r.headers["webhook-id"] for r in completions} == {done.headers["webhook-id"]}

    # Every delivery above was an attempt that succeeded, counted by whichever dispatcher sent
    # it. A dispatcher counts once the receiver has answered, so the last count may trail the
    # receipt by a moment: read until it is there, or the deadline passes.
    wanted = len(every) + len(notified) + 1
    sent = 0.0
    deadline = asyncio.get_running_loop().time() + 15
    while sent < wanted and asyncio.get_running_loop().time() < deadline:
        await asyncio.sleep(0.2)
        sent = 0.0
        for replica in dispatchers:
            samples = await scrape(http, replica.url)
            sent += total(samples, "ferry_webhook_deliveries_total", outcome="succeeded")
    assert sent >= wanted


async def test_an_import_is_announced_to_its_notify_url_and_import_endpoints(
    dispatchers: list[FerryProcess],
    receiver: Receiver,
    webhook_env: dict[str, str],
    e2e_settings: Settings,
    e2e_db: Database,
    http: httpx.AsyncClient,
    tmp_path: Path,
) -> None:
    project = f"wh{uuid.uuid4().hex[:6]}"
    secret = add_endpoint(
        webhook_env, tmp_path, project, receiver.url(f"/imports-{project}"), "import.*"
    )["secret"]
    add_endpoint(webhook_env, tmp_path, project, receiver.url(f"/exports-{project}"), "export.*")
    store = ObjectStore(e2e_settings.s3)
    job_id = str(uuid.uuid4())
    key = upload_key(project, f"{job_id}.csv")
    await store.put(
        key, b"EMAIL,FIRSTNAME\nann@example.com,Ann\nnot-an-email,Bob\n", content_type="text/csv"
    )
    notify = receiver.url(f"/notify-{project}")
    request = import_request(
        project_id=project,
        job_id=job_id,
        source={"bucket": store.bucket, "key": key},
        notify_url=notify,
    )
    await publish(e2e_settings.kafka, [request], key=project.encode())
    job = await wait_for_job(http, job_id, await api_key(e2e_db, project), kind="imports")
    assert (job["status"], job["notify_url"]) == ("completed", notify)

    def three(got: list[Received]) -> bool:
        return len(got) >= 3

    expected = ["import.pending", "import.processing", "import.completed"]
    for path in (f"/imports-{project}", f"/notify-{project}"):
        requests = await receiver.wait_for(three, path=path)
        assert types_by_version(requests) == expected
        last = max(requests, key=lambda r: json.loads(r.body)["data"]["version"])
        final = Webhook(secret).verify(last.body, last.headers)
        assert final["data"]["counts"]["created"] == 1
        assert final["data"]["counts"]["rejected"] == 1
    # Each event's deliveries are recorded together, one per destination: those recorded for
    # the import endpoint show the dispatcher handled the events, and made none for exports.
    exports_url = receiver.url(f"/exports-{project}")
    for announced in receiver.received(f"/imports-{project}"):
        deliveries = await settled(e2e_db, announced.headers["webhook-id"])
        assert {d.url for d in deliveries} == {receiver.url(f"/imports-{project}"), notify}
        assert exports_url not in {d.url for d in deliveries}
    assert receiver.received(f"/exports-{project}") == []


async def test_an_invalid_notify_url_fails_the_job_readably(
    dispatchers: list[FerryProcess],
    receiver: Receiver,
    webhook_env: dict[str, str],
    e2e_settings: Settings,
    e2e_db: Database,
    http: httpx.AsyncClient,
    tmp_path: Path,
) -> None:
    project = f"wh{uuid.uuid4().hex[:6]}"
    secret = add_endpoint(
        webhook_env, tmp_path, project, receiver.url(f"/f-{project}"), "export.failed"
    )["secret"]
    job_id = str(uuid.uuid4())
    request = export_request(project_id=project, job_id=job_id, filters=BAD_RANGE)
    request["data"]["notify_url"] = "gopher://crm.example.com/hook"
    await publish(e2e_settings.kafka, [request], key=project.encode())
    job = await wait_for_job(http, job_id, await api_key(e2e_db, project))
    assert (job["status"], job["error_code"]) == ("failed", "INVALID_NOTIFY_URL")
    assert "data.notify_url" in job["error_message"]
    (request_received,) = await receiver.wait_for(lambda got: len(got) == 1, path=f"/f-{project}")
    payload = Webhook(secret).verify(request_received.body, request_received.headers)
    assert (payload["type"], payload["data"]["error_code"]) == (
        "export.failed",
        "INVALID_NOTIFY_URL",
    )


async def fail_a_job(settings: Settings, project: str) -> None:
    """An export request that fails at intake (its range is backwards): a quick status change."""
    request = export_request(project_id=project, filters=BAD_RANGE)
    await publish(settings.kafka, [request], key=project.encode())


async def test_the_cli_shows_deliveries_redelivers_and_rotates_the_secret(
    dispatchers: list[FerryProcess],
    receiver: Receiver,
    webhook_env: dict[str, str],
    e2e_settings: Settings,
    tmp_path: Path,
) -> None:
    project = f"wh{uuid.uuid4().hex[:6]}"
    path = f"/cli-{project}"
    added = add_endpoint(webhook_env, tmp_path, project, receiver.url(path), "export.failed")
    endpoint_id, old = added["endpoint"]["id"], added["secret"]
    await fail_a_job(e2e_settings, project)
    (first,) = await receiver.wait_for(lambda got: len(got) == 1, path=path)
    event_id = first.headers["webhook-id"]

    shown = json.loads(
        cli(webhook_env, tmp_path, "deliveries", "--endpoint", endpoint_id, "--json")
    )
    (delivery,) = shown
    assert (delivery["event_id"], delivery["status"], delivery["attempts"]) == (
        event_id,
        "succeeded",
        1,
    )
    assert (delivery["attempt_log"][0]["status_code"], delivery["attempt_log"][0]["response"]) == (
        200,
        "ok",
    )
    table = cli(webhook_env, tmp_path, "deliveries", "--endpoint", endpoint_id)
    assert "export.failed" in table
    assert "  200  " in table

    rotated = cli(webhook_env, tmp_path, "rotate-secret", "--project", project).splitlines()[-1]
    assert rotated.startswith("whsec_")
    assert rotated != old
    said = cli(webhook_env, tmp_path, "redeliver", event_id, "--endpoint", endpoint_id)
    assert "1 destination" in said
    _, again = await receiver.wait_for(lambda got: len(got) == 2, path=path)
    assert again.headers["webhook-id"] == event_id  # the same message, sent again
    assert len(again.headers["webhook-signature"].split(" ")) == 2
    Webhook(old).verify(again.body, again.headers)
    Webhook(rotated).verify(again.body, again.headers)

    nothing = run_ferry(webhook_env, tmp_path, "webhooks", "redeliver", "no-such-event")
    assert (nothing.returncode, "NOT_FOUND" in nothing.stderr) == (2, True)
    neither = run_ferry(webhook_env, tmp_path, "webhooks", "deliveries")
    assert (neither.returncode, "--endpoint or --job" in neither.stderr) == (2, True)


async def test_a_disabled_endpoint_receives_nothing_until_enabled(
    dispatchers: list[FerryProcess],
    receiver: Receiver,
    webhook_env: dict[str, str],
    e2e_settings: Settings,
    e2e_db: Database,
    tmp_path: Path,
) -> None:
    project = f"wh{uuid.uuid4().hex[:6]}"
    path, sentinel = f"/off-{project}", f"/sentinel-{project}"
    endpoint_id = add_endpoint(webhook_env, tmp_path, project, receiver.url(path), "*")["endpoint"][
        "id"
    ]
    add_endpoint(webhook_env, tmp_path, project, receiver.url(sentinel), "*")

    cli(webhook_env, tmp_path, "disable", endpoint_id)
    listed = json.loads(cli(webhook_env, tmp_path, "list", "--project", project, "--json"))
    mine = next(endpoint for endpoint in listed if endpoint["id"] == endpoint_id)
    assert (mine["enabled"], mine["disabled_reason"]) == (False, "manual")
    await fail_a_job(e2e_settings, project)
    # An event's deliveries are recorded in one step, one per destination: once the
    # sentinel's is, the event was handled, and it made none for the disabled endpoint.
    [got] = await receiver.wait_for(lambda got: len(got) == 1, path=sentinel)
    deliveries = await settled(e2e_db, got.headers["webhook-id"])
    assert [d.url for d in deliveries] == [receiver.url(sentinel)]
    assert receiver.received(path) == []

    cli(webhook_env, tmp_path, "enable", endpoint_id)
    await fail_a_job(e2e_settings, project)
    await receiver.wait_for(lambda got: len(got) == 1, path=path)

    cli(webhook_env, tmp_path, "remove", endpoint_id)
    remaining = json.loads(cli(webhook_env, tmp_path, "list", "--project", project, "--json"))
    assert endpoint_id not in {endpoint["id"] for endpoint in remaining}
    gone = run_ferry(webhook_env, tmp_path, "webhooks", "disable", endpoint_id)
    assert (gone.returncode, "NOT_FOUND" in gone.stderr) == (2, True)


def test_add_refuses_what_the_dispatcher_would_refuse(
    webhook_env: dict[str, str], e2e_env: dict[str, str], tmp_path: Path
) -> None:
    def add(env: dict[str, str], url: str, events: str = "*") -> tuple[int, str]:
        result = run_ferry(
            env, tmp_path, "webhooks", "add", "--project", "p", "--url", url, "--events", events
        )
        return result.returncode, result.stderr

    code, said = add(e2e_env, "http://127.0.0.1:9/x")  # loopback, without the setting
    assert code == 2
    assert "FERRY_OUTBOUND__ALLOW_LOOPBACK" in said
    code, said = add(webhook_env, "http://169.254.169.254/latest/meta-data/")
    assert (code, "link-local" in said) == (2, True)
    code, said = add(webhook_env, "ftp://hooks.example.com/")
    assert (code, "INVALID_URL" in said) == (2, True)
    code, said = add(webhook_env, "http://127.0.0.1:9/x", "export.done")
    assert (code, "INVALID_EVENT_TYPES" in said) == (2, True)


async def test_two_dispatchers_deliver_each_status_change_once(
    dispatchers: list[FerryProcess],
    receiver: Receiver,
    webhook_env: dict[str, str],
    e2e_settings: Settings,
    e2e_db: Database,
    tmp_path: Path,
) -> None:
    project = f"wh{uuid.uuid4().hex[:6]}"
    path = f"/once-{project}"
    add_endpoint(webhook_env, tmp_path, project, receiver.url(path), "*")
    requests: list[bytes | dict[str, Any]] = [
        export_request(project_id=project, filters=BAD_RANGE) for _ in range(20)
    ]
    # Status events are keyed by job id: they spread over the partitions of both dispatchers.
    await publish(e2e_settings.kafka, requests, key=project.encode())
    await receiver.wait_for(lambda got: len(got) >= 20, path=path, timeout=60)
    # Every delivery finished and unclaimed: no dispatcher has one left to send again.
    for event_id in {r.headers["webhook-id"] for r in receiver.received(path)}:
        [delivery] = await settled(e2e_db, event_id)
        assert (delivery.status, delivery.claim) == (DeliveryStatus.SUCCEEDED, None)
    received = receiver.received(path)
    sent = Counter(r.headers["webhook-id"] for r in received)
    assert len(sent) == 20
    assert set(sent.values()) == {1}
    assert len({json.loads(r.body)["data"]["id"] for r in received}) == 20
