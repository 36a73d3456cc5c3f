"""Splitting an export into files, for any rows and limits a request can bring: every row lands
in exactly one file, in order; each file opens on its own with its header; no file passes a
limit unless it holds a single row that does on its own."""

from __future__ import annotations

import asyncio
import gzip
import uuid
from collections.abc import Sequence
from typing import Any, cast

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from service.datasets.base import Document
from service.exports.file_parts import FileLimits, FileSequence
from service.storage import ObjectStore

HEADER = b"n,text\r\n"


class FakeUpload:
    def __init__(self, store: FakeStore, key: str) -> None:
        self._store = store
        self.key = key
        self.upload_id = str(uuid.uuid4())
        self._parts: list[bytes] = []

    async def upload_part(self, data: bytes) -> None:
        self._parts.append(data)

    async def complete(self) -> None:
        self._store.objects[self.key] = b"".join(self._parts)

    async def abort(self) -> None:
        self._parts.clear()


class FakeStore:
    """The two calls ObjectWriter makes; a unit test's stand-in for the object store."""

    def __init__(self) -> None:
        self.objects: dict[str, bytes] = {}

    async def put(self, key: str, data: bytes, *, content_type: str) -> None:
        self.objects[key] = data

    async def start_multipart(self, key: str, *, content_type: str) -> FakeUpload:
        return FakeUpload(self, key)


def encode(rows: Sequence[Document]) -> bytes:
    return b"".join(f"{row['n']},{row['text']}\r\n".encode() for row in rows)


async def export(
    batches: list[list[dict[str, Any]]], limits: FileLimits, *, gzipped: bool
) -> tuple[FakeStore, list[Any]]:
    store = FakeStore()
    output = FileSequence(
        cast("ObjectStore", store),
        key_for=lambda part: f"x/{part}",
        header=HEADER,
        encode=encode,
        content_type="text/csv",
        part_size=4096,  # small parts, so the multipart path is taken too
        gzip=gzipped,
        limits=limits,
        max_files=100_000,
    )
    for batch in batches:
        await output.write(batch)
    return store, await output.close()


row_texts = st.lists(
    st.lists(st.text(alphabet="abcdefghij", min_size=0, max_size=900), max_size=40), max_size=8
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    texts=row_texts,
    max_bytes=st.none() | st.integers(min_value=200, max_value=20_000),
    max_rows=st.none() | st.integers(min_value=1, max_value=50),
    gzipped=st.booleans(),
)
def test_files_hold_every_row_once_in_order_within_their_limits(
    texts: list[list[str]], max_bytes: int | None, max_rows: int | None, gzipped: bool
) -> None:
    counter = iter(range(10**6))
    batches = [[{"n": next(counter), "text": text} for text in batch] for batch in texts]
    limits = FileLimits(max_bytes=max_bytes, max_rows=max_rows)
    store, written = asyncio.run(export(batches, limits, gzipped=gzipped))

    assert written, "an export always has a file"
    assert len(store.objects) == len(written)
    lines: list[bytes] = []
    for number, file in enumerate(written, start=1):
        assert file.part == (number if limits.split else None)
        stored = store.objects[file.key]
        assert file.size_bytes == len(stored)
        text = gzip.decompress(stored) if gzipped else stored
        assert text.startswith(HEADER)  # each file opens on its own, with its header
        rows = text[len(HEADER) :].splitlines(keepends=True)
        assert len(rows) == file.rows
        if max_rows is not None:
            assert file.rows <= max_rows
        if max_bytes is not None and file.rows > 1:
            assert file.size_bytes <= max_bytes
        if limits.split and number > 1:
            assert file.rows > 0  # no empty file after the first
        lines += rows
    expected = [encode([row]) for batch in batches for row in batch]
    assert lines == expected
