"""The status consumers' batch parsing: whatever headers and bodies the records of a batch
carry, FastStream's parsing (fed through Ferry's tolerant parser and undecoded decoder) hands
every body to the handler as it arrived, in order, instead of failing the whole batch."""

from __future__ import annotations

from aiokafka import ConsumerRecord
from faststream.kafka.message import KafkaMessage
from faststream.kafka.parser import AioKafkaBatchParser
from hypothesis import given, settings
from hypothesis import strategies as st

from service.events.kafka import _tolerant_batch_parse, _undecoded
from tests.support import poison


def _record(offset: int, value: bytes, headers: poison.Headers) -> ConsumerRecord[bytes, bytes]:
    return ConsumerRecord(
        topic="ferry.status",
        partition=0,
        offset=offset,
        timestamp=0,
        timestamp_type=0,
        key=b"job",
        value=value,
        checksum=None,
        serialized_key_size=3,
        serialized_value_size=len(value),
        headers=headers,  # None values on purpose
    )


@settings(max_examples=200, deadline=None)
@given(st.lists(poison.records, min_size=1, max_size=8))
async def test_every_body_of_a_batch_reaches_the_handler_as_it_arrived(
    records: list[tuple[bytes, poison.Headers]],
) -> None:
    batch = tuple(_record(n, value, headers) for n, (value, headers) in enumerate(records))
    parser = AioKafkaBatchParser(msg_class=KafkaMessage, regex=None)

    message = await _tolerant_batch_parse(batch, parser.parse_batch)

    assert await _undecoded(message) == [value for value, _ in records]
    assert message.raw_message == batch
