"""Writes a stream of bytes to one object, in bounded memory.

Bytes are optionally gzipped, hashed as stored, and sent in parts of `part_size` bytes with one
part in flight while the next one fills, so memory stays near two parts whatever the size of the
file. A file smaller than one part is sent in a single request instead of a multipart upload.

A resumable writer (one given `on_part`) cuts parts only where the caller marks a row boundary
(`boundary`), once at least `part_size` bytes are waiting, ends a gzip member at every cut, and
reports each part once it is stored, so a checkpoint can be saved; a later writer can continue
the same upload from those parts (`resume`). See service/exports/checkpoints.py.
"""

from __future__ import annotations

import asyncio
import hashlib
import zlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from service.storage.client import ObjectStore
from service.storage.multipart import MultipartUpload

_GZIP_WBITS = 31  # zlib's way of asking for a gzip container
# The gzip trailer (8 bytes), the final block's header and a sync flush's marker, generously.
_GZIP_SLACK = 64


@dataclass(frozen=True)
class WrittenObject:
    size: int
    sha256: str


@dataclass(frozen=True)
class UploadedPart:
    number: int
    etag: str
    size: int
    sha256: str


@dataclass(frozen=True)
class ResumedUpload:
    """A multipart upload an earlier attempt began, and the parts it stored."""

    upload_id: str
    parts: list[UploadedPart]


# Called with the upload id, every part stored so far, and the caller's mark of the boundary.
OnPart = Callable[[str, list[UploadedPart], Any], Awaitable[None]]


class ObjectWriter:
    def __init__(
        self,
        store: ObjectStore,
        key: str,
        *,
        content_type: str,
        part_size: int,
        gzip: bool,
        on_upload_started: Callable[[str], Awaitable[None]] | None = None,
        on_part: OnPart | None = None,
        resume: ResumedUpload | None = None,
    ) -> None:
        self._store = store
        self._key = key
        self._content_type = content_type
        self._part_size = part_size
        self._gzip = gzip
        self._compressor = self._new_compressor()
        # A continued upload's earlier bytes are not at hand: it is hashed by reading it back.
        self._hash: hashlib._Hash | None = hashlib.sha256() if resume is None else None
        self._size = sum(part.size for part in resume.parts) if resume else 0
        # Bytes handed to the compressor since its last flush: some may not have come out yet.
        self._pending = 0
        self._buffer = bytearray()
        self._upload: MultipartUpload | None = None
        self._parts: list[UploadedPart] = list(resume.parts) if resume else []
        if resume is not None:
            self._upload = store.resume_multipart(
                key, resume.upload_id, [(part.number, part.etag) for part in resume.parts]
            )
        self._in_flight: asyncio.Task[None] | None = None
        self._on_upload_started = on_upload_started
        self._on_part = on_part

    @property
    def key(self) -> str:
        return self._key

    @property
    def resumable(self) -> bool:
        return self._on_part is not None

    async def write(self, data: bytes) -> None:
        # Compression and hashing are CPU work: done in a thread, off the event loop.
        await asyncio.to_thread(self._absorb, data)
        if self.resumable:
            return  # parts are cut at boundaries only
        while len(self._buffer) >= self._part_size:
            part = bytes(self._buffer[: self._part_size])
            del self._buffer[: self._part_size]
            await self._send(part, None)

    async def boundary(self, mark: object) -> None:
        """Everything written so far ends on a row boundary that `mark` names: a resumable
        writer sends a part here if it has one's worth, and reports `mark` once it is stored."""
        if not self.resumable or len(self._buffer) + self._pending < self._part_size:
            return
        if len(self._buffer) < self._part_size:
            await self.sync()  # what the compressor holds may or may not make a part's worth
            if len(self._buffer) < self._part_size:
                return
        if self._compressor is not None:
            # End the gzip member: the next part starts a new one, needing no saved state.
            compressor, self._compressor = self._compressor, self._new_compressor()
            await asyncio.to_thread(self._stored, compressor.flush())
            self._pending = 0
        part = bytes(self._buffer)
        self._buffer.clear()
        await self._send(part, mark)

    def size_bound(self, more: int) -> int:
        """An upper bound of the object's size if closed after `more` further bytes: exact
        without compression; with gzip, what is still inside the compressor is counted at its
        uncompressed size plus deflate's worst-case growth and the gzip trailer."""
        if self._compressor is None:
            return self._size + more
        unsure = self._pending + more
        return self._size + unsure + unsure // 1000 + _GZIP_SLACK

    async def sync(self) -> None:
        """Make the compressor give out everything it holds (a sync flush), so that
        `size_bound` becomes exact for what was written so far."""
        if self._compressor is not None and self._pending:
            compressor = self._compressor
            await asyncio.to_thread(lambda: self._stored(compressor.flush(zlib.Z_SYNC_FLUSH)))
            self._pending = 0

    async def close(self) -> WrittenObject:
        """Finish the object; it becomes visible only now."""
        if self._compressor is not None:
            await asyncio.to_thread(self._stored, self._compressor.flush())
        if self._upload is None:
            await self._store.put(self._key, bytes(self._buffer), content_type=self._content_type)
        else:
            if self._buffer:
                await self._send(bytes(self._buffer), None)
            await self._settle()
            await self._upload.complete()
        self._buffer.clear()
        if self._hash is None:
            return WrittenObject(self._size, await self._store.sha256(self._key))
        return WrittenObject(self._size, self._hash.hexdigest())

    async def abort(self) -> None:
        """Throw away what was uploaded; nothing becomes visible."""
        await self.detach()
        if self._upload is not None:
            await self._upload.abort()

    async def detach(self) -> None:
        """Stop, leaving the parts stored so far in place for a later attempt to continue."""
        if self._in_flight is not None:
            self._in_flight.cancel()
            await asyncio.gather(self._in_flight, return_exceptions=True)
            self._in_flight = None

    def _new_compressor(self) -> zlib._Compress | None:
        return zlib.compressobj(6, zlib.DEFLATED, _GZIP_WBITS) if self._gzip else None

    def _absorb(self, data: bytes) -> None:
        if self._compressor is None:
            self._stored(data)
            return
        # Deflate may hold back any amount of what it was given since the last flush.
        self._pending += len(data)
        self._stored(self._compressor.compress(data))

    def _stored(self, data: bytes) -> None:
        if self._hash is not None:
            self._hash.update(data)
        self._size += len(data)
        self._buffer += data

    async def _send(self, part: bytes, mark: object) -> None:
        if self._upload is None:
            self._upload = await self._store.start_multipart(
                self._key, content_type=self._content_type
            )
            if self._on_upload_started is not None:
                await self._on_upload_started(self._upload.upload_id)
        await self._settle()
        self._in_flight = asyncio.create_task(self._store_part(self._upload, part, mark))

    async def _store_part(self, upload: MultipartUpload, part: bytes, mark: object) -> None:
        number = upload.part_count + 1
        digest = (
            await asyncio.to_thread(lambda: hashlib.sha256(part).hexdigest())
            if self.resumable
            else ""
        )
        etag = await upload.upload_part(part)
        self._parts.append(UploadedPart(number, etag, len(part), digest))
        if self._on_part is not None and mark is not None:
            await self._on_part(upload.upload_id, list(self._parts), mark)

    async def _settle(self) -> None:
        if self._in_flight is not None:
            task, self._in_flight = self._in_flight, None
            await task
