"""A Parquet export through Kafka, a worker, S3 and both APIs: the file opens in pyarrow with
typed columns holding every source row."""

from __future__ import annotations

import hashlib
import io
import uuid
from datetime import UTC, datetime, timedelta

import httpx
import pyarrow as pa
import pyarrow.parquet as pq
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


async def test_a_parquet_export_holds_every_row_with_its_type(
    ferry: RunningFerry, e2e_settings: Settings, e2e_db: Database, http: httpx.AsyncClient
) -> None:
    project = f"pq{uuid.uuid4().hex[:6]}"
    rows = demo_messages(project, 400, end=END, span=SPAN, seed=3)
    await load_messages(e2e_db, rows)
    job_id = str(uuid.uuid4())
    filters = {"start_time": (END - SPAN).isoformat(), "end_time": END.isoformat()}
    request = export_request(
        project_id=project, job_id=job_id, filters=filters, export_format="parquet"
    )
    headers = await api_key(e2e_db, project)
    await publish(e2e_settings.kafka, [request], key=project.encode())
    view = await wait_for_job(http, job_id, headers)
    assert view["status"] == "completed", view
    assert view["format"] == "parquet"

    link = await http.get(f"/v1/exports/{job_id}/download", headers=headers)
    assert link.status_code == httpx.codes.FOUND
    async with httpx.AsyncClient() as anonymous:
        file = await anonymous.get(link.headers["location"])
    assert file.headers["content-disposition"] == (
        f'attachment; filename="messages-{job_id}.parquet"'
    )
    assert file.headers["content-type"] == "application/vnd.apache.parquet"
    assert len(file.content) == view["file_size_bytes"]

    table = pq.read_table(io.BytesIO(file.content))
    expected = sorted(
        (row for row in rows if row["direction"] == "outbound"),
        key=lambda row: (row["created_at"], row["_id"]),
    )
    assert view["row_count"] == table.num_rows == len(expected)
    assert table.schema.field("attempt_count").type == pa.int64()
    assert table.schema.field("created_at").type == pa.timestamp("ms", tz="UTC")
    assert table.column("id").to_pylist() == [row["_id"] for row in expected]
    assert table.column("attempt_count").to_pylist() == [row["attempt_count"] for row in expected]
    assert table.column("created_at").to_pylist() == [
        row["created_at"].replace(tzinfo=UTC) for row in expected
    ]
    assert table.column("last_error").to_pylist() == [row["last_error"] for row in expected]

    brevo = {"api-key": headers["Authorization"].removeprefix("Bearer ")}
    processes = await http.get("/v3/processes", headers=brevo)
    assert processes.status_code == httpx.codes.OK
    (process,) = processes.json()["processes"]  # the project's only job
    assert process["info"]["export"]["total_records"] == len(expected)
    async with httpx.AsyncClient() as anonymous:
        again = await anonymous.get(process["export_url"])
    assert again.content == file.content


async def test_a_parquet_export_split_by_rows_is_complete_files_with_a_manifest(
    ferry: RunningFerry, e2e_settings: Settings, e2e_db: Database, http: httpx.AsyncClient
) -> None:
    project = f"pq{uuid.uuid4().hex[:6]}"
    rows = demo_messages(project, 400, end=END, span=SPAN, seed=4)
    await load_messages(e2e_db, rows)
    job_id = str(uuid.uuid4())
    filters = {"start_time": (END - SPAN).isoformat(), "end_time": END.isoformat()}
    request = export_request(
        project_id=project,
        job_id=job_id,
        filters=filters,
        export_format="parquet",
        max_rows_per_file=70,
    )
    headers = await api_key(e2e_db, project)
    await publish(e2e_settings.kafka, [request], key=project.encode())
    view = await wait_for_job(http, job_id, headers)
    assert view["status"] == "completed", view
    expected = sorted(
        (row for row in rows if row["direction"] == "outbound"),
        key=lambda row: (row["created_at"], row["_id"]),
    )
    parts = -(-len(expected) // 70)
    assert parts >= 2
    assert view["file_count"] == parts
    ids: list[str] = []
    async with httpx.AsyncClient() as anonymous:
        for file in view["files"]:
            assert file["name"] == f"part-{file['part']:05d}.parquet"
            body = (await anonymous.get(file["url"])).content
            assert hashlib.sha256(body).hexdigest() == file["sha256"]
            table = pq.read_table(io.BytesIO(body))  # each file is a Parquet file of its own
            assert table.num_rows == file["rows"] <= 70
            assert table.schema.field("attempt_count").type == pa.int64()
            ids += table.column("id").to_pylist()
        manifest = (await anonymous.get(view["manifest"]["url"])).json()
    assert ids == [row["_id"] for row in expected]
    assert manifest["total_rows"] == len(expected)
    assert [f["sha256"] for f in manifest["files"]] == [f["sha256"] for f in view["files"]]
