"""Time, ids and the one RFC 3339 format used on every wire."""

from __future__ import annotations

import os
import time
import uuid
from datetime import UTC, datetime


def utcnow() -> datetime:
    # MongoDB keeps milliseconds; truncating here keeps what we compute equal to what we read back.
    now = datetime.now(UTC)
    return now.replace(microsecond=now.microsecond // 1000 * 1000)


def as_utc(value: datetime) -> datetime:
    """MongoDB returns naive UTC datetimes; make them aware so comparisons and output are right."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def rfc3339(value: datetime) -> str:
    """`2025-12-06T12:00:30Z`, with milliseconds only when there are any."""
    value = as_utc(value)
    spec = "milliseconds" if value.microsecond else "seconds"
    return value.replace(tzinfo=None).isoformat(timespec=spec) + "Z"


def rfc3339_seconds(value: datetime) -> str:
    """`2025-12-06T12:00:30Z`: the seed APIs' form, whole seconds (the fraction is dropped, so an
    instant shown is never later than the real one)."""
    return rfc3339(as_utc(value).replace(microsecond=0))


def uuid7() -> str:
    """A UUIDv7 (RFC 9562): time-ordered, so ids sort by creation. Python 3.11 has no uuid7()."""
    unix_ms = time.time_ns() // 1_000_000
    rand = int.from_bytes(os.urandom(10), "big")
    value = (unix_ms & ((1 << 48) - 1)) << 80
    value |= 0x7 << 76  # version
    value |= ((rand >> 62) & 0xFFF) << 64  # rand_a, 12 bits
    value |= 0b10 << 62  # variant
    value |= rand & ((1 << 62) - 1)  # rand_b, 62 bits
    return str(uuid.UUID(int=value))
