"""Raw BSON batches from MongoDB, decoded once into typed columns for the Arrow encoders.

The cursor hands over each server batch as raw BSON (`find_raw_batches`), the next one already
being fetched while the caller works. A batch is decoded with the driver's C decoder, in the
caller's thread (the exporter runs it off the event loop), and each selected column becomes:

- its Python values, exactly the cells the plain encoders would see, and
- when every value in the batch has the same type, an Arrow array of that type.

The column's `kind` says which. MongoDB documents need not match the dataset's declared types:
a field may hold a string in one document and a number, a list, an object or nothing in another.
Such a column is `mixed` for that batch and has no array; encoders format its values one by one
with the plain path's own rules, so nothing is turned into a null (Arrow decoders given a schema
do that silently, which is why Ferry does not decode through one).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from itertools import chain
from typing import Any, Literal

import bson
import pyarrow as pa
from bson.codec_options import CodecOptions
from bson.int64 import Int64
from pymongo.asynchronous.cursor import AsyncRawBatchCursor

from service.datasets.base import Column, Document

Kind = Literal[
    "null", "string", "int", "float", "bool", "datetime", "int_list", "string_list", "mixed"
]

_NONE = type(None)
_INTS = frozenset({int, Int64})
_ARROW_TYPES: dict[Kind, pa.DataType] = {
    "null": pa.null(),
    "string": pa.string(),
    "int": pa.int64(),
    "float": pa.float64(),
    "bool": pa.bool_(),
    "datetime": pa.timestamp("us", tz="UTC"),
    "int_list": pa.list_(pa.int64()),
    "string_list": pa.list_(pa.string()),
}


@dataclass(frozen=True)
class ColumnValues:
    """One column of one batch: its values as decoded and, unless `mixed`, an Arrow array."""

    column: Column
    kind: Kind
    values: list[Any]
    array: pa.Array | None


@dataclass(frozen=True)
class RowBatch:
    """One server batch, decoded: its columns and its documents' `_id`s. `last_document` and
    `last_sort_key` describe its last row (in the dataset's sort order): progress estimates and
    checkpoints are taken from them."""

    columns: list[ColumnValues]
    ids: list[Any]
    row_count: int
    last_document: Document
    last_sort_key: tuple[Any, ...]


def decode_batch(
    raw: bytes,
    columns: Sequence[Column],
    sort_fields: Sequence[str],
    codec_options: CodecOptions[dict[str, Any]],
) -> RowBatch:
    """Decode one raw batch (a stream of BSON documents) into typed columns."""
    documents: list[dict[str, Any]] = bson.decode_all(raw, codec_options)
    last = documents[-1] if documents else {}
    return RowBatch(
        columns=[column_values(column, documents) for column in columns],
        ids=[document.get("_id") for document in documents],
        row_count=len(documents),
        last_document=last,
        last_sort_key=tuple(dig(last, field) for field in sort_fields),
    )


def column_values(column: Column, documents: Sequence[Document]) -> ColumnValues:
    field = column.field
    if "." in field:
        values = [dig(document, field) for document in documents]
    else:
        values = [document.get(field) for document in documents]
    kind = kind_of(values)
    if kind == "mixed":
        return ColumnValues(column, kind, values, None)
    try:
        array = pa.array(values, type=_ARROW_TYPES[kind], from_pandas=False)
    except (pa.ArrowException, OverflowError, TypeError, ValueError):
        # An integer beyond 64 bits, say: the plain rules still write it.
        return ColumnValues(column, "mixed", values, None)
    return ColumnValues(column, kind, values, array)


def kind_of(values: Sequence[Any]) -> Kind:  # noqa: PLR0911 - one return per kind
    """The one type every non-null value has (exact types: a bool is not an int), or `mixed`."""
    types = set(map(type, values))
    types.discard(_NONE)
    if not types:
        return "null"
    if types == {str}:
        return "string"
    if types <= _INTS:
        return "int"
    if types == {bool}:
        return "bool"
    if types == {float}:
        return "float"
    if types == {dt.datetime}:
        return "datetime"
    if types == {list}:
        items = set(map(type, chain.from_iterable(value for value in values if value)))
        if items <= _INTS:
            return "int_list"
        if items == {str}:
            return "string_list"
    return "mixed"


def dig(document: Document, path: str) -> Any:  # noqa: ANN401 - a document's value is anything
    """A dotted field's value, None where the path leaves the documents (as the plain path)."""
    value: Any = document
    for part in path.split("."):
        if not isinstance(value, Mapping):
            return None
        value = value.get(part)
    return value


async def prefetched_raw_batches(cursor: AsyncRawBatchCursor[Any]) -> AsyncIterator[bytes]:
    """The cursor's raw batches, the next one already being fetched while the caller works."""

    async def fetch() -> bytes | None:
        try:
            raw: bytes = await cursor.next()
        except StopAsyncIteration:
            return None
        return raw

    upcoming = asyncio.ensure_future(fetch())
    try:
        while (raw := await upcoming) is not None:
            upcoming = asyncio.ensure_future(fetch())
            if raw:
                yield raw
    finally:
        upcoming.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await upcoming
