"""Contact imports through Kafka, the workers, MongoDB, S3 and both API surfaces: a file with
every planted problem gives exactly the expected counts, reports and contacts; a dry run
writes nothing; a repeat changes nothing; each failure code is reached; and Brevo's process
view shows imports and exports with fresh links."""

from __future__ import annotations

import bz2
import codecs
import csv
import gzip
import io
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest

from service.config import Settings
from service.database import Database
from service.events.submit import export_request, import_request
from service.imports import files
from service.storage import ObjectStore
from tests.e2e.conftest import api_key, wait_for_job
from tests.support.ferry import RunningFerry
from tests.support.kafka import publish

pytestmark = pytest.mark.e2e

# Excel's habits: a BOM, `;` between fields, CRLF line ends, a quoted field across two lines.
PLANTED = codecs.BOM_UTF8 + (
    b"Email;EXT_ID;sms;WHATSAPP;LANDLINE_NUMBER;FIRSTNAME;NOTE\r\n"
    b'ann@x.io;e1;+33 6 11 11 11 11;;;Ann;"two\r\nlines"\r\n'  # lines 2-3: created
    b"bob@x.io;e2;;+44 7700 900001;;Bob;plain\r\n"  # 4: created
    b"not-an-email;e3;;;;Bad;\r\n"  # 5: invalid_email
    b"ANN@X.IO;e4;;;;Dup;\r\n"  # 6: duplicate_email (of line 2)
    b"cy@x.io;e1;;;;Cy;\r\n"  # 7: duplicate_ext_id
    b"dee@x.io;e5;0033611111111;;;Dee;\r\n"  # 8: duplicate_sms (same number as line 2)
    b"eve@x.io;e6;;+447700900001;;Eve;\r\n"  # 9: duplicate_whatsapp
    b"fay@x.io;e7;;;+33 1 22 22 22 22;Fay;\r\n"  # 10: created
    b"gus@x.io;e8;;;0033122222222;Gus;\r\n"  # 11: duplicate_landline_number
    b"hal@x.io;e9;;;;Hal\r\n"  # 12: ragged_row
    b";;;;;Nobody;\r\n"  # 13: missing_identifier (every identifier empty)
    b";e10;;;;OnlyExt;\r\n"  # 14: created
)

REJECTED = {
    5: "invalid_email",
    6: "duplicate_email",
    7: "duplicate_ext_id",
    8: "duplicate_sms",
    9: "duplicate_whatsapp",
    11: "duplicate_landline_number",
    12: "ragged_row",
    13: "missing_identifier",
}
CATEGORIES = {
    "invalid_emails": 5,
    "duplicate_email_id": 6,
    "duplicate_ext_id": 7,
    "duplicate_phone_id": 8,
    "duplicate_whatsapp_id": 9,
    "duplicate_landline_number_id": 11,
}
COUNTS = {
    "rows_read": 12,
    "created": 4,
    "updated": 0,
    "unchanged": 0,
    "rejected": 8,
    "rejected_by_reason": dict.fromkeys(REJECTED.values(), 1),
}


async def submit(
    settings: Settings, store: ObjectStore, project: str, data: bytes, **options: Any
) -> str:
    """Upload `data` as the CLI does and publish an import request; the job id."""
    job_id = str(uuid.uuid4())
    key = files.upload_key(project, f"{job_id}.csv")
    await store.put(key, data, content_type="text/csv")
    source = options.pop("source", {"bucket": store.bucket, "key": key})
    request = import_request(project_id=project, job_id=job_id, source=source, **options)
    await publish(settings.kafka, [request], key=project.encode())
    return job_id


async def finished(http: httpx.AsyncClient, job_id: str, headers: dict[str, str]) -> dict[str, Any]:
    return await wait_for_job(http, job_id, headers, kind="imports", timeout=90)


async def download(url: str) -> list[list[str]]:
    async with httpx.AsyncClient() as client:
        response = await client.get(url)
    assert response.status_code == httpx.codes.OK, response.text
    return list(csv.reader(io.StringIO(response.content.decode(), newline="")))


async def stored_contacts(db: Database, project: str) -> dict[str, dict[str, Any]]:
    docs = await db["contacts"].find({"project_id": project}, {"_id": 0}).to_list()
    return {str(doc.get("email") or doc["ext_id"]): doc for doc in docs}


@pytest.fixture(scope="module")
def e2e_store(e2e_settings: Settings) -> ObjectStore:
    return ObjectStore(e2e_settings.s3)


