"""An export's output as one file or as numbered files, cut on row boundaries.

Each file is written by its own ObjectWriter, starts with the encoder's header (CSV's column
names) and, with gzip, is its own gzip stream, so every file opens on its own. A file is closed
(and becomes visible) as soon as the next one starts, so memory stays that of one file's writer.

`max_rows_per_file` is exact. `max_file_bytes` counts bytes as stored and is never exceeded,
except by a file holding a single row that is larger on its own: with gzip the size is not
known before the compressor is flushed, so the writer's upper bound is checked first and a sync
flush, which makes it exact, is paid only when that bound says the next rows might not fit.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from service.exports.arrow_batches import RowBatch
from service.exports.arrow_encoders import BatchEncoder
from service.exports.checkpoints import Checkpoint, ClosedFile, OpenFile, StoredPart

# Re-exported: the exporter names them from here.
from service.exports.file_shapes import FileLimits, Resumable, TooManyFilesError, WrittenFile
from service.storage import ObjectStore
from service.storage.writer import ObjectWriter, ResumedUpload, UploadedPart

__all__ = ["FileLimits", "FileSequence", "Resumable", "TooManyFilesError", "WrittenFile"]


@dataclass(frozen=True)
class _Mark:
    """A row boundary: rows stored in all and in the current file, and the last row's key."""

    rows: int
    file_rows: int
    after: dict[str, Any]


