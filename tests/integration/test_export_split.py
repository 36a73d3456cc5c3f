"""Splitting an export once it proves large, against real MongoDB and S3: the job's own worker
writes the first rows (the head) and the rest becomes chunks; an export too small to split
never is; and an attempt that dies at each step of the split (its marker saved, its head
closed, its file composed but not recorded) is continued by the next one into the same bytes
as an unchunked export, with no chunk left behind."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable, Mapping
from typing import Any

import pytest

from service.database import Database
from service.exports import files
from service.exports.chunked import ChunkedExport
from service.jobs.context import JobContext
from service.jobs.ledger import Ledger
from service.jobs.model import ExportResult
from service.storage import ObjectStore
from tests.integration.chunk_stack import Stack
from tests.integration.conftest import new_job
from tests.integration.test_chunked_export import NOTE, ROW_COUNT, unchunked_bytes
from tests.integration.test_export_resume import next_attempt
from tests.integration.test_exporter import claimed, seed

pytestmark = pytest.mark.integration


class DyingContext(JobContext):
    """An attempt whose worker dies at one step of the split: when `dies_at` matches the
    checkpoint about to be saved, it is saved or not (`saved`), then the attempt hangs until
    it is stopped, as a killed worker's would never continue."""

    def __init__(
        self, base: JobContext, dies_at: Callable[[Mapping[str, Any]], bool], *, saved: bool
    ) -> None:
        super().__init__(
            base._ledger,
            base.lease,
            lease_duration=base._lease_duration,
            progress_interval=0.0,
        )
        self._dies_at = dies_at
        self._saved = saved
        self.died = asyncio.Event()

    async def save_checkpoint(self, checkpoint: Mapping[str, Any]) -> None:
        if not self._dies_at(checkpoint):
            await super().save_checkpoint(checkpoint)
            return
        if self._saved:
            await super().save_checkpoint(checkpoint)
        self.died.set()
        await asyncio.Event().wait()


def _head(checkpoint: Mapping[str, Any]) -> Mapping[str, Any]:
    return checkpoint.get("head") or {}


STEPS: dict[str, tuple[Callable[[Mapping[str, Any]], bool], bool]] = {
    # The plan is saved; the head is still an open upload.
    "split": (lambda c: bool(c.get("chunked")) and _head(c).get("closed") is False, True),
    # The head is a closed file; no chunk exists yet.
    "head": (lambda c: _head(c).get("closed") is True and "composed" not in c, True),
    # The file is composed, but the checkpoint saying so is never written.
    "compose": (lambda c: "composed" in c, False),
}


@pytest.mark.parametrize("step", list(STEPS))
async def test_an_attempt_dying_at_each_step_of_the_split_is_continued_into_the_same_bytes(
    stack: Stack, database: Database, ledger: Ledger, store: ObjectStore, step: str
) -> None:
    project = f"p-{uuid.uuid4()}"
    await seed(database, project, ROW_COUNT, NOTE)
    expected = await unchunked_bytes(stack, project)
    stack.start_pool("worker-a")
    job = new_job(project)
    dies_at, saved = STEPS[step]
    first = DyingContext(await claimed(ledger, job), dies_at, saved=saved)
    attempt = asyncio.create_task(stack.exporter(chunked=True).run(job, first))
    await asyncio.wait_for(first.died.wait(), timeout=180)
    attempt.cancel()  # the worker is gone
    await asyncio.gather(attempt, return_exceptions=True)

    retried, second = await next_attempt(ledger, first)
    result = await asyncio.wait_for(stack.exporter(chunked=True).run(retried, second), 180)

    assert await store.read(result.object_key) == expected  # every row once, in order
    assert result.row_count == ROW_COUNT
    assert await stack.chunks.of_job(job.id) == []
    chunk_objects = [
        files.chunk_key(project, job.id, index, job.format, job.compression) for index in range(8)
    ]
    assert [key for key in chunk_objects if await store.size(key) is not None] == []


class CountingSplits(ChunkedExport):
    def __init__(self, base: ChunkedExport) -> None:
        self.__dict__.update(base.__dict__)
        self.tries = 0

    async def split_rest(self, *args: Any, **kwargs: Any) -> dict[str, Any] | None:
        self.tries += 1
        return await super().split_rest(*args, **kwargs)


@pytest.mark.parametrize(("rows", "tries"), [(600, 0), (800, 0), (1000, 1)])
async def test_an_export_too_small_to_split_runs_alone_and_plans_at_most_once(
    stack: Stack, database: Database, ledger: Ledger, store: ObjectStore, rows: int, tries: int
) -> None:
    """Below the threshold (700 rows; batches of 200) no plan is made, nor when the export ends
    with the batch that passes it (800); past it with fewer than the threshold left, one plan
    is made and the export goes on alone."""
    project = f"p-{uuid.uuid4()}"
    await seed(database, project, rows, NOTE)
    expected = await unchunked_bytes(stack, project)
    exporter = stack.exporter(chunked=True)
    counting = CountingSplits(exporter._chunked)  # type: ignore[arg-type]
    exporter._chunked = counting
    job = new_job(project)
    result = await exporter.run(job, await claimed(ledger, job))
    assert await store.read(result.object_key) == expected
    assert counting.tries == tries
    assert await stack.chunks.of_job(job.id) == []
    assert isinstance(result, ExportResult)
