"""Splitting an export into files, for any rows and limits a request can bring: every row lands
in exactly one file, in order; each file opens on its own with its header; no file passes a
limit unless it holds a single row that does on its own."""

from __future__ import annotations

import asyncio
import gzip
import uuid
from collections.abc import Sequence
from typing import Any, cast

import bson
from bson.codec_options import CodecOptions
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from service.datasets.base import Column, Document
from service.exports.arrow_batches import RowBatch, decode_batch
from service.exports.arrow_encoders import ArrowCsvEncoder
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


COLUMNS = [Column("n", "n"), Column("text", "text")]
CODEC: CodecOptions[dict[str, Any]] = CodecOptions(document_class=dict)


def encode(rows: Sequence[Document]) -> bytes:
    return b"".join(f"{row['n']},{row['text']}\r\n".encode() for row in rows)


def row_batch(rows: Sequence[Document]) -> RowBatch:
    raw = b"".join(bson.encode(row) for row in rows)
    return decode_batch(raw, COLUMNS, ["n"], CODEC)


async def export(
    batches: list[list[dict[str, Any]]], limits: FileLimits, *, gzipped: bool
) -> tuple[FakeStore, list[Any]]:
    store = FakeStore()
    output = FileSequence(
        cast("ObjectStore", store),
        key_for=lambda part: f"x/{part}",
        new_encoder=lambda: ArrowCsvEncoder(COLUMNS, escape_formulas=False),
        sort_fields=["n"],
        content_type="text/csv",
        part_size=4096,  # small parts, so the multipart path is taken too
        gzip=gzipped,
        limits=limits,
        max_files=100_000,
    )
    for batch in batches:
        await output.write(row_batch(batch))
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


@settings(max_examples=60, deadline=None)
@given(
    texts=st.lists(st.text(max_size=30), min_size=1, max_size=30),
    data=st.data(),
)
def test_a_batch_slice_is_the_batch_of_its_rows(texts: list[str], data: st.DataObject) -> None:
    rows = [{"n": n, "text": text} for n, text in enumerate(texts)]
    start = data.draw(st.integers(min_value=0, max_value=len(rows) - 1))
    stop = data.draw(st.integers(min_value=start + 1, max_value=len(rows)))
    sliced = row_batch(rows).slice(start, stop, ["n"])
    alone = row_batch(rows[start:stop])
    encoder = ArrowCsvEncoder(COLUMNS, escape_formulas=False)
    assert sliced.row_count == stop - start
    assert encoder.encode(sliced) == encoder.encode(alone)
    assert sliced.last_document == rows[stop - 1]
    assert sliced.last_sort_key == (stop - 1,)
    assert sliced.ids == alone.ids
