"""The worker process: request intake, the job runner, the outbox relay and the expiry sweep.

Start-up and shutdown order matter: intake stops first (no new jobs), then running jobs finish
or are handed back, then the relay publishes the last status events, then connections close.
"""

from __future__ import annotations

import asyncio
import gc
import os
import socket
import uuid
from collections.abc import Awaitable, Coroutine
from datetime import timedelta
from typing import Any

import structlog

from service.config import Settings
from service.contracts.envelope import CANCEL_REQUESTED, EXPORT_REQUESTED, IMPORT_REQUESTED
from service.database import connect
from service.events.dead_letters import DeadLetters
from service.events.intake import RequestIntake
from service.events.kafka import (
    KafkaStatusPublisher,
    dead_letter_publisher,
    make_broker,
    subscribe_intake,
)
from service.events.outbox import outbox_is_fresh
from service.events.relay import OutboxRelay
from service.events.relay_shards import ShardLeases
from service.exports.chunk_workers import chunking
from service.exports.expiry import ExpirySweeper
from service.exports.exporter import Exporter
from service.exports.request import export_job_from_request
from service.imports.importer import Importer
from service.imports.request import ImportRequests
from service.imports.sources import Sources
from service.jobs.cancellation import cancel_from_request
from service.jobs.instrumented import InstrumentedExecutor
from service.jobs.ledger import Ledger
from service.jobs.runner import Runner
from service.jobs.workers import WorkerPresence
from service.leadership import Leadership
from service.observability.health import Check, dependency_checks, serving_health
from service.observability.metrics import JOBS_RUNNING, set_build_info
from service.observability.sampler import MetricsSampler
from service.outbound.addresses import AddressPolicy
from service.outbound.guard import DestinationGuard
from service.start_steps import prepare_storage, start_step
from service.storage import ObjectStore

log = structlog.get_logger(__name__)

EVENT_SOURCE = "/ferry"
_LEADERSHIP_TTL = timedelta(seconds=15)
_SHUTDOWN_STEP_SECONDS = 5.0


async def _bounded(part: str, step: Awaitable[object]) -> None:
    """A shutdown step that may not hold the process: logged and abandoned if it hangs or fails."""
    try:
        await asyncio.wait_for(step, _SHUTDOWN_STEP_SECONDS)
    except TimeoutError:
        log.warning("worker.shutdown_step_timed_out", part=part, seconds=_SHUTDOWN_STEP_SECONDS)
    except Exception:
        log.exception("worker.shutdown_step_failed", part=part)


# Young-generation collections every 50,000 net allocations instead of 700. The export and import
# paths allocate many short-lived containers per batch (decoded rows, cells, plans) and almost
# none of them form cycles, so the default threshold ran the collector hundreds of times a job
# for nothing (it took 15-25% of an import's CPU). Reference counting still frees everything
# acyclic at once; cycles are still collected, only in rarer passes, and a batch's garbage is
# bounded by the batch size, so memory stays flat.
_GC_THRESHOLDS = (50_000, 20, 100)


