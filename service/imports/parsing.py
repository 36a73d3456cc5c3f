"""The file, read twice, in bounded memory, on a worker thread (the work is CPU-bound parsing):

1. `scan`: the whole file is decoded and parsed (blocks without quotes are only counted), rows are
   counted and the bytes hashed, so a file that is too large, not text, or has an unusable
   header fails before any contact is written.
2. `ContactFile.batches`: rows again, a group at a time: validated column by column, checked for
   duplicates (the table sized from the scan's count), and cut into batches.

Both read the source chunk by chunk; nothing holds more than a chunk of text and its lines, the
block being parsed (16 KiB of text, or a record carried across blocks, at most a MiB; see
reader.py) and a batch, which is bounded by rows and by its estimated size in memory, so that
wide or ragged rows make smaller batches. A ragged row's fields are dropped once
it is rejected (its report needs only its text): a line of a million commas is a million fields.

Both stop at the next chunk when their `stop` event is set (the job was cancelled or ran out of
time): a thread cannot be interrupted, and must not go on reading a file nobody waits for.
"""

from __future__ import annotations

import hashlib
import threading
from bisect import bisect_left
from collections.abc import Generator, Iterable, Iterator
from dataclasses import dataclass, field
from itertools import accumulate

from service.imports.duplicates import DuplicateFinder
from service.imports.errors import FileTooLargeError, InvalidFileError
from service.imports.header import Header, parse_header
from service.imports.reader import CsvRecords
from service.imports.text import decoded
from service.imports.validation import ContactRow, Rejection, validate_group

# What a record costs in memory beyond its text, per field kept (the list's pointer and a small
# string object) and per row (the record, the row and their dicts): the batch's size estimate.
FIELD_BYTES = 64
ROW_BYTES = 512


class Stopped(Exception):  # noqa: N818 - not an error: the reader was asked to stop
    """The `stop` event was set: the reading thread ends at the next chunk."""


class Metered:
    """Bytes passing through, counted and hashed; more than `limit` fails the file."""

    def __init__(
        self,
        chunks: Iterable[bytes],
        *,
        limit: int | None = None,
        stop: threading.Event | None = None,
    ) -> None:
        self._chunks = chunks
        self._limit = limit
        self._stop = stop
        self.count = 0
        self.hash = hashlib.sha256()

    def __iter__(self) -> Iterator[bytes]:
        for chunk in self._chunks:
            if self._stop is not None and self._stop.is_set():
                raise Stopped
            self.count += len(chunk)
            if self._limit is not None and self.count > self._limit:
                raise FileTooLargeError(
                    f"the file is larger than the limit of {self._limit} bytes "
                    "(FERRY_IMPORTS__MAX_FILE_BYTES)"
                )
            self.hash.update(chunk)
            yield chunk


@dataclass(frozen=True)
class Scan:
    rows: int
    size: int
    sha256: str


def scan(
    chunks: Iterable[bytes],
    *,
    encoding: str | None,
    max_bytes: int,
    max_rows: int,
    stop: threading.Event | None = None,
) -> Scan:
    metered = Metered(chunks, limit=max_bytes, stop=stop)
    records = CsvRecords(decoded(metered, encoding))
    _header(records)
    rows = 0
    for group in records.groups(counted_only=True):
        rows += len(group)
        if rows > max_rows:
            raise FileTooLargeError(
                f"the file has more than the limit of {max_rows} rows (FERRY_IMPORTS__MAX_ROWS)"
            )
    return Scan(rows, metered.count, metered.hash.hexdigest())


@dataclass
class Batch:
    rows: list[ContactRow] = field(default_factory=list)
    rejections: list[Rejection] = field(default_factory=list)
    bytes_read: int = 0  # of the source, so far: the progress
    footprint: int = 0  # estimated bytes in memory (see FIELD_BYTES)

    def __len__(self) -> int:
        return len(self.rows) + len(self.rejections)


class ContactFile:
    """The rows of a contacts CSV. Opening it reads the header (so: on a worker thread)."""

    def __init__(
        self,
        chunks: Iterable[bytes],
        *,
        encoding: str | None,
        max_field_chars: int,
        stop: threading.Event | None = None,
        expected_rows: int = 0,
    ) -> None:
        self._metered = Metered(chunks, stop=stop)
        self._expected_rows = expected_rows  # the scan's count: the duplicate table's size
        self._records = CsvRecords(decoded(self._metered, encoding))
        self.header: Header = _header(self._records)
        self._max_field_chars = max_field_chars

    def batches(self, size: int, max_bytes: int) -> Generator[Batch, None, None]:
        """Batches of at most `size` rows, and of about `max_bytes` in memory: a batch ends
        with the row that takes it past `max_bytes`."""
        duplicates = DuplicateFinder(self._expected_rows)
        batch = Batch()
        header, limit = self.header, self._max_field_chars
        only = header.identifiers[0][1] if len(header.identifiers) == 1 else None
        for group in self._records.groups():
            valid = validate_group(group, header, max_field_chars=limit)
            outcomes = duplicates.sift(valid, only=only)
            sizes = [
                ROW_BYTES + len(outcome.raw) + FIELD_BYTES * len(outcome.fields or ())
                for outcome in outcomes
            ]  # footprint(), written out
            start = 0
            while start < len(outcomes):
                # As many as the batch takes, by rows and by bytes: through the row that
                # takes it to `size` rows or past `max_bytes`.
                room = size - len(batch)
                stop = start + room
                ends = list(accumulate(sizes[start:stop], initial=batch.footprint))
                over = bisect_left(ends, max_bytes, lo=1)
                full = over < len(ends)
                if full:
                    stop = start + over
                    batch.footprint = ends[over]
                else:
                    batch.footprint = ends[-1]
                    stop = min(stop, len(outcomes))
                for outcome in outcomes[start:stop]:
                    if type(outcome) is ContactRow:
                        batch.rows.append(outcome)
                    else:
                        batch.rejections.append(outcome)  # type: ignore[arg-type]
                start = stop
                if full or len(batch) >= size:
                    batch.bytes_read = self._metered.count
                    yield batch
                    batch = Batch()
        batch.bytes_read = self._metered.count
        yield batch


def footprint(outcome: ContactRow | Rejection) -> int:
    """About the bytes `outcome` holds in memory."""
    fields = len(outcome.fields) if outcome.fields is not None else 0
    return ROW_BYTES + len(outcome.raw) + FIELD_BYTES * fields


def _header(records: CsvRecords) -> Header:
    header = records.header
    if header is None:
        raise InvalidFileError("the file is empty: the first line must name the columns")
    if header.fields is None:
        raise InvalidFileError(f"the header line cannot be read: {header.error}")
    return parse_header(header.fields)
