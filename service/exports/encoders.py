"""Encoders: rows (MongoDB documents) to file bytes. Pure functions of their input.

CSV follows RFC 4180 (UTF-8, CRLF, a header row, quotes only where needed). Cells that a
spreadsheet would run as a formula are prefixed with `'` (OWASP's advice) unless disabled.
JSON Lines writes one object per row with the same column names and native JSON types.

These row-by-row encoders are the reference: the exporter encodes column-wise through Arrow
(arrow_encoders.py), byte for byte the same, and falls back to their cell rules for values of
mixed types.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, Protocol

from service.clock import rfc3339
from service.datasets.base import Cell, Column, Document
from service.formulas import FORMULA_PREFIXES
from service.jobs.model import ExportFormat


class Encoder(Protocol):
    def header(self) -> bytes: ...

    def encode(self, rows: Sequence[Document]) -> bytes: ...


class CsvEncoder:
    def __init__(self, columns: Sequence[Column], *, escape_formulas: bool) -> None:
        self._names = [column.name for column in columns]
        self._fields = [column.field for column in columns]
        self._nested = nested_fields(columns)
        self._escape_formulas = escape_formulas

    def header(self) -> bytes:
        return self._write([self._names])

    def encode(self, rows: Sequence[Document]) -> bytes:
        fields = self._fields
        cell = self._cell
        rows = flattened(rows, self._nested)
        return self._write([[cell(row.get(field)) for field in fields] for row in rows])

    def _cell(self, value: Cell) -> str | int | float:  # noqa: PLR0911 - one return per type
        if value is None:
            return ""
        if isinstance(value, str):
            if self._escape_formulas and value.startswith(FORMULA_PREFIXES):
                return "'" + value
            return value
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, datetime):
            return rfc3339(value)
        if isinstance(value, list):
            return ",".join(str(item) for item in value)
        return value

    @staticmethod
    def _write(rows: list[list[Any]]) -> bytes:
        buffer = io.StringIO()
        csv.writer(buffer, lineterminator="\r\n").writerows(rows)
        return buffer.getvalue().encode()


class JsonLinesEncoder:
    def __init__(self, columns: Sequence[Column]) -> None:
        self._columns = [(column.name, column.field) for column in columns]
        self._nested = nested_fields(columns)

    def header(self) -> bytes:
        return b""

    def encode(self, rows: Sequence[Document]) -> bytes:
        dumps = json.JSONEncoder(
            ensure_ascii=False, separators=(",", ":"), default=_json_default
        ).encode
        columns = self._columns
        rows = flattened(rows, self._nested)
        lines = [dumps({name: row.get(field) for name, field in columns}) for row in rows]
        return ("\n".join(lines) + "\n").encode() if lines else b""


def nested_fields(columns: Sequence[Column]) -> list[str]:
    """The columns' dotted fields (`attributes.FIRSTNAME`), which a plain `get` cannot reach."""
    return [column.field for column in columns if "." in column.field]


def flattened(rows: Sequence[Document], nested: list[str]) -> Sequence[Document]:
    """`rows` with each dotted field also readable at its dotted name. Rows without nested
    columns pass through untouched, so datasets with flat documents pay nothing."""
    if not nested:
        return rows
    return [{**row, **{path: _dig(row, path) for path in nested}} for row in rows]


def _dig(row: Document, path: str) -> object:
    value: object = row
    for part in path.split("."):
        if not isinstance(value, Mapping):
            return None
        value = value.get(part)
    return value


def _json_default(value: object) -> str:
    if isinstance(value, datetime):
        return rfc3339(value)
    raise TypeError(f"cannot encode {type(value).__name__} as JSON")


def make_encoder(
    export_format: ExportFormat, columns: Sequence[Column], *, escape_formulas: bool
) -> Encoder:
    if export_format == "csv":
        return CsvEncoder(columns, escape_formulas=escape_formulas)
    if export_format == "jsonl":
        return JsonLinesEncoder(columns)
    raise ValueError(f"no row-by-row encoder for {export_format}: see parquet_writer.py")
