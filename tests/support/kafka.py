"""Plain Kafka clients for tests: publish raw bytes, read a topic from the start."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord

from service.config import KafkaSettings


async def publish(
    settings: KafkaSettings,
    values: list[bytes | dict[str, Any]],
    *,
    key: bytes | None = None,
    topic: str | None = None,
) -> None:
    """Publish in order (same key: same partition, so they are consumed in this order), to the
    requests topic unless another is named."""
    producer = AIOKafkaProducer(bootstrap_servers=settings.bootstrap_servers, acks="all")
    await producer.start()
    try:
        for value in values:
            raw = value if isinstance(value, bytes) else json.dumps(value).encode()
            await producer.send_and_wait(topic or settings.requests_topic, raw, key=key)
    finally:
        await producer.stop()


async def read_topic(
    settings: KafkaSettings,
    topic: str,
    *,
    until: Callable[[list[ConsumerRecord[bytes, bytes]]], bool],
    timeout: float = 30.0,
) -> list[ConsumerRecord[bytes, bytes]]:
    """Every record of `topic` from the beginning, until `until(records)` holds."""
    # No consumer group: all partitions, no 5-second group join.
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=settings.bootstrap_servers, auto_offset_reset="earliest"
    )
    await consumer.start()
    records: list[ConsumerRecord[bytes, bytes]] = []
    try:
        async with asyncio.timeout(timeout):
            while not until(records):
                batch = await consumer.getmany(timeout_ms=200)
                for partition_records in batch.values():
                    records.extend(partition_records)
    except TimeoutError:
        pass
    finally:
        await consumer.stop()
    return records
