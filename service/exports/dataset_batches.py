"""A query's rows in the dataset's order, as decoded batches: what every export reads.

The cursor is read in raw BSON batches; the next one is fetched while the caller works on the
current one, and decoding (column-wise, through Arrow: batch_decoder.py) runs off the event
loop. The sort fields come along with the columns, so that each batch knows where it ends
(progress, checkpoints, splits).

Use it under `contextlib.aclosing`: leaving the loop early (a split, a cancel) then cancels the
fetch in flight and closes the server's cursor at once, not whenever the generator is collected.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, Mapping, Sequence
from typing import Any

from bson.codec_options import CodecOptions
from pymongo.asynchronous.collection import AsyncCollection

from service.datasets.base import Column, Dataset
from service.exports.arrow_batches import RowBatch
from service.exports.batch_decoder import BatchDecoder
from service.exports.checkpoints import sort_fields
from service.exports.raw_cursor import RawBatchCursor, prefetched_raw_batches
from service.exports.read_pace import ReadPace


async def decoded_batches(
    collection: AsyncCollection[dict[str, Any]],
    dataset: Dataset[Any],
    columns: Sequence[Column],
    queries: Sequence[Mapping[str, Any]],
    *,
    batch_size: int,
    rows_per_second: float = 0.0,
) -> AsyncGenerator[RowBatch]:
    """The rows of `queries`, read one after the other (key_ranges.py: a range of the sort key
    as flat queries in sort order). `rows_per_second`: at most this many on average (0: no
    limit)."""
    fields = sort_fields(dataset.sort)
    projection = dict.fromkeys((*(column.field for column in columns), *fields), 1)
    codec: CodecOptions[dict[str, Any]] = collection.codec_options
    decoder = BatchDecoder(columns, dataset.record_model, fields, codec)
    pace = ReadPace(rows_per_second)
    for query in queries:
        cursor = (
            RawBatchCursor(collection, dict(query), projection)
            .sort(list(dataset.sort))
            .batch_size(batch_size)
        )
        try:
            async with contextlib.aclosing(prefetched_raw_batches(cursor)) as raw_batches:
                async for raw in raw_batches:
                    batch = await asyncio.to_thread(decoder.decode, raw)
                    yield batch
                    await pace.after(batch.row_count)
        finally:
            await cursor.close()
