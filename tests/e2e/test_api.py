"""The lookup API's contract: auth, project isolation, errors in the envelope, pagination,
status events in order, download links and expiry, and links no status event can redirect."""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from aiokafka import AIOKafkaProducer

from service.clock import utcnow
from service.config import Settings
from service.contracts.envelope import JOB_STATUS_CHANGED, JOB_UPDATED, make_event
from service.database import Database
from service.demo import demo_messages, load_messages
from service.events.submit import export_request, import_request
from service.imports.files import upload_key
from service.jobs.view import job_view
from service.storage import ObjectStore
from tests.e2e.conftest import api_key, unsigned, wait_for_job
from tests.support.ferry import RunningFerry
from tests.support.kafka import publish, read_topic
from tests.support.status_events import a_job

pytestmark = pytest.mark.e2e

FILTERS = {"start_time": "2025-01-01T00:00:00Z", "end_time": "2025-01-02T00:00:00Z"}


async def completed_export(
    settings: Settings, database: Database, http: httpx.AsyncClient, project: str
) -> tuple[str, dict[str, str]]:
    job_id = str(uuid.uuid4())
    await publish(
        settings.kafka,
        [export_request(project_id=project, job_id=job_id, filters=FILTERS)],
        key=project.encode(),
    )
    headers = await api_key(database, project)
    assert (await wait_for_job(http, job_id, headers))["status"] == "completed"
    return job_id, headers


