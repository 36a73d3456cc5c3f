"""Encoders from decoded batches (`RowBatch`) to file bytes, column by column with Arrow compute.

The files are byte for byte those of the plain encoders in `encoders.py`, which stay the
reference: same header, RFC 4180 quoting (only where needed, `""` for a lone empty cell), CRLF,
formula escaping, RFC 3339 timestamps with milliseconds only when there are any, lists joined
with commas in CSV, native types in JSON Lines. A column whose values in a batch share one type
is formatted by Arrow compute; any other column (mixed types, floats, objects, deep lists) is
formatted value by value with the plain encoders' own functions, so schemaless data is written
exactly as before.

Every encoder has `header()`, `encode(batch)` and `finish()` (bytes after the last batch).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any, Protocol

import pyarrow as pa
import pyarrow.compute as pc

from service.datasets.base import Column
from service.exports.arrow_batches import ColumnValues, RowBatch
from service.exports.encoders import CsvEncoder, _json_default

# Python's csv module quotes a field holding the delimiter, the quote or a line break.
_NEEDS_QUOTES = r'[,"\r\n]'
_FORMULA = r"^([=+\-@\t\r])"
# What json.dumps(ensure_ascii=False) escapes; the common ones are done by compute, the rest
# (other control characters) send the column to the plain formatter.
_JSON_ESCAPES = (("\\", "\\\\"), ('"', '\\"'), ("\n", "\\n"), ("\r", "\\r"), ("\t", "\\t"))
_JSON_NEEDS_ESCAPE = r'[\x00-\x1f"\\]'
_JSON_RARE_CONTROL = r"[\x00-\x08\x0b\x0c\x0e-\x1f]"
# Years isoformat writes with four digits; beyond them the plain formatter takes over.
_MIN_MICROS = -30610224000 * 1_000_000  # 1000-01-01
_MAX_MICROS = 253402300800 * 1_000_000  # 10000-01-01


class BatchEncoder(Protocol):
    def header(self) -> bytes: ...

    def encode(self, batch: RowBatch) -> bytes: ...

    def finish(self) -> bytes: ...


class ArrowCsvEncoder:
    def __init__(self, columns: Sequence[Column], *, escape_formulas: bool) -> None:
        self._plain = CsvEncoder(columns, escape_formulas=escape_formulas)
        self._escape_formulas = escape_formulas
        self._special = f"{_FORMULA}|{_NEEDS_QUOTES}" if escape_formulas else _NEEDS_QUOTES
        self._single = len(columns) == 1

    def header(self) -> bytes:
        return self._plain.header()

    def encode(self, batch: RowBatch) -> bytes:
        if not batch.row_count:
            return b""
        cells = [self._cells(column) for column in batch.columns]
        if self._single:
            # csv.writer writes a row of one empty field as `""`, so it is not an empty line.
            cells = [pc.if_else(pc.equal(cells[0], ""), '""', cells[0])]
        parts: list[pa.Array | str] = []
        for cell in cells:
            parts += [cell, ","]
        parts[-1] = "\r\n"
        return _concatenated(pc.binary_join_element_wise(*parts, ""))

    def finish(self) -> bytes:
        return b""

    def _cells(self, column: ColumnValues) -> pa.Array:  # noqa: PLR0911 - one return per kind
        array = column.array
        kind = column.kind
        if array is None or kind in {"float", "mixed"}:
            return _quoted(self._plain_cells(column.values))
        if kind == "null":
            return pa.array([""] * len(array), pa.string())
        if kind == "string":
            return pc.fill_null(self._string_cells(array), "")
        if kind == "int":
            return pc.fill_null(pc.cast(array, pa.string()), "")
        if kind == "bool":
            return pc.fill_null(pc.if_else(array, "true", "false"), "")
        if kind == "datetime":
            text = _rfc3339(array)
            if text is None:
                return _quoted(self._plain_cells(column.values))
            return pc.fill_null(text, "")
        joined = _joined_list(array, ",")
        if joined is None:
            return _quoted(self._plain_cells(column.values))
        return pc.fill_null(_quoted(joined), "")

    def _string_cells(self, array: pa.Array) -> pa.Array:
        # One pass finds the columns (most of them) that need neither escaping nor quotes.
        if not pc.any(pc.match_substring_regex(array, self._special)).as_py():
            return array
        if self._escape_formulas:
            array = pc.replace_substring_regex(array, _FORMULA, r"'\1")
        return _quoted(array)

    def _plain_cells(self, values: list[Any]) -> pa.Array:
        # csv.writer writes str() of whatever the plain encoder's cell function returns.
        cell = self._plain._cell  # noqa: SLF001 - the one definition of a cell's text
        return pa.array([str(cell(value)) for value in values], pa.string())


class ArrowJsonLinesEncoder:
    def __init__(self, columns: Sequence[Column]) -> None:
        self._dumps: Callable[[object], str] = json.JSONEncoder(
            ensure_ascii=False, separators=(",", ":"), default=_json_default
        ).encode
        self._keys = [
            ("{" if index == 0 else ",") + self._dumps(column.name) + ":"
            for index, column in enumerate(columns)
        ]

    def header(self) -> bytes:
        return b""

    def encode(self, batch: RowBatch) -> bytes:
        if not batch.row_count:
            return b""
        # One join of every column's text between literal keys; a column of strings or times
        # without nulls has its quotes in the literals around it, not a pass of its own.
        parts: list[pa.Array | str] = []
        for key, column in zip(self._keys, batch.columns, strict=True):
            values, quote = self._values(column)
            _append_literal(parts, key + quote)
            parts.append(values)
            if quote:
                _append_literal(parts, quote)
        _append_literal(parts, "}\n")
        return _concatenated(pc.binary_join_element_wise(*parts, ""))

    def finish(self) -> bytes:
        return b""

    def _values(self, column: ColumnValues) -> tuple[pa.Array, str]:  # noqa: PLR0911 - one return per kind
        """The column's JSON text, and the quote to put around each value ('' when the text has
        its quotes, or has none)."""
        array = column.array
        kind = column.kind
        if array is None or kind in {"float", "string_list", "mixed"}:
            return self._plain_values(column.values), ""
        if kind == "null":
            return pa.array(["null"] * len(array), pa.string()), ""
        if kind == "string":
            text = _json_escaped(array)
            if text is None:
                return self._plain_values(column.values), ""
            return _json_quoted(text)
        if kind == "int":
            return pc.fill_null(pc.cast(array, pa.string()), "null"), ""
        if kind == "bool":
            return pc.fill_null(pc.if_else(array, "true", "false"), "null"), ""
        if kind == "datetime":
            text = _rfc3339(array)
            if text is None:
                return self._plain_values(column.values), ""
            return _json_quoted(text)
        joined = _joined_list(array, ",")
        if joined is None:
            return self._plain_values(column.values), ""
        return pc.fill_null(pc.binary_join_element_wise("[", joined, "]", ""), "null"), ""

    def _plain_values(self, values: list[Any]) -> pa.Array:
        dumps = self._dumps
        return pa.array([dumps(value) for value in values], pa.string())


def _quoted(array: pa.Array) -> pa.Array:
    """RFC 4180 quoting where the csv module applies it: the field in quotes, quotes doubled."""
    needs = pc.match_substring_regex(array, _NEEDS_QUOTES)
    if not pc.any(needs).as_py():
        return array
    quoted = pc.binary_join_element_wise('"', pc.replace_substring(array, '"', '""'), '"', "")
    return pc.if_else(needs, quoted, array)


def _json_escaped(array: pa.Array) -> pa.Array | None:
    """The strings escaped as json.dumps escapes them (without their quotes), or None for the
    plain formatter."""
    if pc.any(pc.match_substring_regex(array, _JSON_NEEDS_ESCAPE)).as_py():
        if pc.any(pc.match_substring_regex(array, _JSON_RARE_CONTROL)).as_py():
            return None
        for plain, escaped in _JSON_ESCAPES:
            array = pc.replace_substring(array, plain, escaped)
    return array


def _json_quoted(text: pa.Array) -> tuple[pa.Array, str]:
    """String literals: the quotes left to the caller's literals when no value is null."""
    if not text.null_count:
        return text, '"'
    return pc.fill_null(pc.binary_join_element_wise('"', text, '"', ""), "null"), ""


