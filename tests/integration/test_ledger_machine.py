"""The ledger enforces the status machine: every change names its target status, and one the
table does not allow is refused with the document untouched (real MongoDB)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from service.contracts.envelope import JOB_STATUS_CHANGED, JOB_UPDATED
from service.database import Database
from service.jobs.changes import Change, JobChanges, TransitionRefusedError
from service.jobs.ledger import ClaimPolicy, Lease, Ledger
from service.jobs.model import JOBS_COLLECTION, Progress
from service.jobs.status import FINISHED, TRANSITIONS, JobStatus
from tests.integration.conftest import events_of, new_job

pytestmark = pytest.mark.integration

POLICY = ClaimPolicy(lease=timedelta(seconds=30), max_lost_leases=3, max_running_per_project=100)
statuses = st.sampled_from(list(JobStatus))


async def _stored(database: Database, job_id: str) -> dict[str, Any]:
    document = await database[JOBS_COLLECTION].find_one({"_id": job_id})
    assert document is not None
    return document


@settings(
    max_examples=100,
    deadline=None,  # a loaded machine's database round trips are slow, not wrong
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(current=statuses, target=statuses)
async def test_every_change_is_applied_when_the_table_allows_it_and_refused_untouched_if_not(
    database: Database, current: JobStatus, target: JobStatus
) -> None:
    job = new_job(status=current)
    await database[JOBS_COLLECTION].insert_one({**job.to_document(), "revision": 1})
    before = await _stored(database, job.id)
    changes = JobChanges(database[JOBS_COLLECTION], event_source="/tests", on_event=lambda: None)
    allowed = target in TRANSITIONS[current] or (target is current and current not in FINISHED)

    if not allowed:
        with pytest.raises(TransitionRefusedError):
            await changes.apply({"_id": job.id}, Change(target, set={"error_code": "X"}))
        assert await _stored(database, job.id) == before
        return

    changed = await changes.apply({"_id": job.id}, Change(target, set={"error_code": "X"}))
    assert changed is not None
    after = await _stored(database, job.id)
    assert (after["status"], after["error_code"]) == (target.value, "X")
    assert (after["version"], after["revision"]) == (before["version"] + 1, 2)
    [event] = await events_of(database, job.id)
    # `previous` is the status of the document changed, never one passed by hand.
    if target is current:
        assert event["type"] == JOB_UPDATED
        assert "previous_status" not in event["data"]
    else:
        assert event["type"] == JOB_STATUS_CHANGED
        assert event["data"]["previous_status"] == current.value
    assert event["data"]["status"] == target.value
    assert event["data"]["version"] == after["version"]


async def test_a_progress_tick_sets_its_fields_and_leaves_a_concurrent_writers_field(
    ledger: Ledger, database: Database
) -> None:
    job = new_job()
    await ledger.accept(job)
    claimed = await ledger.claim("w1", POLICY)
    assert claimed is not None
    lease = Lease(claimed.id, "w1", claimed.attempt)
    jobs = database[JOBS_COLLECTION]
    before = await _stored(database, job.id)

    # Another writer sets a field the ledger does not know between the tick's read and its
    # write, without counting a revision: a whole-document replace would erase it.
    original_find_one = jobs.find_one

    async def find_one_then_write(*args: Any, **kwargs: Any) -> Any:
        document = await original_find_one(*args, **kwargs)
        query = args[0] if args else kwargs.get("filter")
        if isinstance(query, Mapping) and query.get("lease_owner") == "w1":
            await jobs.update_one({"_id": job.id}, {"$set": {"written_meanwhile": "kept"}})
        return document

    ledger._changes._jobs = _Intercepted(jobs, find_one_then_write)  # type: ignore[assignment]
    await ledger.save_progress(lease, Progress(rows_processed=7), extend_by=timedelta(minutes=1))

    stored = await _stored(database, job.id)
    assert stored["written_meanwhile"] == "kept"
    assert stored["progress"]["rows_processed"] == 7
    assert stored["lease_expires_at"] > before["lease_expires_at"]
    assert [
        event["data"]["progress"]["rows_processed"] for event in await events_of(database, job.id)
    ][-1] == 7


class _Intercepted:
    """A collection whose `find_one` is replaced; every other call goes to the real one."""

    def __init__(self, collection: Any, find_one: Any) -> None:
        self._collection = collection
        self.find_one = find_one

    def __getattr__(self, name: str) -> Any:
        return getattr(self._collection, name)
