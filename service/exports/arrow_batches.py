"""Decoded batches: each selected column of a raw BSON batch as an Arrow array of one type when
every value in the batch has that type, else (`mixed`) the Python values the plain encoders
would see; and the exact decoder that makes them from any documents.

The exact decoder is the driver's C decoder (`bson.decode_all`) into documents, then one list of
values per column, typed by the exact Python types present (a bool is not an int): nothing is
turned into a null, whatever the documents hold. The fast decoder (batch_decoder.py) makes the
same batches straight from BSON where it is exact, and hands every other batch to this one.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from itertools import chain
from typing import Any, Literal

import bson
import pyarrow as pa
from bson.codec_options import CodecOptions
from bson.int64 import Int64

from service.datasets.base import Column, Document

Kind = Literal[
    "null", "string", "int", "float", "bool", "datetime", "int_list", "string_list", "mixed"
]
Codec = CodecOptions[dict[str, Any]]

_NONE = type(None)
_INTS = frozenset({int, Int64})
TIMESTAMP = pa.timestamp("us", tz="UTC")  # a datetime column's type in a batch
_ARROW_TYPES: dict[Kind, pa.DataType] = {
    "null": pa.null(),
    "string": pa.string(),
    "int": pa.int64(),
    "float": pa.float64(),
    "bool": pa.bool_(),
    "datetime": TIMESTAMP,
    "int_list": pa.list_(pa.int64()),
    "string_list": pa.list_(pa.string()),
}


@dataclass(frozen=True)
class ColumnValues:
    """One column of one batch: an Arrow array unless `mixed`, and the values as Python objects
    (made from the array when the fast decoder built it and an encoder asks for them)."""

    column: Column
    kind: Kind
    array: pa.Array | None
    decoded: list[Any] | None = field(default=None, repr=False)

    @cached_property
    def values(self) -> list[Any]:
        if self.decoded is not None:
            return self.decoded
        if self.array is None:
            raise RuntimeError("a column holds an array or its values")
        return list(self.array.to_pylist())


@dataclass(frozen=True)
class RowBatch:
    """One server batch, decoded. `last_document` and `last_sort_key` describe its last row (in
    the dataset's sort order): progress estimates and checkpoints are taken from them."""

    columns: list[ColumnValues]
    row_count: int
    last_document: Document
    last_sort_key: tuple[Any, ...]
    raw: bytes = field(repr=False)
    codec: Codec = field(repr=False)

    @cached_property
    def ids(self) -> list[Any]:
        """The documents' `_id`s, in order (decoded only when asked: for error messages)."""
        return [document.get("_id") for document in bson.decode_all(self.raw, self.codec)]

    def slice(self, start: int, stop: int, sort_fields: Sequence[str]) -> RowBatch:
        """Rows `start` to `stop` (exclusive) as a batch of their own: the column arrays are
        sliced (no copy) and so is the raw batch, by its documents' length prefixes; only the
        range's last document is decoded, for its sort key."""
        if start == 0 and stop >= self.row_count:
            return self
        offsets = _document_offsets(self.raw)
        raw = self.raw[offsets[start] : offsets[stop]]
        last = last_document(raw, self.codec)
        return RowBatch(
            columns=[_sliced(column, start, stop) for column in self.columns],
            row_count=stop - start,
            last_document=last,
            last_sort_key=tuple(dig(last, name) for name in sort_fields),
            raw=raw,
            codec=self.codec,
        )


def _sliced(column: ColumnValues, start: int, stop: int) -> ColumnValues:
    return ColumnValues(
        column.column,
        column.kind,
        column.array.slice(start, stop - start) if column.array is not None else None,
        column.decoded[start:stop] if column.decoded is not None else None,
    )


def _document_offsets(raw: bytes) -> list[int]:
    """Where each document of a raw batch starts, and its end (len(raw)) last."""
    offsets, position = [], 0
    while position < len(raw):
        offsets.append(position)
        position += int.from_bytes(raw[position : position + 4], "little")
    offsets.append(position)
    return offsets


def decode_batch(
    raw: bytes, columns: Sequence[Column], sort_fields: Sequence[str], codec: Codec
) -> RowBatch:
    """The exact decoder: one raw batch (a stream of BSON documents) into typed columns."""
    documents: list[dict[str, Any]] = bson.decode_all(raw, codec)
    last = documents[-1] if documents else {}
    return RowBatch(
        columns=[column_values(column, documents) for column in columns],
        row_count=len(documents),
        last_document=last,
        last_sort_key=tuple(dig(last, name) for name in sort_fields),
        raw=raw,
        codec=codec,
    )


def column_values(column: Column, documents: Sequence[Document]) -> ColumnValues:
    name = column.field
    if "." in name:
        values = [dig(document, name) for document in documents]
    else:
        values = [document.get(name) for document in documents]
    kind = kind_of(values)
    if kind == "mixed":
        return ColumnValues(column, kind, None, values)
    try:
        array = pa.array(values, type=_ARROW_TYPES[kind], from_pandas=False)
    except (pa.ArrowException, OverflowError, TypeError, ValueError):
        # An integer beyond 64 bits, say: the plain rules still write it.
        return ColumnValues(column, "mixed", None, values)
    return ColumnValues(column, kind, array, values)


def kind_of(values: Sequence[Any]) -> Kind:  # noqa: PLR0911 - one return per kind
    """The one type every non-null value has (exact types: a bool is not an int), or `mixed`."""
    present = set(map(type, values))
    present.discard(_NONE)
    if not present:
        return "null"
    if present == {str}:
        return "string"
    if present <= _INTS:
        return "int"
    if present == {bool}:
        return "bool"
    if present == {float}:
        return "float"
    if present == {dt.datetime}:
        return "datetime"
    if present == {list}:
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


def last_document(raw: bytes, codec: Codec) -> dict[str, Any]:
    """The last document of a raw batch, found by its length prefixes (no full decode)."""
    position, last = 0, 0
    while position < len(raw):
        last = position
        position += int.from_bytes(raw[position : position + 4], "little")
    return bson.decode(raw[last:position], codec) if raw else {}
