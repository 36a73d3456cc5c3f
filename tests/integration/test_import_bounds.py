"""Hostile import files and sources against the real importer (MongoDB, S3, loopback HTTP): each
ends as a failed import with a clear code and a short message, or as rows rejected one by one,
while the importer's memory stays bounded.

Memory is measured in process with tracemalloc: it counts every allocation Python makes (the
CSV parser's fields, decoded text, the S3 and MongoDB clients' buffers), not the interpreter
itself or its allocator's slack; the database and object store are other processes. The size
limit is lowered to 8 MB here so the suite stays fast; bench/import_hostile.py measures a real
worker's peak RSS on the same shapes at the default 100 MB (docs/reliability.md).
"""

from __future__ import annotations

import asyncio
import bz2
import gzip
import time
import tracemalloc
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest

from service.database import Database
from service.datasets import ensure_dataset_indexes
from service.errors import FerryError
from service.imports.errors import EXCERPT_CHARS
from service.imports.model import ImportResult, ImportSource
from service.jobs.ledger import Ledger
from service.storage import ObjectStore
from tests.integration.test_importer import make_importer, project, report, run_import, upload

pytestmark = pytest.mark.integration

LIMIT = 8 * 1024 * 1024
# What one import may take beyond what it took before it started: two batches (2 MiB each
# here), a few 1 MiB chunks and their text, one record, the report writers' parts (5 MiB).
PEAK = 40 * 1024 * 1024
SHORT_MESSAGE = 3 * EXCERPT_CHARS + 300
LIMITS: dict[str, float] = {
    "max_file_bytes": LIMIT,
    "batch_max_bytes": 2 * 1024 * 1024,
    "batch_size": 1000,
}

Writer = Callable[[asyncio.StreamWriter], Awaitable[None]]


@pytest.fixture(autouse=True)
async def indexes(database: Database) -> None:
    await ensure_dataset_indexes(database)


async def measured(
    work: Awaitable[tuple[Any, ImportResult]],
) -> tuple[ImportResult | FerryError, int]:
    """The import's result or error, and the peak of what Python allocated meanwhile."""
    tracemalloc.start()
    try:
        try:
            outcome: ImportResult | FerryError = (await work)[1]
        except FerryError as exc:
            outcome = exc
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return outcome, peak


def failure(outcome: ImportResult | FerryError, peak: int) -> FerryError:
    assert isinstance(outcome, FerryError), f"the import did not fail: {outcome}"
    assert len(outcome.message) < SHORT_MESSAGE, outcome.message[:500]
    assert peak < PEAK, f"peak {peak / 2**20:.1f} MiB"
    return outcome


