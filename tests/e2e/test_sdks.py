"""The official clients of the two APIs Ferry serves read every job Ferry has, in every state and
of every dataset, singly and in lists: `hookbridge` (`/v1/exports`, and its export record for
`/v1/imports`) and `brevo-python` (`/v3/processes`).

One project holds jobs in every state at once: completed, failed (filters that cannot be
parsed, a dataset that does not exist, a kind the dataset does not take), expired, cancelled
and pending (the project's slots are held, as by jobs on other workers), then processing.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from datetime import timedelta
from typing import Any

import httpx
import pytest
from brevo import AsyncBrevo
from hookbridge import AsyncHookBridge, ExportRecord
from hookbridge.client import _parse_export_record

from service.clock import rfc3339, utcnow
from service.config import Settings
from service.database import Database
from service.demo import demo_messages, load_messages
from service.events.submit import cancel_request, export_request, import_request
from service.imports import files
from service.jobs.slots import ProjectSlots
from service.storage import ObjectStore
from tests.e2e.conftest import api_key, wait_for_job
from tests.support.ferry import RunningFerry
from tests.support.kafka import publish
from tests.support.seed_shapes import BREVO_NAMES, BREVO_STATUSES, SEED_TIMESTAMP

pytestmark = pytest.mark.e2e

TIMESTAMPS = ("created_at", "started_at", "completed_at", "expires_at")
EMPTY_RANGE = {"start_time": "2025-01-01T00:00:00Z", "end_time": "2025-01-02T00:00:00Z"}


class Project:
    """A project, its key, and the jobs it was asked for."""

    def __init__(self, settings: Settings, http: httpx.AsyncClient, name: str, key: str) -> None:
        self.settings, self.http, self.name, self.key = settings, http, name, key
        self.headers = {"Authorization": f"Bearer {key}"}

    async def export(self, **fields: Any) -> str:
        job_id = str(uuid.uuid4())
        fields.setdefault("filters", EMPTY_RANGE)
        request = export_request(project_id=self.name, job_id=job_id, **fields)
        await publish(self.settings.kafka, [request], key=self.name.encode())
        return job_id

    async def import_(self, store: ObjectStore, data: bytes, **fields: Any) -> str:
        job_id = str(uuid.uuid4())
        key = files.upload_key(self.name, f"{job_id}.csv")
        await store.put(key, data, content_type="text/csv")
        request = import_request(
            project_id=self.name,
            job_id=job_id,
            source={"bucket": store.bucket, "key": key},
            **fields,
        )
        await publish(self.settings.kafka, [request], key=self.name.encode())
        return job_id

    async def wait(self, job_id: str, kind: str = "exports", **options: Any) -> dict[str, Any]:
        return await wait_for_job(self.http, job_id, self.headers, kind=kind, **options)


async def read_everything(project: Project, ferry: RunningFerry) -> dict[str, set[str]]:
    """Read every job through both SDKs, singly and in lists; the states seen, by API."""
    seen: dict[str, set[str]] = {"exports": set(), "imports": set(), "processes": set()}
    hookbridge = AsyncHookBridge(api_key=project.key, base_url=ferry.api_url, retries=0)
    try:
        listed = await hookbridge.list_exports()
        for record in listed:
            again = await hookbridge.get_export(record.id)
            assert again.id == record.id
            check_record(record)
            seen["exports"].add(record.status)
        # HookBridge has no imports; its export record is what /v1/imports items share.
        page = await hookbridge._request("GET", "/v1/imports")
        for item in page["data"]:
            record = _parse_export_record(item)
            single = await hookbridge._request("GET", f"/v1/imports/{record.id}")
            assert _parse_export_record(single["data"]).id == record.id
            check_record(record)
            seen["imports"].add(record.status)
    finally:
        await hookbridge.close()

    brevo = AsyncBrevo(api_key=project.key, base_url=f"{ferry.api_url}/v3", max_retries=0)
    processes = await brevo.process.get_processes(limit=50)
    assert processes.count == len(processes.processes) == len(listed) + len(page["data"])
    for process in processes.processes:
        single = await brevo.process.get_process(process.id)
        assert (single.id, single.name) == (process.id, process.name)
        # A job still running when listed may have finished by the time it is read again.
        assert single.status == process.status or process.status in {"queued", "in_process"}
        check_process(single.model_dump(by_alias=True))
        seen["processes"].add(str(process.status))
    await check_raw_timestamps(project)
    return seen


def check_record(record: ExportRecord) -> None:
    assert record.filter_start_time <= record.filter_end_time
    assert record.created_at.tzinfo is not None
    if record.status == "failed":
        assert record.error_message, f"{record.id} failed without saying why"


def check_process(process: dict[str, Any]) -> None:
    assert process["name"] in BREVO_NAMES, process
    assert process["status"] in BREVO_STATUSES, process
    if process["status"] == "failed":
        # An extra field the SDK keeps: why it failed.
        assert process["error"]["code"], process
        assert process["error"]["message"], process
    if process.get("expired"):
        assert process["status"] == "completed"
        assert process.get("export_url") is None


async def check_raw_timestamps(project: Project) -> None:
    for kind in ("exports", "imports"):
        page = (await project.http.get(f"/v1/{kind}", headers=project.headers)).json()
        for item in page["data"]:
            for field in TIMESTAMPS:
                value = item[field]
                assert value is None or SEED_TIMESTAMP.fullmatch(value), (field, value)


def statuses(views: Iterable[dict[str, Any]]) -> set[str]:
    return {view["status"] for view in views}


async def test_both_official_sdks_read_every_job_in_every_state(
    ferry: RunningFerry, e2e_settings: Settings, e2e_db: Database, http: httpx.AsyncClient
) -> None:
    name = f"sdk{uuid.uuid4().hex[:6]}"
    headers = await api_key(e2e_db, name)
    project = Project(e2e_settings, http, name, headers["Authorization"].removeprefix("Bearer "))
    store = ObjectStore(e2e_settings.s3)
    end = utcnow()
    await load_messages(e2e_db, demo_messages(name, 10_000, end=end, span=timedelta(days=1)))

    finished = {
        "completed": [
            await project.export(),
            await project.export(dataset="contacts", filters={}),
            await project.export(dataset="contacts", filters={"modified_since": rfc3339(end)}),
        ],
        "failed": [
            await project.export(filters={"start_time": "yesterday", "end_time": 5}),
            await project.export(filters={}),
            await project.export(dataset="nope", filters={"start_time": "x"}),
            await project.export(dataset="contacts", filters={"list_id": "x"}),
        ],
    }
    to_expire = await project.export()
    imports = [
        await project.import_(store, b"EMAIL;FIRSTNAME\r\nann@x.io;Ann\r\nnot-an-email;Bad\r\n"),
        await project.import_(store, b"EMAIL\r\nbob@x.io\r\n", dataset="messages"),
        await project.import_(store, b"EMAIL\r\nbob@x.io\r\n", dataset="nope"),
    ]
    for status, jobs in finished.items():
        assert statuses([await project.wait(job) for job in jobs]) == {status}
    await project.wait(to_expire)
    assert statuses([await project.wait(job, "imports", timeout=90) for job in imports]) == {
        "completed",
        "failed",
    }
    await e2e_db["jobs"].update_one({"_id": to_expire}, {"$set": {"expires_at": utcnow()}})
    await project.wait(to_expire, statuses={"expired"}, timeout=30)

    # The project's slots are held, as by jobs on other workers: what comes now waits.
    slots = ProjectSlots(e2e_db)
    holders = [f"elsewhere-{index}#1" for index in range(2)]
    for holder in holders:
        assert await slots.take(name, holder, limit=2, lease=timedelta(minutes=5))
    whole_day = {"start_time": rfc3339(end - timedelta(days=1)), "end_time": rfc3339(end)}
    long_running = await project.export(filters=whole_day)
    cancelled = await project.export()
    waiting_import = await project.import_(store, b"EMAIL\r\ncy@x.io\r\n")
    await project.wait(long_running, statuses={"pending"})
    await project.wait(waiting_import, "imports", statuses={"pending"})
    await project.wait(cancelled, statuses={"pending"})
    await publish(e2e_settings.kafka, [cancel_request(name, cancelled)], key=name.encode())
    await project.wait(cancelled, statuses={"cancelled"})

    seen = await read_everything(project, ferry)
    assert seen["exports"] == {"completed", "failed", "expired", "cancelled", "pending"}
    assert seen["imports"] == {"completed", "failed", "pending"}
    assert seen["processes"] == {"completed", "failed", "cancelled", "queued"}

    # Freed, the long export runs for seconds: read everything while it does.
    for holder in holders:
        await slots.release(holder)
    running = await project.wait(long_running, statuses={"processing", "completed"}, timeout=90)
    assert running["status"] == "processing", "the export finished before it could be read"
    read_while_running = False
    while running["status"] == "processing" and not read_while_running:
        seen = await read_everything(project, ferry)
        read_while_running = "processing" in seen["exports"] and "in_process" in seen["processes"]
        running = await project.wait(long_running, statuses={"processing", "completed"})
    assert read_while_running, "the export finished before both SDKs read it running"
    assert (await project.wait(long_running, timeout=120))["status"] == "completed"
    assert (await project.wait(waiting_import, "imports", timeout=90))["status"] == "completed"
    seen = await read_everything(project, ferry)
    assert "pending" not in seen["exports"] | seen["imports"]
