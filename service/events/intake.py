"""The request intake: validate, record the job idempotently, acknowledge. Nothing slow.

Running the job here would hold the partition for minutes, overrun `max_poll_interval_ms` and get
the job run twice after a rebalance; the ledger and its workers run it instead.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import structlog

from service.clock import utcnow
from service.events.dead_letters import DeadLetters
from service.events.records import IncomingRecord
from service.events.rejection import Rejected
from service.events.requests import RequestHandler, parse_request
from service.jobs.cancellation import CancelJob
from service.jobs.ledger import Ledger
from service.jobs.model import Job
from service.observability.metrics import REQUESTS

log = structlog.get_logger(__name__)


class RequestIntake:
    def __init__(
        self,
        ledger: Ledger,
        dead_letters: DeadLetters,
        *,
        handlers: Mapping[str, RequestHandler],
        max_event_bytes: int,
        on_accepted: Callable[[], None] = lambda: None,
    ) -> None:
        self._ledger = ledger
        self._dead_letters = dead_letters
        self._handlers = handlers
        self._max_event_bytes = max_event_bytes
        self._on_accepted = on_accepted

    async def accept(self, record: IncomingRecord) -> None:
        """Raises only when the ledger or broker is unreachable; the record is then redelivered."""
        intent = parse_request(
            record.value, max_bytes=self._max_event_bytes, handlers=self._handlers, now=utcnow()
        )
        if isinstance(intent, Rejected):
            await self._dead_letters.send(record, code=intent.code, reason=intent.reason)
            REQUESTS.labels(outcome="dead_lettered").inc()
        elif isinstance(intent, CancelJob):
            await self._cancel(intent)
            REQUESTS.labels(outcome="cancel").inc()
        else:
            await self._record(record, intent)

    async def _record(self, record: IncomingRecord, job: Job) -> None:
        accepted = await self._ledger.accept(job)
        bound = log.bind(job_id=accepted.job_id, project_id=job.project_id)
        REQUESTS.labels(outcome=accepted.outcome).inc()
        if accepted.outcome == "conflict":
            await self._dead_letters.send(
                record,
                code="JOB_ID_CONFLICT",
                reason=f"job {accepted.job_id} (or this CloudEvent source and id) "
                "already belongs to another project",
            )
        elif accepted.outcome == "duplicate":
            bound.info("request.duplicate", request_id=job.request_id)
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
