"""Parquet files from decoded batches: one row group per batch, zstd, typed columns.

Parquet is not a byte stream that can be cut anywhere like CSV: pyarrow's `ParquetWriter` writes
onto a small file-like sink here, and each batch's row group leaves as the bytes `encode` returns
(the footer with the schema and row group index comes from `finish`), so memory holds one batch
whatever the size of the file.

Column types come from the dataset's record model (`column_types.column_type`): `str` is a
string, `int` an int64, `float` a double, `bool` a boolean, `datetime` a UTC timestamp in
milliseconds (BSON's precision), `list[int]` a list of int64. Nested attributes are flattened:
`attributes.FIRSTNAME` is the column `FIRSTNAME`, as in CSV. A field the model does not type
(free-form values such as attributes) is a string column, where a value of another type is
written as its JSON text (a datetime as RFC 3339), so mixed values are never lost. A value that
does not fit a typed column (a string where the model says int) fails the export, naming the
document and the field, rather than becoming a null.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Sequence
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from pydantic import BaseModel

from service.datasets.base import Column
from service.error_codes import ErrorCode
from service.errors import JobFailedError
from service.exports.arrow_batches import ColumnValues, Kind, RowBatch, kind_of
from service.exports.column_types import column_type
from service.exports.encoders import _json_default

_ACCEPTS: dict[pa.DataType, frozenset[Kind]] = {
    pa.string(): frozenset({"null", "string"}),
    pa.int64(): frozenset({"null", "int"}),
    pa.float64(): frozenset({"null", "int", "float"}),
    pa.bool_(): frozenset({"null", "bool"}),
    pa.timestamp("ms", tz="UTC"): frozenset({"null", "datetime"}),
    pa.list_(pa.int64()): frozenset({"null", "int_list"}),
    pa.list_(pa.string()): frozenset({"null", "string_list"}),
}


class ParquetEncoder:
    def __init__(self, columns: Sequence[Column], record_model: type[BaseModel]) -> None:
        self.schema = pa.schema(
            [pa.field(column.name, column_type(record_model, column.field)) for column in columns]
        )
        self._sink = _Sink()
        self._writer = pq.ParquetWriter(
            self._sink, self.schema, compression="zstd", write_statistics=True
        )

    def header(self) -> bytes:
        return self._sink.drain()

    def encode(self, batch: RowBatch) -> bytes:
        if batch.row_count:
            # The batch's ids are decoded (a pass over every document) only to name a misfit.
            arrays = [
                _fitted(column, field.type, batch)
                for column, field in zip(batch.columns, self.schema, strict=True)
            ]
            table = pa.Table.from_arrays(arrays, schema=self.schema)
            self._writer.write_table(table, row_group_size=batch.row_count)
        return self._sink.drain()

    def finish(self) -> bytes:
        self._writer.close()
        return self._sink.drain()


def _fitted(column: ColumnValues, target: pa.DataType, batch: RowBatch) -> pa.Array:
    if column.array is not None and column.kind in _ACCEPTS.get(target, frozenset()):
        return (
            column.array.cast(target, safe=False)
            if column.kind != "null"
            else pa.nulls(len(column.array), target)
        )
    if target == pa.string():
        return pa.array([_text(value) for value in column.values], pa.string())
    raise JobFailedError(ErrorCode.UNSUPPORTED_VALUE, _misfit(column, target, batch.ids))


def _text(value: object) -> str | None:
    if value is None or isinstance(value, str):
        return value
    try:
        text = json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=_json_default)
    except (TypeError, ValueError):
        return str(value)
    # A datetime alone is its RFC 3339 text, not a JSON string literal.
    return text[1:-1] if isinstance(value, dt.datetime) else text


def _misfit(column: ColumnValues, target: pa.DataType, ids: list[Any]) -> str:
    accepted = _ACCEPTS.get(target, frozenset())
    for value, document_id in zip(column.values, ids, strict=True):
        if value is not None and kind_of([value]) not in accepted:
            return (
                f"column {column.column.name!r} is {target} in Parquet, but document "
                f"{repr(document_id)[:80]} holds {type(value).__name__} {repr(value)[:80]} in "
                f"field {column.column.field!r}; export it as csv or jsonl, which keep any value"
            )
    return f"column {column.column.name!r} does not fit {target}"


class _Sink:
    """A write-only file for ParquetWriter that keeps bytes only until they are drained."""

    def __init__(self) -> None:
        self._chunks: list[bytes] = []
        self._position = 0
        self.closed = False

    def write(self, data: bytes | memoryview) -> int:
        chunk = bytes(data)
        self._chunks.append(chunk)
        self._position += len(chunk)
        return len(chunk)

    def tell(self) -> int:
        return self._position

    def flush(self) -> None:
        return None

    def close(self) -> None:
        self.closed = True

    def writable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False

    def drain(self) -> bytes:
        data = b"".join(self._chunks)
        self._chunks.clear()
        return data
