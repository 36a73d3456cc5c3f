"""CSV records from text, with the line each starts on and its original text, in groups.

The delimiter (`,`, `;` or tab) is the one the header uses most (outside quotes). Records follow
RFC 4180 as Python's C parser reads it: quoted fields may hold delimiters, quotes and newlines.

Speed comes from working on many lines at once: each decoded piece of text is split into lines
with one `str.split`, and the lines are parsed a block at a time (SUB_BLOCK_CHARS of text) by one
call into the C parser, or by `str.split` per line when the block has no quote and no stray
carriage return (the parser would give the same fields). A block whose records are one line
each, the usual case, gives each record's line number and text for free; a block where a quoted
field spans lines is parsed again record by record, the parser's `line_num` telling which lines
each record took. A record still open at a block's end (a sentinel line tells) is carried into
the next block, so records span blocks and chunks as they span lines. Blank lines are skipped.

Nothing grows with the file: a line longer than MAX_LINE_CHARS (lines.py checks it), a record
longer than MAX_RECORD_CHARS (a quote left open, so that the rest of the file would be one
record), or one with more than MAX_RECORD_FIELDS fields fails the file with INVALID_FILE as soon
as it is seen, before the parser holds it. The field count matters as much as the length: the
parser makes a string object and a pointer per field (~60 bytes), so a MiB of `ab,ab,...` is
20 MB of fields.
A block is never larger than either record bound, so no record inside one can pass them; a
record carried over is checked line by line as it grows, as the parser would take the lines.
"""

from __future__ import annotations

import csv
from bisect import bisect_right
from collections.abc import Iterable, Iterator
from functools import partial
from itertools import accumulate, chain
from operator import add

from service.imports.errors import InvalidFileError
from service.imports.header import MAX_COLUMNS
from service.imports.lines import Lines, detect_delimiter, physical_lines
from service.imports.records import Group, Record

# A line longer than this without a line break is not a CSV line; stop before memory suffers.
MAX_LINE_CHARS = 1 << 20
# Nor is a record (lines joined by quoted line breaks) longer than this.
MAX_RECORD_CHARS = 1 << 20
# Twenty times the widest header Ferry accepts: a row this ragged is a broken or generated file,
# not a typing mistake. Delimiters are counted, quoted or not.
MAX_RECORD_FIELDS = 20 * MAX_COLUMNS
# The text parsed in one go: large enough that per-block costs vanish (a few hundred rows),
# small enough that its fields stay small (at most ~1 MB however they are shaped).
SUB_BLOCK_CHARS = 16384
# Ends the lines handed to the parser: alone it reads as a blank record; swallowed by the
# record before it, that record was still open (inside quotes) at the end of the block.
_SENTINEL = ("",)


