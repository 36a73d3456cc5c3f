"""The API's own view of jobs, kept from the status topic.

An event is applied only if its `version` is newer than what is stored, so redelivered,
duplicated or reordered events leave the view as it should be. An event is applied only if it
is a job view of the documented form, too: its job and project ids become parts of the object
keys the API signs, so whoever can write to the status topic must not be able to choose them.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import structlog
from pydantic import ValidationError
from pymongo import DESCENDING, IndexModel, UpdateOne
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import BulkWriteError

from service.contracts.imports import BREVO_CATEGORIES, REJECTED_ROWS
from service.contracts.job_view import JobView
from service.contracts.requests import is_valid_project_id
from service.contracts.status import FINISHED, JobStatus
from service.datasets.base import describe_validation_error
from service.errors import InvalidRequestError

log = structlog.get_logger(__name__)

READ_MODEL_COLLECTION = "job_views"


# Every report an import may write.
REPORT_NAMES = frozenset({*BREVO_CATEGORIES, REJECTED_ROWS})
_DUPLICATE_KEY = 11000
_REASON_CHARS = 300  # a refused event's reason echoes its content: keep the log line short


class ReadModel:
    def __init__(
        self,
        database: AsyncDatabase[dict[str, Any]],
        *,
        record_retention: timedelta = timedelta(days=90),
    ) -> None:
        self._views = database[READ_MODEL_COLLECTION]
        self._record_retention = record_retention

    async def ensure_indexes(self) -> None:
        await self._views.create_indexes(
            [
                IndexModel(
                    [
                        ("project_id", 1),
                        ("kind", 1),
                        ("created_at", DESCENDING),
                        ("_id", DESCENDING),
                    ]
                ),
                IndexModel(
                    [
                        ("project_id", 1),
                        ("kind", 1),
                        ("status", 1),
                        ("created_at", DESCENDING),
                        ("_id", DESCENDING),
                    ]
                ),
                # Brevo's /v3/processes: one project's jobs of every kind, by process id.
                IndexModel(
                    [("project_id", 1), ("process_id", 1)],
                    partialFilterExpression={"process_id": {"$type": "number"}},
                ),
                # Views go when the ledger's records go.
                IndexModel([("purge_at", 1)], expireAfterSeconds=0),
            ]
        )

    async def apply(self, view: dict[str, Any]) -> bool:
        """Store `view` (a job as the API shows it) unless a newer version is already stored,
        or it is not a job view of the documented form (then it is logged and left out)."""
        return await self.apply_many([view]) == 1

    async def apply_many(self, views: Sequence[dict[str, Any]]) -> int:
        """`apply` for a batch, in one bulk write: of several views of one job only the newest
        is written. Returns how many views were stored."""
        newest: dict[str, dict[str, Any]] = {}
        for view in views:
            reason = refusal(view)
            if reason is not None:
                log.warning(
                    "read_model.view_refused",
                    job_id=str(view.get("id"))[:64],
                    reason=reason[:_REASON_CHARS],
                )
                continue
            kept = newest.get(view["id"])
            if kept is None or int(view["version"]) > int(kept["version"]):
                newest[view["id"]] = view
        if not newest:
            return 0
        writes = [
            UpdateOne(
                {"_id": view["id"], "version": {"$lt": int(view["version"])}},
                {"$set": self._document(view)},
                upsert=True,
            )
            for view in newest.values()
        ]
        try:
            await self._views.bulk_write(writes, ordered=False)
        except BulkWriteError as exc:
            # A duplicate key: this version or a newer one is already there. Anything else is
            # trouble worth redelivering the batch over.
            errors = exc.details.get("writeErrors", [])
            if any(error.get("code") != _DUPLICATE_KEY for error in errors):
                raise
            return len(newest) - len(errors)
        return len(newest)

    def _document(self, view: dict[str, Any]) -> dict[str, Any]:
        document = {
            "project_id": view["project_id"],
            "kind": view["kind"],
            "status": view["status"],
            "version": int(view["version"]),
            "created_at": datetime.fromisoformat(view["created_at"]),
            "view": view,
        }
        if view.get("process_id") is not None:
            document["process_id"] = int(view["process_id"])
        if JobStatus(view["status"]) in FINISHED:
            ended = view.get("expires_at") or view.get("completed_at") or view["created_at"]
            document["purge_at"] = datetime.fromisoformat(ended) + self._record_retention
        return document

    async def get(self, project_id: str, kind: str, job_id: str) -> dict[str, Any] | None:
        document = await self._views.find_one(
            {"_id": job_id, "project_id": project_id, "kind": kind}
        )
        return None if document is None else dict(document["view"])

    async def process(self, project_id: str, process_id: int) -> dict[str, Any] | None:
        """The job with Brevo process id `process_id`, if it belongs to `project_id`."""
        document = await self._views.find_one({"project_id": project_id, "process_id": process_id})
        return None if document is None else dict(document["view"])

    async def processes(
        self, project_id: str, *, limit: int, offset: int, newest_first: bool
    ) -> tuple[int, list[dict[str, Any]]]:
        """One page of a project's jobs of every kind by process id (creation order), and how
        many there are in all. Jobs recorded before process ids existed have none: not listed."""
        query = {"project_id": project_id, "process_id": {"$type": "number"}}
        total = await self._views.count_documents(query)
        documents = (
            await self._views.find(query)
            .sort("process_id", DESCENDING if newest_first else 1)
            .skip(offset)
            .limit(limit)
            .to_list()
        )
        return total, [dict(document["view"]) for document in documents]

    async def page(
        self,
        project_id: str,
        kind: str,
        *,
        status: str | None,
        limit: int,
        cursor: str | None,
    ) -> tuple[list[dict[str, Any]], str | None]:
        """Newest first. Returns the page and the cursor of the next one (None at the end)."""
        query: dict[str, Any] = {"project_id": project_id, "kind": kind}
        if status is not None:
            query["status"] = status
        if cursor is not None:
            created_at, job_id = _decode_cursor(cursor)
            query["$or"] = [
                {"created_at": {"$lt": created_at}},
                {"created_at": created_at, "_id": {"$lt": job_id}},
            ]
        documents = (
            await self._views.find(query)
            .sort([("created_at", DESCENDING), ("_id", DESCENDING)])
            .limit(limit + 1)
            .to_list()
        )
        views = [dict(document["view"]) for document in documents[:limit]]
        if len(documents) <= limit:
            return views, None
        last = documents[limit - 1]
        return views, _encode_cursor(last["created_at"], str(last["_id"]))


def refusal(view: dict[str, Any]) -> str | None:  # noqa: PLR0911 - one return per reason
    """Why `view` cannot be a job as Ferry shows it; None when it can.

    Beyond the view's model: the job id is a UUID in its canonical form, the project id has the
    form requests are held to, and every report is one Ferry writes, without a link. The API
    derives the keys it signs from these (an event names no key), so a view that passes cannot
    name another project's files."""
    try:
        JobView.model_validate(view)
    except ValidationError as exc:
        return describe_validation_error(exc, prefix="data")
    job_id, project_id = view["id"], view["project_id"]
    if not _is_canonical_uuid(job_id):
        return "data.id: not a job id (a UUID, lowercase, with hyphens)"
    if not is_valid_project_id(project_id):
        return "data.project_id: not a project id"
    for field in ("created_at", "completed_at", "expires_at"):
        if not _is_timestamp(view.get(field), optional=field != "created_at"):
            return f"data.{field}: not an ISO 8601 timestamp"
    for name, report in (view.get("reports") or {}).items():
        if name not in REPORT_NAMES:
            return f"data.reports: {name!r} is not a report Ferry writes"
        if report["url"] is not None or report["expires_at"] is not None:
            return f"data.reports.{name}: links are signed when read, never taken from an event"
    return None