async def test_a_planted_file_gives_exactly_the_expected_counts_reports_and_contacts(
    ferry: RunningFerry,
    e2e_settings: Settings,
    e2e_db: Database,
    e2e_store: ObjectStore,
    http: httpx.AsyncClient,
) -> None:
    project = f"imp{uuid.uuid4().hex[:6]}"
    headers = await api_key(e2e_db, project)
    job_id = await submit(e2e_settings, e2e_store, project, PLANTED, list_ids=[7])
    view = await finished(http, job_id, headers)
    assert view["status"] == "completed", view
    assert (view["kind"], view["dataset"]) == ("import", "contacts")
    assert view["counts"] == COUNTS
    assert view["row_count"] == 12
    assert view["file_size_bytes"] == len(PLANTED)
    assert isinstance(view["process_id"], int)
    assert set(view["reports"]) == {*CATEGORIES, "rejected_rows"}

    rejected = await download(view["reports"]["rejected_rows"]["url"])
    assert rejected[0] == ["line", "reason", "message", "row"]
    assert {int(row[0]): row[1] for row in rejected[1:]} == REJECTED
    assert all(row[2] for row in rejected[1:])  # every rejection says why
    assert {int(r[0]): r[3] for r in rejected[1:]}[12] == "hal@x.io;e9;;;;Hal"
    assert view["reports"]["rejected_rows"]["rows"] == 8
    for category, line in CATEGORIES.items():
        rows = await download(view["reports"][category]["url"])
        assert rows[0] == [
            "line", "Email", "EXT_ID", "sms", "WHATSAPP", "LANDLINE_NUMBER", "FIRSTNAME", "NOTE",
            "reason",
        ]  # fmt: skip
        assert [int(row[0]) for row in rows[1:]] == [line], category
    duplicate = await download(view["reports"]["duplicate_email_id"]["url"])
    assert duplicate[1][1] == "ANN@X.IO"
    assert "line 2" in duplicate[1][-1]

    contacts = await stored_contacts(e2e_db, project)
    assert set(contacts) == {"ann@x.io", "bob@x.io", "fay@x.io", "e10"}
    assert sorted(doc["contact_id"] for doc in contacts.values()) == [1, 2, 3, 4]
    ann = contacts["ann@x.io"]
    assert (ann["ext_id"], ann["sms"], ann["list_ids"]) == ("e1", "+33611111111", [7])
    assert ann["attributes"] == {"FIRSTNAME": "Ann", "NOTE": "two\r\nlines"}
    assert contacts["bob@x.io"]["whatsapp"] == "+447700900001"
    assert contacts["fay@x.io"]["landline_number"] == "+33122222222"

    # The same import in Brevo's view: its process id, its name, links to each category.
    brevo = {"api-key": headers["Authorization"].removeprefix("Bearer ")}
    process = (await http.get(f"/v3/processes/{view['process_id']}", headers=brevo)).json()
    assert (process["id"], process["name"], process["status"]) == (
        view["process_id"],
        "IMPORTUSER",
        "completed",
    )
    links = process["info"]["import"]
    assert links["duplicate_contact_id"] is None
    assert set(links) == {*CATEGORIES, "duplicate_contact_id"}
    assert [int(row[0]) for row in (await download(links["invalid_emails"]))[1:]] == [5]


async def test_a_dry_run_reports_the_same_and_writes_nothing(
    ferry: RunningFerry,
    e2e_settings: Settings,
    e2e_db: Database,
    e2e_store: ObjectStore,
    http: httpx.AsyncClient,
) -> None:
    project = f"dry{uuid.uuid4().hex[:6]}"
    headers = await api_key(e2e_db, project)
    view = await finished(
        http, await submit(e2e_settings, e2e_store, project, PLANTED, dry_run=True), headers
    )
    assert view["status"] == "completed", view
    assert view["options"]["dry_run"] is True
    assert view["counts"] == COUNTS
    assert set(view["reports"]) == {*CATEGORIES, "rejected_rows"}
    assert await stored_contacts(e2e_db, project) == {}


async def test_a_repeated_import_changes_nothing(
    ferry: RunningFerry,
    e2e_settings: Settings,
    e2e_db: Database,
    e2e_store: ObjectStore,
    http: httpx.AsyncClient,
) -> None:
    project = f"rep{uuid.uuid4().hex[:6]}"
    headers = await api_key(e2e_db, project)
    first = await finished(http, await submit(e2e_settings, e2e_store, project, PLANTED), headers)
    assert first["counts"]["created"] == 4
    before = await stored_contacts(e2e_db, project)
    again = await finished(http, await submit(e2e_settings, e2e_store, project, PLANTED), headers)
    assert again["counts"] == {**COUNTS, "created": 0, "unchanged": 4}
    assert await stored_contacts(e2e_db, project) == before
    # Listed newest first; imports are not exports.
    listed = (await http.get("/v1/imports", headers=headers)).json()
    assert [item["id"] for item in listed["data"]] == [again["id"], first["id"]]
    assert (await http.get("/v1/exports", headers=headers)).json()["data"] == []
    assert (await http.get(f"/v1/exports/{first['id']}", headers=headers)).status_code == 404


