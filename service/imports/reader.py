"""CSV records from text, with the line each starts on and its original text.

The delimiter (`,`, `;` or tab) is the one the header uses most (outside quotes). Records follow
RFC 4180 as Python's C parser reads it: quoted fields may hold delimiters, quotes and newlines.
Lines are fed to the parser one at a time and remembered until its record is complete, which
gives each record's first line number and its text exactly as in the file, for the reports, at
no extra parsing cost. Blank lines are skipped.

Nothing grows with the file: a line longer than MAX_LINE_CHARS, a record longer than
MAX_RECORD_CHARS (a quote left open, so that the rest of the file would be one record), or one
with more than MAX_RECORD_FIELDS fields fails the file with INVALID_FILE as soon as it is seen,
before the parser holds it. The field count matters as much as the length: the parser makes a
string object and a pointer per field (~60 bytes), so a MiB of `ab,ab,...` is 20 MB of fields.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from service.imports.errors import InvalidFileError
from service.imports.header import MAX_COLUMNS

DELIMITERS = (",", ";", "\t")
# A line longer than this without a line break is not a CSV line; stop before memory suffers.
MAX_LINE_CHARS = 1 << 20
# Nor is a record (lines joined by quoted line breaks) longer than this.
MAX_RECORD_CHARS = 1 << 20
# Twenty times the widest header Ferry accepts: a row this ragged is a broken or generated file,
# not a typing mistake. Delimiters are counted, quoted or not.
MAX_RECORD_FIELDS = 20 * MAX_COLUMNS


@dataclass(frozen=True, slots=True)
class Record:
    line: int  # 1 is the file's first line
    fields: list[str] | None  # None when the record could not be parsed
    raw: str  # the record's text, without its final line break
    error: str | None = None


class CsvRecords:
    """Iterate once: the header first (`header`), then the data records."""

    def __init__(self, text: Iterable[str]) -> None:
        self._lines = _lines(text)
        self._seen: list[str] = []
        self._seen_chars = 0
        self._seen_fields = 1
        self._line = 1  # of the next line the parser takes
        leading = _until_content(self._lines)
        self.delimiter = detect_delimiter(leading[-1] if leading else "")
        self._reader = csv.reader(self._remembered(leading), delimiter=self.delimiter)
        header = next(self._records(), None)
        self.header: Record | None = header

    def __iter__(self) -> Iterator[Record]:
        return self._records()

    def _records(self) -> Iterator[Record]:
        while True:
            self._seen.clear()
            self._seen_chars = 0
            self._seen_fields = 1
            fields: list[str] | None = None
            error: str | None = None
            try:
                fields = next(self._reader)
            except StopIteration:
                return
            except csv.Error as exc:
                error = str(exc)
            line = self._line
            self._line += len(self._seen)
            raw = "".join(self._seen).rstrip("\r\n")
            if fields is not None and not raw.strip():
                continue  # a blank line
            yield Record(line, fields, raw, error)

    def _remembered(self, leading: list[str]) -> Iterator[str]:
        for line in leading:
            self._remember(line)
            yield line
        for line in self._lines:
            self._remember(line)
            yield line

    def _remember(self, line: str) -> None:
        self._seen_chars += len(line)
        if self._seen_chars > MAX_RECORD_CHARS:
            raise InvalidFileError(
                f"the record starting on line {self._line} is longer than {MAX_RECORD_CHARS} "
                "characters: a quote is probably left open, so that the rest of the file reads "
                "as one field"
            )
        self._seen_fields += line.count(self.delimiter)
        if self._seen_fields > MAX_RECORD_FIELDS:
            raise InvalidFileError(
                f"the record starting on line {self._line} has more than {MAX_RECORD_FIELDS} "
                f"fields: not a CSV file Ferry can read (a header has at most {MAX_COLUMNS} "
                "columns)"
            )
        self._seen.append(line)


def detect_delimiter(header_line: str) -> str:
    """The candidate the header line uses most outside quotes; `,` when it uses none."""
    counts = dict.fromkeys(DELIMITERS, 0)
    quoted = False
    for char in header_line:
        if char == '"':
            quoted = not quoted
        elif not quoted and char in counts:
            counts[char] += 1
    best = max(DELIMITERS, key=lambda candidate: counts[candidate])
    return best if counts[best] else ","


def _until_content(lines: Iterator[str]) -> list[str]:
    """The lines up to and including the first that is not blank (the header's first line)."""
    taken: list[str] = []
    for line in lines:
        taken.append(line)
        if line.strip():
            break
    return taken


def _lines(text: Iterable[str]) -> Iterator[str]:
    """Physical lines, each with its line break (the parser needs them to keep newlines inside
    quoted fields). Lines end at LF (so CRLF too), or at CR in files that use CR alone."""
    pending = ""
    separator: str | None = None
    number = 1  # of the line in `pending`
    for piece in text:
        pending += piece
        if separator is None:
            if "\n" in pending:
                separator = "\n"
            elif "\r" in pending.rstrip("\r"):
                separator = "\r"  # old Mac files: CR alone ends a line
            else:
                _check_length(pending, number)
                continue
        parts = pending.split(separator)
        pending = parts.pop()
        for part in parts:
            _check_length(part, number)
            number += 1
            yield part + separator
        _check_length(pending, number)
    if pending:
        yield pending


def _check_length(line: str, number: int) -> None:
    if len(line) > MAX_LINE_CHARS:
        raise InvalidFileError(
            f"line {number} is longer than {MAX_LINE_CHARS} characters: not a CSV file Ferry "
            "can read"
        )