def _is_canonical_uuid(value: str) -> bool:
    try:
        return str(UUID(value)) == value
    except ValueError:
        return False


def _is_timestamp(value: object, *, optional: bool) -> bool:
    if value is None:
        return optional
    try:
        datetime.fromisoformat(str(value))
    except ValueError:
        return False
    return True


# A cursor is the position of the last job of a page: its creation time in microseconds since
# the epoch and its id, e.g. `1764547200123456_0193...`. Every string of this pattern is a valid
# position (17 digits stay below the year 9999), so a request the schema accepts is never refused.
CURSOR_PATTERN = r"^[0-9]{1,17}_[0-9a-f]{32}$"
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


def _encode_cursor(created_at: datetime, job_id: str) -> str:
    if created_at.tzinfo is None:  # MongoDB hands back naive UTC datetimes
        created_at = created_at.replace(tzinfo=UTC)
    return f"{(created_at - _EPOCH) // _MICROSECOND}_{uuid.UUID(job_id).hex}"


def _decode_cursor(cursor: str) -> tuple[datetime, str]:
    if re.fullmatch(CURSOR_PATTERN, cursor) is None:
        raise InvalidRequestError("cursor is not one this API returned")
    micros, job_hex = cursor.split("_")
    return _EPOCH + int(micros) * _MICROSECOND, str(uuid.UUID(job_hex))
