"""A range of the dataset's sort key as flat queries, read one after another: what a resumed
export and a chunk read.

The rows strictly after key L and up to key U of a sort (a, b) are
`(a == L.a and b > L.b) or (L.a < a < U.a) or (a == U.a and b <= U.b)`. A planner that turns
such an `$or` into index bounds serves it from the index; the embedded database does not, and
filters it over the whole collection before the first row (measured on 50,000 documents, a range
of 5,000: ~2.2 s as `{"$and": [filter, after, through]}`, ~1.4 s as a flat filter with an
`$or`, ~0.25 s as flat filters). So the range is read as its disjuncts, each a flat filter on the
index's fields merged into the export's own: they are disjoint and follow one another in sort
order, so read in turn they give every row of the range once, in order.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from service.exports.checkpoints import SortKey

_LOWER = ("$gt", "$gte")
_UPPER = ("$lt", "$lte")
_EMPTY = object()  # a merge no row can satisfy


def key_range_queries(
    query: Mapping[str, Any],
    sort: SortKey,
    *,
    lower: Mapping[str, Any] | None = None,
    upper: Mapping[str, Any] | None = None,
) -> list[dict[str, Any]]:
    """The rows of `query` after `lower` (exclusive) and up to `upper` (inclusive), None being
    unbounded, as flat queries to read in turn."""
    queries = []
    for segment in key_range_segments(sort, lower, upper):
        merged = _restricted(query, segment)
        if merged is not None:
            queries.append(merged)
    return queries


def past_leading_key(
    query: Mapping[str, Any], sort: SortKey, after: Mapping[str, Any]
) -> dict[str, Any]:
    """The rows of `query` whose leading sort field is strictly past `after`'s, as one flat
    filter: every row after `after` but those tying with it on that field. For sampling what is
    left of an export, where a few rows missed do not matter and an `$or` would (a scan)."""
    field, direction = sort[0]
    bound = {("$gt" if direction >= 0 else "$lt"): after[field]}
    merged = _restricted(query, {field: bound})
    return merged if merged is not None else {"$and": [dict(query), {field: bound}]}


def key_range_segments(
    sort: SortKey, lower: Mapping[str, Any] | None, upper: Mapping[str, Any] | None
) -> list[dict[str, Any]]:
    """The range's disjuncts in sort order, each conditions on the sort's fields only."""
    (field, direction), rest = sort[0], sort[1:]
    after, before = ("$gt", "$lt") if direction >= 0 else ("$lt", "$gt")
    if not rest:  # the last field: a plain interval, upper end included
        condition = {}
        if lower is not None:
            condition[after] = lower[field]
        if upper is not None:
            condition[before + "e"] = upper[field]
        return [{field: condition} if condition else {}]
    if lower is not None and upper is not None and lower[field] == upper[field]:
        return [{field: lower[field], **part} for part in key_range_segments(rest, lower, upper)]
    segments = []
    if lower is not None:  # the rest of the lower key's value of this field
        segments += [
            {field: lower[field], **part} for part in key_range_segments(rest, lower, None)
        ]
    middle = {}
    if lower is not None:
        middle[after] = lower[field]
    if upper is not None:
        middle[before] = upper[field]
    segments.append({field: middle} if middle else {})
    if upper is not None:  # the start of the upper key's value of this field
        segments += [
            {field: upper[field], **part} for part in key_range_segments(rest, None, upper)
        ]
    return segments


def _restricted(query: Mapping[str, Any], segment: Mapping[str, Any]) -> dict[str, Any] | None:
    """`query` and `segment` as one flat filter; None when no row can match both. Conditions
    this cannot merge are joined by `$and` (correct, if slower)."""
    merged = dict(query)
    for field, condition in segment.items():
        if field not in merged:
            merged[field] = condition
            continue
        both = _merge(merged[field], condition)
        if both is _EMPTY:
            return None
        if both is None:
            return {"$and": [dict(query), dict(segment)]}
        merged[field] = both
    return merged


def _merge(first: Any, second: Any) -> Any:  # noqa: ANN401 - MongoDB conditions
    """One condition meaning both, `_EMPTY`, or None when they are not both equalities or
    range operators on comparable values."""
    first_range, second_range = _range(first), _range(second)
    if first_range is None and second_range is None:
        if isinstance(first, dict) or isinstance(second, dict):
            return None
        return first if first == second else _EMPTY
    try:
        if first_range is not None and second_range is not None:
            merged: Any = _tighter(first_range, second_range)
        elif first_range is not None:
            merged = second if _within(second, first_range) else _EMPTY
        elif second_range is not None:
            merged = first if _within(first, second_range) else _EMPTY
    except TypeError:  # values Python cannot order, as of different types
        return None
    return merged


def _range(condition: Any) -> dict[str, Any] | None:  # noqa: ANN401
    if isinstance(condition, dict) and condition and all(op in _LOWER + _UPPER for op in condition):
        return condition
    return None


def _tighter(first: Mapping[str, Any], second: Mapping[str, Any]) -> dict[str, Any]:
    """Both ranges as one, with one bound at each end: a planner may take the first bound it
    meets for the index scan and filter by the other, which would scan from the filter's start
    for every chunk."""
    merged = dict(first)
    for op, value in second.items():
        if op not in merged:
            merged[op] = value
        elif op in _LOWER:
            merged[op] = max(merged[op], value)
        else:
            merged[op] = min(merged[op], value)
    if "$gt" in merged and "$gte" in merged:
        del merged["$gte" if merged["$gt"] >= merged["$gte"] else "$gt"]
    if "$lt" in merged and "$lte" in merged:
        del merged["$lte" if merged["$lt"] <= merged["$lte"] else "$lt"]
    return merged


def _within(value: Any, bounds: Mapping[str, Any]) -> bool:  # noqa: ANN401
    if isinstance(value, dict):
        raise TypeError("not a plain value")
    checks = {
        "$gt": lambda bound: value > bound,
        "$gte": lambda bound: value >= bound,
        "$lt": lambda bound: value < bound,
        "$lte": lambda bound: value <= bound,
    }
    return all(checks[op](bound) for op, bound in bounds.items())
