"""The chunk planner's pure parts: how many chunks, where the split keys fall, and the ranges
they make (each row in exactly one chunk, whatever the sample)."""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from service.exports.chunk_plan import chunk_count, ranges_between, split_points


def test_an_export_within_the_threshold_is_one_chunk() -> None:
    assert chunk_count(1000, chunk_rows=1000, max_chunks=50) == 1
    assert chunk_count(1001, chunk_rows=1000, max_chunks=50) == 2
    assert chunk_count(10**9, chunk_rows=1000, max_chunks=50) == 50


def _chunk_of(value: int, ranges: list[Any]) -> list[int]:
    """The chunks whose range holds `value` (lower exclusive, upper inclusive)."""
    return [
        index
        for index, part in enumerate(ranges)
        if (part.lower is None or value > part.lower["k"])
        and (part.upper is None or value <= part.upper["k"])
    ]


@given(
    sample=st.lists(st.integers(-1000, 1000), max_size=300),
    chunks=st.integers(1, 40),
    rows=st.lists(st.integers(-2000, 2000), max_size=200),
)
def test_split_points_cut_the_key_range_into_disjoint_ranges_covering_every_row(
    sample: list[int], chunks: int, rows: list[int]
) -> None:
    keys = [{"k": value} for value in sorted(sample)]
    points = split_points(keys, chunks)
    assert len(points) <= max(0, chunks - 1)
    values = [point["k"] for point in points]
    assert values == sorted(set(values))  # strictly increasing: no empty or reversed range
    assert set(values) <= set(sample)
    ranges = ranges_between(points)
    assert len(ranges) == len(points) + 1
    for value in rows:
        assert len(_chunk_of(value, ranges)) == 1


@given(
    after=st.integers(-1000, 1000),
    sample=st.lists(st.integers(-1000, 1000), max_size=300),
    chunks=st.integers(2, 40),
    rows=st.lists(st.integers(-2000, 2000), max_size=200),
)
def test_the_rest_of_a_split_export_is_every_row_after_its_head_once(
    after: int, sample: list[int], chunks: int, rows: list[int]
) -> None:
    """The head holds the rows up to `after`; the planned chunks hold each later row once and
    none of the head's, whatever the sample of the rows left."""
    keys = [{"k": value} for value in sorted(value for value in sample if value > after)]
    head = ranges_between([{"k": after}])[0]
    ranges = [head, *ranges_between(split_points(keys, chunks), lower={"k": after})]
    for value in rows:
        assert len(_chunk_of(value, ranges)) == 1
        assert (_chunk_of(value, ranges) == [0]) == (value <= after)


def test_split_points_fall_at_even_quantiles() -> None:
    keys = [{"k": value} for value in range(100)]
    assert [point["k"] for point in split_points(keys, 4)] == [25, 50, 75]