class FileSequence:
    """Writes batches of rows into one file, or into numbered files within `limits`."""

    def __init__(
        self,
        store: ObjectStore,
        *,
        key_for: Callable[[int | None], str],
        new_encoder: Callable[[], BatchEncoder],
        sort_fields: Sequence[str],
        content_type: str,
        part_size: int,
        gzip: bool,
        limits: FileLimits,
        max_files: int,
        on_upload_started: Callable[[str], Awaitable[None]] | None = None,
        resumable: Resumable | None = None,
    ) -> None:
        self._store = store
        self._key_for = key_for
        self._new_encoder = new_encoder
        self._sort_fields = list(sort_fields)
        self._encoder: BatchEncoder | None = None
        self._content_type = content_type
        self._part_size = part_size
        self._gzip = gzip
        self._limits = limits
        self._max_files = max_files
        self._on_upload_started = on_upload_started
        self._resumable = resumable
        self._written: list[WrittenFile] = []
        self._writer: ObjectWriter | None = None
        self._file_rows = 0
        self._rows = 0
        self._after: dict[str, Any] = {}
        start = resumable.start if resumable else None
        if start is not None:
            self._continue(start)

    def _continue(self, start: Checkpoint) -> None:
        """Pick up where a checkpoint left off: its closed files, and its open upload."""
        self._rows, self._after = start.rows, dict(start.after)
        self._written = [WrittenFile(**file.model_dump()) for file in start.files]
        opened = start.open_file
        if opened is not None:
            parts = [
                UploadedPart(part.number, part.etag, part.size_bytes, part.sha256)
                for part in opened.parts
            ]
            self._writer = self._new_writer(
                opened.key, resume=ResumedUpload(opened.upload_id, parts)
            )
            # The header is in the stored parts; the encoders that can continue a file mid-way
            # (CSV, JSON Lines) carry no state from one batch to the next.
            self._encoder = self._new_encoder()
            self._file_rows = opened.rows

    @property
    def rows(self) -> int:
        """Rows written so far, including those a resumed checkpoint had stored."""
        return self._rows

    @property
    def files(self) -> list[WrittenFile]:
        """The files closed so far."""
        return list(self._written)

    async def write(self, batch: RowBatch) -> None:
        """Write a batch, cut into row ranges where a file ends."""
        done = 0
        while done < batch.row_count:
            writer, encoder = await self._open()
            take = batch.row_count - done
            if self._limits.max_rows is not None:
                take = min(take, self._limits.max_rows - self._file_rows)
            chunk = batch.slice(done, done + take, self._sort_fields)
            data = await asyncio.to_thread(encoder.encode, chunk)
            if await self._fits(writer, len(data)):
                await self._put(writer, data, chunk)
                done += take
            else:
                done += await self._fill_row_by_row(writer, encoder, chunk)
            if done < batch.row_count or await self._full(writer):
                await self._finish()

    async def close(self) -> list[WrittenFile]:
        """Close the last file (an export without rows still gets one, with its header)."""
        if self._writer is None and not self._written:
            await self._open()
        if self._writer is not None:
            await self._finish()
        return list(self._written)

    async def abort(self) -> None:
        """Throw away the file being written, even if it was being closed when the attempt was
        stopped; files already closed are left to the caller."""
        if self._writer is not None:
            writer, self._writer = self._writer, None
            self._encoder = None
            await writer.abort()
            await self._store.delete(writer.key)  # completed just before the stop, perhaps

    async def detach(self) -> None:
        """Stop, leaving the upload in progress for a later attempt to continue."""
        if self._writer is not None:
            writer, self._writer = self._writer, None
            self._encoder = None
            await writer.detach()

    async def _fill_row_by_row(
        self, writer: ObjectWriter, encoder: BatchEncoder, rows: RowBatch
    ) -> int:
        """Put as many of `rows` into the current file as fit; how many did. A file's first row
        always goes in, however large, so that every row lands somewhere. (Only for byte limits,
        which only the stateless encoders take: CSV and JSON Lines.)"""
        fields = self._sort_fields
        pending: list[bytes] = []
        size = 0
        for count in range(rows.row_count):
            data = await asyncio.to_thread(encoder.encode, rows.slice(count, count + 1, fields))
            if (self._file_rows or pending) and not await self._fits(writer, size + len(data)):
                if not pending:
                    return 0
                first = count - len(pending)
                await self._put(writer, b"".join(pending), rows.slice(first, count, fields))
                pending, size = [], 0
                if not await self._fits(writer, len(data)):
                    return count
            pending.append(data)
            size += len(data)
        first = rows.row_count - len(pending)
        await self._put(writer, b"".join(pending), rows.slice(first, rows.row_count, fields))
        return rows.row_count

    async def _fits(self, writer: ObjectWriter, more: int) -> bool:
        limit = self._limits.max_bytes
        if limit is None or writer.size_bound(more) <= limit:
            return True
        await writer.sync()
        return writer.size_bound(more) <= limit

    async def _full(self, writer: ObjectWriter) -> bool:
        if self._limits.max_rows is not None and self._file_rows >= self._limits.max_rows:
            return True
        return not await self._fits(writer, 1)

    async def _put(self, writer: ObjectWriter, data: bytes, rows: RowBatch) -> None:
        if not rows.row_count:
            return
        await writer.write(data)
        self._file_rows += rows.row_count
        self._rows += rows.row_count
        if self._resumable is not None:
            self._after = self._resumable.key_of(rows.last_document)
            if self._resumable.mid_file:
                await writer.boundary(_Mark(self._rows, self._file_rows, self._after))

    async def _open(self) -> tuple[ObjectWriter, BatchEncoder]:
        if self._writer is not None and self._encoder is not None:
            return self._writer, self._encoder
        part = len(self._written) + 1 if self._limits.split else None
        if part is not None and part > self._max_files:
            raise TooManyFilesError(self._max_files)
        self._writer = self._new_writer(self._key_for(part))
        self._encoder = self._new_encoder()
        self._file_rows = 0
        await self._writer.write(self._encoder.header())
        return self._writer, self._encoder

    def _new_writer(self, key: str, *, resume: ResumedUpload | None = None) -> ObjectWriter:
        return ObjectWriter(
            self._store,
            key,
            content_type=self._content_type,
            part_size=self._part_size,
            gzip=self._gzip,
            on_upload_started=self._on_upload_started,
            on_part=self._part_stored if self._resumable and self._resumable.mid_file else None,
            resume=resume,
        )

    async def _part_stored(self, upload_id: str, parts: list[UploadedPart], mark: object) -> None:
        """A part of the open file is stored: checkpoint the boundary it ends on."""
        assert isinstance(mark, _Mark)  # noqa: S101 - only this class makes marks
        writer = self._writer
        if writer is None or self._resumable is None:
            return
        opened = OpenFile(
            key=writer.key,
            part=self._number_of(len(self._written) + 1),
            upload_id=upload_id,
            rows=mark.file_rows,
            parts=[
                StoredPart(number=p.number, etag=p.etag, size_bytes=p.size, sha256=p.sha256)
                for p in parts
            ],
        )
        await self._save(mark.rows, mark.after, opened)

    async def _save(self, rows: int, after: dict[str, Any], opened: OpenFile | None) -> None:
        assert self._resumable is not None  # noqa: S101 - called only when resumable
        await self._resumable.save(
            Checkpoint(
                rows=rows,
                after=after,
                files=[ClosedFile(**asdict(file)) for file in self._written],
                open_file=opened,
                data_as_of=self._resumable.data_as_of,
            )
        )

    def _number_of(self, part: int) -> int | None:
        return part if self._limits.split else None

    async def _finish(self) -> None:
        writer = self._writer
        if writer is None:
            return
        part = self._number_of(len(self._written) + 1)
        if self._encoder is not None:
            await writer.write(await asyncio.to_thread(self._encoder.finish))
        written = await writer.close()
        self._writer = None
        self._encoder = None
        self._written.append(
            WrittenFile(writer.key, part, self._file_rows, written.size, written.sha256)
        )
        if self._resumable is not None and self._after:
            await self._save(self._rows, self._after, None)
