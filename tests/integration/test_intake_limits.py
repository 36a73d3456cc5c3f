"""Generated requests against the real database: whatever a request holds, the intake records a
job MongoDB accepts or dead-letters the record; it never raises (the database is up)."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as examples
from hypothesis import strategies as st

from service.config import Settings
from service.contracts.envelope import CANCEL_REQUESTED, EXPORT_REQUESTED, IMPORT_REQUESTED
from service.database import connect
from service.events.dead_letters import DeadLetters
from service.events.intake import RequestIntake
from service.events.records import IncomingRecord
from service.events.requests import RequestHandler
from service.exports.request import export_job_from_request
from service.imports.request import ImportRequests
from service.jobs.cancellation import cancel_from_request
from service.jobs.ledger import Ledger
from service.jobs.model import JOBS_COLLECTION
from tests.support import poison

pytestmark = pytest.mark.integration

# Each example writes to the database: few enough to keep the suite fast.
EXAMPLES = 120
HANDLERS: dict[str, RequestHandler] = {
    EXPORT_REQUESTED: export_job_from_request,
    IMPORT_REQUESTED: ImportRequests(own_bucket="ferry", source_buckets=frozenset()),
    CANCEL_REQUESTED: cancel_from_request,
}
records = st.one_of(
    poison.typed_requests.map(lambda event: (poison.encode(event), ())),
    poison.records,
)


def test_generated_requests_become_stored_jobs_or_dead_letters(settings: Settings) -> None:
    # Hypothesis drives a synchronous test, so this test runs its own event loop and client.
    loop = asyncio.new_event_loop()
    client = connect(settings.mongo, app_name="ferry-tests-limits")
    database = client[f"{settings.mongo.database}_limits_{uuid.uuid4().hex[:6]}"]
    letters: list[dict[str, str]] = []

    async def sink(value: bytes, key: bytes | None, headers: dict[str, str]) -> None:
        del value, key
        letters.append(headers)

    ledger = Ledger(database, event_source="/tests")
    intake = RequestIntake(
        ledger, DeadLetters(sink), handlers=HANDLERS, max_event_bytes=100_000, max_attempts=1
    )
    offsets = iter(range(10**9))

    @examples(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(records)
    def accept(record: tuple[bytes, poison.Headers]) -> None:
        before = (
            len(letters),
            loop.run_until_complete(database[JOBS_COLLECTION].count_documents({})),
        )
        incoming = IncomingRecord(
            value=record[0],
            key=b"k",
            headers=record[1],
            topic="ferry.requests",
            partition=0,
            offset=next(offsets),
        )
        loop.run_until_complete(intake.accept(incoming))  # must not raise
        after = (
            len(letters),
            loop.run_until_complete(database[JOBS_COLLECTION].count_documents({})),
        )
        new_letters, new_jobs = after[0] - before[0], after[1] - before[1]
        # A cancel (of no job) and a repeated request id (a duplicate) record nothing.
        assert new_letters + new_jobs <= 1
        assert all(letter["ferry-dlq-code"] != "INTAKE_FAILED" for letter in letters), letters

    try:
        loop.run_until_complete(ledger.ensure_indexes())
        accept()
    finally:
        loop.run_until_complete(client.drop_database(database.name))
        loop.run_until_complete(client.close())
        loop.close()
