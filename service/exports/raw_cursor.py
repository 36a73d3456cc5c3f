"""Raw BSON batches from MongoDB: pymongo's raw-batch cursor without its per-document cost, and
the next batch fetched while the caller works on the current one."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, Mapping
from typing import Any

from bson import _bson_to_dict, _convert_raw_document_lists_to_streams
from bson.codec_options import CodecOptions
from bson.raw_bson import _RAW_ARRAY_BSON_OPTIONS, RawBSONDocument
from pymongo.asynchronous.cursor import AsyncRawBatchCursor
from pymongo.message import _OpMsg


class RawBatchCursor(AsyncRawBatchCursor[dict[str, Any]]):
    """pymongo's raw-batch cursor, minus a cost per document on the event loop.

    pymongo 4 reassembles each reply's batch by first inflating the cursor document, which turns
    the batch array into one `RawBSONDocument` per document, then decoding it again with the
    array kept raw (`_OpMsg.raw_response`, `_decode_selective`): ~1.4 us a row, more than
    decoding the rows into Arrow. This decodes the cursor document once, the array kept raw, and
    joins it into a stream as pymongo does. Any other reply takes pymongo's own path.
    """

    def _unpack_response(
        self,
        response: Any,  # noqa: ANN401 - pymongo's private _OpMsg / _OpReply
        cursor_id: int | None,
        codec_options: CodecOptions[Mapping[str, Any]],
        user_fields: Mapping[str, Any] | None = None,
        legacy_response: bool = False,  # noqa: FBT001, FBT002 - pymongo's signature
    ) -> list[Any]:
        if legacy_response or not isinstance(response, _OpMsg):
            return super()._unpack_response(
                response, cursor_id, codec_options, user_fields, legacy_response
            )
        reply: dict[str, Any] = dict(RawBSONDocument(response.payload_document).items())
        cursor = reply.get("cursor")
        if isinstance(cursor, RawBSONDocument):
            reply["cursor"] = dict(_bson_to_dict(cursor.raw, _RAW_ARRAY_BSON_OPTIONS).items())
        _convert_raw_document_lists_to_streams(reply)
        return [reply]


async def prefetched_raw_batches(cursor: AsyncRawBatchCursor[Any]) -> AsyncGenerator[bytes]:
    """The cursor's raw batches, the next one already being fetched while the caller works."""

    async def fetch() -> bytes | None:
        try:
            raw: bytes = await cursor.next()
        except StopAsyncIteration:
            return None
        return raw

    upcoming = asyncio.ensure_future(fetch())
    try:
        while (raw := await upcoming) is not None:
            upcoming = asyncio.ensure_future(fetch())
            if raw:
                yield raw
    finally:
        upcoming.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await upcoming
