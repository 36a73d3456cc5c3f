"""The outbox: status events written with the job change that caused them.

Each job document carries its own unpublished events (`outbox`, flagged by `outbox_pending`),
appended in the same single-document write as the change: an event exists exactly when the
change happened, without a multi-document transaction. A job's events are published in the
order they were written and share a partition (key = job id). Delivery is at least once; every
event carries the job's `version`, so consumers drop what they have already seen.

Jobs are spread over OUTBOX_SHARDS shards by a hash of their id (`outbox_shard`), so several
relays can share the outbox, each publishing the shards it holds a lease on
(service/events/relay.py).

This module owns the outbox fields (`outbox`, `outbox_pending`, `outbox_shard`): the ledger
writes them only through `new_outbox` and `append_fields`, the relay reads and clears them.
"""

from __future__ import annotations

import json
import zlib
from typing import Any

import structlog
from bson import ObjectId
from pymongo import ASCENDING, IndexModel

from service.clock import utcnow, uuid7
from service.contracts.envelope import JOB_STATUS_CHANGED, JOB_UPDATED
from service.contracts.job_view import JobView
from service.contracts.status import JobStatus
from service.contracts.status_events import JobStatusChanged, JobUpdated, StatusChangedData
from service.jobs.model import Job
from service.jobs.view import job_view

log = structlog.get_logger(__name__)

# Fixed for an installation: a job's shard is stored with it. More shards than relays lets
# relays join and leave with an even share; 32 serves up to 32 relays.
OUTBOX_SHARDS = 32

# A status event larger than this is not published but dead-lettered (the broker's default
# limit is 1 MiB with key and headers). Echoed input is capped, so events are a few KB; this
# is the safety net that keeps one event from blocking the relay.
MAX_STATUS_EVENT_BYTES = 512 * 1024

# The outbox relays' work list: jobs with events not yet published, by shard.
OUTBOX_INDEXES = (
    IndexModel(
        [("outbox_pending", ASCENDING), ("updated_at", ASCENDING)],
        partialFilterExpression={"outbox_pending": True},
    ),
    IndexModel(
        [("outbox_pending", ASCENDING), ("outbox_shard", ASCENDING)],
        partialFilterExpression={"outbox_pending": True},
    ),
)


def shard_of(job_id: str) -> int:
    """The outbox shard of a job: stable across processes and versions (CRC-32 of the id)."""
    return zlib.crc32(job_id.encode()) % OUTBOX_SHARDS


def encode_event(event: dict[str, Any]) -> bytes:
    return json.dumps(event, separators=(",", ":"), default=str).encode()


def outbox_entry(
    *, key: str, event: dict[str, Any], max_bytes: int = MAX_STATUS_EVENT_BYTES
) -> dict[str, Any]:
    """An outbox entry for `event`. One too large to publish is marked `oversize` when it is
    written, so the relay dead-letters it at once instead of trying the broker."""
    entry: dict[str, Any] = {
        "_id": ObjectId(),
        "key": key,
        "event": event,
        "created_at": utcnow(),
    }
    size = len(encode_event(event))
    if size > max_bytes:
        entry["oversize"] = size
    return entry


def append_fields(entry: dict[str, Any], job_id: str) -> dict[str, Any]:
    """The update operators that append `entry` to a job's outbox and flag it for the relay."""
    return {
        "$push": {"outbox": entry},
        "$set": {"outbox_pending": True, "outbox_shard": shard_of(job_id)},
    }


def new_outbox(entry: dict[str, Any], job_id: str) -> dict[str, Any]:
    """The outbox fields of a job recorded with its first event."""
    return {"outbox": [entry], "outbox_pending": True, "outbox_shard": shard_of(job_id)}


def status_entry(job: Job, previous: JobStatus | None, *, source: str) -> dict[str, Any]:
    """The outbox entry of a change that left `job` as it is, from `previous` (None: the job
    was just recorded): `ferry.job.status_changed.v1` when the status moved, else
    `ferry.job.updated.v1`. The event is built as its model, with the job's view built once,
    and stored as the JSON object that goes on the wire."""
    view = job_view(job)
    header: dict[str, Any] = {
        "specversion": "1.0",
        "id": uuid7(),
        "source": source,
        "subject": job.id,
        "time": job.updated_at,
    }
    event: JobStatusChanged | JobUpdated
    if previous is None or previous is not job.status:
        data = StatusChangedData.model_validate({**view, "previous_status": previous})
        event = JobStatusChanged(**header, type=JOB_STATUS_CHANGED, data=data)
    else:
        event = JobUpdated(**header, type=JOB_UPDATED, data=JobView.model_validate(view))
    entry = outbox_entry(key=job.id, event=event.model_dump(mode="json"))
    if "oversize" in entry:
        # Echoed input is capped, so this is a bug to fix; the relay dead-letters the event.
        log.error("outbox.event_oversize", job_id=job.id, size=entry["oversize"])
    return entry
