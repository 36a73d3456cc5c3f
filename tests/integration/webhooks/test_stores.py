"""Endpoints, secrets and deliveries in the real database: validation, who is subscribed,
rotation with a grace period, one delivery per (status change, destination), claims that never
overlap and that lapse when their holder dies."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Mapping, Sequence
from datetime import timedelta

import pytest

from service.clock import utcnow
from service.errors import InvalidRequestError
from service.jobs.status import JobStatus
from service.webhooks.deliveries import (
    NOTIFY,
    Attempt,
    Claim,
    Delivery,
    DeliveryStatus,
    Destination,
)
from service.webhooks.endpoints import Endpoint, EndpointNotFoundError
from service.webhooks.payload import webhook_message
from service.webhooks.recorder import DeliveryRecorder
from service.webhooks.secret_cipher import SecretCipher, new_encryption_key
from service.webhooks.secret_store import SECRETS_COLLECTION, ProjectSecrets
from tests.integration.webhooks.conftest import CIPHER, Stores
from tests.support.status_events import a_job, encoded, progress_event, status_event

pytestmark = pytest.mark.integration

URL = "https://hooks.example.com/ferry"


class Handoff:
    """Stands in for the delivery loop: offers `room` deliveries at once, keeps what it is
    given and counts its wake-ups."""

    def __init__(self, room: int = 0) -> None:
        self._room = room
        self.taken: list[Delivery] = []
        self.woken = 0

    def room(self) -> Claim | None:
        return Claim("me", timedelta(seconds=30), self._room) if self._room else None

    async def take(self, claimed: Sequence[Delivery], endpoints: Mapping[str, Endpoint]) -> None:
        assert all(d.endpoint_id in endpoints for d in claimed if d.endpoint_id)
        self.taken += claimed

    def wake(self) -> None:
        self.woken += 1


def project() -> str:
    return f"proj_{uuid.uuid4().hex[:8]}"


# Endpoints ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("project_id", "url", "events", "code"),
    [
        ("../etc", URL, ["*"], "INVALID_REQUEST"),
        ("p", "ftp://hooks.example.com/", ["*"], "INVALID_URL"),
        ("p", "https://u:p@hooks.example.com/", ["*"], "INVALID_URL"),
        ("p", URL, ["export.done"], "INVALID_EVENT_TYPES"),
        ("p", URL, [], "INVALID_EVENT_TYPES"),
    ],
)
async def test_bad_endpoints_are_refused_with_a_code(
    stores: Stores, project_id: str, url: str, events: list[str], code: str
) -> None:
    with pytest.raises(InvalidRequestError) as refused:
        await stores.endpoints.add(project_id, url, events)
    assert refused.value.code == code
    assert await stores.endpoints.find() == []


async def test_who_is_subscribed(stores: Stores) -> None:
    mine, theirs = project(), project()
    everything = await stores.endpoints.add(mine, URL, ["*"])
    exports = await stores.endpoints.add(mine, URL, ["export.*"])
    completed = await stores.endpoints.add(mine, URL, ["export.completed", "export.failed"])
    await stores.endpoints.add(mine, URL, ["export.failed"])
    disabled = await stores.endpoints.add(mine, URL, ["*"])
    await stores.endpoints.disable(disabled.id)
    await stores.endpoints.add(theirs, URL, ["*"])

    found = await stores.endpoints.subscribed(mine, "export.completed", at=utcnow())
    assert {e.id for e in found} == {everything.id, exports.id, completed.id}
    # An endpoint receives only what happened after it was added.
    before = everything.created_at - timedelta(seconds=1)
    assert await stores.endpoints.subscribed(mine, "export.completed", at=before) == []


async def test_disable_enable_remove(stores: Stores) -> None:
    endpoint = await stores.endpoints.add(project(), URL, ["*"], description="CRM")
    await stores.endpoints.note_failure(endpoint.id, utcnow())
    disabled = await stores.endpoints.disable(endpoint.id)
    assert (disabled.enabled, disabled.disabled_reason) == (False, "manual")
    enabled = await stores.endpoints.enable(endpoint.id)
    assert (enabled.enabled, enabled.disabled_reason, enabled.failing_since) == (True, None, None)
    assert await stores.endpoints.disable_if_enabled(endpoint.id, "gone")
    assert not await stores.endpoints.disable_if_enabled(endpoint.id, "failing")  # only once
    await stores.endpoints.remove(endpoint.id)
    assert await stores.endpoints.get(endpoint.id) is None
    with pytest.raises(EndpointNotFoundError):
        await stores.endpoints.remove(endpoint.id)
    with pytest.raises(EndpointNotFoundError):
        await stores.endpoints.enable(endpoint.id)


async def test_a_failing_streak_starts_at_the_first_failure_and_ends_with_a_success(
    stores: Stores,
) -> None:
    endpoint = await stores.endpoints.add(project(), URL, ["*"])
    first = utcnow()
    noted = await stores.endpoints.note_failure(endpoint.id, first)
    assert noted is not None
    assert noted.failing_since == first
    later = await stores.endpoints.note_failure(endpoint.id, first + timedelta(hours=1))
    assert later is not None
    assert later.failing_since == first
    await stores.endpoints.note_success(endpoint.id)
    cleared = await stores.endpoints.get(endpoint.id)
    assert cleared is not None
    assert cleared.failing_since is None


# Secrets ------------------------------------------------------------------------------------


async def test_a_project_gets_one_secret_and_rotation_keeps_the_old_one_for_the_grace(
    stores: Stores,
) -> None:
    owner = project()
    first = await stores.secrets.create_if_missing(owner)
    assert first is not None
    assert await stores.secrets.create_if_missing(owner) is None  # shown once, made once
    second = await stores.secrets.rotate(owner, grace=timedelta(seconds=1))
    assert (await stores.secrets.signing_secrets([owner]))[owner] == [second, first]
    await asyncio.sleep(1.2)
    assert (await stores.secrets.signing_secrets([owner]))[owner] == [second]
    third = await stores.secrets.rotate(owner, grace=timedelta(0))
    assert (await stores.secrets.signing_secrets([owner]))[owner] == [third]


async def test_rotating_a_project_without_a_secret_makes_its_first(stores: Stores) -> None:
    owner = project()
    secret = await stores.secrets.rotate(owner, grace=timedelta(hours=1))
    assert (await stores.secrets.signing_secrets([owner, "nobody"])) == {owner: [secret]}


async def test_concurrent_rotations_lose_no_secret(stores: Stores) -> None:
    owner = project()
    await stores.secrets.create_if_missing(owner)
    made = await asyncio.gather(
        *(stores.secrets.rotate(owner, grace=timedelta(hours=1)) for _ in range(3))
    )
    signing = (await stores.secrets.signing_secrets([owner]))[owner]
    assert set(made) <= set(signing)
    assert len(signing) == 4


async def test_secrets_are_stored_encrypted_and_bound_to_their_project(stores: Stores) -> None:
    owner, other = project(), project()
    secret = await stores.secrets.create_if_missing(owner)
    assert secret is not None
    await stores.secrets.create_if_missing(other)
    raw = stores.database[SECRETS_COLLECTION]
    document = await raw.find_one({"_id": owner})
    assert document is not None
    assert secret not in str(document)
    (entry,) = document["secrets"]
    assert "value" not in entry
    assert CIPHER.decrypt(owner, entry["ciphertext"]) == secret
    # A token copied into another project's record does not sign for that project.
    await raw.update_one({"_id": other}, {"$set": {"secrets.0.ciphertext": entry["ciphertext"]}})
    assert await stores.secrets.signing_secrets([owner, other]) == {owner: [secret], other: []}


async def test_plaintext_secrets_of_earlier_versions_still_sign_and_get_encrypted(
    stores: Stores,
) -> None:
    rotated, swept = project(), project()
    raw = stores.database[SECRETS_COLLECTION]
    for owner in (rotated, swept):
        entry = {"value": f"whsec_old-{owner}", "created_at": utcnow(), "expires_at": None}
        await raw.insert_one({"_id": owner, "secrets": [entry], "revision": 1})
    assert await stores.secrets.signing_secrets([rotated]) == {rotated: [f"whsec_old-{rotated}"]}

    # Rotating encrypts the old secret as it keeps it for the grace period.
    new = await stores.secrets.rotate(rotated, grace=timedelta(hours=1))
    assert await stores.secrets.signing_secrets([rotated]) == {
        rotated: [new, f"whsec_old-{rotated}"]
    }
    # ... and `reencrypt-secrets` encrypts every other.
    done = await stores.secrets.reencrypt_all()
    assert done.unreadable == []
    assert done.plaintext_encrypted >= 1
    for owner in (rotated, swept):
        document = await raw.find_one({"_id": owner})
        assert document is not None
        assert all("value" not in entry for entry in document["secrets"])
        assert "whsec_old" not in str(document)
    assert await stores.secrets.signing_secrets([swept]) == {swept: [f"whsec_old-{swept}"]}


async def test_the_encryption_key_rotates_without_losing_a_secret(stores: Stores) -> None:
    owner = project()
    old_key, new_key = new_encryption_key(), new_encryption_key()
    before = ProjectSecrets(stores.database, cipher=SecretCipher([old_key]))
    secret = await before.create_if_missing(owner)
    # The new key first, the old one after: both read, the new one writes.
    during = ProjectSecrets(stores.database, cipher=SecretCipher([new_key, old_key]))
    assert await during.signing_secrets([owner]) == {owner: [secret]}
    done = await during.reencrypt_all()
    assert done.unreadable == []
    assert done.secrets >= 1
    after = ProjectSecrets(stores.database, cipher=SecretCipher([new_key]))
    assert await after.signing_secrets([owner]) == {owner: [secret]}
    # The old key alone no longer reads it; reencrypting with it names the project, changes
    # nothing, and other projects are not held up.
    stale = ProjectSecrets(stores.database, cipher=SecretCipher([old_key]))
    assert await stale.signing_secrets([owner]) == {owner: []}
    assert owner in (await stale.reencrypt_all()).unreadable
    assert await after.signing_secrets([owner]) == {owner: [secret]}


# Deliveries ---------------------------------------------------------------------------------


async def test_one_delivery_per_status_change_and_destination(stores: Stores) -> None:
    job = a_job(project(), version=3)
    message = webhook_message(encoded(status_event(job, event_id="evt-a")))
    assert message is not None
    destinations = [Destination(URL, "ep-1"), Destination("https://notify.example/")]
    assert await stores.deliveries.record(message, destinations) == 2
    assert await stores.deliveries.record(message, destinations) == 0  # Kafka redelivered it
    # The same change under another event id (a republished outbox entry) is the same delivery.
    again = webhook_message(encoded(status_event(job, event_id="evt-b")))
    assert again is not None
    assert await stores.deliveries.record(again, destinations) == 0
    recorded = await stores.deliveries.for_event("evt-a")
    assert sorted(d.destination for d in recorded) == ["ep-1", NOTIFY]
    assert await stores.deliveries.for_event("evt-b") == []
    # The next version is a new status change.
    later = webhook_message(encoded(status_event(job.model_copy(update={"version": 4}))))
    assert later is not None
    assert await stores.deliveries.record(later, destinations[:1]) == 1


async def test_the_recorder_records_subscribed_endpoints_and_the_notify_url(
    stores: Stores,
) -> None:
    owner = project()
    wanted = await stores.endpoints.add(owner, URL, ["export.completed"])
    await stores.endpoints.add(owner, URL, ["export.failed"])
    handoff = Handoff()
    recorder = DeliveryRecorder(stores.endpoints, stores.deliveries, handoff=handoff)
    job = a_job(owner, notify_url="https://crm.example/notify")
    raw = encoded(status_event(job))
    assert await recorder.record(raw) == 2
    assert await recorder.record(raw) == 0
    assert await recorder.record(encoded(progress_event(job))) == 0
    assert handoff.woken == 1
    recorded = await stores.deliveries.recent(job_id=job.id)
    assert sorted((d.destination, d.url) for d in recorded) == sorted(
        [(wanted.id, URL), (NOTIFY, "https://crm.example/notify")]
    )
    assert all(d.status is DeliveryStatus.PENDING for d in recorded)


async def test_a_batch_is_recorded_at_once_and_an_unreadable_event_does_not_hold_it_back(
    stores: Stores,
) -> None:
    first, second = project(), project()
    await stores.endpoints.add(first, URL, ["*"])
    await stores.endpoints.add(second, URL, ["export.failed"])
    handoff = Handoff()
    recorder = DeliveryRecorder(stores.endpoints, stores.deliveries, handoff=handoff)
    wanted = [status_event(a_job(first)), status_event(a_job(first, status=JobStatus.FAILED))]
    batch = [
        encoded(wanted[0]),
        b"{broken",
        encoded(status_event(a_job(second))),  # completed: not what the second wants
        encoded(progress_event(a_job(first))),
        encoded(wanted[1]),
    ]
    assert await recorder.record_batch(batch) == 2
    assert handoff.woken == 1  # one wake-up for the whole batch
    for event in wanted:
        assert len(await stores.deliveries.for_event(event["id"])) == 1
    assert await recorder.record_batch(batch) == 0  # a redelivered batch adds nothing


async def test_what_the_loop_has_room_for_is_recorded_claimed_and_handed_over(
    stores: Stores,
) -> None:
    owner = project()
    await stores.endpoints.add(owner, URL, ["*"])
    await stores.endpoints.add(owner, URL, ["*"])
    handoff = Handoff(room=1)
    recorder = DeliveryRecorder(stores.endpoints, stores.deliveries, handoff=handoff)
    event = status_event(a_job(owner, notify_url="https://crm.example/notify"))
    assert await recorder.record(encoded(event)) == 3
    (taken,) = handoff.taken
    recorded = {d.id: d for d in await stores.deliveries.for_event(event["id"])}
    assert recorded[taken.id].status is DeliveryStatus.SENDING
    assert (recorded[taken.id].claimed_by, recorded[taken.id].claim) == ("me", taken.claim)
    others = [d for d in recorded.values() if d.id != taken.id]
    assert [d.status for d in others] == [DeliveryStatus.PENDING] * 2
    assert handoff.woken == 1  # the two pending ones are for whoever claims them
    # Nobody else can claim the handed-over one while its lease runs.
    claimed = await stores.deliveries.claim("other", limit=10, lease=timedelta(seconds=30))
    assert {d.id for d in claimed} == {d.id for d in others}
    # A redelivered event hands over nothing: it is not new.
    assert await recorder.record(encoded(event)) == 0
    assert len(handoff.taken) == 1


async def _record_many(stores: Stores, count: int) -> list[str]:
    owner = project()
    ids = []
    for _ in range(count):
        message = webhook_message(encoded(status_event(a_job(owner))))
        assert message is not None
        await stores.deliveries.record(message, [Destination(URL, "ep")])
        ids.append(f"{message.job_id}:{message.version}:ep")
    return ids


async def test_concurrent_claims_never_share_a_delivery(stores: Stores) -> None:
    ids = await _record_many(stores, 30)
    lease = timedelta(seconds=30)

    async def dispatcher(name: str) -> list[str]:
        taken: list[str] = []
        while batch := await stores.deliveries.claim(name, limit=7, lease=lease):
            taken += [delivery.id for delivery in batch]
        return taken

    batches = await asyncio.gather(*(dispatcher(f"dispatcher-{n}") for n in range(4)))
    claimed = [delivery_id for batch in batches for delivery_id in batch]
    assert len(claimed) == len(set(claimed))  # nobody holds what another holds
    assert set(claimed) == set(ids)  # and together they took everything due
    assert await stores.deliveries.claim("late", limit=50, lease=lease) == []


async def test_a_lapsed_claim_is_taken_over_and_the_stale_holder_writes_nothing(
    stores: Stores,
) -> None:
    await _record_many(stores, 1)
    # Long enough that the second claim surely comes within it, on any machine.
    (stale,) = await stores.deliveries.claim("dies", limit=1, lease=timedelta(seconds=1.5))
    assert stale.status is DeliveryStatus.SENDING
    assert await stores.deliveries.claim("other", limit=1, lease=timedelta(seconds=30)) == []
    await asyncio.sleep(1.6)
    (fresh,) = await stores.deliveries.claim("other", limit=1, lease=timedelta(seconds=30))
    assert fresh.id == stale.id
    attempt = Attempt(at=utcnow(), status_code=200, latency_ms=5.0, response="ok")
    assert not await stores.deliveries.finish(
        stale, attempt=attempt, status=DeliveryStatus.SUCCEEDED
    )
    assert await stores.deliveries.finish(fresh, attempt=attempt, status=DeliveryStatus.SUCCEEDED)
    (done,) = await stores.deliveries.for_event(fresh.event_id)
    assert (done.status, done.attempts, done.claim) == (DeliveryStatus.SUCCEEDED, 1, None)
    assert [a.status_code for a in done.attempt_log] == [200]


async def test_redelivery_resets_the_schedule_and_keeps_the_event_id(stores: Stores) -> None:
    await _record_many(stores, 1)
    (claimed,) = await stores.deliveries.claim("d", limit=1, lease=timedelta(seconds=30))
    attempt = Attempt(at=utcnow(), status_code=500, latency_ms=5.0)
    await stores.deliveries.finish(claimed, attempt=attempt, status=DeliveryStatus.FAILED)
    (again,) = await stores.deliveries.redeliver(claimed.event_id)
    assert again.id == claimed.id
    (reclaimed,) = await stores.deliveries.claim("d", limit=1, lease=timedelta(seconds=30))
    assert (reclaimed.event_id, reclaimed.cycle_attempts, reclaimed.attempts) == (
        claimed.event_id,
        0,
        1,
    )
    assert await stores.deliveries.redeliver("no-such-event") == []


async def test_recent_deliveries_newest_first(stores: Stores) -> None:
    job = a_job(project())
    for version, status in enumerate((JobStatus.PENDING, JobStatus.PROCESSING), start=1):
        changed = job.model_copy(update={"version": version, "status": status})
        message = webhook_message(encoded(status_event(changed)))
        assert message is not None
        await stores.deliveries.record(message, [Destination(URL, "ep-r")])
        await asyncio.sleep(0.01)
    listed = await stores.deliveries.recent(endpoint_id="ep-r")
    assert [d.event_type for d in listed] == ["export.processing", "export.pending"]
    with pytest.raises(ValueError, match="exactly one"):
        await stores.deliveries.recent()