async def test_update_existing_false_and_empty_attributes(
    ferry: RunningFerry,
    e2e_settings: Settings,
    e2e_db: Database,
    e2e_store: ObjectStore,
    http: httpx.AsyncClient,
) -> None:
    project = f"opt{uuid.uuid4().hex[:6]}"
    headers = await api_key(e2e_db, project)
    original = b"EMAIL,FIRSTNAME,CITY\nann@x.io,Ann,Paris\n"
    await finished(http, await submit(e2e_settings, e2e_store, project, original), headers)
    change = b"EMAIL,FIRSTNAME,CITY\nann@x.io,Annie,\n"
    kept = await finished(
        http,
        await submit(e2e_settings, e2e_store, project, change, update_existing=False),
        headers,
    )
    assert (kept["counts"]["unchanged"], kept["counts"]["updated"]) == (1, 0)
    cleared = await finished(
        http,
        await submit(e2e_settings, e2e_store, project, change, empty_attributes=True),
        headers,
    )
    assert cleared["counts"]["updated"] == 1
    assert (await stored_contacts(e2e_db, project))["ann@x.io"]["attributes"] == {
        "FIRSTNAME": "Annie"
    }


async def test_each_failure_code_is_reached(
    ferry: RunningFerry,
    e2e_settings: Settings,
    e2e_db: Database,
    e2e_store: ObjectStore,
    http: httpx.AsyncClient,
) -> None:
    project = f"bad{uuid.uuid4().hex[:6]}"
    headers = await api_key(e2e_db, project)
    too_many = ("EMAIL\n" + "".join(f"u{n}@x.io\n" for n in range(501))).encode()
    cases: dict[str, tuple[bytes, dict[str, Any]]] = {
        "FILE_TOO_LARGE": (too_many, {}),
        "INVALID_FILE": (b"PK\x03\x04\x14\x00\x00\x00\x08\x00\x00EMAIL\n", {}),
        "SOURCE_NOT_FOUND": (
            b"",
            {"source": {"bucket": e2e_store.bucket, "key": files.upload_key(project, "none.csv")}},
        ),
        "INVALID_SOURCE": (b"", {"source": {"bucket": "someone-elses", "key": "c.csv"}}),
        "UNSAFE_DESTINATION": (b"", {"source": {"url": "http://127.0.0.1:9/contacts.csv"}}),
        "INVALID_REQUEST": (b"EMAIL\na@x.io\n", {"dataset": "messages"}),
        "UNKNOWN_DATASET": (b"EMAIL\na@x.io\n", {"dataset": "nope"}),
    }
    jobs = {
        code: await submit(e2e_settings, e2e_store, project, data, **options)
        for code, (data, options) in cases.items()
    }
    for code, job_id in jobs.items():
        view = await finished(http, job_id, headers)
        assert (view["status"], view["error_code"]) == ("failed", code), view
        assert view["error_message"]
    assert await stored_contacts(e2e_db, project) == {}


def peak_rss_mib(ferry: RunningFerry) -> float:
    """The highest peak resident memory (VmHWM) of the workers so far."""
    peaks = []
    for worker in ferry.workers:
        assert worker.process is not None
        status = Path(f"/proc/{worker.process.pid}/status").read_text()
        peaks += [int(line.split()[1]) / 1024 for line in status.splitlines() if "VmHWM" in line]
    return max(peaks)


