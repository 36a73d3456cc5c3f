"""Webhook endpoints: per project, a URL, the event types it wants, and whether it is enabled.

An endpoint is disabled by hand, when its URL answers 410 Gone, or when every attempt to reach it
has failed for `disable_after_failing_seconds` (5 days). While disabled it receives nothing.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator
from pymongo import ASCENDING, IndexModel, ReturnDocument
from pymongo.asynchronous.database import AsyncDatabase

from service.clock import as_utc, utcnow, uuid7
from service.contracts.requests import is_valid_project_id
from service.error_codes import ErrorCode
from service.errors import InvalidRequestError, NotFoundError
from service.outbound.urls import check_http_url
from service.webhooks.event_types import check_subscriptions, subscriptions_matching

ENDPOINTS_COLLECTION = "webhook_endpoints"

DisabledReason = Literal["manual", "gone", "failing"]

_MAX_DESCRIPTION = 500


class Endpoint(BaseModel):
    """An endpoint as stored (one MongoDB document)."""

    model_config = ConfigDict(populate_by_name=True)

    id: str = Field(alias="_id")
    project_id: str
    url: str
    event_types: list[str]
    description: str | None = None
    enabled: bool = True
    disabled_reason: DisabledReason | None = None
    disabled_at: datetime | None = None
    # The first failed attempt since the last success; cleared by a success.
    failing_since: datetime | None = None
    created_at: datetime
    updated_at: datetime

    @field_validator("disabled_at", "failing_since", "created_at", "updated_at")
    @classmethod
    def _aware(cls, value: datetime | None) -> datetime | None:
        return None if value is None else as_utc(value)

    def wants(self, event: str, *, at: datetime) -> bool:
        """Whether `event`, which happened `at`, is for this endpoint: enabled, subscribed, and
        added before it happened, so a new endpoint gets no history (nor a replay of it)."""
        return (
            self.enabled
            and self.created_at <= at
            and any(
                subscription in self.event_types for subscription in subscriptions_matching(event)
            )
        )


class EndpointNotFoundError(NotFoundError):
    def __init__(self, endpoint_id: str) -> None:
        super().__init__(f"webhook endpoint {endpoint_id} not found")
        self.endpoint_id = endpoint_id


class EndpointStore:
    def __init__(self, database: AsyncDatabase[dict[str, Any]]) -> None:
        self._endpoints = database[ENDPOINTS_COLLECTION]

    async def ensure_indexes(self) -> None:
        await self._endpoints.create_indexes(
            [IndexModel([("project_id", ASCENDING), ("enabled", ASCENDING)])]
        )

    # Management ---------------------------------------------------------------------------

    async def add(
        self,
        project_id: str,
        url: str,
        event_types: Sequence[str],
        *,
        description: str | None = None,
    ) -> Endpoint:
        """A new, enabled endpoint. InvalidRequestError says what is wrong with the input."""
        if not is_valid_project_id(project_id):
            raise InvalidRequestError(f"invalid project id {project_id!r}")
        try:
            checked_url = check_http_url(url)
        except ValueError as exc:
            raise InvalidRequestError(f"url {url!r} {exc}", code=ErrorCode.INVALID_URL) from exc
        try:
            subscriptions = check_subscriptions(event_types)
        except ValueError as exc:
            raise InvalidRequestError(str(exc), code=ErrorCode.INVALID_EVENT_TYPES) from exc
        if description is not None and len(description) > _MAX_DESCRIPTION:
            raise InvalidRequestError(f"description is longer than {_MAX_DESCRIPTION} characters")
        now = utcnow()
        endpoint = Endpoint(
            id=uuid7(),
            project_id=project_id,
            url=checked_url,
            event_types=subscriptions,
            description=description,
            created_at=now,
            updated_at=now,
        )
        # Unset fields are left out, not stored as null: `$min` in note_failure needs that.
        await self._endpoints.insert_one(endpoint.model_dump(by_alias=True, exclude_none=True))
        return endpoint

    async def get(self, endpoint_id: str) -> Endpoint | None:
        document = await self._endpoints.find_one({"_id": endpoint_id})
        return None if document is None else Endpoint.model_validate(document)

    async def find(self, project_id: str | None = None) -> list[Endpoint]:
        query = {} if project_id is None else {"project_id": project_id}
        cursor = self._endpoints.find(query).sort([("project_id", ASCENDING), ("_id", ASCENDING)])
        return [Endpoint.model_validate(document) async for document in cursor]

    async def enable(self, endpoint_id: str) -> Endpoint:
        """Enabled again, with a clean record: the 5-day clock starts from the next failure."""
        return await self._set(
            endpoint_id,
            {"enabled": True},
            unset=("disabled_reason", "disabled_at", "failing_since"),
        )

    async def disable(self, endpoint_id: str, reason: DisabledReason = "manual") -> Endpoint:
        return await self._set(
            endpoint_id, {"enabled": False, "disabled_reason": reason, "disabled_at": utcnow()}
        )

    async def remove(self, endpoint_id: str) -> None:
        result = await self._endpoints.delete_one({"_id": endpoint_id})
        if result.deleted_count == 0:
            raise EndpointNotFoundError(endpoint_id)

    # For the dispatcher -------------------------------------------------------------------

    async def subscribed(self, project_id: str, event: str, *, at: datetime) -> list[Endpoint]:
        """The project's endpoints that want `event`, which happened `at`."""
        candidates = await self.enabled_in([project_id])
        return [e for e in candidates.get(project_id, []) if e.wants(event, at=at)]

    async def enabled_in(self, project_ids: Iterable[str]) -> dict[str, list[Endpoint]]:
        """The enabled endpoints of these projects, by project: one query for a whole batch of
        status events (a project has a handful of endpoints, so no finer filter is needed)."""
        cursor = self._endpoints.find(
            {"project_id": {"$in": sorted(set(project_ids))}, "enabled": True}
        )
        found: dict[str, list[Endpoint]] = {}
        async for document in cursor:
            endpoint = Endpoint.model_validate(document)
            found.setdefault(endpoint.project_id, []).append(endpoint)
        return found

    async def many(self, endpoint_ids: Iterable[str]) -> dict[str, Endpoint]:
        cursor = self._endpoints.find({"_id": {"$in": list(set(endpoint_ids))}})
        return {str(doc["_id"]): Endpoint.model_validate(doc) async for doc in cursor}

    async def note_failure(self, endpoint_id: str, now: datetime) -> Endpoint | None:
        """Record a failed attempt; the endpoint, with the start of its failing streak."""
        document = await self._endpoints.find_one_and_update(
            {"_id": endpoint_id},
            {"$min": {"failing_since": now}},  # sets it when absent: the streak's first failure
            return_document=ReturnDocument.AFTER,
        )
        return None if document is None else Endpoint.model_validate(document)

    async def note_success(self, endpoint_id: str) -> None:
        await self._endpoints.update_one(
            {"_id": endpoint_id, "failing_since": {"$ne": None}}, {"$unset": {"failing_since": ""}}
        )

    async def disable_if_enabled(self, endpoint_id: str, reason: DisabledReason) -> bool:
        """Disable, unless already disabled: True only for the call that disabled it, so the
        event is logged once even with several dispatchers."""
        now = utcnow()
        result = await self._endpoints.update_one(
            {"_id": endpoint_id, "enabled": True},
            {
                "$set": {
                    "enabled": False,
                    "disabled_reason": reason,
                    "disabled_at": now,
                    "updated_at": now,
                }
            },
        )
        return result.modified_count == 1

    async def _set(
        self, endpoint_id: str, fields: dict[str, Any], *, unset: Iterable[str] = ()
    ) -> Endpoint:
        full: dict[str, Any] = {"$set": {**fields, "updated_at": utcnow()}}
        if unset:
            full["$unset"] = dict.fromkeys(unset, "")
        document = await self._endpoints.find_one_and_update(
            {"_id": endpoint_id}, full, return_document=ReturnDocument.AFTER
        )
        if document is None:
            raise EndpointNotFoundError(endpoint_id)
        return Endpoint.model_validate(document)
