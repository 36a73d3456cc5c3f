"""The fast decoder: raw BSON batches straight into Arrow with pymongoarrow, where that is exact.

pymongoarrow (MongoDB's BSON-to-Arrow bridge) decodes a batch with a schema from the dataset's
record model, no Python object per value. It is used only where it cannot lose or change a
value: flat fields of type string, bool or datetime, which it refuses (TypeError) when a value
has another type, and int64 or double fields, which it would coerce silently (a double 2.5 into
an int64 column becomes 2, a bool becomes 1) -- so before decoding, the raw batch is searched for
an element of such a field with a coercible BSON type, a plain byte search at C speed. Any
refusal or hit sends the whole batch to the exact decoder (arrow_batches.decode_batch); nested
fields (`attributes.FIRSTNAME`) and lists always take that one.

Nothing is turned into a null either way: Arrow decoders given a schema silently null what does
not fit (pymongoarrow's `allow_invalid`), which is why the fast one is only trusted where it
refuses instead.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

import pyarrow as pa
from bson.tz_util import utc
from pydantic import BaseModel
from pymongoarrow.api import Schema
from pymongoarrow.context import PyMongoArrowContext

from service.datasets.base import Column
from service.exports.arrow_batches import (
    TIMESTAMP,
    Codec,
    ColumnValues,
    Kind,
    RowBatch,
    decode_batch,
    dig,
    last_document,
)
from service.exports.column_types import column_type

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
        self._sort_columns: list[int] | None = None
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
            # The sort key comes from the table when it holds every sort field: no walk over
            # the batch's documents to find and decode the last one.
            if all(name in fields for name in self._sort_fields):
                self._sort_columns = [fields.index(name) for name in self._sort_fields]

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
                ColumnValues(column, kind, chunk.cast(TIMESTAMP) if kind == "datetime" else chunk)
            )
        if self._sort_columns is None:
            last = last_document(raw, self._codec)
        else:
            last = {
                name: self._python(table.column(index)[-1].as_py())
                for name, index in zip(self._sort_fields, self._sort_columns, strict=True)
            }
        return RowBatch(
            columns=columns,
            row_count=table.num_rows,
            last_document=last,
            last_sort_key=tuple(dig(last, name) for name in self._sort_fields),
            raw=raw,
            codec=self._codec,
        )

    def _python(self, value: object) -> object:
        """A value from the table as the driver decodes it with the export's codec options (a
        BSON date is naive UTC in the table)."""
        if not isinstance(value, dt.datetime):
            return value
        if not self._codec.tz_aware:
            return value
        aware = value.replace(tzinfo=utc)
        return aware.astimezone(self._codec.tzinfo) if self._codec.tzinfo else aware


def _naive(kind: pa.DataType) -> pa.DataType:
    # pymongoarrow reads BSON dates as naive UTC timestamps.
    return pa.timestamp("ms") if pa.types.is_timestamp(kind) else kind
