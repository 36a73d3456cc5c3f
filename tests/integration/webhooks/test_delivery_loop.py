"""The dispatcher's sending half against real HTTP receivers on loopback and the real database:
signed deliveries that verify with `standardwebhooks`, retries on the (compressed) schedule
with the same webhook-id, 410, 3xx, Retry-After, timeouts, disabling after a failing streak,
two signatures during a rotation, and two dispatchers that never send one delivery twice."""

from __future__ import annotations

import asyncio
import itertools
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest
from standardwebhooks import Webhook

from service.jobs.status import JobStatus
from service.jobs.view import job_view
from service.webhooks.deliveries import Delivery, DeliveryStatus
from service.webhooks.endpoints import Endpoint
from service.webhooks.recorder import DeliveryRecorder
from service.webhooks.signing import signed_headers
from tests.integration.webhooks.conftest import (
    RunningLoop,
    Stores,
    fast_settings,
    wait_for_delivery,
)
from tests.support.receiver import Receiver, Reply
from tests.support.status_events import a_job, encoded, status_event

pytestmark = pytest.mark.integration


def project() -> str:
    return f"proj_{uuid.uuid4().hex[:8]}"


async def endpoint_with_secret(
    stores: Stores, url: str, events: list[str] | None = None
) -> tuple[Endpoint, str]:
    endpoint = await stores.endpoints.add(project(), url, events or ["*"])
    secret = await stores.secrets.create_if_missing(endpoint.project_id)
    assert secret is not None
    return endpoint, secret


async def publish(running: RunningLoop, project_id: str, **job_fields: object) -> str:
    """Record a status event as the dispatcher's Kafka handler would; its event id."""
    event = status_event(a_job(project_id, **job_fields))  # type: ignore[arg-type]
    await running.recorder().record(encoded(event))
    return str(event["id"])


def settled(statuses: set[DeliveryStatus]):  # type: ignore[no-untyped-def]
    def condition(found: list[Delivery]) -> bool:
        return bool(found) and all(d.status in statuses for d in found)

    return condition


DONE = settled({DeliveryStatus.SUCCEEDED, DeliveryStatus.FAILED})


async def test_a_delivery_is_signed_and_verifies(stores: Stores, receiver: Receiver) -> None:
    endpoint, secret = await endpoint_with_secret(stores, receiver.url("/hook"))
    job = a_job(endpoint.project_id, version=4, notify_url=receiver.url("/notify"))
    event = status_event(job)
    async with RunningLoop(stores, fast_settings()) as running:
        await running.recorder().record(encoded(event))
        await receiver.wait_for(lambda got: len(got) == 2)
        await wait_for_delivery(stores, event["id"], DONE)

    for path in ("/hook", "/notify"):
        (request,) = receiver.received(path)
        payload = Webhook(secret).verify(request.body, request.headers)  # raises if forged
        assert payload == {
            "type": "export.completed",
            "timestamp": event["time"],
            "data": job_view(job),
        }
        assert request.headers["webhook-id"] == event["id"]
        sent_at = datetime.fromtimestamp(int(request.headers["webhook-timestamp"]), UTC)
        assert abs(sent_at - datetime.now(UTC)) < timedelta(minutes=1)
        assert request.headers["content-type"] == "application/json"
        assert request.headers["user-agent"].startswith("Ferry-Webhooks/")
    deliveries = await stores.deliveries.for_event(event["id"])
    for delivery in deliveries:
        assert delivery.status is DeliveryStatus.SUCCEEDED
        (attempt,) = delivery.attempt_log
        assert (attempt.status_code, attempt.response, attempt.error) == (200, "ok", None)
        assert 0 < attempt.latency_ms < 2000


