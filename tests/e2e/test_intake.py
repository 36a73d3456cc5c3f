"""What arrives on the request topic: duplicates make one job, poison goes to the dead-letter
topic with its reason and stalls nothing, invalid requests become readable failed jobs."""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaProducer

from service.config import Settings
from service.contracts.envelope import EXPORT_REQUESTED
from service.database import Database
from service.events.submit import export_request
from tests.e2e.conftest import api_key, wait_for_job
from tests.support.ferry import RunningFerry
from tests.support.kafka import publish, read_topic

pytestmark = pytest.mark.e2e

FILTERS = {"start_time": "2025-01-01T00:00:00Z", "end_time": "2025-01-02T00:00:00Z"}


def request(project: str, **options: Any) -> dict[str, Any]:
    return export_request(project_id=project, filters=FILTERS, **options)


async def test_repeated_requests_make_one_job_each(
    ferry: RunningFerry, e2e_settings: Settings, e2e_db: Database, http: httpx.AsyncClient
) -> None:
    project = f"dup{uuid.uuid4().hex[:6]}"
    same_event = request(project, job_id=str(uuid.uuid4()))
    same_key = [request(project, idempotency_key="nightly-2025-01-01") for _ in range(3)]
    fixed_id = str(uuid.uuid4())
    same_job_id = [request(project, job_id=fixed_id) for _ in range(2)]
    sentinel = request(project, job_id=str(uuid.uuid4()))
    # One key, one partition: when the sentinel is done, everything before it was consumed.
    await publish(
        e2e_settings.kafka,
        [same_event, same_event, same_event, *same_key, *same_job_id, sentinel],
        key=project.encode(),
    )
    headers = await api_key(e2e_db, project)
    await wait_for_job(http, sentinel["data"]["job_id"], headers)
    jobs = await e2e_db["jobs"].find({"project_id": project}).to_list()
    assert len(jobs) == 4
    by_key = [job for job in jobs if job.get("idempotency_key") == "nightly-2025-01-01"]
    assert len(by_key) == 1
    assert by_key[0]["request_id"] == same_key[0]["id"]  # the first one won
    listed = (await http.get("/v1/exports", headers=headers, params={"limit": 50})).json()
    assert len(listed["data"]) == 4


async def test_a_key_reused_with_other_parameters_fails_naming_the_first_job(
    ferry: RunningFerry, e2e_settings: Settings, e2e_db: Database, http: httpx.AsyncClient
) -> None:
    project = f"idr{uuid.uuid4().hex[:6]}"
    first, reused, repeat, sentinel = (str(uuid.uuid4()) for _ in range(4))
    await publish(
        e2e_settings.kafka,
        [
            request(project, job_id=first, idempotency_key="k1"),
            request(project, job_id=reused, idempotency_key="k1", export_format="jsonl"),
            request(project, job_id=repeat, idempotency_key="k1"),  # the same parameters
            request(project, job_id=sentinel),
        ],
        key=project.encode(),
    )
    headers = await api_key(e2e_db, project)
    failed = await wait_for_job(http, reused, headers)
    assert (failed["status"], failed["error_code"]) == ("failed", "IDEMPOTENCY_KEY_REUSED")
    assert first in failed["error_message"]
    assert failed["idempotency_key"] is None  # the key stays the first job's
    assert (await wait_for_job(http, first, headers))["status"] == "completed"
    # One partition: once the sentinel shows, the repeat before it was handled; it made no job.
    await wait_for_job(http, sentinel, headers)
    jobs = await e2e_db["jobs"].find({"project_id": project}, {"_id": 1}).to_list()
    assert {job["_id"] for job in jobs} == {first, reused, sentinel}


