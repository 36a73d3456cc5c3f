"""No single record stops the intake: each gets a verdict (a job or a dead letter) at once, an
outage alone holds a record back, and a dead letter always fits in a record the broker takes.

The intake runs here against a fake ledger that BSON-encodes every job it is given (so a job the
database driver would refuse fails the test) and a dead-letter sink that measures each record."""

from __future__ import annotations

import asyncio
import hashlib
import json
import uuid
from collections.abc import Coroutine
from typing import Any

import bson
import pytest
from aiokafka.errors import KafkaConnectionError, KafkaTimeoutError, MessageSizeTooLargeError
from bson.errors import InvalidDocument
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pymongo.errors import (
    AutoReconnect,
    DocumentTooLarge,
    NetworkTimeout,
    OperationFailure,
    ServerSelectionTimeoutError,
)

from service.contracts.envelope import CANCEL_REQUESTED, EXPORT_REQUESTED, IMPORT_REQUESTED
from service.events.dead_letters import DeadLetters
from service.events.intake import Attempts, RequestIntake
from service.events.outages import is_outage
from service.events.records import IncomingRecord
from service.events.requests import RequestHandler
from service.exports.request import export_job_from_request
from service.imports.request import ImportRequests
from service.jobs.cancellation import cancel_from_request
from service.jobs.ledger import Accepted, CancelOutcome
from service.jobs.model import Job
from service.jobs.status import JobStatus
from tests.support import poison

MAX_EVENT_BYTES = 100_000
MAX_RECORD_BYTES = 110_000
# What FastStream adds to each record (content-type, correlation_id) and the record's framing.
PUBLISH_OVERHEAD = 200
HANDLERS: dict[str, RequestHandler] = {
    EXPORT_REQUESTED: export_job_from_request,
    IMPORT_REQUESTED: ImportRequests(own_bucket="ferry", source_buckets=frozenset()),
    CANCEL_REQUESTED: cancel_from_request,
}
# Hypothesis example counts, kept modest so that the unit suite stays fast.
EXAMPLES = 300


class FakeLedger:
    def __init__(self, failure: Exception | None = None) -> None:
        self.jobs: list[Job] = []
        self.cancels: list[str] = []
        self.failure = failure

    async def accept(self, job: Job) -> Accepted:
        if self.failure is not None:
            raise self.failure
        bson.encode(job.to_document())  # raises as the driver would for an unstorable job
        self.jobs.append(job)
        return Accepted("created", job.id)

    async def request_cancel(
        self, project_id: str, job_id: str, reason: str | None
    ) -> tuple[CancelOutcome, JobStatus | None]:
        if self.failure is not None:
            raise self.failure
        self.cancels.append(job_id)
        return "not_found", None


class Sink:
    """The dead-letter topic: keeps what is published; refuses what the broker would."""

    def __init__(self, refuse: int = 0) -> None:
        self.letters: list[tuple[bytes, bytes | None, dict[str, str]]] = []
        self.refuse = refuse  # how many publishes fail with MessageSizeTooLargeError first

    async def __call__(self, value: bytes, key: bytes | None, headers: dict[str, str]) -> None:
        size = len(value) + len(key or b"") + PUBLISH_OVERHEAD
        size += sum(len(name.encode()) + len(text.encode()) for name, text in headers.items())
        if self.refuse > 0 or size > MAX_RECORD_BYTES:
            self.refuse -= 1
            raise MessageSizeTooLargeError
        self.letters.append((value, key, headers))


def a_record(value: bytes, headers: poison.Headers = (), *, offset: int = 7) -> IncomingRecord:
    return IncomingRecord(
        value=value,
        key=b"proj_1",
        headers=headers,
        topic="ferry.requests",
        partition=2,
        offset=offset,
    )


def intake(ledger: FakeLedger, sink: Sink, *, max_attempts: int = 3) -> RequestIntake:
    return RequestIntake(
        ledger,
        DeadLetters(sink, max_record_bytes=MAX_RECORD_BYTES),
        handlers=HANDLERS,
        max_event_bytes=MAX_EVENT_BYTES,
        max_attempts=max_attempts,
    )


def run(step: Coroutine[Any, Any, None]) -> None:
    asyncio.run(step)


