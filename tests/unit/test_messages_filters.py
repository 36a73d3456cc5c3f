"""Filters of the messages dataset: validation, error codes and the MongoDB query."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from service.datasets import get_dataset
from service.datasets.messages import DATASET, MessageFilters
from service.errors import InvalidRequestError

START = "2025-12-01T00:00:00Z"
END = "2025-12-07T00:00:00Z"
ENDPOINT = "550e8400-e29b-41d4-a716-446655440000"


def parse(**extra: Any) -> MessageFilters:
    return DATASET.parse_filters({"start_time": START, "end_time": END, **extra})


def test_minimal_filters_default_to_outbound() -> None:
    filters = parse()
    assert DATASET.query("p1", filters) == {
        "project_id": "p1",
        "direction": "outbound",
        "created_at": {
            "$gte": datetime(2025, 12, 1, tzinfo=UTC),
            "$lt": datetime(2025, 12, 7, tzinfo=UTC),
        },
    }


def test_all_outbound_filters() -> None:
    query = DATASET.query("p1", parse(status="failed_permanent", endpoint_id=ENDPOINT.upper()))
    assert query["status"] == "failed_permanent"
    assert query["endpoint_id"] == ENDPOINT  # stored lower-case, compared lower-case


def test_inbound_filters() -> None:
    query = DATASET.query("p1", parse(direction="inbound", inbound_endpoint_id=ENDPOINT))
    assert query["direction"] == "inbound"
    assert query["inbound_endpoint_id"] == ENDPOINT
    assert "endpoint_id" not in query


def test_offsets_are_normalised_to_utc() -> None:
    filters = DATASET.parse_filters(
        {"start_time": "2025-12-01T02:00:00+02:00", "end_time": "2025-12-01T03:00:00+00:00"}
    )
    assert DATASET.view_fields(filters)["filter_start_time"] == "2025-12-01T00:00:00Z"


@pytest.mark.parametrize(
    ("filters", "code", "says"),
    [
        ({"start_time": END, "end_time": START}, "INVALID_TIME_RANGE", "must be after"),
        ({"start_time": START, "end_time": START}, "INVALID_TIME_RANGE", "must be after"),
        ({"start_time": START}, "INVALID_FILTER", "filters.end_time"),
        ({"start_time": "2025-12-01T00:00:00", "end_time": END}, "INVALID_FILTER", "timezone"),
        ({"start_time": "yesterday", "end_time": END}, "INVALID_FILTER", "filters.start_time"),
        ({"start_time": START, "end_time": END, "status": "lost"}, "INVALID_FILTER", "status"),
        ({"start_time": START, "end_time": END, "endpoint_id": "x"}, "INVALID_FILTER", "UUID"),
        (
            {"start_time": START, "end_time": END, "direction": "inbound", "endpoint_id": ENDPOINT},
            "INVALID_FILTER",
            "inbound_endpoint_id",
        ),
        (
            {"start_time": START, "end_time": END, "inbound_endpoint_id": ENDPOINT},
            "INVALID_FILTER",
            "direction 'inbound'",
        ),
        ({"start_time": START, "end_time": END, "colour": "red"}, "INVALID_FILTER", "colour"),
    ],
)
def test_invalid_filters_say_what_to_fix(filters: dict[str, Any], code: str, says: str) -> None:
    with pytest.raises(InvalidRequestError) as caught:
        DATASET.parse_filters(filters)
    assert caught.value.code == code
    assert says in caught.value.message


def test_view_fields_use_hookbridge_names() -> None:
    view = DATASET.view_fields(parse(status="queued", endpoint_id=ENDPOINT))
    assert view == {
        "filter_start_time": "2025-12-01T00:00:00Z",
        "filter_end_time": "2025-12-07T00:00:00Z",
        "filter_status": "queued",
        "filter_endpoint_id": ENDPOINT,
        "filter_inbound_endpoint_id": None,
        "direction": "outbound",
    }


def test_progress_is_the_position_in_the_time_range() -> None:
    filters = parse()
    assert (
        DATASET.estimate_progress(filters, {"created_at": datetime(2025, 12, 4, tzinfo=UTC)}) == 0.5
    )
    assert DATASET.estimate_progress(filters, {}) is None


def test_columns_subset_in_requested_order_and_unknown_refused() -> None:
    assert [c.name for c in DATASET.select_columns(["status", "id"])] == ["status", "id"]
    assert DATASET.select_columns(None)[0].field == "_id"
    with pytest.raises(InvalidRequestError) as caught:
        DATASET.select_columns(["id", "colour"])
    assert caught.value.code == "INVALID_COLUMNS"
    with pytest.raises(InvalidRequestError):
        DATASET.select_columns(["id", "id"])


def test_registry_finds_the_dataset_module_and_names_the_known_ones() -> None:
    assert get_dataset("messages") is DATASET
    with pytest.raises(InvalidRequestError) as caught:
        get_dataset("invoices")
    assert caught.value.code == "UNKNOWN_DATASET"
    assert "messages" in caught.value.message
