"""Scenario 10 (docs/reliability.md): a worker whose intake cannot join its consumer group yet
(a member of the group is frozen, so the group waits out that member's session) still runs jobs
and publishes their status events: freshness does not wait on the request topic's group."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import textwrap
import time
import uuid

import pytest
from aiokafka import ConsumerRecord

from service.clock import utcnow
from service.database import Database
from service.jobs.ledger import Ledger
from service.jobs.model import Job
from service.jobs.status import JobStatus
from tests.chaos.conftest import Scenario, record
from tests.chaos.helpers import FILTERS, until_finished
from tests.support.kafka import read_topic

pytestmark = pytest.mark.chaos

SESSION_SECONDS = 15  # how long the frozen member holds the group's join

# A member of the intake's group, joined, that is then frozen with SIGSTOP: the group's next
# join waits until its session lapses.
MEMBER = textwrap.dedent(
    """
    import asyncio, sys
    from aiokafka import AIOKafkaConsumer

    async def main():
        consumer = AIOKafkaConsumer(
            sys.argv[2], bootstrap_servers=sys.argv[1], group_id=sys.argv[3],
            session_timeout_ms=int(sys.argv[4]) * 1000,
            rebalance_timeout_ms=int(sys.argv[4]) * 1000, heartbeat_interval_ms=1000,
        )
        await consumer.start()
        while not consumer.assignment():
            await consumer.getmany(timeout_ms=200)
        print("joined", flush=True)
        await asyncio.Event().wait()

    asyncio.run(main())
    """
)


async def test_status_events_leave_while_the_intake_waits_to_join(
    scenario: Scenario, scenario_db: Database
) -> None:
    kafka = scenario.settings.kafka
    member = subprocess.Popen(
        [
            sys.executable,
            "-c",
            MEMBER,
            kafka.bootstrap_servers,
            kafka.requests_topic,
            kafka.intake_group,
            str(SESSION_SECONDS),
        ],
        stdout=subprocess.PIPE,
    )
    try:
        assert member.stdout is not None
        line = await asyncio.wait_for(asyncio.to_thread(member.stdout.readline), timeout=60)
        assert line.strip() == b"joined"
        member.send_signal(signal.SIGSTOP)

        worker = scenario.start_worker()
        started = time.monotonic()
        # A job straight into the ledger, as one handed over by a worker that died: no request
        # on the topic the intake is waiting for.
        now = utcnow()
        job = Job(
            id=str(uuid.uuid4()),
            project_id=f"join-{uuid.uuid4().hex[:6]}",
            dataset="messages",
            filters=FILTERS,
            request_source="/tests",
            request_id=str(uuid.uuid4()),
            status=JobStatus.PENDING,
            created_at=now,
            updated_at=now,
        )
        await Ledger(scenario_db, event_source="/tests").accept(job)
        (done,) = await until_finished(scenario_db, [job.id], timeout=60, logs=scenario.logs())
        assert done.status is JobStatus.COMPLETED

        def completed(records: list[ConsumerRecord[bytes, bytes]]) -> bool:
            return any(
                json.loads(record.value)["data"]["status"] == "completed"
                for record in records
                if record.key == job.id.encode()
            )

        await read_topic(kafka, kafka.status_topic, until=completed, timeout=30)
        published = time.monotonic() - started
        record(
            "10 intake join",
            "job completed and its event published after start",
            f"{published:.1f}s",
        )
        # The worker's intake is still joining (it logs worker.started once it has joined).
        assert '"worker.started"' not in worker.log_path.read_text()
        assert published < SESSION_SECONDS
    finally:
        member.kill()
        member.wait()
