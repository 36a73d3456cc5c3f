"""A completed export's view: its files and manifest, and a bound on what an event carries."""

from __future__ import annotations

import json
import uuid

from service.clock import utcnow
from service.jobs.model import ExportFile, ExportResult, Job
from service.jobs.status import JobStatus
from service.jobs.view import MAX_FILES_SHOWN, job_view


def completed(result: ExportResult) -> Job:
    now = utcnow()
    return Job(
        id=str(uuid.uuid4()),
        project_id="p1",
        dataset="messages",
        filters={"start_time": "2025-12-01T00:00:00Z", "end_time": "2025-12-02T00:00:00Z"},
        request_source="/tests",
        request_id="r",
        status=JobStatus.COMPLETED,
        created_at=now,
        updated_at=now,
        result=result,
        max_rows_per_file=10,
    )


def test_a_split_export_shows_its_first_files_and_counts_them_all() -> None:
    many = 10_000
    result = ExportResult(
        object_key="exports/p1/j/part-00001.csv",
        row_count=many * 10,
        file_size_bytes=many * 999,
        file_sha256=None,
        files=[
            ExportFile(
                key=f"exports/p1/j/part-{n:05d}.csv",
                part=n,
                rows=10,
                size_bytes=999,
                sha256="f" * 64,
            )
            for n in range(1, many + 1)
        ],
        manifest_key="exports/p1/j/manifest.json",
    )
    view = job_view(completed(result))
    assert view["file_count"] == many
    assert [file["part"] for file in view["files"]] == list(range(1, MAX_FILES_SHOWN + 1))
    assert view["files"][0]["name"] == "part-00001.csv"
    assert view["manifest"] == {"name": "manifest.json", "url": None, "expires_at": None}
    # A status event carries the view: however many files, it stays far below the broker's 1 MiB.
    assert len(json.dumps(view)) < 64 * 1024


def test_an_export_finished_before_files_were_split_shows_its_one_file() -> None:
    result = ExportResult(
        object_key="exports/p1/j.csv", row_count=5, file_size_bytes=50, file_sha256="a" * 64
    )
    view = job_view(completed(result))
    assert view["file_count"] == 1
    assert view["files"] == [
        {
            "part": None,
            "name": "j.csv",
            "rows": 5,
            "size_bytes": 50,
            "sha256": "a" * 64,
            "url": None,
            "expires_at": None,
        }
    ]
    assert view["manifest"] is None
