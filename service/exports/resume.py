"""What a new attempt of an export finds left by the one before it: a checkpoint to continue
from (checked against the object store first), and an upload nobody will finish."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import structlog

from service.exports import files
from service.exports.checkpoints import Checkpoint, parts_match
from service.jobs.model import Job
from service.storage import ObjectStore

log = structlog.get_logger(__name__)


async def usable_checkpoint(store: ObjectStore, job: Job) -> Checkpoint | None:
    """The job's checkpoint if the store still holds what it names, else None (start over).

    An upload the checkpoint names may be gone: completed just before the crash (the file was
    closed but the next checkpoint not saved), or cleared by the bucket's lifecycle rule."""
    return await verified_checkpoint(store, job.checkpoint, of=job.id)


async def verified_checkpoint(
    store: ObjectStore, document: Mapping[str, Any] | None, *, of: str
) -> Checkpoint | None:
    """The checkpoint `document` (of a job or of a chunk, named `of`) if the store still holds
    what it names, else None."""
    if document is None:
        return None
    try:
        checkpoint = Checkpoint.from_document(document)
    except ValueError:
        log.warning("export.checkpoint_unreadable", of=of)
        return None
    opened = checkpoint.open_file
    if opened is not None:
        stored = await store.uploaded_parts(opened.key, opened.upload_id)
        if stored is None or not parts_match(stored, opened.parts):
            log.info("export.checkpoint_stale", of=of, upload_id=opened.upload_id)
            return None
    for closed in checkpoint.files:
        if await store.size(closed.key) != closed.size_bytes:
            log.info("export.checkpoint_stale", of=of, missing=closed.key)
            return None
    return checkpoint


async def abort_stale_upload(
    store: ObjectStore, job: Job, *, split: bool, checkpoint: Checkpoint | None
) -> None:
    """Abort the multipart upload a dead attempt began and no checkpoint continues: its parts
    would otherwise linger until the bucket's lifecycle rule removes them."""
    if job.upload_id is None:
        return
    continued = checkpoint.open_file.upload_id if checkpoint and checkpoint.open_file else None
    if job.upload_id == continued:
        return
    if split:
        # The file it was writing is the first that does not exist (those before were closed).
        part = len(checkpoint.files) + 1 if checkpoint else 1
        while await store.size(_key(job, part)) is not None:
            part += 1
        key = _key(job, part)
    else:
        key = _key(job, None)
    await store.abort_upload(key, job.upload_id)
    log.info("export.stale_upload_aborted", job_id=job.id, upload_id=job.upload_id)


def _key(job: Job, part: int | None) -> str:
    return files.file_key(job.project_id, job.id, job.format, job.compression, part=part)
