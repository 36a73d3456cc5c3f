"""The contacts dataset: filters, attribute columns, nested values in both encoders, and the
names its jobs have in Brevo's process view."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime

import pytest

from service.datasets import get_dataset
from service.datasets.contacts import DATASET
from service.errors import InvalidRequestError
from service.exports.encoders import CsvEncoder, JsonLinesEncoder

AT = datetime(2025, 12, 6, 12, 0, tzinfo=UTC)
CONTACT = {
    "contact_id": 7,
    "email": "ann@example.com",
    "list_ids": [3, 12],
    "attributes": {"FIRSTNAME": "Ann", "NOTE": "=1+1"},
    "modified_at": AT,
}


def test_filters_are_optional_and_become_a_query() -> None:
    assert DATASET.query("p1", DATASET.parse_filters({})) == {"project_id": "p1"}
    filters = DATASET.parse_filters({"list_id": 3, "modified_since": "2025-12-01T00:00:00+01:00"})
    assert DATASET.query("p1", filters) == {
        "project_id": "p1",
        "list_ids": 3,
        "modified_at": {"$gte": datetime(2025, 11, 30, 23, 0, tzinfo=UTC)},
    }


@pytest.mark.parametrize(
    "filters", [{"list_id": 0}, {"list_id": "x"}, {"modified_since": "yesterday"}, {"nope": 1}]
)
def test_bad_filters_are_refused_with_invalid_filter(filters: dict[str, object]) -> None:
    with pytest.raises(InvalidRequestError) as caught:
        DATASET.parse_filters(filters)
    assert caught.value.code == "INVALID_FILTER"


def test_columns_are_fixed_ones_or_attributes_by_name() -> None:
    columns = DATASET.select_columns(["email", "firstname", "LASTNAME", "list_ids"])
    assert [(c.name, c.field) for c in columns] == [
        ("email", "email"),
        ("FIRSTNAME", "attributes.FIRSTNAME"),
        ("LASTNAME", "attributes.LASTNAME"),
        ("list_ids", "list_ids"),
    ]
    assert [c.name for c in DATASET.select_columns(None)][:2] == ["contact_id", "email"]


@pytest.mark.parametrize(
    "columns", [["EMAIL"], ["first name"], ["a.b"], ["$where"], ["FIRSTNAME", "firstname"]]
)
def test_columns_that_are_not_attributes_or_repeat_are_refused(columns: list[str]) -> None:
    with pytest.raises(InvalidRequestError) as caught:
        DATASET.select_columns(columns)
    assert caught.value.code == "INVALID_COLUMNS"


def test_nested_attributes_and_lists_in_csv() -> None:
    columns = DATASET.select_columns(["contact_id", "FIRSTNAME", "NOTE", "CITY", "list_ids"])
    encoder = CsvEncoder(columns, escape_formulas=True)
    rows = list(csv.reader(io.StringIO((encoder.header() + encoder.encode([CONTACT])).decode())))
    assert rows == [
        ["contact_id", "FIRSTNAME", "NOTE", "CITY", "list_ids"],
        ["7", "Ann", "'=1+1", "", "3,12"],
    ]


def test_nested_attributes_and_lists_in_json_lines() -> None:
    columns = DATASET.select_columns(["email", "FIRSTNAME", "CITY", "list_ids", "modified_at"])
    line = JsonLinesEncoder(columns).encode([CONTACT]).decode()
    assert json.loads(line) == {
        "email": "ann@example.com",
        "FIRSTNAME": "Ann",
        "CITY": None,
        "list_ids": [3, 12],
        "modified_at": "2025-12-06T12:00:00Z",
    }


def test_process_names_in_brevos_view() -> None:
    assert DATASET.process_name("export") == "CONTACT_EXPORT"
    assert DATASET.process_name("import") == "IMPORTUSER"
    assert get_dataset("messages").process_name("export") == "EXPORT_WEBHOOK"
    assert DATASET.importable
    assert not get_dataset("messages").importable
