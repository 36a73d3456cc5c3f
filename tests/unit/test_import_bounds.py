"""Import files built to exhaust a worker: codec bombs, endless lines and records, wide headers,
ragged rows. Each fails the file at once with a short message, or is read in bounded pieces."""

from __future__ import annotations

import asyncio
import bz2
import encodings.aliases
import threading
import tracemalloc
import zlib
from collections.abc import Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from service.config import ImportSettings
from service.errors import JobFailedError
from service.imports import reader
from service.imports.errors import EXCERPT_CHARS, InvalidFileError, excerpt
from service.imports.header import MAX_COLUMNS, parse_header
from service.imports.importer import _on_thread
from service.imports.parsing import ContactFile, footprint, scan
from service.imports.reader import CsvRecords
from service.imports.text import charset, decoded
from service.imports.validation import ContactRow, Rejection

# A message may quote an excerpt or two of the input, never the input itself.
SHORT_MESSAGE = 3 * EXCERPT_CHARS + 300


def _accepted(name: str) -> bool:
    try:
        charset(name)
    except LookupError:
        return False
    return True


CHARSETS = sorted(name for name in set(encodings.aliases.aliases.values()) if _accepted(name))


def chunked(data: bytes, size: int) -> list[bytes]:
    return [data[i : i + size] for i in range(0, len(data), size)]


def repeated(line: bytes, times: int, *, header: bytes = b"EMAIL\n") -> Iterator[bytes]:
    """A file made on the fly, so that the test itself never holds it."""
    yield header
    for _ in range(times):
        yield line


@pytest.mark.parametrize(
    ("codec", "bomb"),
    [("bz2", bz2.compress(b"EMAIL\n" + b"a" * 10_000_000)), ("zlib", zlib.compress(b"a" * 10**7))],
)
def test_a_job_naming_a_compressing_codec_fails_before_decoding_anything(
    codec: str, bomb: bytes
) -> None:
    # Refused by the intake; a job recorded before that check existed is refused here.
    with pytest.raises(JobFailedError) as caught:
        list(decoded([bomb], codec))
    assert caught.value.code == "INVALID_REQUEST"
    assert "not a text encoding" in caught.value.message


def test_the_usual_charsets_are_accepted() -> None:
    for name in ("utf-8", "latin-1", "cp1252", "utf-16", "shift_jis", "gb18030", "mac_roman"):
        assert _accepted(name), name
    assert len(CHARSETS) > 50


@settings(max_examples=300, deadline=None)
@given(
    codec=st.sampled_from(CHARSETS),
    data=st.binary(max_size=600),
    size=st.integers(min_value=1, max_value=64),
)
def test_no_accepted_charset_expands_or_fails_other_than_as_an_invalid_file(
    codec: str, data: bytes, size: int
) -> None:
    # The bound the size limit relies on: text never has more characters than the file had
    # bytes, however it is chunked; undecodable input is INVALID_FILE, never a crash.
    try:
        text = "".join(decoded(chunked(data, size), codec))
    except InvalidFileError as exc:
        message = exc.message
    else:
        assert len(text) <= len(data)
        return
    assert len(message) < SHORT_MESSAGE