def hostile_files() -> dict[str, tuple[bytes, str, str]]:
    """name -> (file, error code, words of the message)."""
    wide = ",".join(f"COLUMN_{n}_{'x' * 40}" for n in range(17_000))  # ~850 KB, one line
    return {
        "wide header": (f"EMAIL,{wide}\na@x.io\n".encode(), "INVALID_FILE", "columns"),
        "one long line": (b"EMAIL\n" + b"a" * (LIMIT - 10), "INVALID_FILE", "line 2 is longer"),
        "a header that never ends": (b"E" * (LIMIT - 10), "INVALID_FILE", "line 1 is longer"),
        "a record that never ends": (  # every line break inside quotes
            b'EMAIL,NOTE\na@x.io,"' + b'a\n","' * (LIMIT // 6),
            "INVALID_FILE",
            "line 2 has more than 20000 fields",
        ),
        "a record of a few huge quoted fields": (
            b'EMAIL,NOTE\na@x.io,"' + (b"a" * 100_000 + b'\n","') * 12 + b'"\n',
            "INVALID_FILE",
            "quote",
        ),
        "a line of commas": (b"EMAIL\n" + b"," * (LIMIT - 10), "INVALID_FILE", "line 2"),
        "ragged rows": (
            b"EMAIL\n" + (b"," * 1_000_000 + b"\n") * (LIMIT // 1_000_001),
            "INVALID_FILE",
            "more than 20000 fields",
        ),
        "compressed bytes": (
            gzip.compress(b"EMAIL\n" + b"a@x.io\n" * 10**6),
            "INVALID_FILE",
            "text",
        ),
    }


@pytest.mark.parametrize("name", list(hostile_files()))
async def test_a_hostile_file_fails_with_a_clear_code_in_bounded_memory(
    database: Database, store: ObjectStore, ledger: Ledger, name: str
) -> None:
    data, code, words = hostile_files()[name]
    p = project()
    source = await upload(store, p, data)
    importer = make_importer(database, store, limits=LIMITS)
    outcome, peak = await measured(run_import(importer, ledger, p, source))
    error = failure(outcome, peak)
    assert (error.code, name) == (code, name)
    assert words in error.message
    assert await database["contacts"].count_documents({"project_id": p}) == 0


async def test_a_compressing_codec_is_refused_before_decoding(
    database: Database, store: ObjectStore, ledger: Ledger
) -> None:
    # 80 MB in a few hundred bytes: decoded by the codec, ten times the limit in one call,
    # before anything was counted. (The intake refuses such requests; this is a job
    # recorded before it did.)
    p = project()
    bomb = bz2.compress(b"EMAIL\n" + b"\n" * (10 * LIMIT))
    source = await upload(store, p, bomb)
    importer = make_importer(database, store, limits=LIMITS)
    outcome, peak = await measured(run_import(importer, ledger, p, source, encoding="bz2"))
    assert failure(outcome, peak).code == "INVALID_REQUEST"


async def test_ragged_rows_are_rejected_one_by_one_in_bounded_memory(
    database: Database, store: ObjectStore, ledger: Ledger
) -> None:
    # Rows just under the field limit, 8 MB of them (held as fields, such a file took nine
    # times its size).
    p = project()
    rows = LIMIT // 19_001
    data = b"EMAIL\n" + (b"," * 19_000 + b"\n") * rows
    source = await upload(store, p, data)
    importer = make_importer(database, store, limits=LIMITS)
    outcome, peak = await measured(run_import(importer, ledger, p, source))
    assert isinstance(outcome, ImportResult), outcome
    assert peak < PEAK, f"peak {peak / 2**20:.1f} MiB"
    assert (outcome.counts.rows_read, outcome.counts.rejected) == (rows, rows)
    assert outcome.counts.rejected_by_reason == {"ragged_row": rows}
    rejected = await report(store, outcome, "rejected_rows")
    assert len(rejected) == rows + 1  # every row is in the report, as it was in the file
    assert rejected[1][3] == "," * 19_000


@asynccontextmanager
async def serving(answer: Writer) -> AsyncIterator[tuple[str, list[bytes]]]:
    """A loopback HTTP server answering every request with `answer`: its URL, and the heads of
    the requests it received."""
    heads: list[bytes] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            heads.append(await reader.readuntil(b"\r\n\r\n"))
            await answer(writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass  # the importer hung up, as it should
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}/contacts.csv", heads
    finally:
        server.close()


async def test_a_trickling_source_fails_at_the_fetch_deadline(
    database: Database, store: ObjectStore, ledger: Ledger
) -> None:
    async def trickle(writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\nEMAIL\n")
        while True:  # a byte at a time, each well within the per-read timeout
            writer.write(b"a")
            await writer.drain()
            await asyncio.sleep(0.05)

    p = project()
    importer = make_importer(database, store, limits={**LIMITS, "fetch_deadline_seconds": 1.5})
    async with serving(trickle) as (url, _):
        started = time.monotonic()
        with pytest.raises(FerryError) as caught:
            await run_import(importer, ledger, p, ImportSource(url=url))
        took = time.monotonic() - started
    assert caught.value.code == "SOURCE_TOO_SLOW"
    assert "1.5 s" in caught.value.message
    assert "bytes had arrived" in caught.value.message
    assert took < 30, f"stopped after {took:.1f}s"
    listed = store._client.list_objects(store.bucket, prefix=f"imports/{p}/", recursive=True)
    assert [item.object_name for item in listed] == []  # no copy left behind


async def test_a_source_answering_compressed_is_refused_and_raw_bytes_are_counted(
    database: Database, store: ObjectStore, ledger: Ledger
) -> None:
    inner = gzip.compress(b"EMAIL\n" + b"a@x.io\n" * (LIMIT // 7 * 20))  # 20x the limit

    async def compressed(writer: asyncio.StreamWriter) -> None:
        body = gzip.compress(inner)
        writer.write(
            b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip, gzip\r\n"
            + f"Content-Length: {len(body)}\r\n\r\n".encode()
            + body
        )
        await writer.drain()

    async def endless(writer: asyncio.StreamWriter) -> None:
        # No Content-Length: only counting the bytes as they arrive can stop this one.
        writer.write(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nEMAIL\n")
        line = b"someone@example.com\n" * 5000
        while True:
            writer.write(line)
            await writer.drain()

    p = project()
    importer = make_importer(database, store, limits=LIMITS)
    async with serving(compressed) as (url, heads):
        outcome, peak = await measured(run_import(importer, ledger, p, ImportSource(url=url)))
    error = failure(outcome, peak)
    assert error.code == "SOURCE_UNAVAILABLE"
    assert "Content-Encoding" in error.message
    assert b"accept-encoding: identity" in heads[0].lower()
    async with serving(endless) as (url, _):
        job_outcome, peak = await measured(run_import(importer, ledger, p, ImportSource(url=url)))
    error = failure(job_outcome, peak)
    assert error.code == "FILE_TOO_LARGE"
    listed = store._client.list_objects(store.bucket, prefix=f"imports/{p}/", recursive=True)
    assert [item.object_name for item in listed] == []  # no copy left behind
