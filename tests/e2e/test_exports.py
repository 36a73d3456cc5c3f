"""Export requests through Kafka, workers, S3 and the API; every downloaded row is checked
against the source data."""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from service.config import Settings
from service.database import Database
from service.demo import demo_messages, load_messages
from service.events.submit import export_request
from tests.e2e.conftest import api_key, wait_for_job
from tests.support.ferry import RunningFerry
from tests.support.kafka import publish

pytestmark = pytest.mark.e2e

END = datetime(2025, 12, 10, tzinfo=UTC)
SPAN = timedelta(days=10)
ALL_COLUMNS = [
    "id",
    "direction",
    "endpoint_id",
    "inbound_endpoint_id",
    "status",
    "event_type",
    "attempt_count",
    "last_response_status",
    "last_error",
    "created_at",
    "delivered_at",
]
FIELD = {"id": "_id"}
OUTBOUND_1 = "00000000-0000-4000-8000-000000000001"
INBOUND_2 = "00000000-0000-4000-9000-000000000002"


@pytest.fixture(scope="module")
async def source(e2e_db: Database) -> dict[str, list[dict[str, Any]]]:
    """Two projects' messages, plus rows exactly on a range's edges."""
    project = f"exp{uuid.uuid4().hex[:6]}"
    other = f"oth{uuid.uuid4().hex[:6]}"
    mine = demo_messages(project, 1500, end=END, span=SPAN, seed=1)
    edges = [
        {**mine[0], "_id": f"{project}-at-start", "created_at": END - timedelta(days=2)},
        {**mine[0], "_id": f"{project}-at-end", "created_at": END - timedelta(days=1)},
    ]
    theirs = demo_messages(other, 200, end=END, span=SPAN, seed=2)
    await load_messages(e2e_db, mine + edges + theirs)
    return {"project": [{"project_id": project}], "rows": mine + edges}


def rfc3339(value: datetime) -> str:
    # Written independently of the service's formatter: the contract, not the code.
    value = value.astimezone(UTC)
    millis = f".{value.microsecond // 1000:03d}" if value.microsecond else ""
    return value.strftime("%Y-%m-%dT%H:%M:%S") + millis + "Z"


def expected_csv_cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, datetime):
        return rfc3339(value)
    text = str(value)
    return "'" + text if text[:1] in {"=", "+", "-", "@", "\t", "\r"} else text


def expected_json_value(value: Any) -> Any:
    return rfc3339(value) if isinstance(value, datetime) else value


def select(rows: list[dict[str, Any]], filters: dict[str, Any]) -> list[dict[str, Any]]:
    start = datetime.fromisoformat(filters["start_time"])
    end = datetime.fromisoformat(filters["end_time"])
    wanted = [
        row
        for row in rows
        if start <= row["created_at"].replace(tzinfo=UTC) < end
        and row["direction"] == filters.get("direction", "outbound")
        and all(
            row[name] == filters[name]
            for name in ("status", "endpoint_id", "inbound_endpoint_id")
            if name in filters
        )
    ]
    return sorted(wanted, key=lambda row: (row["created_at"], row["_id"]))


CASES: dict[str, dict[str, Any]] = {
    "csv-all-outbound": {"filters": {}, "format": "csv", "compression": "none"},
    "jsonl-inbound-endpoint": {
        "filters": {"direction": "inbound", "inbound_endpoint_id": INBOUND_2},
        "format": "jsonl",
        "compression": "none",
    },
    "csv-gzip-status-endpoint": {
        "filters": {"status": "failed_permanent", "endpoint_id": OUTBOUND_1},
        "format": "csv",
        "compression": "gzip",
    },
    "jsonl-gzip-columns": {
        "filters": {"status": "succeeded"},
        "format": "jsonl",
        "compression": "gzip",
        "columns": ["status", "id", "delivered_at"],
    },
    "csv-half-open-window": {
        "filters": {
            "start_time": (END - timedelta(days=2)).isoformat(),
            "end_time": (END - timedelta(days=1)).isoformat(),
        },
        "format": "csv",
        "compression": "none",
    },
}