async def test_a_failing_then_recovering_receiver_gets_the_retries_with_one_webhook_id(
    stores: Stores, receiver: Receiver
) -> None:
    endpoint, secret = await endpoint_with_secret(stores, receiver.url("/flaky"))
    receiver.script("/flaky", Reply(500, body=b"boom"), Reply(503), Reply(200))
    settings = fast_settings()  # pauses: 0, 20 ms, 1.2 s
    async with RunningLoop(stores, settings) as running:
        event_id = await publish(running, endpoint.project_id)
        await receiver.wait_for(lambda got: len(got) == 3, path="/flaky")
        (delivery,) = await wait_for_delivery(stores, event_id, DONE)

    requests = receiver.received("/flaky")
    assert {r.headers["webhook-id"] for r in requests} == {event_id}
    for request in requests:
        Webhook(secret).verify(request.body, request.headers)
    gaps = [later.at - earlier.at for earlier, later in itertools.pairwise(requests)]
    delays = settings.retry_delays
    assert gaps[0] >= delays[1] - 0.01
    assert gaps[1] >= delays[2] - 0.01
    assert gaps[1] < delays[2] + 5  # on schedule, not at some later poll
    assert delivery.status is DeliveryStatus.SUCCEEDED
    assert [a.status_code for a in delivery.attempt_log] == [500, 503, 200]
    assert delivery.attempt_log[0].response == "boom"
    refreshed = await stores.endpoints.get(endpoint.id)
    assert refreshed is not None
    assert refreshed.failing_since is None  # the success ended the streak


async def test_the_schedule_ends_after_eight_attempts(stores: Stores, receiver: Receiver) -> None:
    endpoint, _ = await endpoint_with_secret(stores, receiver.url("/down"))
    receiver.default = Reply(500)
    settings = fast_settings(retry_schedule_scale=0.00005)  # about 5 s in all
    async with RunningLoop(stores, settings) as running:
        event_id = await publish(running, endpoint.project_id)
        (delivery,) = await wait_for_delivery(stores, event_id, DONE)
    assert delivery.status is DeliveryStatus.FAILED
    assert delivery.attempts == 8
    assert len(receiver.received("/down")) == 8


async def test_410_disables_the_endpoint(stores: Stores, receiver: Receiver) -> None:
    endpoint, _ = await endpoint_with_secret(stores, receiver.url("/gone"))
    receiver.script("/gone", Reply(410))
    async with RunningLoop(stores, fast_settings()) as running:
        event_id = await publish(running, endpoint.project_id)
        (delivery,) = await wait_for_delivery(stores, event_id, DONE)
        # Nothing more is recorded for it, nor sent.
        assert await publish(running, endpoint.project_id) != event_id
        await _settle()
    assert delivery.status is DeliveryStatus.FAILED
    assert [a.status_code for a in delivery.attempt_log] == [410]
    disabled = await stores.endpoints.get(endpoint.id)
    assert disabled is not None
    assert (disabled.enabled, disabled.disabled_reason) == (False, "gone")
    assert len(receiver.received("/gone")) == 1


async def test_410_from_a_notify_url_stops_its_retries(stores: Stores, receiver: Receiver) -> None:
    owner = project()
    await stores.secrets.create_if_missing(owner)
    receiver.script("/notify-gone", Reply(410))
    async with RunningLoop(stores, fast_settings()) as running:
        event_id = await publish(running, owner, notify_url=receiver.url("/notify-gone"))
        (delivery,) = await wait_for_delivery(stores, event_id, DONE)
        await _settle()
    assert delivery.status is DeliveryStatus.FAILED
    assert len(receiver.received("/notify-gone")) == 1


