"""A Kafka record as it arrived, before any parsing: what every subscriber hands on."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class IncomingRecord:
    """A Kafka record as it arrived, before any parsing."""

    value: bytes
    key: bytes | None
    headers: tuple[tuple[str, bytes | None], ...]  # a header's value may be null
    topic: str
    partition: int
    offset: int
