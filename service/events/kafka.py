"""FastStream wiring: the brokers, the intake subscriber and the publishers. Thin by design;
everything they do is in plain classes that tests can drive directly."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Awaitable, Callable, Generator
from typing import TYPE_CHECKING, Any

import structlog
from aiokafka import errors as aiokafka_errors
from faststream import AckPolicy
from faststream.kafka import KafkaBroker
from faststream.kafka.annotations import KafkaMessage
from faststream.message import StreamMessage

from service.config import KafkaSettings
from service.contracts.envelope import CLOUDEVENTS_CONTENT_TYPE
from service.events.dead_letters import PublishRaw
from service.events.records import IncomingRecord
from service.events.status_publishing import StatusPublisher, UndeliverableEventError
from service.observability.tracing import kafka_tracing_middlewares

if TYPE_CHECKING:
    from aiokafka import ConsumerRecord
    from faststream.kafka.subscriber.usecase import BatchSubscriber, DefaultSubscriber

    from service.events.intake import RequestIntake

log = structlog.get_logger(__name__)

# A failing handler (database or broker away) is redelivered; this pause keeps that from spinning.
REDELIVERY_PAUSE_SECONDS = 1.0


def make_broker(settings: KafkaSettings, *, client_id: str, tracing: bool = False) -> KafkaBroker:
    return KafkaBroker(
        settings.bootstrap_servers,
        client_id=client_id,
        acks="all",
        enable_idempotence=settings.idempotent_producer,
        # Events handed over together leave in one request per partition.
        linger_ms=settings.producer_linger_ms,
        max_request_size=settings.dead_letter_max_bytes,  # so every dead letter can be sent
        logger=None,  # structlog tells what happened; FastStream's per-message lines are noise
        middlewares=kafka_tracing_middlewares() if tracing else (),
    )


async def _tolerant_parse(
    record: ConsumerRecord[bytes, bytes],
    parse: Callable[[ConsumerRecord[bytes, bytes]], Awaitable[StreamMessage[Any]]],
) -> StreamMessage[Any]:
    """FastStream's parsing, fed headers it can read. Its own decodes every header value as
    UTF-8 before any handler runs, and raises on a null or non-UTF-8 one, where the record
    would get no verdict. The handler still sees the record as it arrived (`raw_message`)."""
    message = await parse(_readable_headers(record))
    message.raw_message = record
    return message


async def _tolerant_batch_parse(
    records: tuple[ConsumerRecord[bytes, bytes], ...],
    parse: Callable[[tuple[ConsumerRecord[bytes, bytes], ...]], Awaitable[StreamMessage[Any]]],
) -> StreamMessage[Any]:
    """`_tolerant_parse` for a batch: one record with a null header would otherwise fail the
    whole batch, unseen, and the batch would come back forever."""
    message = await parse(tuple(_readable_headers(record) for record in records))
    message.raw_message = records
    return message


def _readable_headers(record: ConsumerRecord[bytes, bytes]) -> ConsumerRecord[bytes, bytes]:
    readable = [
        (name, (value or b"").decode(errors="replace").encode()) for name, value in record.headers
    ]
    return dataclasses.replace(record, headers=readable)


async def _undecoded(message: StreamMessage[Any]) -> bytes | list[bytes]:
    """The body as it arrived (for a batch, the list of bodies). FastStream's own decoder would
    parse JSON before any handler runs, and raise there, unseen and without a verdict, on what
    it cannot read (a value nested 5,000 brackets deep, an integer of 5,000 digits): the record
    would come back forever."""
    return message.body


# Handles one record; raises only for trouble worth redelivering the record over.
RecordHandler = Callable[[IncomingRecord], Awaitable[object]]


def subscribe_records(
    broker: KafkaBroker,
    topic: str,
    *,
    group_id: str,
    handle: RecordHandler,
    title: str,
    description: str,
) -> DefaultSubscriber:
    """A consumer-group subscription handing each record, as it arrived, to `handle`.

    The offset is committed only after `handle` returns: on an exception the consumer seeks
    back and the record comes again (after a pause, so an outage does not spin). FastStream's
    Kafka default would commit first and lose the record.
    """
    subscriber = broker.subscriber(
        topic,
        group_id=group_id,
        ack_policy=AckPolicy.NACK_ON_ERROR,
        parser=_tolerant_parse,
        decoder=_undecoded,
        auto_offset_reset="earliest",
        title=title,
        description=description,
    )

    @subscriber
    async def on_record(message: KafkaMessage) -> None:
        raw = message.raw_message
        if isinstance(raw, tuple):  # pragma: no cover - not a batch subscriber
            raise TypeError("batch records are not expected here")
        record = IncomingRecord(
            value=raw.value or b"",
            key=raw.key,
            headers=tuple(raw.headers or ()),
            topic=raw.topic,
            partition=raw.partition,
            offset=raw.offset,
        )
        try:
            await handle(record)
        except Exception:
            log.exception("kafka.redelivery", topic=raw.topic, offset=raw.offset)
            await asyncio.sleep(REDELIVERY_PAUSE_SECONDS)
            raise

    return subscriber


# Handles a batch of record values; raises only for trouble worth redelivering the batch over.
BatchHandler = Callable[[list[bytes]], Awaitable[object]]

_MAX_BATCH = 500
_BATCH_TIMEOUT_MS = 25
_FETCH_MAX_WAIT_MS = 100


def subscribe_batches(
    broker: KafkaBroker,
    topic: str,
    *,
    group_id: str,
    handle: BatchHandler,
    title: str,
    description: str,
) -> BatchSubscriber:
    """A consumer-group subscription handing batches of record values to `handle`: one call
    and one offset commit for up to `_MAX_BATCH` records (per record, a consumer that writes
    to the database tops out at a few dozen records a second).

    The offset is committed only after `handle` returns; on an exception the batch comes
    again after a pause. An idle consumer looks again every ~2 x `_BATCH_TIMEOUT_MS`. The
    broker may hold a fetch with no new data `_FETCH_MAX_WAIT_MS`: real Kafka answers as soon
    as a record arrives, but the embedded broker, with records on several partitions, held
    fetches that long (~200 ms of every consumer's lag at the default 500).
    """
    subscriber = broker.subscriber(
        topic,
        group_id=group_id,
        ack_policy=AckPolicy.NACK_ON_ERROR,
        # A new group starts from what the topic still holds.
        auto_offset_reset="earliest",
        batch=True,
        # Headers made readable, bodies left undecoded: no record can fail the batch before
        # `handle` sees it (the handlers tell an unreadable event from a good one themselves).
        parser=_tolerant_batch_parse,
        decoder=_undecoded,
        max_records=_MAX_BATCH,
        batch_timeout_ms=_BATCH_TIMEOUT_MS,
        fetch_max_wait_ms=_FETCH_MAX_WAIT_MS,
        title=title,
        description=description,
    )

    @subscriber
    async def on_batch(message: KafkaMessage) -> None:
        raw = message.raw_message
        records = raw if isinstance(raw, tuple) else (raw,)
        try:
            await handle([record.value or b"" for record in records])
        except Exception:
            first = records[0]
            log.exception(
                "kafka.batch_redelivery",
                topic=first.topic,
                records=len(records),
                partition=first.partition,
                offset=first.offset,
            )
            await asyncio.sleep(REDELIVERY_PAUSE_SECONDS)
            raise

    return subscriber


def subscribe_intake(
    broker: KafkaBroker, settings: KafkaSettings, intake: RequestIntake
) -> DefaultSubscriber:
    return subscribe_records(
        broker,
        settings.requests_topic,
        group_id=settings.intake_group,
        handle=intake.accept,
        title="ferry.requests",
        description="Export and cancel requests (CloudEvents), recorded in the job ledger, "
        "then acknowledged.",
    )


# What the broker or the producer answers about a record itself, never about an outage:
# retrying such a record cannot succeed.
_VERDICTS: tuple[type[Exception], ...] = (
    aiokafka_errors.MessageSizeTooLargeError,
    aiokafka_errors.RecordTooLargeError,
    aiokafka_errors.RecordListTooLargeError,
    aiokafka_errors.CorruptRecordException,
    aiokafka_errors.InvalidTimestampError,
)


class KafkaStatusPublisher(StatusPublisher):
    """Status events to `ferry.status` (key: job id), handed to the producer without waiting
    for each acknowledgement; undeliverable ones to the status dead-letter topic."""

    def __init__(self, broker: KafkaBroker, settings: KafkaSettings) -> None:
        self._broker = broker
        self._settings = settings

    async def send(self, key: str, payload: bytes) -> Awaitable[object]:
        try:
            future = await self._broker.publish(
                payload,
                topic=self._settings.status_topic,
                key=key.encode(),
                headers={"content-type": CLOUDEVENTS_CONTENT_TYPE},
                no_confirm=True,
            )
        except _VERDICTS as exc:
            raise UndeliverableEventError(f"{type(exc).__name__}: {exc}") from exc
        return _Acknowledgement(future)

    async def dead_letter(self, key: str, payload: bytes, headers: dict[str, str]) -> None:
        await self._broker.publish(
            payload,
            topic=self._settings.status_dead_letter_topic,
            key=key.encode(),
            headers={"content-type": "application/octet-stream", **headers},
        )


class _Acknowledgement:
    """The broker's acknowledgement of one record, its verdicts told apart. A plain object, not
    a coroutine: a relay stopped before awaiting it leaves nothing dangling."""

    def __init__(self, future: Awaitable[object]) -> None:
        self._future = future

    def __await__(self) -> Generator[Any, None, object]:
        return self._result().__await__()

    async def _result(self) -> object:
        try:
            return await self._future
        except _VERDICTS as exc:
            raise UndeliverableEventError(f"{type(exc).__name__}: {exc}") from exc


def dead_letter_publisher(broker: KafkaBroker, settings: KafkaSettings) -> PublishRaw:
    async def publish(value: bytes, key: bytes | None, headers: dict[str, str]) -> None:
        await broker.publish(value, topic=settings.dead_letter_topic, key=key, headers=headers)

    return publish
