"""Writes a stream of bytes to one object, in bounded memory.

Bytes are optionally gzipped, hashed as stored, and sent in parts of `part_size` bytes with one
part in flight while the next one fills, so memory stays near two parts whatever the size of the
file. A file smaller than one part is sent in a single request instead of a multipart upload.
"""

from __future__ import annotations

import asyncio
import hashlib
import zlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from service.storage import MultipartUpload, ObjectStore

_GZIP_WBITS = 31  # zlib's way of asking for a gzip container
# The gzip trailer (8 bytes), the final block's header and a sync flush's marker, generously.
_GZIP_SLACK = 64


@dataclass(frozen=True)
class WrittenObject:
    size: int
    sha256: str


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
    ) -> None:
        self._store = store
        self._key = key
        self._content_type = content_type
        self._part_size = part_size
        self._compressor = zlib.compressobj(6, zlib.DEFLATED, _GZIP_WBITS) if gzip else None
        self._hash = hashlib.sha256()
        self._size = 0
        # Bytes handed to the compressor since its last flush: some may not have come out yet.
        self._pending = 0
        self._buffer = bytearray()
        self._upload: MultipartUpload | None = None
        self._in_flight: asyncio.Task[None] | None = None
        self._on_upload_started = on_upload_started

    @property
    def key(self) -> str:
        return self._key

    async def write(self, data: bytes) -> None:
        # Compression and hashing are CPU work: done in a thread, off the event loop.
        await asyncio.to_thread(self._absorb, data)
        while len(self._buffer) >= self._part_size:
            part = bytes(self._buffer[: self._part_size])
            del self._buffer[: self._part_size]
            await self._send(part)

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
                await self._send(bytes(self._buffer))
            await self._settle()
            await self._upload.complete()
        self._buffer.clear()
        return WrittenObject(self._size, self._hash.hexdigest())

    async def abort(self) -> None:
        """Throw away what was uploaded; nothing becomes visible."""
        if self._in_flight is not None:
            self._in_flight.cancel()
            await asyncio.gather(self._in_flight, return_exceptions=True)
        if self._upload is not None:
            await self._upload.abort()

    def _absorb(self, data: bytes) -> None:
        if self._compressor is None:
            self._stored(data)
            return
        # Deflate may hold back any amount of what it was given since the last flush.
        self._pending += len(data)
        self._stored(self._compressor.compress(data))

    def _stored(self, data: bytes) -> None:
        self._hash.update(data)
        self._size += len(data)
        self._buffer += data

    async def _send(self, part: bytes) -> None:
        if self._upload is None:
            self._upload = await self._store.start_multipart(
                self._key, content_type=self._content_type
            )
            if self._on_upload_started is not None:
                await self._on_upload_started(self._upload.upload_id)
        await self._settle()
        self._in_flight = asyncio.create_task(self._upload.upload_part(part))

    async def _settle(self) -> None:
        if self._in_flight is not None:
            task, self._in_flight = self._in_flight, None
            await task
