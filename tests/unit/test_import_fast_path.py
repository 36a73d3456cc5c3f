"""The fast reader and the column-wise validation against the row-by-row implementation they
replaced (tests/support/import_oracle.py): on generated files, in any chunking, with any
encoding, line ends, quoting, ragged and blank rows, and lowered bounds, both accept the same
rows with the same identifiers and attributes, reject the same rows with the same line, reason,
message and text, count the same rows in the scan, and fail the same files with the same
message."""

from __future__ import annotations

import codecs
import csv
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any
from unittest import mock

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from service.errors import JobFailedError
from service.imports import reader
from service.imports.parsing import ContactFile, scan
from service.imports.text import decoded
from service.imports.validation import ContactRow
from service.imports.validation import Outcome as Made
from tests.support import import_oracle

Outcome = tuple[Any, ...]

IDENTIFIER_COLUMNS = ["EMAIL", "EXT_ID", "SMS", "WHATSAPP", "LANDLINE_NUMBER"]
ATTRIBUTE_COLUMNS = ["FIRSTNAME", "CITY", "NOTE"]

emails = st.sampled_from(
    ["a@x.io", "A@X.IO", "b@x.io", " c@x.io ", "d.e+f@sub.example.com", "plain", "a@b", "a..b@x.io",
     "x" * 65 + "@x.io", "é@x.io", "a@x.io,b@x.io", "", "  "]
)  # fmt: skip
phones = st.sampled_from(
    ["+33 6 12 34 56 78", "0033612345678", "33612345678", "+1 (415) 555-0100", "+33", "0612345678",
     "12", "abc", "", "+44\u00a020 7946 0000", "00", "()"]
)  # fmt: skip
texts = st.text(
    alphabet=st.sampled_from(list('ab ,;\t"\r\nZé\u00a0')), max_size=12
) | st.sampled_from(["Ann", "", " ", "x" * 40, '"quoted"', "multi\nline", "semi;colon"])


@st.composite
def files(draw: st.DrawFn) -> tuple[str, str]:
    """A contacts file's text and its delimiter."""
    delimiter = draw(st.sampled_from([",", ";", "\t"]))
    identifiers = draw(st.lists(st.sampled_from(IDENTIFIER_COLUMNS), min_size=1, unique=True))
    attributes = draw(st.lists(st.sampled_from(ATTRIBUTE_COLUMNS), max_size=3, unique=True))
    header = identifiers + attributes
    header = draw(st.permutations(header))
    cells = {
        "EMAIL": emails,
        "EXT_ID": st.sampled_from(["e1", "e2", "", " e3 ", "E1"]),
        "SMS": phones,
        "WHATSAPP": phones,
        "LANDLINE_NUMBER": phones,
    }
    rows = []
    for _ in range(draw(st.integers(min_value=0, max_value=25))):
        kind = draw(st.sampled_from(["row", "row", "row", "ragged", "blank", "garbage"]))
        if kind == "blank":
            rows.append(draw(st.sampled_from(["", " ", "\t", delimiter * 2])))
            continue
        if kind == "garbage":
            rows.append(draw(texts))
            continue
        values = [draw(cells.get(name, texts)) for name in header]
        if kind == "ragged":
            values = values[: draw(st.integers(0, len(values)))] + draw(st.lists(texts, max_size=3))
        rows.append(delimiter.join(_quoted(value, delimiter, draw) for value in values))
    names = [draw(st.sampled_from([name, name.lower(), f" {name} "])) for name in header]
    lines = [delimiter.join(names), *rows]
    ending = draw(st.sampled_from(["\n", "\r\n", "\r", "mixed"]))
    if ending == "mixed":
        text = "".join(line + draw(st.sampled_from(["\n", "\r\n"])) for line in lines)
    else:
        text = ending.join(lines) + draw(st.sampled_from([ending, ""]))
    leading = draw(st.sampled_from(["", "\n", " \r\n"]))
    return leading + text, delimiter


def _quoted(value: str, delimiter: str, draw: st.DrawFn) -> str:
    needs = any(char in value for char in (delimiter, '"', "\r", "\n"))
    if needs or draw(st.booleans()):
        if draw(st.integers(0, 9)) == 0:
            return value  # left unquoted: the parser decides
        return '"' + value.replace('"', '""') + '"'
    return value


