"""The import reader and row validation as they were before the fast path (issue 15): kept only
as an oracle for tests/unit/test_import_fast_path.py, which checks that the fast path accepts and
rejects exactly the same rows, with the same lines, reasons and messages. Duplicates are found
with a plain dict here (the real finder's fingerprints only differ by chance)."""

from __future__ import annotations

import csv
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from service.imports.errors import InvalidFileError
from service.imports.header import MAX_COLUMNS, Header, parse_header

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


# Deliberately plain: ASCII addresses as mail systems and Brevo accept them. Internationalised
# addresses are rejected rather than guessed at.
_EMAIL = re.compile(
    r"(?P<local>[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*)"
    r"@(?P<domain>(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,63})"
)
_MAX_EMAIL = 254
_MAX_LOCAL = 64
_PHONE_SEPARATORS = str.maketrans("", "", " .-/()\u00a0")
_E164 = re.compile(r"\+[1-9][0-9]{6,14}")

PHONE_FIELDS = ("sms", "whatsapp", "landline_number")

# Reason code -> Brevo's report category, for the reasons that have one.
CATEGORIES = {
    "invalid_email": "invalid_emails",
    "duplicate_email": "duplicate_email_id",
    "duplicate_ext_id": "duplicate_ext_id",
    "duplicate_sms": "duplicate_phone_id",
    "duplicate_whatsapp": "duplicate_whatsapp_id",
    "duplicate_landline_number": "duplicate_landline_number_id",
}


@dataclass(slots=True)
class ContactRow:
    line: int
    identifiers: dict[str, str]  # field -> normalised value, only those given
    attributes: dict[str, str | None]  # name -> value, None for a blank cell
    fields: list[str]
    raw: str


@dataclass(frozen=True, slots=True)
class Rejection:
    line: int
    reason: str
    message: str
    fields: list[str] | None
    raw: str

    @property
    def category(self) -> str | None:
        return CATEGORIES.get(self.reason)


def normalise_email(value: str) -> str | None:
    match = _EMAIL.fullmatch(value)
    if match is None or len(value) > _MAX_EMAIL or len(match["local"]) > _MAX_LOCAL:
        return None
    return value.lower()


def normalise_phone(value: str) -> str | None:
    compact = value.translate(_PHONE_SEPARATORS)
    if compact.startswith("00"):
        compact = "+" + compact[2:]
    elif not compact.startswith("+"):
        compact = "+" + compact  # written without the +, as Brevo allows: country code first
    return compact if _E164.fullmatch(compact) else None


def _identifier(name: str, value: str) -> str | None:
    if name == "email":
        return normalise_email(value)
    if name in PHONE_FIELDS:
        return normalise_phone(value)
    return value  # ext_id: any text


def validate(
    line: int, fields: list[str], raw: str, header: Header, *, max_field_chars: int
) -> ContactRow | Rejection:
    def reject(reason: str, message: str) -> Rejection:
        return Rejection(line, reason, message, fields, raw)

    if len(fields) != len(header.names):
        return reject(
            "ragged_row", f"the row has {len(fields)} fields; the header has {len(header.names)}"
        )
    for column, value in enumerate(fields):
        if len(value) > max_field_chars:
            return reject(
                "field_too_long",
                f"{header.names[column]} has {len(value)} characters; the limit is "
                f"{max_field_chars}",
            )
    identifiers: dict[str, str] = {}
    for column, name in header.identifiers:
        value = fields[column].strip()
        if not value:
            continue
        normal = _identifier(name, value)
        if normal is None:
            if name == "email":
                return reject("invalid_email", f"{value!r} is not a valid email address")
            return reject(
                f"invalid_{name}",
                f"{header.names[column]} {value!r} is not a phone number in international "
                "form (country code first, e.g. +33612345678)",
            )
        identifiers[name] = normal
    if not identifiers:
        return reject(
            "missing_identifier",
            "the row has no identifier: EMAIL, EXT_ID, SMS, WHATSAPP or LANDLINE_NUMBER",
        )
    attributes = {name: (fields[column].strip() or None) for column, name in header.attributes}
    return ContactRow(line, identifiers, attributes, fields, raw)


def outcomes(
    text: Iterable[str], *, max_field_chars: int
) -> tuple[
    Header,
    list[
        tuple[
            int,
            str,
            str,
            dict[str, str] | None,
            dict[str, str | None] | None,
            list[str] | None,
            str,
        ]
    ],
]:
    """(line, reason or "accepted", message, identifiers, attributes, fields kept, raw) of every
    record of the file, in order, as the old reader and validation made them."""
    records = CsvRecords(text)
    header_record = records.header
    if header_record is None:
        raise InvalidFileError("the file is empty: the first line must name the columns")
    if header_record.fields is None:
        raise InvalidFileError(f"the header line cannot be read: {header_record.error}")
    header = parse_header(header_record.fields)
    seen: dict[tuple[str, str], int] = {}
    result: list[tuple[Any, ...]] = []
    for record in records:
        if record.fields is None:
            message = f"the row cannot be read: {record.error}"
            result.append((record.line, "malformed_row", message, None, None, None, record.raw))
            continue
        outcome = validate(
            record.line, record.fields, record.raw, header, max_field_chars=max_field_chars
        )
        if isinstance(outcome, Rejection):
            fields = outcome.fields if outcome.category is not None else None
            result.append(
                (outcome.line, outcome.reason, outcome.message, None, None, fields, outcome.raw)
            )
            continue
        earlier = next(
            (
                (name, seen[(name, value)])
                for name, value in outcome.identifiers.items()
                if (name, value) in seen
            ),
            None,
        )
        if earlier is not None:
            name, line = earlier
            message = f"{name.upper()} {outcome.identifiers[name]} is already on line {line}"
            result.append(
                (
                    outcome.line,
                    f"duplicate_{name}",
                    message,
                    None,
                    None,
                    outcome.fields,
                    outcome.raw,
                )
            )
            continue
        for name, value in outcome.identifiers.items():
            seen[(name, value)] = outcome.line
        result.append(
            (
                outcome.line,
                "accepted",
                "",
                outcome.identifiers,
                outcome.attributes,
                outcome.fields,
                outcome.raw,
            )
        )
    return header, result
