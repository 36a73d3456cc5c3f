"""A key range as flat queries read in turn: every row of the range once, in order, whatever the
rows, their ties on the leading field and the bounds (a Python evaluator stands in for the
database here; tests/integration/test_key_range_reads.py asks the real one)."""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from service.exports.key_ranges import key_range_queries, past_leading_key

SORT = (("a", 1), ("b", 1))
DESCENDING = (("a", -1), ("b", 1))
OPS = {
    "$gt": lambda value, bound: value > bound,
    "$gte": lambda value, bound: value >= bound,
    "$lt": lambda value, bound: value < bound,
    "$lte": lambda value, bound: value <= bound,
}


def matches(row: dict[str, Any], query: dict[str, Any]) -> bool:
    for field, condition in query.items():
        if field == "$and":
            if not all(matches(row, part) for part in condition):
                return False
        elif isinstance(condition, dict):
            if not all(OPS[op](row[field], bound) for op, bound in condition.items()):
                return False
        elif row[field] != condition:
            return False
    return True


def order(rows: list[dict[str, Any]], sort: tuple[tuple[str, int], ...]) -> list[dict[str, Any]]:
    (first, direction), (second, _) = sort
    return sorted(rows, key=lambda row: (row[first] * direction, row[second]))


def read(rows: list[dict[str, Any]], queries: list[dict[str, Any]], sort: Any) -> list[int]:
    """The rows the queries return, each query's sorted, one query after the other."""
    return [row["b"] for query in queries for row in order(rows, sort) if matches(row, query)]


ROWS = st.lists(st.integers(0, 6), min_size=1, max_size=40).map(
    lambda leading: [{"a": a, "b": b, "c": b % 3} for b, a in enumerate(leading)]
)


@given(ROWS, st.data(), st.sampled_from([SORT, DESCENDING]))
def test_the_queries_give_every_row_of_the_range_once_in_order(
    rows: list[dict[str, Any]], data: st.DataObject, sort: Any
) -> None:
    ordered = order(rows, sort)
    bound = st.none() | st.integers(0, len(ordered) - 1)
    low, high = data.draw(bound), data.draw(bound)
    if low is not None and high is not None and low > high:
        low, high = high, low
    lower = None if low is None else {"a": ordered[low]["a"], "b": ordered[low]["b"]}
    upper = None if high is None else {"a": ordered[high]["a"], "b": ordered[high]["b"]}
    # The export's own filter: a range on the leading field and an equality on another one.
    base: dict[str, Any] = {"a": {"$gte": data.draw(st.integers(0, 3)), "$lt": 6}, "c": 1}
    expected = [
        row["b"]
        for index, row in enumerate(ordered)
        if (low is None or index > low) and (high is None or index <= high) and matches(row, base)
    ]
    queries = key_range_queries(base, sort, lower=lower, upper=upper)
    assert read(rows, queries, sort) == expected
    assert all("$and" not in query and "$or" not in query for query in queries)
    # One bound at each end of a field's range, so the index scan starts at the range.
    for query in queries:
        for condition in query.values():
            if isinstance(condition, dict):
                assert not {"$gt", "$gte"} <= condition.keys()
                assert not {"$lt", "$lte"} <= condition.keys()


def test_an_unbounded_range_is_the_filter_itself() -> None:
    assert key_range_queries({"a": {"$gte": 1}}, SORT) == [{"a": {"$gte": 1}}]


def test_a_condition_it_cannot_merge_is_joined_not_dropped() -> None:
    base = {"a": {"$in": [1, 2]}}
    queries = key_range_queries(base, SORT, lower={"a": 1, "b": 5})
    assert queries == [
        {"$and": [base, {"a": 1, "b": {"$gt": 5}}]},
        {"$and": [base, {"a": {"$gt": 1}}]},
    ]


@given(ROWS, st.data())
def test_the_sampling_filter_keeps_every_row_past_the_leading_key_and_none_before(
    rows: list[dict[str, Any]], data: st.DataObject
) -> None:
    ordered = order(rows, SORT)
    at = data.draw(st.integers(0, len(ordered) - 1))
    after = {"a": ordered[at]["a"], "b": ordered[at]["b"]}
    base: dict[str, Any] = {"a": {"$gte": 1, "$lt": 6}}
    query = past_leading_key(base, SORT, after)
    kept = [row["b"] for row in ordered if matches(row, query)]
    assert kept == [row["b"] for row in ordered if row["a"] > after["a"] and matches(row, base)]
    assert "$and" not in query