async def test_an_internal_error_counts_as_a_failed_attempt(
    stores: Stores, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    endpoint, _ = await endpoint_with_secret(stores, receiver.url("/crashing"))
    calls = 0

    def sign_once_badly(*args: object, **kwargs: object) -> dict[str, str]:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("signing broke")
        return signed_headers(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr("service.webhooks.delivery_loop.signed_headers", sign_once_badly)
    async with RunningLoop(stores, fast_settings()) as running:
        event_id = await publish(running, endpoint.project_id)
        (delivery,) = await wait_for_delivery(stores, event_id, DONE)
    crashed, delivered = delivery.attempt_log
    assert crashed.error == "internal error: RuntimeError: signing broke"
    assert delivered.status_code == 200
    assert len(receiver.received("/crashing")) == 1


async def test_a_redirect_is_a_failure_and_is_not_followed(
    stores: Stores, receiver: Receiver
) -> None:
    endpoint, _ = await endpoint_with_secret(stores, receiver.url("/moved"))
    receiver.script("/moved", Reply(301, {"location": receiver.url("/elsewhere")}))
    async with RunningLoop(stores, fast_settings()) as running:
        event_id = await publish(running, endpoint.project_id)
        (delivery,) = await wait_for_delivery(
            stores, event_id, lambda found: bool(found) and found[0].attempts >= 2
        )
    assert [a.status_code for a in delivery.attempt_log][:2] == [301, 200]
    assert receiver.received("/elsewhere") == []


async def test_retry_after_is_honoured(stores: Stores, receiver: Receiver) -> None:
    endpoint, _ = await endpoint_with_secret(stores, receiver.url("/busy"))
    receiver.script("/busy", Reply(429, {"retry-after": "2"}), Reply(200))
    settings = fast_settings(retry_schedule_scale=0.0005)  # the schedule alone: 2.5 ms
    async with RunningLoop(stores, settings) as running:
        event_id = await publish(running, endpoint.project_id)
        await wait_for_delivery(stores, event_id, DONE)
    first, second = receiver.received("/busy")
    assert second.at - first.at >= 1.99


async def test_a_slow_receiver_times_out(stores: Stores, receiver: Receiver) -> None:
    endpoint, _ = await endpoint_with_secret(stores, receiver.url("/slow"))
    receiver.script("/slow", Reply(200, delay=2.5), Reply(200))
    async with RunningLoop(stores, fast_settings(timeout_seconds=1, lease_seconds=3.5)) as running:
        event_id = await publish(running, endpoint.project_id)
        (delivery,) = await wait_for_delivery(stores, event_id, DONE)
    timed_out, succeeded = delivery.attempt_log
    assert timed_out.status_code is None
    assert timed_out.error == "no complete answer within 1 s"
    assert 900 < timed_out.latency_ms < 2000
    assert succeeded.status_code == 200


async def test_an_endpoint_failing_for_too_long_is_disabled(
    stores: Stores, receiver: Receiver
) -> None:
    endpoint, _ = await endpoint_with_secret(stores, receiver.url("/broken"))
    receiver.default = Reply(500)
    settings = fast_settings(disable_after_failing_seconds=0.5)  # attempts at 0, 20 ms, 1.2 s
    async with RunningLoop(stores, settings) as running:
        event_id = await publish(running, endpoint.project_id)
        (delivery,) = await wait_for_delivery(stores, event_id, DONE)
    assert delivery.status is DeliveryStatus.FAILED
    assert delivery.attempts == 3  # the third came after the streak passed 0.5 s
    disabled = await stores.endpoints.get(endpoint.id)
    assert disabled is not None
    assert (disabled.enabled, disabled.disabled_reason) == (False, "failing")


async def test_during_a_rotation_both_secrets_sign(stores: Stores, receiver: Receiver) -> None:
    endpoint, old = await endpoint_with_secret(stores, receiver.url("/rotating"))
    new = await stores.secrets.rotate(endpoint.project_id, grace=timedelta(hours=1))
    async with RunningLoop(stores, fast_settings()) as running:
        event_id = await publish(running, endpoint.project_id)
        await wait_for_delivery(stores, event_id, DONE)
    (request,) = receiver.received("/rotating")
    assert len(request.headers["webhook-signature"].split(" ")) == 2
    Webhook(old).verify(request.body, request.headers)
    Webhook(new).verify(request.body, request.headers)


async def test_nothing_is_sent_unsigned(stores: Stores, receiver: Receiver) -> None:
    owner = project()  # no endpoint, so no secret: only the request's notify_url
    async with RunningLoop(stores, fast_settings()) as running:
        event_id = await publish(running, owner, notify_url=receiver.url("/unsigned"))
        (waiting,) = await wait_for_delivery(
            stores, event_id, lambda found: bool(found) and found[0].attempts >= 1
        )
        assert receiver.received("/unsigned") == []
        assert "no webhook signing secret" in (waiting.attempt_log[0].error or "")
        secret = await stores.secrets.rotate(owner, grace=timedelta(0))
        (request,) = await receiver.wait_for(lambda got: len(got) == 1, path="/unsigned")
    Webhook(secret).verify(request.body, request.headers)


async def test_a_disabled_endpoints_pending_delivery_fails_unsent(
    stores: Stores, receiver: Receiver
) -> None:
    endpoint, _ = await endpoint_with_secret(stores, receiver.url("/paused"))
    event = status_event(a_job(endpoint.project_id))
    recorder = DeliveryRecorder(stores.endpoints, stores.deliveries)
    assert await recorder.record(encoded(event)) == 1  # recorded while enabled ...
    await stores.endpoints.disable(endpoint.id)  # ... disabled before it is sent
    async with RunningLoop(stores, fast_settings()):
        (delivery,) = await wait_for_delivery(stores, event["id"], DONE)
    assert delivery.status is DeliveryStatus.FAILED
    assert delivery.last_error == "the endpoint is disabled (manual)"
    assert delivery.attempt_log == []
    assert receiver.received("/paused") == []


async def test_stopping_lets_the_attempt_in_flight_finish_and_hands_back_the_rest(
    stores: Stores, receiver: Receiver
) -> None:
    endpoint, _ = await endpoint_with_secret(stores, receiver.url("/stopping"))
    receiver.default = Reply(200, delay=1.0)
    settings = fast_settings(concurrency=1)
    async with RunningLoop(stores, settings) as running:
        ids = [await publish(running, endpoint.project_id, version=v) for v in (1, 2, 3)]
        await receiver.wait_for(lambda got: len(got) == 1, path="/stopping")
        # One attempt is in flight; another delivery waits in the queue, claimed.
    deliveries = [d for event_id in ids for d in await stores.deliveries.for_event(event_id)]
    by_status = Counter(d.status for d in deliveries)
    assert by_status == {DeliveryStatus.SUCCEEDED: 1, DeliveryStatus.PENDING: 2}
    assert all(d.claim is None for d in deliveries)  # nothing is left held
    async with RunningLoop(stores, settings):  # and the next dispatcher sends the rest at once
        for event_id in ids:
            await wait_for_delivery(stores, event_id, DONE)
    assert len(receiver.received("/stopping")) == 3


async def test_two_dispatchers_send_each_delivery_once(stores: Stores, receiver: Receiver) -> None:
    endpoint, _ = await endpoint_with_secret(stores, receiver.url("/many"))
    owner = endpoint.project_id
    settings = fast_settings()
    async with (
        RunningLoop(stores, settings, owner="a") as first,
        RunningLoop(stores, settings, owner="b"),
    ):
        ids = [
            await publish(first, owner, status=JobStatus.COMPLETED, version=v) for v in range(1, 41)
        ]
        await receiver.wait_for(lambda got: len(got) >= 40, path="/many")
        for event_id in ids:
            await wait_for_delivery(stores, event_id, DONE)
        await _settle()
    sent = Counter(r.headers["webhook-id"] for r in receiver.received("/many"))
    assert sorted(sent) == sorted(ids)
    assert set(sent.values()) == {1}


async def _settle() -> None:
    """Long enough for anything wrongly scheduled (at most a poll away) to happen."""
    await asyncio.sleep(0.5)