def verdict_of(value: bytes, headers: poison.Headers) -> tuple[FakeLedger, Sink]:
    """Accept one record once: it must not raise (no outage here), and must have one verdict."""
    ledger, sink = FakeLedger(), Sink()
    run(intake(ledger, sink, max_attempts=1).accept(a_record(value, headers)))
    verdicts = len(ledger.jobs) + len(ledger.cancels) + len(sink.letters)
    assert verdicts == 1, (ledger.jobs, ledger.cancels, sink.letters)
    for _, _, letter_headers in sink.letters:
        # A record the intake had to give up on would say INTAKE_FAILED: every generated
        # record must be judged by the checks, not by the last resort.
        assert letter_headers["ferry-dlq-code"] != "INTAKE_FAILED", letter_headers
        assert letter_headers["ferry-dlq-reason"]
    for job in ledger.jobs:
        assert job.status is not JobStatus.FAILED or (job.error_code and job.error_message)
    return ledger, sink


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(poison.records)
def test_every_generated_record_becomes_a_job_or_a_dead_letter(
    record: tuple[bytes, poison.Headers],
) -> None:
    verdict_of(*record)


@settings(max_examples=EXAMPLES // 3, deadline=None)
@given(poison.request_data, st.sampled_from([EXPORT_REQUESTED, IMPORT_REQUESTED]))
def test_a_request_naming_its_project_becomes_a_storable_job(
    data: dict[str, Any], event_type: str
) -> None:
    ledger, sink = verdict_of(poison.encode(poison.envelope(data, event_type=event_type)), ())
    assert not sink.letters
    assert ledger.jobs[0].project_id == data["project_id"]


@settings(max_examples=30, deadline=None)
@given(
    st.integers(MAX_EVENT_BYTES - 50, MAX_RECORD_BYTES + 100),
    st.integers(0, 10_000),
    st.integers(0, 6),
)
def test_a_dead_letter_always_fits(size: int, key_size: int, header_count: int) -> None:
    value = b"{" + b"x" * size
    headers = tuple((f"h{n}", b"v" * 5_000) for n in range(header_count))
    sink = Sink()
    record = IncomingRecord(
        value=value, key=b"k" * key_size, headers=headers, topic="t", partition=0, offset=1
    )
    run(intake(FakeLedger(), sink, max_attempts=1).accept(record))
    [(sent, _, sent_headers)] = sink.letters
    if "ferry-dlq-truncated" in sent_headers:
        assert value.startswith(sent)
        assert sent_headers["ferry-dlq-original-bytes"] == str(len(value))
        assert sent_headers["ferry-dlq-original-sha256"] == hashlib.sha256(value).hexdigest()
    else:
        assert sent == value


def test_a_record_far_beyond_the_limit_is_dead_lettered_truncated() -> None:
    sink = Sink()
    value = b"[" * 5_000_000
    run(intake(FakeLedger(), sink).accept(a_record(value, (("trace", None),))))
    [(sent, key, headers)] = sink.letters
    assert headers["ferry-dlq-code"] == "EVENT_TOO_LARGE"
    assert headers["ferry-dlq-truncated"] == "value"
    assert headers["trace"] == ""  # a null header value is kept as an empty one
    assert 0 < len(sent) < MAX_RECORD_BYTES
    assert key == b"proj_1"


@pytest.mark.parametrize(
    "outage",
    [
        AutoReconnect("primary stepped down"),
        NetworkTimeout("timed out"),
        ServerSelectionTimeoutError("no servers"),
        KafkaConnectionError("broker away"),
        TimeoutError(),
        ConnectionResetError(),
    ],
    ids=lambda exc: type(exc).__name__,
)
def test_an_outage_redelivers_the_record_for_as_long_as_it_lasts(outage: Exception) -> None:
    ledger, sink = FakeLedger(failure=outage), Sink()
    accepting = intake(ledger, sink, max_attempts=2)
    record = a_record(poison.encode(poison.envelope({"project_id": "p", "filters": {}})))
    for _ in range(10):
        with pytest.raises(type(outage)):
            run(accepting.accept(record))
    assert not sink.letters


def test_a_record_failing_for_another_reason_is_dead_lettered_after_the_attempts() -> None:
    ledger, sink = FakeLedger(failure=ValueError("a bug in a handler")), Sink()
    accepting = intake(ledger, sink, max_attempts=3)
    record = a_record(poison.encode(poison.envelope({"project_id": "p", "filters": {}})))
    for _ in range(2):
        with pytest.raises(ValueError, match="a bug"):
            run(accepting.accept(record))
        assert not sink.letters
    run(accepting.accept(record))  # the third attempt gives a verdict
    [(value, _, headers)] = sink.letters
    assert value == record.value
    assert headers["ferry-dlq-code"] == "INTAKE_FAILED"
    assert headers["ferry-dlq-reason"] == "ValueError: a bug in a handler"
    # Counted per record: the next offset starts afresh.
    with pytest.raises(ValueError, match="a bug"):
        run(accepting.accept(a_record(record.value, offset=8)))


def test_a_dead_letter_the_broker_refuses_is_sent_bare_and_then_the_record_dropped() -> None:
    record = a_record(b"not json")
    sink = Sink(refuse=2)  # the verdict's dead letter, and the first one giving up
    run(intake(FakeLedger(), sink, max_attempts=1).accept(record))
    [(value, key, headers)] = sink.letters
    assert (value, key, headers["ferry-dlq-code"]) == (b"", None, "INTAKE_FAILED")
    assert "MessageSizeTooLargeError" in headers["ferry-dlq-reason"]
    assert headers["ferry-dlq-original-sha256"] == hashlib.sha256(record.value).hexdigest()
    never = Sink(refuse=10)
    run(intake(FakeLedger(), never, max_attempts=1).accept(record))  # does not raise: dropped
    assert not never.letters


def test_the_attempt_counts_are_bounded() -> None:
    attempts = Attempts(capacity=3)
    records = [a_record(b"", offset=offset) for offset in range(5)]
    for record in records:
        attempts.failed(record)
    assert attempts.failed(records[-1]) == 2
    assert attempts.failed(records[0]) == 1  # forgotten, being the oldest


def test_a_binary_mode_request_becomes_a_job() -> None:
    job_id = str(uuid.uuid4())
    data = {"project_id": "proj_1", "job_id": job_id, "filters": poison.FILTERS}
    headers: poison.Headers = (
        ("ce_specversion", b"1.0"),
        ("ce_id", b"evt-42"),
        ("ce_source", b"/crm"),
        ("ce_type", EXPORT_REQUESTED.encode()),
        ("ce_time", b"2025-12-01T10:00:00Z"),
        ("content-type", b"application/json; charset=utf-8"),
    )
    ledger, _ = verdict_of(json.dumps(data).encode(), headers)
    [job] = ledger.jobs
    assert (job.id, job.status, job.request_id, job.request_source) == (
        job_id,
        JobStatus.PENDING,
        "evt-42",
        "/crm",
    )


@pytest.mark.parametrize(
    ("headers", "value", "code"),
    [
        ((("ce_specversion", b"1.0"), ("content-type", b"text/csv")), b"a,b", "INVALID_CLOUDEVENT"),
        ((("ce_specversion", b"1.0"), ("ce_type", b"\xff")), b"{}", "INVALID_CLOUDEVENT"),
        (
            (("ce_specversion", b"1.0"), ("ce_id", b"1"), ("ce_source", b"/s")),
            b"{}",
            "INVALID_CLOUDEVENT",
        ),
        (
            (("ce_specversion", b"1.0"), ("ce_id", b"1"), ("ce_source", b"/s"), ("ce_type", b"x")),
            b"{",
            "INVALID_JSON",
        ),
    ],
)
def test_an_unusable_binary_mode_request_is_dead_lettered(
    headers: poison.Headers, value: bytes, code: str
) -> None:
    _, sink = verdict_of(value, headers)
    assert sink.letters[0][2]["ferry-dlq-code"] == code


def test_structured_mode_wins_when_the_content_type_says_so() -> None:
    event = poison.envelope({"project_id": "proj_1", "filters": poison.FILTERS}, id="structured")
    headers: poison.Headers = (
        ("ce_specversion", b"1.0"),
        ("content-type", b"application/cloudevents+json; charset=UTF-8"),
    )
    ledger, _ = verdict_of(poison.encode(event), headers)
    assert ledger.jobs[0].request_id == "structured"


@pytest.mark.parametrize(
    ("exc", "outage"),
    [
        (AutoReconnect("not primary"), True),
        (ServerSelectionTimeoutError("no servers"), True),
        (OperationFailure("stepped down", code=189), True),
        (OperationFailure("x", code=2, details={"errorLabels": ["RetryableWriteError"]}), True),
        (KafkaConnectionError(), True),
        (KafkaTimeoutError(), True),
        (TimeoutError(), True),
        (OperationFailure("bad value", code=2), False),
        (InvalidDocument("Key names must not contain the NULL byte"), False),
        (DocumentTooLarge("17 MB"), False),
        (OverflowError("MongoDB can only handle up to 8-byte ints"), False),
        (MessageSizeTooLargeError(), False),
        (RecursionError(), False),
        (UnicodeEncodeError("utf-8", "\ud800", 0, 1, "surrogates not allowed"), False),
    ],
    ids=lambda value: type(value).__name__ if isinstance(value, BaseException) else str(value),
)
def test_only_an_unreachable_server_or_a_timeout_is_an_outage(
    exc: BaseException, *, outage: bool
) -> None:
    assert is_outage(exc) is outage