async def test_hostile_files_fail_with_a_clear_code_within_the_memory_bound(
    ferry: RunningFerry,
    e2e_settings: Settings,
    e2e_db: Database,
    e2e_store: ObjectStore,
    http: httpx.AsyncClient,
) -> None:
    # The shapes of issue 9, a few MB each (the line and record limits are 1 MiB whatever the
    # size limit); bench/import_hostile.py runs them at 100 MB. The bound is docs/reliability.md's.
    project = f"hst{uuid.uuid4().hex[:6]}"
    headers = await api_key(e2e_db, project)
    wide = ",".join(f"COLUMN_{n}_{'x' * 40}" for n in range(17_000))  # ~850 KB
    cases: dict[str, tuple[bytes, dict[str, Any], str]] = {
        "wide header": (f"EMAIL,{wide}\na@x.io\n".encode(), {}, "INVALID_FILE"),
        "one long line": (b"EMAIL\n" + b"a" * 4_000_000, {}, "INVALID_FILE"),
        "a line of commas": (b"EMAIL\n" + b"," * 4_000_000, {}, "INVALID_FILE"),
        "an endless record": (b'EMAIL,NOTE\na@x.io,"' + b'a\n","' * 700_000, {}, "INVALID_FILE"),
        "a gzip file": (gzip.compress(b"EMAIL\n" + b"a@x.io\n" * 10**6), {}, "INVALID_FILE"),
        "a bz2 bomb": (
            bz2.compress(b"EMAIL\n" + b"\n" * 10**8),
            {"encoding": "bz2"},
            "INVALID_REQUEST",
        ),
    }
    jobs = {
        name: await submit(e2e_settings, e2e_store, project, data, **options)
        for name, (data, options, _) in cases.items()
    }
    for name, job_id in jobs.items():
        view = await finished(http, job_id, headers)
        assert (name, view["status"], view["error_code"]) == (name, "failed", cases[name][2])
        assert 0 < len(view["error_message"]) < 1000, view["error_message"][:2000]
    assert await stored_contacts(e2e_db, project) == {}
    concurrency = e2e_settings.worker.concurrency
    bound = 128 + 64 * concurrency
    assert peak_rss_mib(ferry) < bound, f"a worker peaked above {bound} MiB"


async def test_brevos_process_view_lists_every_job_with_its_name_and_links(
    ferry: RunningFerry,
    e2e_settings: Settings,
    e2e_db: Database,
    e2e_store: ObjectStore,
    http: httpx.AsyncClient,
) -> None:
    project = f"prc{uuid.uuid4().hex[:6]}"
    headers = await api_key(e2e_db, project)
    brevo = {"api-key": headers["Authorization"].removeprefix("Bearer ")}
    imported = await finished(
        http, await submit(e2e_settings, e2e_store, project, PLANTED), headers
    )
    export_id = str(uuid.uuid4())
    await publish(
        e2e_settings.kafka,
        [
            export_request(
                project_id=project,
                job_id=export_id,
                dataset="contacts",
                filters={},
                columns=["contact_id", "email", "FIRSTNAME", "NOTE"],
            )
        ],
        key=project.encode(),
    )
    exported = await wait_for_job(http, export_id, headers)
    assert exported["status"] == "completed", exported
    assert exported["row_count"] == 4

    listed = (await http.get("/v3/processes", headers=brevo)).json()
    assert listed["count"] == 2
    assert [p["id"] for p in listed["processes"]] == [
        exported["process_id"],
        imported["process_id"],
    ]
    oldest_first = (await http.get("/v3/processes?sort=asc&limit=1", headers=brevo)).json()
    assert [p["id"] for p in oldest_first["processes"]] == [imported["process_id"]]
    second = (await http.get("/v3/processes?sort=asc&limit=1&offset=1", headers=brevo)).json()
    process = second["processes"][0]
    assert (process["id"], process["name"], process["status"]) == (
        exported["process_id"],
        "CONTACT_EXPORT",
        "completed",
    )
    assert process["info"]["export"] == {
        "total_records": 4,
        "file_size": exported["file_size_bytes"],
    }
    rows = await download(process["export_url"])
    assert rows[0] == ["contact_id", "email", "FIRSTNAME", "NOTE"]
    assert rows[1] == ["1", "ann@x.io", "Ann", "two\r\nlines"]

    # Brevo's errors, in Brevo's shape.
    for path, params, status, code in [
        ("/v3/processes/999999999", {}, 404, "document_not_found"),
        ("/v3/processes/abc", {}, 400, "invalid_parameter"),
        ("/v3/processes", {"limit": "51"}, 400, "invalid_parameter"),
        ("/v3/processes", {"sort": "up"}, 400, "invalid_parameter"),
    ]:
        response = await http.get(path, headers=brevo, params=params)
        assert response.status_code == status, (path, response.text)
        assert response.json()["code"] == code
    for bad in ({}, {"api-key": "fry_nope"}, headers):  # a Bearer header is not Brevo's auth
        response = await http.get("/v3/processes", headers=bad)
        assert response.status_code == 401
        assert response.json() == {"code": "unauthorized", "message": "Key not found"}
    # Another project's process answers as a missing one.
    stranger = await api_key(e2e_db, f"str{uuid.uuid4().hex[:6]}")
    theirs = await http.get(
        f"/v3/processes/{imported['process_id']}",
        headers={"api-key": stranger["Authorization"].removeprefix("Bearer ")},
    )
    assert (theirs.status_code, theirs.json()["code"]) == (404, "document_not_found")
