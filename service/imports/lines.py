"""A CSV file's physical lines, a decoded piece of text at a time, and its delimiter.

Each piece is split with one `str.split`: lines end at LF (so CRLF too), or at CR in files that
use CR alone. A line longer than the limit the caller gives fails the file with INVALID_FILE as
soon as it is seen, once the lines before it are handed on, so nothing grows with a file that
has no line breaks.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from service.imports.errors import InvalidFileError

DELIMITERS = (",", ";", "\t")


@dataclass(frozen=True, slots=True)
class Lines:
    """Complete lines of the file without their line break `sep` ("" for a last line without
    one); `clean` when no line holds a CR or LF of its own (then a record's text is its line)."""

    bodies: list[str]
    sep: str
    clean: bool
    quoted: bool  # some line holds a quote


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


def physical_lines(text: Iterable[str], *, max_chars: int) -> Iterator[Lines]:
    """Physical lines, a piece of text at a time. Lines end at LF (so CRLF too), or at CR in
    files that use CR alone; a line too long fails the file once the lines before it are
    handed on."""
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
                _check_length(pending, number, max_chars)
                continue
        cut = pending.rfind(separator)
        if cut < 0:
            _check_length(pending, number, max_chars)
            continue
        complete, pending = pending[: cut + 1], pending[cut + 1 :]
        lines = _split(complete, separator)
        # CRLF lines were measured with their CR before: the limit is the same.
        extra = 1 if lines.sep == "\r\n" else 0
        longest = max(map(len, lines.bodies))
        if longest + extra > max_chars:
            index = next(
                index for index, body in enumerate(lines.bodies) if len(body) + extra > max_chars
            )
            if index:
                yield Lines(lines.bodies[:index], lines.sep, clean=lines.clean, quoted=lines.quoted)
            raise _line_too_long(number + index, max_chars)
        number += len(lines.bodies)
        yield lines
        _check_length(pending, number, max_chars)
    if pending:
        clean = "\r" not in pending and "\n" not in pending
        yield Lines([pending], "", clean=clean, quoted='"' in pending)


def _split(complete: str, separator: str) -> Lines:
    """`complete` (ending with `separator`) as lines. A file all in CRLF is split on CRLF, so
    its lines hold no line break of their own and each record's text is its line."""
    quoted = '"' in complete
    if separator == "\r":
        return Lines(complete[:-1].split("\r"), "\r", clean="\n" not in complete, quoted=quoted)
    carriage_returns = complete.count("\r")
    if not carriage_returns:
        return Lines(complete[:-1].split("\n"), "\n", clean=True, quoted=quoted)
    newlines = complete.count("\n")
    if carriage_returns == newlines == complete.count("\r\n"):
        return Lines(complete[:-2].split("\r\n"), "\r\n", clean=True, quoted=quoted)
    return Lines(complete[:-1].split("\n"), "\n", clean=False, quoted=quoted)


def _check_length(line: str, number: int, max_chars: int) -> None:
    if len(line) > max_chars:
        raise _line_too_long(number, max_chars)


def _line_too_long(number: int, max_chars: int) -> InvalidFileError:
    return InvalidFileError(
        f"line {number} is longer than {max_chars} characters: not a CSV file Ferry can read"
    )
