"""Encoders: rows in, file bytes out."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime

import pytest

from service.datasets.base import Column
from service.exports.encoders import CsvEncoder, JsonLinesEncoder

COLUMNS = (Column("id", "_id"), Column("note", "note"), Column("n", "n"), Column("at", "at"))
AT = datetime(2025, 12, 6, 12, 0, 30, 123000, tzinfo=UTC)


def parse_csv(data: bytes) -> list[list[str]]:
    return list(csv.reader(io.StringIO(data.decode(), newline="")))


def test_csv_header_and_crlf_lines() -> None:
    encoder = CsvEncoder(COLUMNS, escape_formulas=True)
    data = encoder.header() + encoder.encode([{"_id": "m1", "note": "hi", "n": 3, "at": AT}])
    assert data == b"id,note,n,at\r\nm1,hi,3,2025-12-06T12:00:30.123Z\r\n"


def test_csv_quotes_delimiters_quotes_and_newlines_per_rfc4180() -> None:
    encoder = CsvEncoder(COLUMNS, escape_formulas=True)
    tricky = 'a,b "quoted"\nnext line'
    data = encoder.encode([{"_id": "m1", "note": tricky, "n": None, "at": None}])
    assert data == b'm1,"a,b ""quoted""\nnext line",,\r\n'
    assert parse_csv(data) == [["m1", tricky, "", ""]]


@pytest.mark.parametrize("value", ["=1+1", "+SUM(A1)", "-2+3", "@cmd", "\tx", "\rx"])
def test_csv_escapes_formula_starters(value: str) -> None:
    encoder = CsvEncoder(COLUMNS, escape_formulas=True)
    [[_, note, _, _]] = parse_csv(encoder.encode([{"_id": "m", "note": value}]))
    assert note == "'" + value


def test_csv_formula_escaping_can_be_turned_off() -> None:
    encoder = CsvEncoder(COLUMNS, escape_formulas=False)
    [[_, note, _, _]] = parse_csv(encoder.encode([{"_id": "m", "note": "=1+1"}]))
    assert note == "=1+1"


def test_csv_numbers_are_not_escaped_and_bools_are_words() -> None:
    encoder = CsvEncoder((Column("n", "n"), Column("b", "b")), escape_formulas=True)
    assert encoder.encode([{"n": -5, "b": True}, {"n": 0, "b": False}]) == b"-5,true\r\n0,false\r\n"


def test_csv_is_utf8() -> None:
    encoder = CsvEncoder(COLUMNS, escape_formulas=True)
    assert encoder.encode([{"_id": "é", "note": "日本"}]) == "é,日本,,\r\n".encode()


def test_jsonl_one_object_per_line_with_native_types() -> None:
    encoder = JsonLinesEncoder(COLUMNS)
    data = encoder.encode(
        [{"_id": "m1", "note": "=x", "n": 2, "at": AT}, {"_id": "m2", "note": None}]
    )
    lines = data.decode().splitlines()
    assert [json.loads(line) for line in lines] == [
        {"id": "m1", "note": "=x", "n": 2, "at": "2025-12-06T12:00:30.123Z"},
        {"id": "m2", "note": None, "n": None, "at": None},
    ]
    assert data.endswith(b"\n")
    assert encoder.header() == b""
    assert encoder.encode([]) == b""
