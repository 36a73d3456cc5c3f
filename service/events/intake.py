"""The request intake: validate, record the job idempotently, acknowledge. Nothing slow.

Running the job here would hold the partition for minutes, overrun `max_poll_interval_ms` and get
the job run twice after a rebalance; the ledger and its workers run it instead.

Every record gets a verdict in bounded time: a job (pending or failed), a cancellation, or a
dead letter. Only an outage holds a record back (it is redelivered until the outage passes); a
record that keeps failing for any other reason is dead-lettered after `max_attempts` attempts,
so that no single record can stop its partition.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Mapping
from typing import Protocol

import structlog

from service.clock import utcnow
from service.contracts.requests import Rejected
from service.error_codes import ErrorCode
from service.events.dead_letters import DeadLetters
from service.events.outages import is_outage
from service.events.records import IncomingRecord
from service.events.requests import RequestHandler, parse_request
from service.jobs.cancellation import CancelJob
from service.jobs.ledger import Accepted, CancelOutcome
from service.jobs.model import Job
from service.jobs.status import JobStatus
from service.observability.metrics import REQUESTS

log = structlog.get_logger(__name__)

INTAKE_FAILED = ErrorCode.INTAKE_FAILED


class JobRecorder(Protocol):
    """What the intake needs of the ledger."""

    async def accept(self, job: Job) -> Accepted: ...

    async def request_cancel(
        self, project_id: str, job_id: str, reason: str | None
    ) -> tuple[CancelOutcome, JobStatus | None]: ...


class Attempts:
    """Failed attempts per record (topic, partition, offset), in memory. After a rebalance the
    new owner counts afresh, so a record is tried at most `max_attempts` times per worker; old
    entries are dropped beyond `capacity` so the count cannot grow without bound."""

    def __init__(self, capacity: int = 10_000) -> None:
        self._counts: OrderedDict[tuple[str, int, int], int] = OrderedDict()
        self._capacity = capacity

    def failed(self, record: IncomingRecord) -> int:
        """Count one more failure of `record`; returns how many it has had."""
        where = (record.topic, record.partition, record.offset)
        count = self._counts.pop(where, 0) + 1
        self._counts[where] = count
        while len(self._counts) > self._capacity:
            self._counts.popitem(last=False)
        return count

    def forget(self, record: IncomingRecord) -> None:
        self._counts.pop((record.topic, record.partition, record.offset), None)


class RequestIntake:
    def __init__(
        self,
        ledger: JobRecorder,
        dead_letters: DeadLetters,
        *,
        handlers: Mapping[str, RequestHandler],
        max_event_bytes: int,
        max_attempts: int = 3,
        on_accepted: Callable[[], None] = lambda: None,
    ) -> None:
        self._ledger = ledger
        self._dead_letters = dead_letters
        self._handlers = handlers
        self._max_event_bytes = max_event_bytes
        self._max_attempts = max_attempts
        self._attempts = Attempts()
        self._on_accepted = on_accepted

    async def accept(self, record: IncomingRecord) -> None:
        """Raises only for an outage, or for a failure that has not used up its attempts; the
        record is then redelivered."""
        try:
            await self._judge(record)
        except Exception as exc:
            if is_outage(exc):
                raise
            attempts = self._attempts.failed(record)
            if attempts < self._max_attempts:
                log.warning(
                    "request.attempt_failed",
                    error=f"{type(exc).__name__}: {exc}"[:500],
                    attempt=attempts,
                    max_attempts=self._max_attempts,
                    partition=record.partition,
                    offset=record.offset,
                )
                raise
            await self._give_up(record, exc)
        self._attempts.forget(record)

    async def _judge(self, record: IncomingRecord) -> None:
        intent = parse_request(
            record.value,
            headers=record.headers,
            max_bytes=self._max_event_bytes,
            handlers=self._handlers,
            now=utcnow(),
        )
        if isinstance(intent, Rejected):
            await self._dead_letters.send(record, code=intent.code, reason=intent.reason)
            REQUESTS.labels(outcome="dead_lettered").inc()
        elif isinstance(intent, CancelJob):
            await self._cancel(intent)
            REQUESTS.labels(outcome="cancel").inc()
        else:
            await self._record(record, intent)

    async def _give_up(self, record: IncomingRecord, exc: Exception) -> None:
        """Dead-letter a record that failed `max_attempts` times; should even that fail for a
        reason other than an outage, send the dead letter without the record's bytes (their
        size and sha256 still identify them), and as a last resort log the record and drop it."""
        reason = f"{type(exc).__name__}: {exc}"
        for bare in (False, True):
            try:
                await self._dead_letters.send(record, code=INTAKE_FAILED, reason=reason, bare=bare)
            except Exception as send_failure:
                if is_outage(send_failure):
                    raise
                log.exception("request.dead_letter_failed", offset=record.offset, bare=bare)
            else:
                REQUESTS.labels(outcome="dead_lettered").inc()
                return
        REQUESTS.labels(outcome="dropped").inc()
        log.error(
            "request.dropped",
            reason=reason[:1000],
            topic=record.topic,
            partition=record.partition,
            offset=record.offset,
        )

    async def _record(self, record: IncomingRecord, job: Job) -> None:
        accepted = await self._ledger.accept(job)
        bound = log.bind(job_id=accepted.job_id, project_id=job.project_id)
        REQUESTS.labels(outcome=accepted.outcome).inc()
        if accepted.outcome == "conflict":
            await self._dead_letters.send(
                record,
                code=ErrorCode.JOB_ID_CONFLICT,
                reason=f"job {accepted.job_id} (or this CloudEvent source and id) "
                "already belongs to another project",
            )
        elif accepted.outcome == "duplicate":
            bound.info("request.duplicate", request_id=job.request_id)
        elif accepted.outcome == "reused":
            self._on_accepted()
            bound.info("request.idempotency_key_reused", first_job_id=accepted.first_job_id)
        else:
            self._on_accepted()
            bound.info(
                "request.accepted",
                kind=job.kind,
                status=job.status.value,
                error_code=job.error_code,
            )

    async def _cancel(self, request: CancelJob) -> None:
        outcome, status = await self._ledger.request_cancel(
            request.project_id, request.job_id, request.reason
        )
        bound = log.bind(job_id=request.job_id, project_id=request.project_id)
        if outcome == "cancelled":
            bound.info("job.cancelled", was="pending")
        elif outcome == "cancel_requested":
            bound.info("job.cancel_requested")  # the running attempt stops within seconds
        elif outcome == "finished":
            bound.info("job.cancel_ignored", reason="already finished", status=status)
        else:
            bound.warning("job.cancel_ignored", reason="no such job in this project")