async def test_poison_is_dead_lettered_with_its_reason_and_the_next_request_runs(
    ferry: RunningFerry, e2e_settings: Settings, e2e_db: Database, http: httpx.AsyncClient
) -> None:
    project = f"poi{uuid.uuid4().hex[:6]}"
    marker = uuid.uuid4().hex
    poison: dict[str, bytes] = {
        "INVALID_JSON": b'{"specversion": "1.0", "id": "' + marker.encode() + b'", broken',
        "UNKNOWN_EVENT_TYPE": json.dumps(
            {**request(project), "type": "ferry.export.requested.v0", "source": marker}
        ).encode(),
        "MISSING_PROJECT_ID": json.dumps(
            {**request(project), "data": {"filters": FILTERS}, "source": marker}
        ).encode(),
        "EVENT_TOO_LARGE": json.dumps(
            {**request(project), "source": marker, "padding": "x" * 70_000}
        ).encode(),
        "INVALID_CLOUDEVENT": json.dumps({"marker": marker, "data": {}}).encode(),
    }
    good = request(project, job_id=str(uuid.uuid4()))
    await publish(e2e_settings.kafka, [*poison.values(), good], key=project.encode())

    headers = await api_key(e2e_db, project)
    assert (await wait_for_job(http, good["data"]["job_id"], headers))["status"] == "completed"

    def ours(records: list[Any]) -> list[Any]:
        return [r for r in records if marker.encode() in r.value]

    records = await read_topic(
        e2e_settings.kafka,
        e2e_settings.kafka.dead_letter_topic,
        until=lambda records: len(ours(records)) >= len(poison),
    )
    dead = {dict(r.headers)["ferry-dlq-code"].decode(): r for r in ours(records)}
    assert set(dead) == set(poison)
    for code, record in dead.items():
        headers_of = {name: value.decode() for name, value in record.headers}
        assert record.value == poison[code], "the original bytes are kept"
        assert record.key == project.encode()
        assert headers_of["ferry-dlq-reason"]
        assert headers_of["ferry-dlq-topic"] == e2e_settings.kafka.requests_topic
        assert int(headers_of["ferry-dlq-offset"]) >= 0
    assert await e2e_db["jobs"].count_documents({"project_id": project}) == 1


@pytest.mark.parametrize(
    ("data", "code", "says"),
    [
        (
            {"filters": {"start_time": FILTERS["end_time"], "end_time": FILTERS["start_time"]}},
            "INVALID_TIME_RANGE",
            "must be after",
        ),
        ({"dataset": "invoices", "filters": FILTERS}, "UNKNOWN_DATASET", "invoices"),
        ({"filters": {**FILTERS, "status": "lost"}}, "INVALID_FILTER", "filters.status"),
    ],
)
async def test_an_invalid_request_becomes_a_failed_job_the_requester_can_read(
    data: dict[str, Any],
    code: str,
    says: str,
    ferry: RunningFerry,
    e2e_settings: Settings,
    e2e_db: Database,
    http: httpx.AsyncClient,
) -> None:
    project = f"inv{uuid.uuid4().hex[:6]}"
    job_id = str(uuid.uuid4())
    event = request(project)
    event["data"] = {"project_id": project, "job_id": job_id, **data}
    await publish(e2e_settings.kafka, [event], key=project.encode())
    headers = await api_key(e2e_db, project)
    view = await wait_for_job(http, job_id, headers)
    assert (view["status"], view["error_code"]) == ("failed", code)
    assert says in view["error_message"]
    download = await http.get(f"/v1/exports/{job_id}/download", headers=headers)
    assert download.status_code == httpx.codes.CONFLICT
    assert download.json()["error"]["code"] == "EXPORT_NOT_READY"


async def _publish_with_headers(
    settings: Settings, records: list[tuple[bytes, list[tuple[str, bytes | None]]]], key: bytes
) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka.bootstrap_servers, acks="all")
    await producer.start()
    try:
        for value, headers in records:
            await producer.send_and_wait(
                settings.kafka.requests_topic, value, key=key, headers=headers
            )
    finally:
        await producer.stop()


def _export(project: str, filters: dict[str, Any], marker: str) -> bytes:
    return json.dumps(export_request(project_id=project, job_id=marker, filters=filters)).encode()


