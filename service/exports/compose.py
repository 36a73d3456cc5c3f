"""Composing a chunked export's file from its chunk objects, in order, as one multipart upload.

S3 wants every part but the last to be at least 5 MiB (and at most 5 GiB). A chunk object that
large is copied by the store itself (UploadPartCopy, no bytes through the worker); smaller ones,
and the tails of large ones after a small one, are read and buffered until a part is full. The
buffer never holds more than one minimum part, so memory does not grow with the export.

Because each chunk object holds whole rows (and, with gzip, whole gzip members), their bytes
concatenated are the export: for an uncompressed file, exactly the bytes an unchunked export
writes.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from service.storage import ObjectStore

MIN_PART = 5 * 1024 * 1024
MAX_PART = 5 * 1024 * 1024 * 1024


@dataclass(frozen=True)
class Piece:
    """Bytes [start, end) of source object `source`."""

    source: int
    start: int
    end: int


@dataclass(frozen=True)
class PartPlan:
    """One part of the upload: a server-side copy of one piece, or the pieces read and joined."""

    pieces: tuple[Piece, ...]
    copy: bool

    @property
    def size(self) -> int:
        return sum(piece.end - piece.start for piece in self.pieces)


def plan_parts(
    sizes: Sequence[int], *, min_part: int = MIN_PART, max_part: int = MAX_PART
) -> list[PartPlan]:
    """The parts that lay the objects of `sizes` end to end: every part but the last at least
    `min_part`, none above `max_part`, and a buffered part never above `min_part`."""
    parts: list[PartPlan] = []
    buffer: list[Piece] = []
    buffered = 0
    for source, size in enumerate(sizes):
        offset = 0
        if buffered:
            # Top the buffer up from the head of this object first, so the buffered part is
            # full before anything is copied after it.
            offset = min(size, min_part - buffered)
            if offset:
                buffer.append(Piece(source, 0, offset))
                buffered += offset
            if buffered >= min_part:
                parts.append(PartPlan(tuple(buffer), copy=False))
                buffer, buffered = [], 0
        rest = size - offset
        if not rest:
            continue
        if rest >= min_part:
            # Cut evenly, so each copied piece is both under the maximum and over the minimum.
            count = math.ceil(rest / max_part)
            step = math.ceil(rest / count)
            parts.extend(
                PartPlan((Piece(source, start, min(size, start + step)),), copy=True)
                for start in range(offset, size, step)
            )
        else:
            buffer.append(Piece(source, offset, size))
            buffered += rest
    if buffer:
        parts.append(PartPlan(tuple(buffer), copy=False))
    return parts


async def compose(
    store: ObjectStore,
    key: str,
    sources: Sequence[tuple[str, int]],
    *,
    content_type: str,
    on_upload_started: Callable[[str], Awaitable[None]] | None = None,
    min_part: int = MIN_PART,
) -> int:
    """Write `key` as the objects `sources` (key, size) end to end; the size written."""
    plan = plan_parts([size for _, size in sources], min_part=min_part)
    if not plan:
        await store.put(key, b"", content_type=content_type)
        return 0
    upload = await store.start_multipart(key, content_type=content_type)
    if on_upload_started is not None:
        await on_upload_started(upload.upload_id)
    try:
        for part in plan:
            if part.copy:
                piece = part.pieces[0]
                await upload.copy_part(sources[piece.source][0], piece.start, piece.end)
                continue
            data = b"".join(
                [
                    await store.read_range(sources[piece.source][0], piece.start, piece.end)
                    for piece in part.pieces
                ]
            )
            await upload.upload_part(data)
        await upload.complete()
    except BaseException:
        await asyncio.shield(upload.abort())
        raise
    return sum(part.size for part in plan)