def tune_garbage_collector() -> None:
    """Call once at start-up, after the imports: the modules, settings and long-lived objects
    allocated so far move to the permanent generation (gc.freeze), so that no collection scans
    them again, and young collections run less often (see _GC_THRESHOLDS)."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*_GC_THRESHOLDS)


def worker_identity() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


async def run_worker(
    settings: Settings, stop: asyncio.Event, *, ready: asyncio.Event | None = None
) -> None:
    owner = worker_identity()
    log.info("worker.starting", owner=owner, concurrency=settings.worker.concurrency)
    client = connect(settings.mongo, app_name="ferry-worker")
    database = client[settings.mongo.database]
    store = ObjectStore(settings.s3)
    broker = make_broker(
        settings.kafka,
        client_id=f"ferry-worker-{owner}",
        tracing=settings.observability.tracing,
    )

    relay = OutboxRelay(
        database,
        KafkaStatusPublisher(broker, settings.kafka),
        ShardLeases(
            database,
            owner=owner,
            ttl=timedelta(seconds=settings.outbox.shard_lease_seconds),
        ),
        batch_jobs=settings.outbox.batch_jobs,
        poll_seconds=settings.outbox.poll_seconds,
    )
    ledger = Ledger(
        database,
        event_source=EVENT_SOURCE,
        record_retention=settings.jobs.record_retention,
        on_event=relay.wake,
    )
    chunked, chunk_workers = chunking(database, store, ledger, settings, owner=owner)
    exporter = Exporter(
        database,
        store,
        batch_size=settings.worker.batch_size,
        part_size=settings.s3.part_size_bytes,
        escape_formulas=settings.files.escape_formulas,
        max_rows_per_second=settings.export.max_rows_per_second,
        max_files=settings.export.max_files,
        chunked=chunked,
    )
    importer = Importer(
        database,
        store,
        Sources(
            store,
            DestinationGuard(AddressPolicy.from_settings(settings.outbound)),
            max_bytes=settings.imports.max_file_bytes,
            timeout=settings.imports.fetch_timeout_seconds,
            deadline=settings.imports.fetch_deadline_seconds,
            part_size=settings.s3.part_size_bytes,
        ),
        settings.imports,
        part_size=settings.s3.part_size_bytes,
        escape_formulas=settings.files.escape_formulas,
    )
    presence = WorkerPresence(database)
    runner = Runner(
        ledger,
        {"export": InstrumentedExecutor(exporter), "import": InstrumentedExecutor(importer)},
        settings.worker,
        owner=owner,
        retention=settings.files.retention,
        time_limits={
            "export": settings.export.max_running_seconds,
            "import": settings.imports.max_running_seconds,
        },
        presence=presence,
    )
    intake = RequestIntake(
        ledger,
        DeadLetters(
            dead_letter_publisher(broker, settings.kafka),
            max_record_bytes=settings.kafka.dead_letter_max_bytes,
        ),
        handlers={
            EXPORT_REQUESTED: export_job_from_request,
            IMPORT_REQUESTED: ImportRequests(
                own_bucket=settings.s3.bucket,
                source_buckets=settings.imports.extra_source_buckets,
            ),
            CANCEL_REQUESTED: cancel_from_request,
        },
        max_event_bytes=settings.kafka.max_event_bytes,
        max_attempts=settings.kafka.intake_max_attempts,
        on_accepted=runner.wake,
    )
    subscriber = subscribe_intake(broker, settings.kafka, intake)
    sweeper = ExpirySweeper(
        ledger,
        store,
        Leadership(database, name="export-expiry", owner=owner, ttl=_LEADERSHIP_TTL),
        interval_seconds=settings.files.expiry_sweep_seconds,
    )
    sampler = MetricsSampler(
        database,
        interval=settings.observability.sample_seconds,
        group=settings.kafka.intake_group,
        consumer=lambda: subscriber.consumer,
    )
    JOBS_RUNNING.set_function(lambda: runner.running)
    set_build_info()

    readiness = dependency_checks(database, broker, store)

    async def outbox_fresh() -> bool:
        return await outbox_is_fresh(database, max_lag_seconds=settings.outbox.max_lag_seconds)

    readiness["outbox"] = outbox_fresh
    # The loops, once started. A loop that ended while the worker is not stopping has crashed:
    # the worker is then no longer alive and its pod is restarted.
    loops: dict[str, asyncio.Task[None]] = {}

    def alive(name: str) -> Check:
        async def check() -> bool:
            task = loops.get(name)
            return task is None or not task.done() or stop.is_set()

        return check

    liveness = {
        name: alive(name) for name in ("runner", "chunks", "outbox-relay", "expiry", "metrics")
    }

    relay_stop = asyncio.Event()

    async def start_up() -> None:
        await prepare_storage(ledger, presence, database, store, owner=owner)
        # Jobs need no broker, and their status events only the producer: both run while the
        # intake joins its consumer group, which takes seconds (longer while a crashed member
        # times out; once, on the embedded broker, minutes). A replacement worker then picks up
        # a dead one's jobs at once and their status events leave as they happen.
        loops["runner"] = asyncio.create_task(runner.run(stop), name="runner")
        loops["chunks"] = asyncio.create_task(chunk_workers.run(stop), name="chunks")
        loops["expiry"] = asyncio.create_task(sweeper.run(stop), name="expiry")
        with start_step("broker", owner):
            await broker.connect()
        loops["outbox-relay"] = asyncio.create_task(relay.run(relay_stop), name="outbox-relay")
        with start_step("intake_join", owner):  # the intake's subscriber joins its group
            await broker.start()
        loops["metrics"] = asyncio.create_task(sampler.run(stop), name="metrics")

    async with serving_health(settings.observability, readiness=readiness, liveness=liveness):
        try:
            await _start_then_serve(start_up(), stop, ready, owner)
        finally:
            log.info("worker.stopping", owner=owner)
            await _shut_down(loops, subscriber.stop(), relay_stop, broker.stop())
            await client.close()
            log.info("worker.stopped", owner=owner)


async def _start_then_serve(
    start_up: Coroutine[Any, Any, None],
    stop: asyncio.Event,
    ready: asyncio.Event | None,
    owner: str,
) -> None:
    """Start up, then serve until `stop`. A stop during start-up is obeyed at once: joining the
    consumer group can wait out a crashed member's session, and a pod told to stop must not sit
    through that first."""
    starting = asyncio.create_task(start_up, name="start-up")
    stopped = asyncio.create_task(stop.wait(), name="stop-signal")
    try:
        await asyncio.wait({starting, stopped}, return_when=asyncio.FIRST_COMPLETED)
        if not starting.done():
            log.info("worker.stopped_while_starting", owner=owner)
            starting.cancel()
            await asyncio.gather(starting, return_exceptions=True)
            return
        starting.result()  # a start-up that failed fails the process
        log.info("worker.started", owner=owner)
        if ready is not None:
            ready.set()
        await stopped
    finally:
        stopped.cancel()


async def _shut_down(
    loops: dict[str, asyncio.Task[None]],
    stop_intake: Awaitable[None],
    relay_stop: asyncio.Event,
    stop_broker: Awaitable[None],
) -> None:
    """Stop what was started (all of it, or what start-up got to before a stop or a failure)."""
    # Sampling has nothing to finish, and must not hold the consumer being stopped.
    if "metrics" in loops:
        loops["metrics"].cancel()
        await asyncio.gather(loops["metrics"], return_exceptions=True)
    # The runner is already draining (it watches `stop`). Stopping the consumer can wait on a
    # group rebalance, so it is bounded and runs beside the drain: running jobs must be
    # finished or handed back whatever the broker is doing.
    draining = [loops[name] for name in ("runner", "chunks", "expiry") if name in loops]
    await asyncio.gather(_bounded("intake", stop_intake), *draining, return_exceptions=True)
    # The relay publishes the last status events (e.g. of handed-back jobs) as it stops, then
    # gives its shards back; what it cannot publish in time waits in the outbox for the others.
    relay_stop.set()
    if "outbox-relay" in loops:
        await _bounded("outbox", loops["outbox-relay"])
    await _bounded("broker", stop_broker)
