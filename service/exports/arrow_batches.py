"""Raw BSON batches from MongoDB, decoded once into typed columns for the Arrow encoders.

The cursor hands over each server batch as raw BSON (`find_raw_batches`), the next one already
being fetched while the caller works. A batch is decoded in the caller's thread (the exporter runs
it off the event loop), and each selected column becomes an Arrow array of one type when every
value in the batch has that type, else (`mixed`) the Python values the plain encoders would see.

Two decoders, one result:

- Fast: pymongoarrow (MongoDB's BSON-to-Arrow bridge) decodes the batch straight into Arrow with
  a schema from the dataset's record model, no Python object per value. It is used only where it
  cannot lose or change a value: flat fields of type string, bool or datetime, which it refuses
  (TypeError) when a value has another type, and int64 or double fields, which it would coerce
  silently (a double 2.5 into an int64 column becomes 2, a bool becomes 1) -- so before decoding,
  the raw batch is searched for an element of such a field with a coercible BSON type, a plain
  byte search at C speed. Any refusal or hit sends the whole batch to the exact decoder.
- Exact: the driver's C decoder (`bson.decode_all`) into documents, then one list of values per
  column, typed by the exact Python types present (a bool is not an int). Nested fields
  (`attributes.FIRSTNAME`) and lists always take this one.

Either way nothing is turned into a null: MongoDB documents need not match the dataset's declared
types, and Arrow decoders given a schema silently null what does not fit (pymongoarrow's
`allow_invalid`), which is why the fast one is only trusted where it refuses instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import types
import typing
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum
from functools import cached_property
from itertools import chain
from typing import Any, Literal

import bson
import pyarrow as pa
from bson import _bson_to_dict, _convert_raw_document_lists_to_streams
from bson.codec_options import CodecOptions
from bson.int64 import Int64
from bson.raw_bson import _RAW_ARRAY_BSON_OPTIONS, RawBSONDocument
from pydantic import BaseModel
from pymongo.asynchronous.cursor import AsyncRawBatchCursor
from pymongo.message import _OpMsg
from pymongoarrow.api import Schema
from pymongoarrow.context import PyMongoArrowContext

from service.datasets.base import Column, Document

Kind = Literal[
    "null", "string", "int", "float", "bool", "datetime", "int_list", "string_list", "mixed"
]
Codec = CodecOptions[dict[str, Any]]

_NONE = type(None)
_INTS = frozenset({int, Int64})
_TIMESTAMP = pa.timestamp("us", tz="UTC")
_ARROW_TYPES: dict[Kind, pa.DataType] = {
    "null": pa.null(),
    "string": pa.string(),
    "int": pa.int64(),
    "float": pa.float64(),
    "bool": pa.bool_(),
    "datetime": _TIMESTAMP,
    "int_list": pa.list_(pa.int64()),
    "string_list": pa.list_(pa.string()),
}
_SCALARS: dict[object, pa.DataType] = {
    str: pa.string(),
    int: pa.int64(),
    float: pa.float64(),
    bool: pa.bool_(),
    dt.datetime: pa.timestamp("ms", tz="UTC"),
}
# BSON element types (bsonspec.org) that pymongoarrow accepts into a column of another type,
# changing the value; every other mismatch it refuses with a TypeError.
_DOUBLE, _BOOL, _INT32, _INT64 = b"\x01", b"\x08", b"\x10", b"\x12"
_COERCED: dict[pa.DataType, tuple[bytes, ...]] = {
    pa.string(): (),
    pa.bool_(): (),
    pa.timestamp("ms", tz="UTC"): (),
    pa.int64(): (_DOUBLE, _BOOL),
    pa.float64(): (_BOOL, _INT32, _INT64),
}
_FAST_KINDS: dict[pa.DataType, Kind] = {
    pa.string(): "string",
    pa.bool_(): "bool",
    pa.timestamp("ms"): "datetime",
    pa.int64(): "int",
    pa.float64(): "float",
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
        last = _last_document(raw, self.codec)
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


class BatchDecoder:
    """Decodes raw batches for one export: the fast decoder where it is exact, else the exact
    one (see the module's docstring)."""

    def __init__(
        self,
        columns: Sequence[Column],
        record_model: type[BaseModel],
        sort_fields: Sequence[str],
        codec: Codec,
    ) -> None:
        self._columns = list(columns)
        self._sort_fields = list(sort_fields)
        self._codec = codec
        declared = [column_type(record_model, column.field) for column in columns]
        fields = [column.field for column in columns]
        self._schema: Schema | None = None
        self._suspects: list[bytes] = []
        if (
            all(kind in _COERCED for kind in declared)
            and all("." not in name for name in fields)
            and len(set(fields)) == len(fields)
        ):
            self._schema = Schema(
                {name: _naive(kind) for name, kind in zip(fields, declared, strict=True)}
            )
            self._suspects = [
                code + name.encode() + b"\x00"
                for name, kind in zip(fields, declared, strict=True)
                for code in _COERCED[kind]
            ]

    @property
    def fast(self) -> bool:
        """Whether the fast decoder is used for this export's columns at all."""
        return self._schema is not None

    def decode(self, raw: bytes) -> RowBatch:
        if self._schema is not None and not any(suspect in raw for suspect in self._suspects):
            context = PyMongoArrowContext(self._schema)
            try:
                context.process_bson_stream(raw)
                table = context.finish()
            except TypeError:
                pass  # a value of another type: the exact decoder keeps it
            else:
                return self._from_table(raw, table)
        return decode_batch(raw, self._columns, self._sort_fields, self._codec)

    def _from_table(self, raw: bytes, table: pa.Table) -> RowBatch:
        columns = []
        for column, array in zip(self._columns, table.columns, strict=True):
            chunk = array.combine_chunks()
            kind = _FAST_KINDS[chunk.type]
            columns.append(
                ColumnValues(column, kind, chunk.cast(_TIMESTAMP) if kind == "datetime" else chunk)
            )
        last = _last_document(raw, self._codec)
        return RowBatch(
            columns=columns,
            row_count=table.num_rows,
            last_document=last,
            last_sort_key=tuple(dig(last, name) for name in self._sort_fields),
            raw=raw,
            codec=self._codec,
        )


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


def column_type(record_model: type[BaseModel], name: str) -> pa.DataType:
    """The Arrow type of a (possibly dotted) field, from the record model's annotations: `str`,
    enums and literals a string, `int` an int64, `float` a double, `bool` a boolean, `datetime`
    a UTC timestamp in milliseconds (BSON's precision), `list[int]` a list of int64, a value of
    `dict[str, V]` (`attributes.FIRSTNAME`) V's type; anything else, or untyped, a string."""
    head, _, rest = name.partition(".")
    annotation = _annotation(record_model, head)
    if rest:
        container = _without_none(annotation)
        if typing.get_origin(container) is not dict or "." in rest:
            return pa.string()
        annotation = typing.get_args(container)[-1]
    return _arrow_type(annotation)


def _annotation(record_model: type[BaseModel], name: str) -> object:
    for field_name, info in record_model.model_fields.items():
        if name in {field_name, info.alias}:
            return info.annotation
    return Any


def _without_none(annotation: object) -> object:
    args = typing.get_args(annotation)
    if typing.get_origin(annotation) in {typing.Union, types.UnionType}:
        rest = [arg for arg in args if arg is not type(None)]
        return rest[0] if len(rest) == 1 else Any
    return annotation


def _arrow_type(annotation: object) -> pa.DataType:
    annotation = _without_none(annotation)
    if isinstance(annotation, type) and issubclass(annotation, Enum):
        return pa.string()
    if typing.get_origin(annotation) is typing.Literal:
        return pa.string()
    if typing.get_origin(annotation) is list:
        (item,) = typing.get_args(annotation) or (Any,)
        if item is int:
            return pa.list_(pa.int64())
        if item is str:
            return pa.list_(pa.string())
        return pa.string()
    return _SCALARS.get(annotation, pa.string())


def _naive(kind: pa.DataType) -> pa.DataType:
    # pymongoarrow reads BSON dates as naive UTC timestamps.
    return pa.timestamp("ms") if pa.types.is_timestamp(kind) else kind


def _last_document(raw: bytes, codec: Codec) -> dict[str, Any]:
    """The last document of a raw batch, found by its length prefixes (no full decode)."""
    position, last = 0, 0
    while position < len(raw):
        last = position
        position += int.from_bytes(raw[position : position + 4], "little")
    return bson.decode(raw[last:position], codec) if raw else {}


class RawBatchCursor(AsyncRawBatchCursor[dict[str, Any]]):
    """pymongo's raw-batch cursor, minus a cost per document on the event loop.

    pymongo 4 reassembles each reply's batch by first inflating the cursor document, which turns
    the batch array into one `RawBSONDocument` per document, then decoding it again with the
    array kept raw (`_OpMsg.raw_response`, `_decode_selective`): ~1.4 us a row, more than
    decoding the rows into Arrow. This decodes the cursor document once, the array kept raw, and
    joins it into a stream as pymongo does. Any other reply takes pymongo's own path.
    """

    def _unpack_response(
        self,
        response: Any,  # noqa: ANN401 - pymongo's private _OpMsg / _OpReply
        cursor_id: int | None,
        codec_options: CodecOptions[Mapping[str, Any]],
        user_fields: Mapping[str, Any] | None = None,
        legacy_response: bool = False,  # noqa: FBT001, FBT002 - pymongo's signature
    ) -> list[Any]:
        if legacy_response or not isinstance(response, _OpMsg):
            return super()._unpack_response(
                response, cursor_id, codec_options, user_fields, legacy_response
            )
        reply: dict[str, Any] = dict(RawBSONDocument(response.payload_document).items())
        cursor = reply.get("cursor")
        if isinstance(cursor, RawBSONDocument):
            reply["cursor"] = dict(_bson_to_dict(cursor.raw, _RAW_ARRAY_BSON_OPTIONS).items())
        _convert_raw_document_lists_to_streams(reply)
        return [reply]


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
