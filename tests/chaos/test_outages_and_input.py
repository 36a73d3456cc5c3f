"""Scenarios 4-7: the object store frozen for 10 s; every request delivered three times and
re-consumed after the committed offsets are lost; 100 poison messages among 100 good ones;
cancellation and expiry under load."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections import Counter
from collections.abc import Callable

import pytest

from service.clock import utcnow
from service.config import settings_from_env
from service.database import Database
from service.devstack import DevStack
from service.events.submit import cancel_request, export_request
from service.jobs.model import JOBS_COLLECTION
from service.jobs.status import JobStatus
from tests.chaos.conftest import Scenario, record
from tests.chaos.helpers import (
    FILTERS,
    jobs_of,
    object_keys,
    request_exports,
    seed,
    until_finished,
)
from tests.support.kafka import publish, read_topic

pytestmark = pytest.mark.chaos

OUTAGE_SECONDS = 10


@pytest.mark.parametrize(
    "scenario",
    [
        {
            "FERRY_WORKER__MAX_RUNNING_PER_PROJECT": "10",
            "FERRY_S3__TIMEOUT_SECONDS": "2",
            "FERRY_WORKER__RETRY_BACKOFF_SECONDS": "1",
            "FERRY_WORKER__MAX_ATTEMPTS": "8",
        }
    ],
    indirect=True,
)
async def test_jobs_survive_a_frozen_object_store(
    scenario: Scenario, scenario_db: Database, chaos_stack: DevStack
) -> None:
    project = f"s3-{uuid.uuid4().hex[:6]}"
    expected = await seed(scenario_db, project, 300, padding=2_000)
    for _ in range(2):
        scenario.start_worker()
    job_ids = await request_exports(scenario.settings, project, 10)
    while not await scenario_db[JOBS_COLLECTION].count_documents(
        {"project_id": project, "status": "processing"}
    ):
        await asyncio.sleep(0.05)
    chaos_stack.pause("s3")
    await asyncio.sleep(OUTAGE_SECONDS)
    chaos_stack.resume("s3")
    jobs = await until_finished(scenario_db, job_ids, timeout=180, logs=scenario.logs())

    completed = [job for job in jobs if job.status is JobStatus.COMPLETED]
    retried = [job for job in jobs if job.last_error is not None]
    record("4 object store outage", "frozen for", f"{OUTAGE_SECONDS}s (SIGSTOP)")
    record("4 object store outage", "jobs completed", f"{len(completed)}/10")
    record(
        "4 object store outage",
        "jobs retried after a transient error",
        f"{len(retried)} ({Counter(j.last_error.code for j in retried if j.last_error)})",
    )
    assert len(completed) == 10, [(j.id, j.status, j.error_code) for j in jobs]
    assert retried, "the outage should have interrupted some jobs"
    assert all(job.result and job.result.row_count == len(expected) for job in completed)
    assert object_keys(scenario.settings, f"exports/{project}/") == sorted(
        f"exports/{project}/{job.id}{suffix}"
        for job in jobs
        for suffix in (".csv", ".manifest.json")
    )


async def after_sentinel(scenario: Scenario, database: Database, project: str) -> None:
    """Publish one more request on the project's partition and wait for its job: everything
    published before it on that partition has then been consumed (a partition is in order)."""
    sentinel = export_request(project_id=f"{project}-sentinel", filters=FILTERS)
    await publish(scenario.settings.kafka, [sentinel], key=project.encode())
    deadline = time.monotonic() + 120
    while not await database[JOBS_COLLECTION].count_documents({"request_id": sentinel["id"]}):
        assert time.monotonic() < deadline, scenario.logs()
        await asyncio.sleep(0.25)


@pytest.mark.parametrize(
    "scenario", [{"FERRY_WORKER__MAX_RUNNING_PER_PROJECT": "20"}], indirect=True
)
async def test_repeated_and_reconsumed_requests_make_one_job_each(
    scenario: Scenario, scenario_db: Database
) -> None:
    project = f"dup-{uuid.uuid4().hex[:6]}"
    requests = [export_request(project_id=project, filters=FILTERS) for _ in range(50)]
    tripled = [request for request in requests for _ in range(3)]
    for _ in range(2):
        scenario.start_worker()
    await publish(scenario.settings.kafka, list(tripled), key=project.encode())
    await after_sentinel(scenario, scenario_db, project)
    first_pass = await scenario_db[JOBS_COLLECTION].count_documents({"project_id": project})

    # Crash the workers, then start them with their committed offsets gone. (The embedded
    # broker refuses offset commits from outside the group, so the offsets cannot be rewound;
    # a fresh group starts from the earliest offset, which is what lost commits amount to.)
    for worker in list(scenario.workers):
        scenario.kill(worker)
    scenario.env["FERRY_KAFKA__INTAKE_GROUP"] += "-after-crash"
    scenario.settings = settings_from_env(scenario.env)
    for _ in range(2):
        scenario.start_worker()
    await after_sentinel(scenario, scenario_db, project)
    jobs = await scenario_db[JOBS_COLLECTION].find({"project_id": project}).to_list()
    dead = await read_topic(
        scenario.settings.kafka, scenario.settings.kafka.dead_letter_topic, until=lambda _: False,
        timeout=2,
    )  # fmt: skip
    record("5 redelivery", "deliveries (3 per request + a full re-read)", len(tripled) * 2)
    record("5 redelivery", "jobs after first pass / after re-read", f"{first_pass} / {len(jobs)}")
    record("5 redelivery", "dead letters", len(dead))
    assert first_pass == 50
    assert sorted(job["request_id"] for job in jobs) == sorted(r["id"] for r in requests)
    assert dead == []


@pytest.mark.parametrize("scenario", [{"FERRY_KAFKA__MAX_EVENT_BYTES": "65536"}], indirect=True)
async def test_poison_among_good_requests_is_dead_lettered_and_stalls_nothing(
    scenario: Scenario, scenario_db: Database
) -> None:
    project = f"poison-{uuid.uuid4().hex[:6]}"
    good = [export_request(project_id=project, filters=FILTERS) for _ in range(100)]
    valid = json.dumps(good[0])
    kinds: dict[str, Callable[[int], bytes]] = {
        "INVALID_JSON": lambda n: valid[: 20 + n].encode(),
        "INVALID_CLOUDEVENT": lambda n: json.dumps({**good[0], "id": n}).encode(),  # wrong type
        "EVENT_TOO_LARGE": lambda n: json.dumps({**good[0], "pad": "x" * (100_000 + n)}).encode(),
        "UNKNOWN_EVENT_TYPE": lambda n: json.dumps({**good[0], "type": f"x.v{n}"}).encode(),
        "MISSING_PROJECT_ID": lambda n: json.dumps({**good[0], "data": {"n": n}}).encode(),
    }
    poison = [(code, make(n)) for n in range(20) for code, make in kinds.items()]
    mixed: list[bytes | dict[str, object]] = []
    for index, request in enumerate(good):
        mixed += [poison[index][1], request]
    scenario.start_worker()
    started = time.monotonic()
    await publish(scenario.settings.kafka, mixed, key=project.encode())
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if await scenario_db[JOBS_COLLECTION].count_documents({"project_id": project}) == 100:
            break
        await asyncio.sleep(0.5)
    jobs = await until_finished(
        scenario_db,
        [
            str(job["_id"])
            for job in await scenario_db[JOBS_COLLECTION].find({"project_id": project}).to_list()
        ],
        timeout=120,
        logs=scenario.logs(),
    )
    dead = await read_topic(
        scenario.settings.kafka,
        scenario.settings.kafka.dead_letter_topic,
        until=lambda records: len(records) >= len(poison),
    )
    took = time.monotonic() - started
    codes = Counter(dict(record_.headers)["ferry-dlq-code"].decode() for record_ in dead)
    record("6 poison", "poison dead-lettered", f"{len(dead)}/{len(poison)} {dict(codes)}")
    record(
        "6 poison",
        "good requests completed",
        f"{sum(j.status is JobStatus.COMPLETED for j in jobs)}/100",
    )
    record("6 poison", "time for all 200", f"{took:.1f}s")
    assert codes == Counter(dict.fromkeys(kinds, 20))
    assert sorted(r.value for r in dead) == sorted(value for _, value in poison)
    assert all(dict(r.headers)["ferry-dlq-reason"] for r in dead)
    assert sorted(job.request_id for job in jobs) == sorted(r["id"] for r in good)
    assert all(job.status is JobStatus.COMPLETED for job in jobs)


# A running export outlasts the cancels' trip through a loaded intake: 3,000 rows read at 300 a
# second take 10 s on any machine. (The scenario loaded 40,000 rows instead, until the exporter
# got fast enough to race them; loading them cost ~13 s, and three times the database then
# stalled for minutes at the workers' start.)
_BUSY_ROWS, _ROWS_PER_SECOND = 3000, 300


@pytest.mark.parametrize(
    "scenario",
    [
        {
            "FERRY_WORKER__MAX_RUNNING_PER_PROJECT": "2",
            "FERRY_FILES__EXPIRY_SWEEP_SECONDS": "1",
            "FERRY_EXPORT__MAX_ROWS_PER_SECOND": str(_ROWS_PER_SECOND),
        }
    ],
    indirect=True,
)
async def test_cancellation_and_expiry_under_load(
    scenario: Scenario, scenario_db: Database
) -> None:
    busy = f"cancel-{uuid.uuid4().hex[:6]}"
    await seed(scenario_db, busy, _BUSY_ROWS)
    for _ in range(2):
        scenario.start_worker()
    to_cancel = await request_exports(scenario.settings, busy, 12)
    while (
        await scenario_db[JOBS_COLLECTION].count_documents(
            {"project_id": busy, "status": "processing"}
        )
        < 2
    ):
        await asyncio.sleep(0.05)
    asked = time.monotonic()
    await publish(
        scenario.settings.kafka, [cancel_request(busy, job) for job in to_cancel], key=busy.encode()
    )
    cancelled = await until_finished(scenario_db, to_cancel, timeout=60, logs=scenario.logs())
    took = time.monotonic() - asked
    ran = [job for job in cancelled if job.started_at is not None]
    record(
        "7 cancel",
        "jobs cancelled (of which running)",
        f"{sum(j.status is JobStatus.CANCELLED for j in cancelled)}/12 ({len(ran)})",
    )
    record("7 cancel", "from publishing 12 cancels to all cancelled", f"{took:.2f}s")
    stops = sorted(
        (job.completed_at - job.cancel_requested_at).total_seconds()
        for job in ran
        if job.completed_at and job.cancel_requested_at
    )
    record(
        "7 cancel",
        "running jobs stopped after their request (max)",
        f"{max(stops, default=0.0):.2f}s",
    )

    small = f"expire-{uuid.uuid4().hex[:6]}"
    to_expire = await request_exports(scenario.settings, small, 5)
    done = await until_finished(scenario_db, to_expire, timeout=60, logs=scenario.logs())
    keys = [key for job in done if job.result for key in job.result.object_keys()]
    await scenario_db[JOBS_COLLECTION].update_many(
        {"_id": {"$in": to_expire}}, {"$set": {"expires_at": utcnow()}}
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if all(job.status is JobStatus.EXPIRED for job in await jobs_of(scenario_db, to_expire)):
            break
        await asyncio.sleep(0.2)
    expired = await jobs_of(scenario_db, to_expire)
    left = object_keys(scenario.settings, f"exports/{small}/")
    record(
        "7 expiry",
        "completed jobs expired / files left",
        f"{sum(j.status is JobStatus.EXPIRED for j in expired)}/5 / {len(left)}",
    )

    # A running job may finish before its cancel is handled (the cancels queue behind each
    # other in the intake), or in the second its worker takes to stop it (the contract: it
    # stops within about a second); it then reads `completed`, truthfully. Anything else must
    # be cancelled, and a running one must have been stopped, not only waiting ones.
    finished_while_stopping = [job for job in ran if job.status is JobStatus.COMPLETED]
    stopped = [job for job in cancelled if job.status is JobStatus.CANCELLED]
    assert len(stopped) + len(finished_while_stopping) == len(cancelled)
    assert len(finished_while_stopping) <= 2  # at most the two running at once
    stopped_running = [job for job in stopped if job.started_at is not None]
    assert stopped_running
    assert all(job.completed_at and job.cancel_requested_at for job in stopped_running)
    # 2 s on an idle machine (tests/integration/test_runner.py); here the database is shared
    # with two exports and the rest of the suite, so its latency is allowed for: up to 4 s
    # measured here and 6.2 s on a slower CI machine. The bound catches a stop that never comes
    # (a worker that only notices at the end of the export), not a slow one.
    assert max(stops) < 15
    assert all(job.error_code == "CANCELLED" for job in stopped)
    assert keys
    assert all(job.status is JobStatus.EXPIRED for job in expired)
    assert left == []
    # A cancelled job leaves no file (not even one closed just before its cancel landed); a job
    # that finished first keeps its own.
    kept = {
        key for job in finished_while_stopping if job.result for key in job.result.object_keys()
    }
    assert set(object_keys(scenario.settings, f"exports/{busy}/")) == kept