# Each of the inputs, and its verdict: a dead letter's code, or a failed job's.
POISONS: dict[str, Callable[[str, str], tuple[bytes, list[tuple[str, bytes | None]]]]] = {
    "nested brackets": lambda _project, marker: (b"[" * 5000 + marker.encode(), []),
    "NUL in a filter key": lambda project, marker: (
        _export(project, {**FILTERS, "sta\x00tus": "sent"}, marker),
        [],
    ),
    "$ in a filter key": lambda project, marker: (
        _export(project, {**FILTERS, "$where": "1"}, marker),
        [],
    ),
    "filter beyond 64 bits": lambda project, marker: (
        _export(project, {**FILTERS, "status": 2**64}, marker),
        [],
    ),
    "a null header": lambda _project, marker: (b"{" + marker.encode(), [("trace", None)]),
    "near the broker's size limit": lambda _project, marker: (
        marker.encode() + b" " * 1_047_900,
        [("x-origin", b"crm")],
    ),
}
VERDICTS = {
    "nested brackets": "INVALID_JSON",
    "NUL in a filter key": "UNSUPPORTED_VALUE",
    "$ in a filter key": "UNSUPPORTED_VALUE",
    "filter beyond 64 bits": "UNSUPPORTED_VALUE",
    "a null header": "INVALID_JSON",
    "near the broker's size limit": "EVENT_TOO_LARGE",
}


@pytest.mark.parametrize("kind", list(POISONS))
async def test_no_single_record_stops_the_request_behind_it(
    kind: str,
    ferry: RunningFerry,
    e2e_settings: Settings,
    e2e_db: Database,
    http: httpx.AsyncClient,
) -> None:
    project = f"one{uuid.uuid4().hex[:6]}"
    marker, good = str(uuid.uuid4()), str(uuid.uuid4())
    value, headers = POISONS[kind](project, marker)
    good_request = json.dumps(request(project, job_id=good)).encode()
    await _publish_with_headers(
        e2e_settings, [(value, headers), (good_request, [])], key=project.encode()
    )
    auth = await api_key(e2e_db, project)
    # The bound: the request published right behind the poison completes within 60 s.
    assert (await wait_for_job(http, good, auth, timeout=60))["status"] == "completed"

    code = VERDICTS[kind]
    if code == "UNSUPPORTED_VALUE":
        view = await wait_for_job(http, marker, auth)
        assert (view["status"], view["error_code"]) == ("failed", code)
        assert "data.filters." in view["error_message"]
        return
    records = await read_topic(
        e2e_settings.kafka,
        e2e_settings.kafka.dead_letter_topic,
        until=lambda records: any(marker.encode() in r.value for r in records),
    )
    [dead] = [r for r in records if marker.encode() in r.value]
    dead_headers = {name: (value or b"").decode() for name, value in dead.headers}
    assert dead_headers["ferry-dlq-code"] == code
    assert dead_headers["ferry-dlq-reason"]
    if kind == "near the broker's size limit":
        # Ferry's headers would not fit beside the whole record: a truncated copy, identified.
        assert dead_headers["ferry-dlq-truncated"] == "value"
        assert dead_headers["ferry-dlq-original-bytes"] == str(len(value))
        assert dead_headers["ferry-dlq-original-sha256"] == hashlib.sha256(value).hexdigest()
        assert value.startswith(dead.value)
        assert dead_headers["x-origin"] == "crm"
    else:
        assert dead.value == value


async def test_a_binary_mode_request_runs_like_a_structured_one(
    ferry: RunningFerry, e2e_settings: Settings, e2e_db: Database, http: httpx.AsyncClient
) -> None:
    """The CloudEvents Kafka binding's binary mode, as CloudEvents SDKs publish: the attributes
    in ce_* headers, the data as the value."""
    project = f"bin{uuid.uuid4().hex[:6]}"
    job_id = str(uuid.uuid4())
    data = {"project_id": project, "job_id": job_id, "filters": FILTERS, "format": "jsonl"}
    headers: list[tuple[str, bytes | None]] = [
        ("ce_specversion", b"1.0"),
        ("ce_id", uuid.uuid4().hex.encode()),
        ("ce_source", b"/crm/sdk"),
        ("ce_type", EXPORT_REQUESTED.encode()),
        ("content-type", b"application/json"),
    ]
    await _publish_with_headers(
        e2e_settings, [(json.dumps(data).encode(), headers)], key=project.encode()
    )
    view = await wait_for_job(http, job_id, await api_key(e2e_db, project))
    assert (view["status"], view["format"]) == ("completed", "jsonl")
