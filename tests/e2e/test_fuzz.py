"""schemathesis against the live API, driven by the API's own OpenAPI document, every check on,
with the key of a project that has exports and imports in every status: no failure.

Completed, failed and expired jobs are made by the workers; a job pending, processing or
cancelled does not stay so long enough to be fuzzed, so those are status events published as
the outbox relay would, copied from the real jobs with another id and status.
"""

from __future__ import annotations

import subprocess
import sys
import uuid
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import httpx
import pytest

from service.clock import utcnow
from service.config import Settings
from service.contracts.envelope import JOB_STATUS_CHANGED, make_event
from service.database import Database
from service.events.submit import export_request, import_request
from service.imports import files
from service.storage import ObjectStore
from tests.e2e.conftest import api_key, wait_for_job
from tests.support.ferry import RunningFerry
from tests.support.kafka import publish

pytestmark = pytest.mark.e2e

SEED = 20261202
EXAMPLES = 25  # per operation and phase: about 30 s on a loaded 2-core machine
FILTERS = {"start_time": "2025-01-01T00:00:00Z", "end_time": "2025-01-02T00:00:00Z"}
CONTACTS = b"EMAIL;FIRSTNAME\nann@x.io;Ann\nnot-an-email;Bad\nann@x.io;Dup\n"
SYNTHETIC = ("pending", "processing", "cancelled")


async def finished_export(
    settings: Settings, http: httpx.AsyncClient, project: str, headers: dict[str, str], **kw: Any
) -> dict[str, Any]:
    job_id = str(uuid.uuid4())
    request = export_request(project_id=project, job_id=job_id, filters=FILTERS, **kw)
    await publish(settings.kafka, [request], key=project.encode())
    return await wait_for_job(http, job_id, headers)


async def finished_import(
    settings: Settings,
    http: httpx.AsyncClient,
    project: str,
    headers: dict[str, str],
    **kw: Any,
) -> dict[str, Any]:
    store = ObjectStore(settings.s3)
    job_id = str(uuid.uuid4())
    key = files.upload_key(project, f"{job_id}.csv")
    await store.put(key, CONTACTS, content_type="text/csv")
    request = import_request(
        project_id=project, job_id=job_id, source={"bucket": store.bucket, "key": key}, **kw
    )
    await publish(settings.kafka, [request], key=project.encode())
    return await wait_for_job(http, job_id, headers, kind="imports", timeout=90)


def in_status(view: dict[str, Any], status: str, process_id: int) -> dict[str, Any]:
    """`view` as another job in `status`, as the outbox would publish it."""
    unfinished = {"completed_at": None, "expires_at": None, "file_sha256": None}
    job_id = str(uuid.uuid4())
    # As events carry reports: no links (the API signs them, for this job's own keys).
    reports = {
        name: {"rows": report["rows"], "url": None, "expires_at": None}
        for name, report in (view.get("reports") or {}).items()
    }
    return {
        **view,
        **(unfinished if status != "expired" else {}),
        "reports": reports or view.get("reports"),
        "id": job_id,
        "process_id": process_id,
        "status": status,
        "version": 1,
        "previous_status": None,
    }


async def project_with_every_kind_and_status(
    settings: Settings, database: Database, http: httpx.AsyncClient
) -> tuple[str, dict[str, str]]:
    project = f"fuz{uuid.uuid4().hex[:6]}"
    headers = await api_key(database, project)
    completed_export = await finished_export(settings, http, project, headers)
    expiring = await finished_export(settings, http, project, headers)
    failed_export = await finished_export(settings, http, project, headers, dataset="nope")
    completed_import = await finished_import(settings, http, project, headers)
    failed_import = await finished_import(settings, http, project, headers, dataset="messages")
    assert [
        job["status"]
        for job in (completed_export, expiring, failed_export, completed_import, failed_import)
    ] == ["completed", "completed", "failed", "completed", "failed"]
    # Bring the expiry forward; the workers' sweep deletes the file and publishes `expired`.
    await database["jobs"].update_one({"_id": expiring["id"]}, {"$set": {"expires_at": utcnow()}})
    await wait_for_job(http, expiring["id"], headers, statuses={"expired"})

    process_ids = iter(range(10**15 + uuid.uuid4().int % 10**12, 2 * 10**15))
    views = [
        in_status(template, status, next(process_ids))
        for template in (completed_export, completed_import)
        for status in SYNTHETIC
    ]
    views.append(in_status(completed_import, "expired", next(process_ids)))
    events: list[bytes | dict[str, Any]] = [
        make_event(
            event_id=str(uuid.uuid4()),
            source="ferry-tests",
            event_type=JOB_STATUS_CHANGED,
            subject=view["id"],
            time=utcnow(),
            data=view,
        )
        for view in views
    ]
    await publish(settings.kafka, events, key=project.encode(), topic=settings.kafka.status_topic)
    for view in views:
        kind = "exports" if view["kind"] == "export" else "imports"
        await wait_for_job(http, view["id"], headers, kind=kind, statuses={view["status"]})
    return project, headers


def schemathesis(api_url: str, key: str, report: Path) -> subprocess.CompletedProcess[str]:
    st = Path(sys.executable).parent / "st"
    return subprocess.run(
        [
            str(st),
            "run",
            f"{api_url}/openapi.json",
            "--header",
            f"Authorization: Bearer {key}",
            "--header",
            f"api-key: {key}",
            "--checks",
            "all",
            "--max-examples",
            str(EXAMPLES),
            "--seed",
            str(SEED),
            "--workers",
            "2",
            "--report",
            "junit",
            "--report-junit-path",
            str(report),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        cwd=report.parent,  # no schemathesis.toml or .hypothesis of the developer's
        env={"PATH": str(st.parent), "NO_COLOR": "1", "COLUMNS": "120"},
    )


async def test_schemathesis_finds_nothing_wrong_with_the_live_api(
    ferry: RunningFerry,
    e2e_settings: Settings,
    e2e_db: Database,
    http: httpx.AsyncClient,
    tmp_path: Path,
) -> None:
    _, headers = await project_with_every_kind_and_status(e2e_settings, e2e_db, http)
    # Each list holds every status: the fuzzer's links lead to real jobs of each.
    for kind in ("exports", "imports"):
        listed = (await http.get(f"/v1/{kind}", headers=headers, params={"limit": 100})).json()
        statuses = {job["status"] for job in listed["data"]}
        assert {"completed", "failed", "expired", *SYNTHETIC} <= statuses, (kind, statuses)

    key = headers["Authorization"].removeprefix("Bearer ")
    report = tmp_path / "junit.xml"
    run = schemathesis(ferry.api_url, key, report)
    summary = run.stdout[-6000:]
    assert run.returncode == 0, summary
    suite = ET.parse(report).getroot()  # noqa: S314 - our own report
    suites = [suite] if suite.tag == "testsuite" else list(suite.iter("testsuite"))
    cases = [case for s in suites for case in s.iter("testcase")]
    assert "Tested: 9" in summary  # every operation of the document, probes included
    assert len(cases) >= 9, summary  # one per operation, and the stateful phase's
    failed = [case.get("name") for case in cases if case.find("failure") is not None]
    errored = [case.get("name") for case in cases if case.find("error") is not None]
    assert failed == [], summary
    assert errored == [], summary