def encode(text: str, how: str) -> tuple[bytes, str | None]:
    if how == "utf-8-bom":
        return codecs.BOM_UTF8 + text.encode(), None
    if how == "utf-16":
        return text.encode("utf-16"), None
    if how == "latin-1":
        return text.encode("latin-1", errors="replace"), "latin-1"
    return text.encode(), None


def chunked(data: bytes, size: int) -> list[bytes]:
    return [data[i : i + size] for i in range(0, len(data), size)]


@contextmanager
def bounds(line: int, record: int, fields: int, block: int, field_limit: int) -> Iterator[None]:
    """The same bounds for the reader and the oracle; the parser's own field limit too."""
    previous = csv.field_size_limit(field_limit)
    try:
        with (
            mock.patch.multiple(
                reader,
                MAX_LINE_CHARS=line,
                MAX_RECORD_CHARS=record,
                MAX_RECORD_FIELDS=fields,
                SUB_BLOCK_CHARS=block,
            ),
            mock.patch.multiple(
                import_oracle,
                MAX_LINE_CHARS=line,
                MAX_RECORD_CHARS=record,
                MAX_RECORD_FIELDS=fields,
            ),
        ):
            yield
    finally:
        csv.field_size_limit(previous)


def fast(chunks: list[bytes], encoding: str | None, max_field_chars: int) -> list[Outcome]:
    contact_file = ContactFile(chunks, encoding=encoding, max_field_chars=max_field_chars)
    made: list[Outcome] = []
    for batch in contact_file.batches(7, 3000):
        every: list[Made] = [*batch.rows, *batch.rejections]
        for outcome in sorted(every, key=_line):
            if isinstance(outcome, ContactRow):
                made.append(
                    (outcome.line, "accepted", "", outcome.identifiers, outcome.attributes,
                     _listed(outcome.fields), outcome.raw)
                )  # fmt: skip
            else:
                made.append(
                    (outcome.line, outcome.reason, outcome.message, None, None,
                     _listed(outcome.fields), outcome.raw)
                )  # fmt: skip
    return made


def _listed(fields: Sequence[str] | None) -> list[str] | None:
    return None if fields is None else list(fields)


def _line(outcome: Made) -> int:
    return outcome.line


def old(chunks: list[bytes], encoding: str | None, max_field_chars: int) -> list[Outcome]:
    return import_oracle.outcomes(decoded(chunks, encoding), max_field_chars=max_field_chars)[1]


def outcome_or_error(
    work: Any, chunks: list[bytes], encoding: str | None, limit: int
) -> list[Outcome] | str:
    try:
        result: list[Outcome] = work(chunks, encoding, limit)
    except JobFailedError as exc:
        return f"{exc.code}: {exc.message}"
    return result


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    file=files(),
    how=st.sampled_from(["utf-8", "utf-8-bom", "utf-16", "latin-1"]),
    size=st.integers(min_value=1, max_value=80) | st.just(1 << 20),
    max_field_chars=st.sampled_from([5, 30, 1000]),
    block=st.integers(min_value=1, max_value=90),
    lowered=st.booleans(),
    data=st.data(),
)
def test_the_fast_path_accepts_and_rejects_exactly_what_the_row_by_row_path_did(
    file: tuple[str, str],
    how: str,
    size: int,
    max_field_chars: int,
    block: int,
    lowered: bool,
    data: st.DataObject,
) -> None:
    text, _ = file
    raw, encoding = encode(text, how)
    chunks = chunked(raw, size)
    limits = (1 << 20, 1 << 20, 20_000, block, 131_072)
    if lowered:
        limits = (
            data.draw(st.integers(10, 200), label="line"),
            data.draw(st.integers(10, 300), label="record"),
            data.draw(st.integers(2, 30), label="fields"),
            block,
            data.draw(st.integers(3, 60), label="field limit"),
        )
    with bounds(*limits):
        expected = outcome_or_error(old, chunks, encoding, max_field_chars)
        got = outcome_or_error(fast, chunks, encoding, max_field_chars)
        assert got == expected
        counted: int | str
        try:
            counted = scan(chunks, encoding=encoding, max_bytes=1 << 30, max_rows=1 << 30).rows
        except JobFailedError as exc:
            counted = f"{exc.code}: {exc.message}"
    if isinstance(expected, list):
        assert counted == len(expected)
    else:
        assert counted == expected
