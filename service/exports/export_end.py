"""How an export attempt ends: the manifest beside its files and the result the job records;
or, when it stops early, its upload kept for the next attempt or discarded with its files."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import asdict
from datetime import datetime
from typing import Any

import structlog

from service.datasets.base import Column, Dataset
from service.errors import LeaseLostError
from service.exports import files
from service.exports.file_parts import FileLimits, FileSequence, WrittenFile
from service.exports.manifest import build_manifest, encode_manifest
from service.jobs.context import JobContext
from service.jobs.failures import classify
from service.jobs.model import ExportFile, ExportResult, Job
from service.storage import ObjectStore

log = structlog.get_logger(__name__)


async def deliver(  # noqa: PLR0917 - what a finished export is made of
    store: ObjectStore,
    job: Job,
    context: JobContext,
    dataset: Dataset[Any],
    columns: Sequence[Column],
    written: list[WrittenFile],
    *,
    data_as_of: datetime,
    limits: FileLimits,
) -> ExportResult:
    """The manifest beside the files, then the result. Stopped for good on the way (a cancel
    landing after the files were closed), it removes the files and the manifest: a job that
    ends without a result leaves none."""
    manifest_key = files.manifest_key(job.project_id, job.id, split=limits.split)
    names = [
        files.file_name(job.id, job.format, job.compression, part=file.part) for file in written
    ]
    manifest = build_manifest(job, dataset, columns, written, data_as_of=data_as_of, names=names)
    try:
        await context.confirm_lease()
        await store.put(
            manifest_key, encode_manifest(manifest), content_type=files.MANIFEST_CONTENT_TYPE
        )
        await _remove_leftovers(store, job, limits, written)
    except BaseException as exc:
        if not worth_continuing(exc, context):
            keys = [*(file.key for file in written), manifest_key]
            try:
                await asyncio.shield(_delete(store, keys))
            except Exception:
                log.warning("export.cleanup_failed", job_id=job.id, exc_info=True)
        raise
    return _result(written, manifest_key)


async def stop_attempt(
    store: ObjectStore, job: Job, context: JobContext, output: FileSequence, exc: BaseException
) -> None:
    """The attempt stops on `exc`: keep its upload for the next attempt, or discard it."""
    stopping = time.monotonic()
    keep = worth_continuing(exc, context)
    try:
        await asyncio.shield(output.detach() if keep else _discard(store, output))
    except Exception:
        log.warning("export.cleanup_failed", job_id=job.id, exc_info=True)
    log.info(
        "export.stopped",
        job_id=job.id,
        reason=type(exc).__name__,
        kept_for_next_attempt=keep,
        seconds=round(time.monotonic() - stopping, 3),
    )


def worth_continuing(exc: BaseException, context: JobContext) -> bool:
    """Whether the attempt's upload and files stay for a later attempt to continue: yes when
    one will come (a transient failure, a worker handing its jobs back) and when the job is no
    longer this attempt's (its new owner may be continuing them); no when the job ends here
    (cancelled, timed out, or failed for good)."""
    if isinstance(exc, LeaseLostError):
        return True
    if isinstance(exc, asyncio.CancelledError):
        # The runner says when it stops an attempt for good; otherwise this is a shutdown
        # (the job is handed back) or a lost lease.
        return not context.ends_here
    if isinstance(exc, Exception):
        return classify(exc).transient
    return True


async def _delete(store: ObjectStore, keys: list[str]) -> None:
    for key in keys:
        await store.delete(key)


async def _discard(store: ObjectStore, output: FileSequence) -> None:
    """The job ends without a result: its upload is aborted and its closed files go."""
    await output.abort()
    await _delete(store, [file.key for file in output.files])


async def _remove_leftovers(
    store: ObjectStore, job: Job, limits: FileLimits, written: list[WrittenFile]
) -> None:
    """Files a dead attempt closed beyond this attempt's last one (the data may have changed
    in between) would look like part of the export: they go."""
    if not limits.split:
        return
    part = len(written) + 1
    while True:
        key = files.file_key(job.project_id, job.id, job.format, job.compression, part=part)
        if await store.size(key) is None:
            return
        await store.delete(key)
        part += 1


def _result(written: list[WrittenFile], manifest_key: str) -> ExportResult:
    return ExportResult(
        object_key=written[0].key,
        row_count=sum(file.rows for file in written),
        file_size_bytes=sum(file.size_bytes for file in written),
        file_sha256=written[0].sha256 if len(written) == 1 else None,
        files=[ExportFile(**asdict(file)) for file in written],
        manifest_key=manifest_key,
    )
