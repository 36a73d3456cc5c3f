"""The dead-letter topic: requests that cannot become a job, kept byte for byte with the reason.

A dead letter always fits in a record the broker takes: when the original record plus Ferry's
headers would not, it carries a truncated copy of the value, with the original's size and
sha256, and says so in `ferry-dlq-truncated`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable

import structlog

from service.clock import rfc3339, utcnow
from service.events.records import IncomingRecord
from service.observability.metrics import DEAD_LETTERS

log = structlog.get_logger(__name__)

# (value, key, headers) -> published and acknowledged
PublishRaw = Callable[[bytes, bytes | None, dict[str, str]], Awaitable[None]]

MAX_REASON_CHARS = 1000
# Room for the record's framing in its batch, and for the headers FastStream adds itself
# (content-type, correlation_id): more than they take, so the estimate errs on the safe side.
_FRAMING_BYTES = 1024
_PER_HEADER_BYTES = 12
# When a record has to be shortened, its key and headers keep at most these shares of the room.
_KEY_SHARE = 16
_HEADERS_SHARE = 4


def _text(value: str) -> str:
    # Header values are sent as UTF-8; a lone surrogate (from an exception message, say) is not.
    return value.encode(errors="backslashreplace").decode()


def _header_bytes(headers: dict[str, str]) -> int:
    return sum(len(n.encode()) + len(v.encode()) + _PER_HEADER_BYTES for n, v in headers.items())


def _identified(value: bytes, truncated: str) -> dict[str, str]:
    return {
        "ferry-dlq-original-bytes": str(len(value)),
        "ferry-dlq-original-sha256": hashlib.sha256(value).hexdigest(),
        "ferry-dlq-truncated": truncated,
    }


class DeadLetters:
    def __init__(self, publish: PublishRaw, *, max_record_bytes: int = 1_048_576) -> None:
        self._publish = publish
        self._max_record_bytes = max_record_bytes

    async def send(
        self, record: IncomingRecord, *, code: str, reason: str, bare: bool = False
    ) -> None:
        """Publish the dead letter of `record`. `bare` leaves out its value, key and headers (the
        last resort for a record that cannot be published even shortened)."""
        original = {
            _text(name): "" if value is None else value.decode(errors="replace")
            for name, value in record.headers
        }
        ferry = {
            "ferry-dlq-code": code,
            "ferry-dlq-reason": _text(reason[:MAX_REASON_CHARS]),
            "ferry-dlq-topic": record.topic,
            "ferry-dlq-partition": str(record.partition),
            "ferry-dlq-offset": str(record.offset),
            "ferry-dlq-at": rfc3339(utcnow()),
        }
        if bare:
            value, key, headers = b"", None, ferry | _identified(record.value, "value,key,headers")
        else:
            value, key, headers = self._fitted(record, original, ferry)
        await self._publish(value, key, headers)
        DEAD_LETTERS.labels(code=code).inc()
        log.warning(
            "request.dead_lettered",
            code=code,
            reason=ferry["ferry-dlq-reason"],
            topic=record.topic,
            partition=record.partition,
            offset=record.offset,
            truncated=headers.get("ferry-dlq-truncated"),
        )

    def _fitted(
        self, record: IncomingRecord, original: dict[str, str], ferry: dict[str, str]
    ) -> tuple[bytes, bytes | None, dict[str, str]]:
        value, key = record.value, record.key
        size = _FRAMING_BYTES + len(key or b"") + _header_bytes(original | ferry) + len(value)
        if size <= self._max_record_bytes:
            return value, key, original | ferry
        room = self._max_record_bytes - _FRAMING_BYTES
        ferry |= _identified(value, "value")
        if key is not None and len(key) > room // _KEY_SHARE:
            key = key[: room // _KEY_SHARE]
            ferry["ferry-dlq-truncated"] += ",key"
        if _header_bytes(original) > room // _HEADERS_SHARE:
            original = {}
            ferry["ferry-dlq-truncated"] += ",headers"
        headers = original | ferry
        room -= len(key or b"") + _header_bytes(headers)
        return value[: max(room, 0)], key, headers
