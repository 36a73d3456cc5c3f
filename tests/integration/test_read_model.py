"""The API's read model: newer versions win whatever the order of arrival; pages are stable."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from service.api.read_model import ReadModel
from service.database import Database
from service.errors import InvalidRequestError
from service.jobs.status import JobStatus
from service.jobs.view import job_view
from tests.support.status_events import a_job

pytestmark = pytest.mark.integration


def view(job_id: str, project: str, version: int, status: str, created: str) -> dict[str, Any]:
    """An export as a status event carries it."""
    data = job_view(a_job(project, job_id=job_id, status=JobStatus(status), version=version))
    return {**data, "created_at": created}


async def test_only_newer_versions_are_applied(database: Database) -> None:
    model = ReadModel(database)
    await model.ensure_indexes()
    job, project = str(uuid.uuid4()), f"p{uuid.uuid4().hex[:6]}"
    created = "2025-12-01T00:00:00Z"
    assert await model.apply(view(job, project, 2, "processing", created))
    assert not await model.apply(view(job, project, 1, "pending", created))  # late
    assert not await model.apply(view(job, project, 2, "processing", created))  # duplicate
    assert await model.apply(view(job, project, 3, "completed", created))
    stored = await model.get(project, "export", job)
    assert stored is not None
    assert (stored["status"], stored["version"]) == ("completed", 3)
    assert await model.get("other-project", "export", job) is None


async def test_a_batch_stores_each_jobs_newest_view_once(database: Database) -> None:
    model = ReadModel(database)
    await model.ensure_indexes()
    project, created = f"p{uuid.uuid4().hex[:6]}", "2025-12-01T00:00:00Z"
    first, second = str(uuid.uuid4()), str(uuid.uuid4())
    assert await model.apply(view(second, project, 5, "completed", created))
    batch = [
        view(first, project, 1, "pending", created),
        view(first, project, 3, "completed", created),
        view(first, project, 2, "processing", created),  # late within the batch
        view(second, project, 4, "processing", created),  # older than what is stored
        {"id": "not a job"},  # refused, logged, and holds nothing up
    ]
    assert await model.apply_many(batch) == 1
    for job_id, expected in ((first, ("completed", 3)), (second, ("completed", 5))):
        stored = await model.get(project, "export", job_id)
        assert stored is not None
        assert (stored["status"], stored["version"]) == expected


async def test_pages_are_newest_first_and_cover_everything_once(database: Database) -> None:
    model = ReadModel(database)
    project = f"p{uuid.uuid4().hex[:6]}"
    ids = []
    for n in range(7):
        job = str(uuid.uuid4())
        ids.append(job)
        status = "failed" if n % 3 == 0 else "completed"
        # Two jobs share each timestamp: the id breaks the tie.
        await model.apply(view(job, project, 1, status, f"2025-12-01T00:00:0{n // 2}Z"))
    seen: list[str] = []
    cursor = None
    while True:
        page, cursor = await model.page(project, "export", status=None, limit=3, cursor=cursor)
        seen += [item["id"] for item in page]
        if cursor is None:
            break
    assert sorted(seen) == sorted(ids)
    assert len(seen) == len(set(seen))
    created = [n // 2 for n in range(7)]
    expected = [job for _, job in sorted(zip(created, ids, strict=True), reverse=True)]
    assert seen == expected
    failed, _ = await model.page(project, "export", status="failed", limit=10, cursor=None)
    assert {item["id"] for item in failed} == {ids[0], ids[3], ids[6]}


async def test_a_forged_cursor_is_an_invalid_request(database: Database) -> None:
    with pytest.raises(InvalidRequestError):
        await ReadModel(database).page("p", "export", status=None, limit=3, cursor="!!garbage")