def assert_error(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["error"]["code"] == code
    assert body["error"]["message"]
    assert body["meta"]["request_id"].startswith("req_")
    assert response.headers["x-request-id"] == body["meta"]["request_id"]
    return dict(body)


async def test_keys_are_required_and_projects_cannot_see_each_other(
    ferry: RunningFerry, e2e_settings: Settings, e2e_db: Database, http: httpx.AsyncClient
) -> None:
    job_id, owner = await completed_export(e2e_settings, e2e_db, http, f"own{uuid.uuid4().hex[:6]}")
    url = f"/v1/exports/{job_id}"
    assert (await http.get(url, headers=owner)).status_code == httpx.codes.OK

    assert_error(await http.get(url), 401, "UNAUTHORIZED")
    assert_error(
        await http.get(url, headers={"Authorization": "Bearer fry_nope"}), 401, "UNAUTHORIZED"
    )
    assert_error(await http.get(url, headers={"Authorization": "Basic abc"}), 401, "UNAUTHORIZED")

    stranger = await api_key(e2e_db, f"str{uuid.uuid4().hex[:6]}")
    theirs = assert_error(await http.get(url, headers=stranger), 404, "NOT_FOUND")
    missing_id = str(uuid.uuid4())
    missing = assert_error(
        await http.get(f"/v1/exports/{missing_id}", headers=stranger), 404, "NOT_FOUND"
    )
    # Indistinguishable from a job that does not exist.
    assert theirs["error"]["message"].replace(job_id, "ID") == missing["error"]["message"].replace(
        missing_id, "ID"
    )
    assert_error(await http.get(f"{url}/download", headers=stranger), 404, "NOT_FOUND")
    listed = (await http.get("/v1/exports", headers=stranger)).json()
    assert listed["data"] == []


async def test_bad_input_answers_400_in_the_envelope(
    ferry: RunningFerry, e2e_db: Database, http: httpx.AsyncClient
) -> None:
    headers = await api_key(e2e_db, "bad-input")
    assert_error(await http.get("/v1/exports/not-a-uuid", headers=headers), 400, "INVALID_REQUEST")
    for params in ({"limit": "0"}, {"limit": "1000"}, {"status": "lost"}, {"cursor": "%%%"}):
        assert_error(
            await http.get("/v1/exports", headers=headers, params=params), 400, "INVALID_REQUEST"
        )
    assert_error(await http.get("/v1/nothing-here", headers=headers), 404, "NOT_FOUND")
    assert_error(await http.post("/v1/exports", headers=headers), 405, "METHOD_NOT_ALLOWED")


async def test_listing_filters_by_status_and_pages_with_a_cursor(
    ferry: RunningFerry, e2e_settings: Settings, e2e_db: Database, http: httpx.AsyncClient
) -> None:
    project = f"lst{uuid.uuid4().hex[:6]}"
    good = [str(uuid.uuid4()) for _ in range(3)]
    bad = str(uuid.uuid4())
    requests = [export_request(project_id=project, job_id=job, filters=FILTERS) for job in good]
    invalid = export_request(project_id=project, job_id=bad, filters={"start_time": "x"})
    await publish(e2e_settings.kafka, [*requests, invalid], key=project.encode())
    headers = await api_key(e2e_db, project)
    for job in [*good, bad]:
        await wait_for_job(http, job, headers)

    seen: list[str] = []
    params: dict[str, Any] = {"limit": 2}
    while True:
        page = (await http.get("/v1/exports", headers=headers, params=params)).json()
        seen += [item["id"] for item in page["data"]]
        assert page["meta"]["has_more"] == (page["meta"]["next_cursor"] is not None)
        if not page["meta"]["has_more"]:
            break
        params["cursor"] = page["meta"]["next_cursor"]
    assert sorted(seen) == sorted([*good, bad])
    failed = (await http.get("/v1/exports", headers=headers, params={"status": "failed"})).json()
    assert [item["id"] for item in failed["data"]] == [bad]


async def test_status_events_come_in_order_with_strictly_increasing_versions(
    ferry: RunningFerry, e2e_settings: Settings, e2e_db: Database, http: httpx.AsyncClient
) -> None:
    project = f"evt{uuid.uuid4().hex[:6]}"
    end = utcnow()
    # Enough rows that the export reports progress (every 0.2 s here) before it ends.
    await load_messages(e2e_db, demo_messages(project, 6_000, end=end, span=timedelta(days=1)))
    job_id = str(uuid.uuid4())
    filters = {"start_time": (end - timedelta(days=1)).isoformat(), "end_time": end.isoformat()}
    await publish(
        e2e_settings.kafka,
        [export_request(project_id=project, job_id=job_id, filters=filters)],
        key=project.encode(),
    )
    headers = await api_key(e2e_db, project)
    final = await wait_for_job(http, job_id, headers)

    def of_job(records: list[Any]) -> list[dict[str, Any]]:
        return [json.loads(r.value) for r in records if r.key == job_id.encode()]

    records = await read_topic(
        e2e_settings.kafka,
        e2e_settings.kafka.status_topic,
        until=lambda records: any(e["data"]["status"] == "completed" for e in of_job(records)),
    )
    events = of_job(records)
    versions = [e["data"]["version"] for e in events]
    # Strictly increasing, from the first to the last; a gap can only be a progress event the
    # relay dropped because a later one superseded it (every status change is checked below).
    assert versions == sorted(set(versions))
    assert (versions[0], versions[-1]) == (1, final["version"])
    changes = [e for e in events if e["type"] == JOB_STATUS_CHANGED]
    assert [(e["data"]["previous_status"], e["data"]["status"]) for e in changes] == [
        (None, "pending"),
        ("pending", "processing"),
        ("processing", "completed"),
    ]
    # Progress was saved while the job ran: every version that is not a status change is a
    # progress event, published or dropped by the relay as superseded by a later event of the
    # job (when its round comes after the job's end, as on a busy machine, it drops them all;
    # tests/integration/test_outbox_relay.py pins which ones it publishes). Those published
    # carry rows done so far and a share, counts that never go backwards within the attempt.
    assert final["version"] > len(changes), "no progress was saved while the export ran"
    updates = [e for e in events if e["type"] == JOB_UPDATED and e["data"]["progress"]["percent"]]
    rows = [e["data"]["progress"]["rows_processed"] for e in updates]
    assert rows == sorted(rows)
    assert all(0 < n <= final["row_count"] for n in rows)
    assert all(0 < e["data"]["progress"]["percent"] <= 100 for e in updates)
    for event in events:
        assert event["specversion"] == "1.0"
        assert event["subject"] == job_id
        assert {"id", "source", "time", "datacontenttype"} <= set(event)
    # The event is the view as the API serves it, but for the fresh links the API adds.
    assert all(file["url"] for file in final["files"])
    assert final["manifest"]["url"]
    assert changes[-1]["data"] | {"previous_status": None} == unsigned(final) | {
        "previous_status": None
    }


async def test_download_links_are_fresh_each_time_and_expired_exports_answer_410(
    ferry: RunningFerry,
    e2e_settings: Settings,
    e2e_db: Database,
    http: httpx.AsyncClient,
) -> None:
    project = f"exp{uuid.uuid4().hex[:6]}"
    job_id, headers = await completed_export(e2e_settings, e2e_db, http, project)
    first = await http.get(f"/v1/exports/{job_id}/download", headers=headers)
    await asyncio.sleep(1.1)
    second = await http.get(f"/v1/exports/{job_id}/download", headers=headers)
    assert first.status_code == second.status_code == httpx.codes.FOUND
    assert first.headers["location"] != second.headers["location"]

    store = ObjectStore(e2e_settings.s3)
    key = f"exports/{project}/{job_id}.csv"
    assert await store.size(key) is not None
    # Bring the expiry forward; the workers' sweep deletes the file and publishes `expired`.
    await e2e_db["jobs"].update_one({"_id": job_id}, {"$set": {"expires_at": utcnow()}})
    view = await wait_for_job(http, job_id, headers, statuses={"expired"}, timeout=30)
    assert view["status"] == "expired"
    assert await store.size(key) is None
    assert_error(
        await http.get(f"/v1/exports/{job_id}/download", headers=headers), 410, "EXPORT_EXPIRED"
    )


async def test_a_forged_status_event_cannot_make_the_api_sign_another_projects_file(
    ferry: RunningFerry, e2e_settings: Settings, e2e_db: Database, http: httpx.AsyncClient
) -> None:
    victim = f"vic{uuid.uuid4().hex[:6]}"
    victim_job, _ = await completed_export(e2e_settings, e2e_db, http, victim)
    victim_file = f"exports/{victim}/{victim_job}.csv"
    attacker = f"atk{uuid.uuid4().hex[:6]}"
    headers = await api_key(e2e_db, attacker)

    def forged_import(job_id: str, report_key: str | None) -> dict[str, Any]:
        data = job_view(a_job(attacker, job_id=job_id, version=9))
        data.update(kind="import", dataset="contacts", previous_status="processing")
        report: dict[str, Any] = {"rows": 1, "url": None, "expires_at": None}
        if report_key is not None:  # events carry no key; a forged one names the victim's
            report["key"] = report_key
        data["reports"] = {"rejected_rows": report}
        return make_event(
            event_id=str(uuid.uuid4()),
            source="/attacker",
            event_type=JOB_STATUS_CHANGED,
            subject=job_id,
            time=utcnow(),
            data=data,
        )

    # One pointing at the victim's file, then one of the documented form: same key, same
    # partition, so once the second is served the first has been read.
    forged, honest = str(uuid.uuid4()), str(uuid.uuid4())
    producer = AIOKafkaProducer(bootstrap_servers=e2e_settings.kafka.bootstrap_servers)
    await producer.start()
    try:
        for job_id, key in ((forged, victim_file), (honest, None)):
            event = forged_import(job_id, key)
            await producer.send_and_wait(
                e2e_settings.kafka.status_topic, json.dumps(event).encode(), key=b"same"
            )
    finally:
        await producer.stop()

    shown = await wait_for_job(http, honest, headers, kind="imports")
    url = urlsplit(shown["reports"]["rejected_rows"]["url"])
    assert url.path == f"/{e2e_settings.s3.bucket}/imports/{attacker}/{honest}/rejected_rows.csv"
    assert_error(await http.get(f"/v1/imports/{forged}", headers=headers), 404, "NOT_FOUND")
    processes = await http.get("/v3/processes", headers={"api-key": headers["Authorization"][7:]})
    assert victim_file not in processes.text


async def test_an_imports_last_status_event_is_its_v1_view_but_for_the_links(
    ferry: RunningFerry, e2e_settings: Settings, e2e_db: Database, http: httpx.AsyncClient
) -> None:
    project = f"iev{uuid.uuid4().hex[:6]}"
    store = ObjectStore(e2e_settings.s3)
    job_id = str(uuid.uuid4())
    key = upload_key(project, f"{job_id}.csv")
    await store.put(key, b"EMAIL\r\nann@x.io\r\nnot-an-email\r\n", content_type="text/csv")
    request = import_request(
        project_id=project, job_id=job_id, source={"bucket": store.bucket, "key": key}
    )
    await publish(e2e_settings.kafka, [request], key=project.encode())
    headers = await api_key(e2e_db, project)
    shown = await wait_for_job(http, job_id, headers, kind="imports", timeout=90)
    assert shown["status"] == "completed"

    def last_event(records: list[Any]) -> dict[str, Any] | None:
        mine = [json.loads(r.value) for r in records if r.key == job_id.encode()]
        done = [e for e in mine if e["data"]["version"] == shown["version"]]
        return done[0] if done else None

    records = await read_topic(
        e2e_settings.kafka,
        e2e_settings.kafka.status_topic,
        until=lambda records: last_event(records) is not None,
    )
    event = last_event(records)
    assert event is not None
    assert set(shown["reports"]) == {"invalid_emails", "rejected_rows"}
    for name, report in shown["reports"].items():
        assert report["url"], name  # signed when read
        assert event["data"]["reports"][name] == {"rows": 1, "url": None, "expires_at": None}
    unlinked = {
        **shown,
        "reports": {
            name: {**r, "url": None, "expires_at": None} for name, r in shown["reports"].items()
        },
    }
    assert event["data"] | {"previous_status": None} == unlinked | {"previous_status": None}