def test_a_line_longer_than_the_limit_fails_the_file_without_reading_on(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(reader, "MAX_LINE_CHARS", 1000)
    taken = 0

    def endless() -> Iterator[bytes]:
        nonlocal taken
        yield b"EMAIL\na@x.io\n"
        while True:
            taken += 1
            yield b"x" * 100

    with pytest.raises(InvalidFileError, match="line 3 is longer than 1000") as caught:
        scan(endless(), encoding=None, max_bytes=10**12, max_rows=10)
    assert taken < 20
    assert len(caught.value.message) < SHORT_MESSAGE
    # The same when the very first line never ends.
    with pytest.raises(InvalidFileError, match="line 1 is longer"):
        list(CsvRecords(decoded([b"E" * 600, b"M" * 600], None)))


def test_a_quote_left_open_fails_the_file_once_the_record_passes_the_limit(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(reader, "MAX_RECORD_CHARS", 1000)
    data = b'EMAIL,NOTE\na@x.io,fine\nb@x.io,"open\n' + b"more,text\n" * 200
    with pytest.raises(InvalidFileError, match="line 3 is longer than 1000") as caught:
        list(CsvRecords(decoded(chunked(data, 64), None)))
    assert "quote" in caught.value.message


def test_a_header_of_a_megabyte_fails_with_a_short_message_and_at_once() -> None:
    junk = ["x" * 850 for _ in range(MAX_COLUMNS)]  # ~850 KB: repeated and unusable names
    with pytest.raises(InvalidFileError) as caught:
        parse_header(junk)
    assert "more than once" in caught.value.message
    assert "more characters" in caught.value.message  # the marker of a cut excerpt
    assert len(caught.value.message) < SHORT_MESSAGE
    wide = [f"A{n}" for n in range(MAX_COLUMNS)]
    with pytest.raises(InvalidFileError, match=f"{MAX_COLUMNS + 1} columns"):
        parse_header(["EMAIL", *wide])
    distinct_junk = [f"{n}{'?' * 850}" for n in range(MAX_COLUMNS)]
    with pytest.raises(InvalidFileError, match="not usable") as caught:
        parse_header(distinct_junk)
    assert len(caught.value.message) < SHORT_MESSAGE


@settings(max_examples=200, deadline=None)
@given(st.lists(st.text(max_size=3000), max_size=40))
def test_any_header_is_usable_or_refused_in_a_short_message(names: list[str]) -> None:
    try:
        header = parse_header(names)
    except InvalidFileError as exc:
        message = exc.message
    else:
        assert header.identifiers
        return
    assert len(message) < SHORT_MESSAGE


def test_excerpt_cuts_with_a_marker() -> None:
    assert excerpt("short") == "short"
    cut = excerpt("y" * 1000, 10)
    assert cut == "yyyyyyyyyy… (990 more characters)"


@settings(max_examples=100, deadline=None)
@given(
    widths=st.lists(st.integers(min_value=0, max_value=4000), min_size=1, max_size=60),
    rows=st.integers(min_value=1, max_value=20),
    max_bytes=st.integers(min_value=1000, max_value=50_000),
)
def test_batches_are_bounded_by_bytes_as_well_as_rows(
    widths: list[int], rows: int, max_bytes: int
) -> None:
    # A one-column header, then lines of `width` commas each (ragged) or a valid email.
    lines = [b"," * width if width % 3 else f"u{n}@x.io".encode() for n, width in enumerate(widths)]
    data = b"EMAIL\n" + b"\n".join(lines) + b"\n"
    contact_file = ContactFile(chunked(data, 512), encoding=None, max_field_chars=100)
    seen = 0
    for batch in contact_file.batches(rows, max_bytes):
        outcomes: list[ContactRow | Rejection] = [*batch.rows, *batch.rejections]
        outcomes.sort(key=lambda outcome: outcome.line)
        assert len(outcomes) <= rows
        # Only the row that took the batch past the bound may be beyond it.
        assert sum(footprint(outcome) for outcome in outcomes[:-1]) < max_bytes
        for rejection in batch.rejections:
            if rejection.reason == "ragged_row":
                assert rejection.fields is None  # a million commas are not kept as fields
        seen += len(outcomes)
    assert seen == sum(1 for line in lines if line)  # blank lines are skipped, nothing lost


def test_a_row_of_too_many_fields_fails_the_file_before_the_parser_holds_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The shape: a one-column header, then a line of commas. Parsed, a MiB of them is
    # a million fields; the delimiters are counted first.
    with pytest.raises(InvalidFileError, match="line 2 has more than 20000 fields"):
        list(CsvRecords(decoded([b"EMAIL\n", b"," * 1_000_000, b"\n"], None)))
    monkeypatch.setattr(reader, "MAX_RECORD_FIELDS", 10)
    # Across quoted line breaks too; and a header is a record like any other.
    with pytest.raises(InvalidFileError, match="line 2 has more than 10"):
        list(CsvRecords(decoded([b"EMAIL\n" + b'"a\n","b\n",' * 20], None)))
    with pytest.raises(InvalidFileError, match="line 1 has more than 10"):
        CsvRecords(decoded([b"A;" * 11 + b"\n"], None))


def test_ragged_rows_are_read_in_bounded_memory() -> None:
    # Lines of commas just under the field limit, 23 MB of them; tracemalloc counts what
    # Python allocates, the parser's fields included.
    line = b"," * 19_000 + b"\n"
    times = 1200
    tracemalloc.start()
    try:
        contact_file = ContactFile(
            _rechunked(repeated(line, times)), encoding=None, max_field_chars=100
        )
        rejected = 0
        for batch in contact_file.batches(1000, 2 * 1024 * 1024):
            rejected += len(batch.rejections)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert rejected == times
    # Two batches of 2 MiB, chunks and one record. A batch of 1000 such rows would hold the
    # whole file (23 MB), and its fields (180 MB) if they were kept.
    assert peak < 14 * 1024 * 1024, f"peak {peak / 2**20:.1f} MiB"


def _rechunked(pieces: Iterator[bytes], size: int = 1 << 20) -> Iterator[bytes]:
    """Pieces regrouped into chunks of `size`, as the object store hands them out."""
    pending = b""
    for piece in pieces:
        pending += piece
        while len(pending) >= size:
            yield pending[:size]
            pending = pending[size:]
    if pending:
        yield pending


async def test_a_cancelled_read_stops_its_thread_before_the_slot_is_given_back() -> None:
    # A thread cannot be interrupted: cancelling the import sets `stop`, and the cancellation
    # completes only once the thread has seen it, at its next chunk.
    stop = threading.Event()
    fed = threading.Event()
    ended = threading.Event()

    def endless() -> Iterator[bytes]:
        yield b"EMAIL\n"
        while True:
            fed.set()
            yield b"a@x.io\n" * 1000

    def work() -> object:
        try:
            return scan(endless(), encoding=None, max_bytes=10**15, max_rows=10**15, stop=stop)
        finally:
            ended.set()

    task = asyncio.create_task(_on_thread(stop, work))
    while not fed.is_set():
        await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert stop.is_set()
    assert ended.is_set()  # the thread is done, not reading on beside the next job


def test_the_fetch_deadline_must_be_shorter_than_the_running_time() -> None:
    # Otherwise a trickling source would meet JOB_TIMEOUT first, with a vaguer message.
    assert ImportSettings().fetch_deadline_seconds < ImportSettings().max_running_seconds
    with pytest.raises(ValidationError, match="fetch_deadline_seconds"):
        ImportSettings(fetch_deadline_seconds=600, max_running_seconds=600)
