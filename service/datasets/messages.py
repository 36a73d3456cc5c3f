"""The `messages` dataset: a webhook relay's message log, exported in HookBridge's shape."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any, Literal
from uuid import UUID

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, model_validator
from pydantic_core import PydanticCustomError

from service.clock import as_utc, rfc3339
from service.datasets.base import Column, Dataset, Document


class MessageStatus(StrEnum):
    QUEUED = "queued"
    DELIVERING = "delivering"
    SUCCEEDED = "succeeded"
    PENDING_RETRY = "pending_retry"
    FAILED_PERMANENT = "failed_permanent"


Direction = Literal["outbound", "inbound"]


class MessageFilters(BaseModel):
    """Filters of a message export. The time range is half-open: [start_time, end_time)."""

    model_config = ConfigDict(extra="forbid")

    start_time: AwareDatetime = Field(
        description="Messages created at or after this instant (RFC 3339)."
    )
    end_time: AwareDatetime = Field(description="Messages created before this instant (RFC 3339).")
    status: MessageStatus | None = Field(None, description="Only messages in this delivery status.")
    endpoint_id: UUID | None = Field(
        None, description="Only this outbound endpoint (direction outbound)."
    )
    inbound_endpoint_id: UUID | None = Field(
        None, description="Only this inbound endpoint (direction inbound)."
    )
    direction: Direction = Field("outbound", description="Outbound or inbound messages.")

    @model_validator(mode="after")
    def _coherent(self) -> MessageFilters:
        if self.end_time <= self.start_time:
            raise PydanticCustomError(
                "invalid_time_range",
                "end_time ({end}) must be after start_time ({start})",
                {"end": rfc3339(self.end_time), "start": rfc3339(self.start_time)},
            )
        if self.endpoint_id is not None and self.direction != "outbound":
            raise ValueError(
                "endpoint_id filters outbound messages; use inbound_endpoint_id for inbound"
            )
        if self.inbound_endpoint_id is not None and self.direction != "inbound":
            raise ValueError("inbound_endpoint_id needs direction 'inbound'")
        return self


class MessageRecord(BaseModel):
    """One stored message, as the `messages` collection holds it."""

    id: str = Field(alias="_id")
    project_id: str
    direction: Direction
    endpoint_id: str | None = None
    inbound_endpoint_id: str | None = None
    status: MessageStatus
    event_type: str
    attempt_count: int
    last_response_status: int | None = None
    last_error: str | None = None
    created_at: datetime
    delivered_at: datetime | None = None


class MessagesDataset(Dataset[MessageFilters]):
    def filter_query(self, filters: MessageFilters) -> dict[str, Any]:
        query: dict[str, Any] = {
            "direction": filters.direction,
            "created_at": {"$gte": filters.start_time, "$lt": filters.end_time},
        }
        if filters.status is not None:
            query["status"] = filters.status.value
        if filters.endpoint_id is not None:
            query["endpoint_id"] = str(filters.endpoint_id)
        if filters.inbound_endpoint_id is not None:
            query["inbound_endpoint_id"] = str(filters.inbound_endpoint_id)
        return query

    def view_fields(self, filters: MessageFilters) -> dict[str, Any]:
        # HookBridge's names: filters are `filter_*`, except `direction`.
        return {
            "filter_start_time": rfc3339(filters.start_time),
            "filter_end_time": rfc3339(filters.end_time),
            "filter_status": filters.status.value if filters.status else None,
            "filter_endpoint_id": str(filters.endpoint_id) if filters.endpoint_id else None,
            "filter_inbound_endpoint_id": (
                str(filters.inbound_endpoint_id) if filters.inbound_endpoint_id else None
            ),
            "direction": filters.direction,
        }

    def estimate_progress(self, filters: MessageFilters, last_row: Document) -> float | None:
        # Rows come in created_at order, so the position in the time range is a free estimate;
        # counting the rows first would cost a third of the export on a slow server.
        created_at = last_row.get("created_at")
        if not isinstance(created_at, datetime):
            return None
        span = (filters.end_time - filters.start_time).total_seconds()
        done = (as_utc(created_at) - filters.start_time).total_seconds()
        return max(0.0, min(1.0, done / span))


DATASET = MessagesDataset(
    name="messages",
    collection="messages",
    description="A webhook relay's message log (HookBridge).",
    filters_model=MessageFilters,
    record_model=MessageRecord,
    columns=tuple(
        Column(name, "_id" if name == "id" else name)
        for name in (
            "id",
            "direction",
            "endpoint_id",
            "inbound_endpoint_id",
            "status",
            "event_type",
            "attempt_count",
            "last_response_status",
            "last_error",
            "created_at",
            "delivered_at",
        )
    ),
    sort=(("created_at", 1), ("_id", 1)),
    indexes=((("project_id", 1), ("direction", 1), ("created_at", 1), ("_id", 1)),),
    process_names={"export": "EXPORT_WEBHOOK"},
)