class CsvRecords:
    """Iterate once: the header first (`header`), then the data records, one by one (`iter`)
    or in groups (`groups`)."""

    def __init__(self, text: Iterable[str]) -> None:
        self._pieces = physical_lines(text, max_chars=MAX_LINE_CHARS)
        self._line = 1  # of the next line to parse
        self._carry: list[str] = []  # the lines, with their breaks, of a record still open
        self._carry_line = 0
        self._carry_chars = 0
        self._carry_fields = 1
        self._counting = False
        leading = self._until_content()
        self.delimiter = detect_delimiter(leading.bodies[0]) if leading is not None else ","
        self._split = partial(str.split, sep=self.delimiter)
        self._groups = self._all_groups(leading)
        self._head: Group | None = None
        self.header: Record | None = self._first_record()

    def __iter__(self) -> Iterator[Record]:
        for group in self.groups():
            yield from group.records()

    def groups(self, *, counted_only: bool = False) -> Iterator[Group]:
        """The records in groups; `counted_only`: groups whose lines alone are right (what
        the scan needs), their fields left out where that saves the work."""
        self._counting = counted_only
        head, self._head = self._head, None
        if head is not None and len(head):
            yield head
        yield from self._groups

    def _until_content(self) -> Lines | None:
        """Skip the blank lines before the header: the rest of the header's piece, from its
        first line (None: the file has no content)."""
        for piece in self._pieces:
            for index, body in enumerate(piece.bodies):
                if body.strip():
                    self._line += index
                    return Lines(
                        piece.bodies[index:], piece.sep, clean=piece.clean, quoted=piece.quoted
                    )
            self._line += len(piece.bodies)
        return None

    def _first_record(self) -> Record | None:
        for group in self._groups:
            if len(group):
                self._head = Group(
                    group.lines[1:],
                    group.fields[1:],
                    group.raws[1:],
                    {index - 1: error for index, error in group.errors.items() if index},
                )
                return Record(group.lines[0], group.fields[0], group.raws[0], group.errors.get(0))
        return None

    def _all_groups(self, leading: Lines | None) -> Iterator[Group]:
        if leading is None:
            return
        yield from self._parse(leading)
        for piece in self._pieces:
            yield from self._parse(piece)
        if self._carry:  # the file ended inside quotes: the parser closes the record
            group = Group()
            carried_line = self._carry_line
            self._parse_lines(group, self._take_carry(), carried_line, final=True)
            yield group

    def _parse(self, piece: Lines) -> Iterator[Group]:
        bodies, sep = piece.bodies, piece.sep
        first = self._line
        self._line += len(bodies)
        bound = _block_chars()
        # ends[k]: the characters of lines 0..k, their breaks included
        ends = list(accumulate(map(partial(add, len(sep)), map(len, bodies))))
        start, count = 0, len(bodies)
        while start < count:
            group = Group()
            if self._carry:
                start = self._grow_carry(group, bodies, sep, start)
            else:
                stop = bisect_right(ends, (ends[start - 1] if start else 0) + bound, lo=start)
                if stop == start:  # a line larger than a block: alone, once within bounds
                    self._check_record(bodies[start], sep, first + start)
                    self._block(
                        group, bodies[start : start + 1], sep, first + start, clean=piece.clean
                    )
                    start += 1
                else:
                    block = bodies[start:stop]
                    if piece.clean and not (piece.quoted and '"' in "".join(block)):
                        self._plain(group, block, first + start)
                    else:
                        self._block(group, block, sep, first + start, clean=piece.clean)
                    start = stop
            if len(group):
                yield group

    def _plain(self, group: Group, block: list[str], first: int) -> None:
        """Lines without quotes or line breaks of their own, none beyond the parser's field
        limit: each is a record, split on the delimiter as the parser would split it."""
        if all(map(str.strip, block)):
            group.lines = list(range(first, first + len(block)))
            group.raws = block
        else:
            kept = [index for index, body in enumerate(block) if body.strip()]
            group.lines = [first + index for index in kept]
            group.raws = [block[index] for index in kept]
        if self._counting:
            return  # only the lines are counted
        group.fields = list(map(self._split, group.raws))

    def _block(self, group: Group, block: list[str], sep: str, first: int, *, clean: bool) -> None:
        try:
            parsed: list[list[str]] | None = list(
                csv.reader(chain(block, _SENTINEL), delimiter=self.delimiter)
            )
        except csv.Error:
            parsed = None
        if parsed is None or len(parsed) != len(block) + 1:
            # A record spans lines (or cannot be read): record by record, with the breaks.
            self._parse_lines(group, [body + sep for body in block], first, final=False)
            return
        # As many records as lines: each record is its line.
        raws = block if clean else [body.rstrip("\r\n") for body in block]
        if all(map(str.strip, raws)):
            group.lines = list(range(first, first + len(block)))
            group.fields = parsed[:-1]  # type: ignore[assignment]
            group.raws = raws
            return
        kept = [index for index, raw in enumerate(raws) if raw.strip()]
        group.lines = [first + index for index in kept]
        group.fields = [parsed[index] for index in kept]
        group.raws = [raws[index] for index in kept]

    def _parse_lines(self, group: Group, lines: list[str], first: int, *, final: bool) -> None:
        """Records of `lines` (with their breaks) one by one, each with the lines it took; a
        record still open at the end is carried over, unless the file ends there."""
        count = len(lines)
        source = iter(lines) if final else chain(lines, _SENTINEL)
        reader = csv.reader(source, delimiter=self.delimiter)
        start = 0
        while True:
            error: str | None = None
            fields: list[str] | None = None
            try:
                fields = next(reader)
            except StopIteration:
                return
            except csv.Error as exc:
                error = str(exc)
            end = reader.line_num
            if end > count:  # the sentinel: alone, or the end of a record still open
                if start < count:
                    self._carry = lines[start:]
                    self._carry_line = first + start
                    self._carry_chars = sum(map(len, self._carry))
                    delimiter = self.delimiter
                    self._carry_fields = 1 + sum(line.count(delimiter) for line in self._carry)
                return
            raw = "".join(lines[start:end]).rstrip("\r\n")
            if fields is None or raw.strip():
                if error is not None:
                    group.errors[len(group.lines)] = error
                group.lines.append(first + start)
                group.fields.append(fields)
                group.raws.append(raw)
            start = end

    def _grow_carry(self, group: Group, bodies: list[str], sep: str, start: int) -> int:
        """Parse the carried record with the lines after it that keep it within bounds (about
        a block of them). If it is still open, the next line is its: taking it past a bound
        fails the file; otherwise the record grows in the next round."""
        delimiter, gap = self.delimiter, len(sep)
        chars, fields = self._carry_chars, self._carry_fields
        stop, count = start, len(bodies)
        # A block's worth of lines at a time: most records close within it, and the records
        # after it go back to the block by block path sooner.
        room = _block_chars()
        while stop < count and room > 0:
            body = bodies[stop]
            more = body.count(delimiter)
            if chars + len(body) + gap > MAX_RECORD_CHARS or fields + more > MAX_RECORD_FIELDS:
                break
            chars += len(body) + gap
            fields += more
            room -= len(body) + gap
            stop += 1
        carried_line = self._carry_line
        lines = self._take_carry() + [body + sep for body in bodies[start:stop]]
        self._parse_lines(group, lines, carried_line, final=False)
        if self._carry and stop < count:
            self._check_growth(bodies[stop], sep)
        return stop

    def _take_carry(self) -> list[str]:
        carried, self._carry = self._carry, []
        return carried

    def _check_growth(self, body: str, sep: str) -> None:
        """The carried record, still open, takes `body` next: the bounds as the parser would
        meet them, the length first."""
        if self._carry_chars + len(body) + len(sep) > MAX_RECORD_CHARS:
            raise _too_long(self._carry_line)
        if self._carry_fields + body.count(self.delimiter) > MAX_RECORD_FIELDS:
            raise _too_many_fields(self._carry_line)

    def _check_record(self, body: str, sep: str, line: int) -> None:
        if len(body) + len(sep) > MAX_RECORD_CHARS:
            raise _too_long(line)
        if 1 + body.count(self.delimiter) > MAX_RECORD_FIELDS:
            raise _too_many_fields(line)


def _block_chars() -> int:
    """A block's bound: no record inside it can pass the record bounds, nor a field the
    parser's own limit (read each time: tests lower the bounds)."""
    return max(
        1, min(SUB_BLOCK_CHARS, MAX_RECORD_CHARS, MAX_RECORD_FIELDS - 1, csv.field_size_limit())
    )


def _too_long(line: int) -> InvalidFileError:
    return InvalidFileError(
        f"the record starting on line {line} is longer than {MAX_RECORD_CHARS} "
        "characters: a quote is probably left open, so that the rest of the file reads "
        "as one field"
    )


def _too_many_fields(line: int) -> InvalidFileError:
    return InvalidFileError(
        f"the record starting on line {line} has more than {MAX_RECORD_FIELDS} "
        f"fields: not a CSV file Ferry can read (a header has at most {MAX_COLUMNS} "
        "columns)"
    )
