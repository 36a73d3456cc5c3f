"""Planning a chunked export: how many rows are left, and where to cut their sort-key range.

A plan is made only for an export that has already written `chunk_rows` rows on its own
(service/exports/chunked.py), so exports below the threshold, most of them, never pay for one.
Nothing here scans the export's rows. The collection's size comes from its metadata
(`estimated_document_count`); a `$sample` of it (a random cursor over the collection, not a
scan, when the sample is small next to the collection) run through the filter of the rows left
gives both the share of documents the filter keeps, hence the estimated row count, and the
split points: the sample's sort keys, sorted, cut at even quantiles. A chunk is then the rows
strictly after its lower key and up to and including its upper key (the first chunk starts after
the key the export reached, the last has no upper one), so the chunks cover the range once,
whatever the estimate's error.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pymongo.asynchronous.collection import AsyncCollection

from service.exports.checkpoints import SortKey, sort_fields

# Samples per planned chunk: enough that quantiles land near even row counts.
SAMPLES_PER_CHUNK = 20
MIN_SAMPLE = 1_000
MAX_SAMPLE = 10_000


@dataclass(frozen=True)
class ChunkRange:
    """Rows after `lower` (exclusive) and up to `upper` (inclusive); None is unbounded."""

    lower: dict[str, Any] | None
    upper: dict[str, Any] | None


@dataclass(frozen=True)
class Plan:
    estimated_rows: int
    ranges: list[ChunkRange]


def chunk_count(estimated_rows: int, *, chunk_rows: int, max_chunks: int) -> int:
    """How many chunks an export of `estimated_rows` gets: 1 (not chunked) up to the threshold."""
    if estimated_rows <= chunk_rows:
        return 1
    return max(1, min(math.ceil(estimated_rows / chunk_rows), max_chunks))


def split_points(keys: Sequence[Mapping[str, Any]], chunks: int) -> list[dict[str, Any]]:
    """At most `chunks - 1` distinct split keys from `keys` (sorted in export order), at even
    quantiles. Fewer when the sample has fewer distinct keys."""
    if chunks <= 1 or not keys:
        return []
    points: list[dict[str, Any]] = []
    for cut in range(1, chunks):
        key = dict(keys[min(len(keys) - 1, (cut * len(keys)) // chunks)])
        if not points or key != points[-1]:
            points.append(key)
    return points


def ranges_between(
    points: Sequence[dict[str, Any]], *, lower: dict[str, Any] | None = None
) -> list[ChunkRange]:
    bounds: list[dict[str, Any] | None] = [lower, *points, None]
    return [ChunkRange(bounds[i], bounds[i + 1]) for i in range(len(bounds) - 1)]


async def plan_chunks(
    collection: AsyncCollection[dict[str, Any]],
    query: Mapping[str, Any],
    sort: SortKey,
    *,
    chunk_rows: int,
    max_chunks: int,
    after: dict[str, Any] | None = None,
) -> Plan | None:
    """The chunks of the rows `query` selects, or None when their estimate does not pass
    `chunk_rows`. `after`: the key the export reached, where the first chunk starts (`query`
    already selects only the rows after it)."""
    total = await collection.estimated_document_count()
    if total <= chunk_rows:
        return None  # the filter can only make it smaller
    planned = chunk_count(total, chunk_rows=chunk_rows, max_chunks=max_chunks)
    # A filter keeping a small share of the collection keeps few samples: sample at least
    # MIN_SAMPLE. One that keeps too few to split runs unchunked, which is always correct.
    size = min(MAX_SAMPLE, total, max(MIN_SAMPLE, planned * SAMPLES_PER_CHUNK))
    projection = dict.fromkeys(sort_fields(sort), 1)
    pipeline: list[dict[str, Any]] = [
        {"$sample": {"size": size}},
        {"$match": dict(query)},
        {"$sort": dict(sort)},
        {"$project": projection},
    ]
    cursor = await collection.aggregate(pipeline)
    keys = [
        {field: document.get(field) for field in projection} for document in await cursor.to_list()
    ]
    # A sample of the whole collection is an exact count; otherwise the share kept, scaled.
    estimated = len(keys) if size >= total else round(total * len(keys) / size)
    chunks = chunk_count(estimated, chunk_rows=chunk_rows, max_chunks=max_chunks)
    points = split_points(keys, chunks)
    if not points:
        return None
    return Plan(estimated_rows=estimated, ranges=ranges_between(points, lower=after))
