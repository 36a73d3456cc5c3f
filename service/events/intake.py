"""The request intake: validate, record the job idempotently, acknowledge. Nothing slow.

Running the job here would hold the partition for minutes, overrun `max_poll_interval_ms` and get
the job run twice after a rebalance; the ledger and its workers run it instead.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import structlog

from service.clock import utcnow
from service.events.dead_letters import DeadLetters, IncomingRecord
from service.events.requests import JobBuilder, Rejected, parse_request
from service.jobs.ledger import Ledger

log = structlog.get_logger(__name__)


class RequestIntake:
    def __init__(
        self,
        ledger: Ledger,
        dead_letters: DeadLetters,
        *,
        builders: Mapping[str, JobBuilder],
        max_event_bytes: int,
        on_accepted: Callable[[], None] = lambda: None,
    ) -> None:
        self._ledger = ledger
        self._dead_letters = dead_letters
        self._builders = builders
        self._max_event_bytes = max_event_bytes
        self._on_accepted = on_accepted

    async def accept(self, record: IncomingRecord) -> None:
        """Raises only when the ledger or broker is unreachable; the record is then redelivered."""
        outcome = parse_request(
            record.value, max_bytes=self._max_event_bytes, builders=self._builders, now=utcnow()
        )
        if isinstance(outcome, Rejected):
            await self._dead_letters.send(record, code=outcome.code, reason=outcome.reason)
            return
        job = outcome
        accepted = await self._ledger.accept(job)
        bound = log.bind(job_id=accepted.job_id, project_id=job.project_id)
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