def _append_literal(parts: list[pa.Array | str], literal: str) -> None:
    if parts and isinstance(parts[-1], str):
        parts[-1] += literal
    else:
        parts.append(literal)


def _rfc3339(array: pa.Array) -> pa.Array | None:
    """`2025-12-06T12:00:30Z`, `.123` milliseconds (truncated) only when there is any fraction;
    None when a year has other than four digits (the plain formatter writes those)."""
    micros = array.cast(pa.int64())
    bounds = pc.min_max(micros)
    low, high = bounds["min"].as_py(), bounds["max"].as_py()
    if low is not None and (low < _MIN_MICROS or high >= _MAX_MICROS):
        return None
    try:
        # Whole milliseconds (all BSON dates): Arrow's text of a millisecond timestamp is the
        # RFC 3339 text but for the `T`, the `Z` and `.000`, in three passes instead of ten.
        millis = array.cast(pa.timestamp("ms"), safe=True)
    except pa.ArrowInvalid:
        pass  # microseconds too: the general passes below
    else:
        text = pc.utf8_replace_slice(millis.cast(pa.string()), start=10, stop=11, replacement="T")
        return pc.replace_substring(pc.binary_join_element_wise(text, "Z", ""), ".000Z", "Z")
    naive = array.cast(pa.timestamp("us"))
    # Arrow's own cast to text (`2025-12-06 12:00:30`) is several times faster than strftime.
    seconds = pc.floor_temporal(naive, unit="second").cast(pa.timestamp("s"))
    text = pc.utf8_replace_slice(seconds.cast(pa.string()), start=10, stop=11, replacement="T")
    milliseconds = pc.millisecond(naive)
    fraction = pc.or_(pc.not_equal(milliseconds, 0), pc.not_equal(pc.microsecond(naive), 0))
    whole = pc.binary_join_element_wise(text, "Z", "")
    if not pc.any(fraction).as_py():
        return whole
    padded = pc.utf8_lpad(pc.cast(milliseconds, pa.string()), 3, "0")
    exact = pc.binary_join_element_wise(text, ".", padded, "Z", "")
    return pc.if_else(fraction, exact, whole)


def _joined_list(array: pa.Array, separator: str) -> pa.Array | None:
    """Each list's items joined; None when an item is null (the plain rules write `None`)."""
    if pc.list_flatten(array).null_count:
        return None
    return pc.binary_join(array.cast(pa.list_(pa.string())), separator)


def _concatenated(lines: pa.Array) -> bytes:
    """All of a string array's values, end to end, without a copy per value."""
    if isinstance(lines, pa.ChunkedArray):
        lines = lines.combine_chunks()
    if not len(lines):
        return b""
    _, offsets_buffer, data = lines.buffers()
    offsets = memoryview(offsets_buffer).cast("i")  # int32 offsets: a string array, not large
    start, end = offsets[lines.offset], offsets[lines.offset + len(lines)]
    return b"" if data is None else data[start:end].to_pybytes()