@pytest.mark.parametrize("case", CASES)
async def test_export_file_matches_the_source_rows(
    case: str,
    source: dict[str, list[dict[str, Any]]],
    ferry: RunningFerry,
    e2e_settings: Settings,
    e2e_db: Database,
    http: httpx.AsyncClient,
) -> None:
    spec = CASES[case]
    project = source["project"][0]["project_id"]
    filters = {
        "start_time": (END - SPAN).isoformat(),
        "end_time": END.isoformat(),
        **spec["filters"],
    }
    job_id = str(uuid.uuid4())
    request = export_request(
        project_id=project,
        job_id=job_id,
        filters=filters,
        export_format=spec["format"],
        compression=spec["compression"],
        columns=spec.get("columns"),
    )
    headers = await api_key(e2e_db, project)
    await publish(e2e_settings.kafka, [request], key=project.encode())
    view = await wait_for_job(http, job_id, headers)
    assert view["status"] == "completed", view

    expected = select(source["rows"], filters)
    assert expected, "the case must select some rows"
    if case == "csv-half-open-window":
        assert expected[0]["_id"] == f"{project}-at-start"
        assert f"{project}-at-end" not in {row["_id"] for row in expected}
    assert view["row_count"] == len(expected)

    response = await http.get(f"/v1/exports/{job_id}/download", headers=headers)
    assert response.status_code == httpx.codes.FOUND
    assert response.headers["location"] == response.json()["data"]["url"]
    async with httpx.AsyncClient() as anonymous:  # the link needs no API key
        file = await anonymous.get(response.headers["location"])
    assert file.status_code == httpx.codes.OK
    body = file.content
    assert len(body) == view["file_size_bytes"]
    assert hashlib.sha256(body).hexdigest() == view["file_sha256"]
    extension = {"csv": "csv", "jsonl": "jsonl"}[spec["format"]]
    extension += ".gz" if spec["compression"] == "gzip" else ""
    assert file.headers["content-disposition"] == (
        f'attachment; filename="messages-{job_id}.{extension}"'
    )
    if spec["compression"] == "gzip":
        body = gzip.decompress(body)

    columns = spec.get("columns") or ALL_COLUMNS
    if spec["format"] == "csv":
        reader = csv.reader(io.StringIO(body.decode(), newline=""))
        header, *rows = list(reader)
        assert header == columns
        assert rows == [
            [expected_csv_cell(row[FIELD.get(name, name)]) for name in columns] for row in expected
        ]
        assert body.count(b"\r\n") == len(expected) + 1 + sum(
            str(row.get("last_error") or "").count("\n") for row in expected
        )
    else:
        lines = [json.loads(line) for line in body.decode().splitlines()]
        assert lines == [
            {name: expected_json_value(row[FIELD.get(name, name)]) for name in columns}
            for row in expected
        ]


async def test_an_export_with_no_matching_rows_is_a_header_only_file(
    ferry: RunningFerry, e2e_settings: Settings, e2e_db: Database, http: httpx.AsyncClient
) -> None:
    project = f"empty{uuid.uuid4().hex[:6]}"
    job_id = str(uuid.uuid4())
    request = export_request(
        project_id=project,
        job_id=job_id,
        filters={"start_time": "2025-01-01T00:00:00Z", "end_time": "2025-01-02T00:00:00Z"},
    )
    headers = await api_key(e2e_db, project)
    await publish(e2e_settings.kafka, [request], key=project.encode())
    view = await wait_for_job(http, job_id, headers)
    assert (view["status"], view["row_count"]) == ("completed", 0)
    link = await http.get(f"/v1/exports/{job_id}/download", headers=headers)
    async with httpx.AsyncClient() as anonymous:
        body = (await anonymous.get(link.headers["location"])).content
    assert body == (",".join(ALL_COLUMNS) + "\r\n").encode()


async def test_a_split_export_links_every_file_and_its_manifest(
    source: dict[str, list[dict[str, Any]]],
    ferry: RunningFerry,
    e2e_settings: Settings,
    e2e_db: Database,
    http: httpx.AsyncClient,
) -> None:
    project = source["project"][0]["project_id"]
    filters = {"start_time": (END - SPAN).isoformat(), "end_time": END.isoformat()}
    job_id = str(uuid.uuid4())
    request = export_request(
        project_id=project, job_id=job_id, filters=filters, max_rows_per_file=300
    )
    headers = await api_key(e2e_db, project)
    await publish(e2e_settings.kafka, [request], key=project.encode())
    view = await wait_for_job(http, job_id, headers)
    assert view["status"] == "completed", view
    expected = select(source["rows"], filters)
    parts = -(-len(expected) // 300)
    assert parts >= 2
    assert view["max_rows_per_file"] == 300
    assert [file["part"] for file in view["files"]] == list(range(1, parts + 1))
    assert view["file_count"] == parts
    assert view["file_sha256"] is None

    rows: list[list[str]] = []
    async with httpx.AsyncClient() as anonymous:
        for file in view["files"]:
            body = (await anonymous.get(file["url"])).content
            assert (len(body), hashlib.sha256(body).hexdigest()) == (
                file["size_bytes"],
                file["sha256"],
            )
            header, *these = list(csv.reader(io.StringIO(body.decode(), newline="")))
            assert header == ALL_COLUMNS  # every file has its header
            assert len(these) == file["rows"] <= 300
            rows += these
        manifest = (await anonymous.get(view["manifest"]["url"])).json()

        # The download redirects to the first file; ?part=N to the others.
        first = await http.get(f"/v1/exports/{job_id}/download", headers=headers)
        assert first.status_code == httpx.codes.FOUND
        data = first.json()["data"]
        assert (data["part"], len(data["files"])) == (1, parts)
        assert data["manifest_url"]
        last = await http.get(f"/v1/exports/{job_id}/download?part={parts}", headers=headers)
        assert last.status_code == httpx.codes.FOUND
        disposition = (await anonymous.get(last.headers["location"])).headers["content-disposition"]
        assert disposition == f'attachment; filename="messages-{job_id}-part-{parts:05d}.csv"'
        beyond = await http.get(f"/v1/exports/{job_id}/download?part={parts + 1}", headers=headers)
        assert beyond.status_code == httpx.codes.NOT_FOUND

    assert [row[0] for row in rows] == [row["_id"] for row in expected]
    assert manifest["total_rows"] == len(expected) == view["row_count"]
    assert [(f["rows"], f["sha256"]) for f in manifest["files"]] == [
        (f["rows"], f["sha256"]) for f in view["files"]
    ]

    # Brevo's view keeps its one link: the first file.
    brevo = {"api-key": headers["Authorization"][7:]}
    process = await http.get(f"/v3/processes/{view['process_id']}", headers=brevo)
    assert process.json()["export_url"].split("?")[0] == data["url"].split("?")[0]


async def test_files_past_those_the_view_shows_are_reached_by_part(
    source: dict[str, list[dict[str, Any]]],
    ferry: RunningFerry,
    e2e_settings: Settings,
    e2e_db: Database,
    http: httpx.AsyncClient,
) -> None:
    project = source["project"][0]["project_id"]
    filters = {"start_time": (END - SPAN).isoformat(), "end_time": END.isoformat()}
    expected = select(source["rows"], filters)
    per_file = -(-len(expected) // 120)  # about 120 files, more than the view shows
    job_id = str(uuid.uuid4())
    request = export_request(
        project_id=project, job_id=job_id, filters=filters, max_rows_per_file=per_file
    )
    headers = await api_key(e2e_db, project)
    await publish(e2e_settings.kafka, [request], key=project.encode())
    view = await wait_for_job(http, job_id, headers, timeout=120)
    assert view["status"] == "completed", view
    count = view["file_count"]
    assert count > len(view["files"]) == 100
    last = await http.get(f"/v1/exports/{job_id}/download?part={count}", headers=headers)
    assert last.status_code == httpx.codes.FOUND
    async with httpx.AsyncClient() as anonymous:
        body = (await anonymous.get(last.headers["location"])).content
        manifest = (await anonymous.get(view["manifest"]["url"])).json()
    header, *rows = list(csv.reader(io.StringIO(body.decode(), newline="")))
    assert header == ALL_COLUMNS
    assert [row[0] for row in rows] == [row["_id"] for row in expected[(count - 1) * per_file :]]
    assert len(manifest["files"]) == count
    assert manifest["files"][-1]["sha256"] == hashlib.sha256(body).hexdigest()
