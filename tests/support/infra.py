"""The servers tests talk to.

`FERRY_TEST_INFRA=embedded` (the default) starts the embedded stack on free ports, so tests run
beside `make run`. `FERRY_TEST_INFRA=env` uses the servers named by the usual `FERRY_*` variables
(real Kafka, MongoDB and MinIO, for example). `FERRY_TEST_INFRA=containers` starts real Kafka,
MongoDB and MinIO in Docker (tests/support/containers.py) and fails if no engine answers. Every
run gets its own database, bucket, topics and consumer groups, so runs never see each other's
data.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from pymongo.errors import OperationFailure

from service.config import MongoSettings
from service.database import Database, connect
from service.devstack import DevStack, Ports

_CONNECTION_VARIABLES = (
    "FERRY_ENVIRONMENT",
    "FERRY_KAFKA__BOOTSTRAP_SERVERS",
    "FERRY_KAFKA__IDEMPOTENT_PRODUCER",
    "FERRY_MONGO__URL",
    "FERRY_S3__ENDPOINT",
    "FERRY_S3__ACCESS_KEY",
    "FERRY_S3__SECRET_KEY",
)

# Fast timings so tests about leases, progress and expiry take seconds, not minutes.
_TEST_TUNING = {
    "FERRY_ENVIRONMENT": "development",
    "FERRY_LOG_FORMAT": "json",
    "FERRY_WORKER__POLL_SECONDS": "0.2",
    "FERRY_WORKER__LEASE_SECONDS": "4",
    "FERRY_WORKER__HEARTBEAT_SECONDS": "1",
    "FERRY_WORKER__PROGRESS_INTERVAL_SECONDS": "0.2",
    "FERRY_WORKER__BATCH_SIZE": "500",
    "FERRY_WORKER__SHUTDOWN_GRACE_SECONDS": "2",
    "FERRY_FILES__EXPIRY_SWEEP_SECONDS": "1",
    "FERRY_OBSERVABILITY__SAMPLE_SECONDS": "2",
    "FERRY_S3__PART_SIZE_BYTES": str(5 * 1024 * 1024),
}


@dataclass(frozen=True)
class Infra:
    env: dict[str, str]
    stack: DevStack | None  # the embedded stack, when tests started it


@contextmanager
def running_infra(home: Path) -> Iterator[Infra]:
    mode = os.environ.get("FERRY_TEST_INFRA", "embedded")
    if mode == "embedded":
        with DevStack(home, Ports.free()) as stack:
            yield Infra(isolated(stack.env()), stack)
            stack.stop(graceful=False)  # throwaway data: no need to wait for a clean close
    elif mode == "env":
        missing = [name for name in _CONNECTION_VARIABLES[3:] if name not in os.environ]
        if missing:
            raise RuntimeError(f"FERRY_TEST_INFRA=env needs {', '.join(missing)}")
        found = {name: os.environ[name] for name in _CONNECTION_VARIABLES if name in os.environ}
        yield Infra(isolated(found), None)
    elif mode == "containers":
        from tests.support.containers import running_containers  # noqa: PLC0415 - Docker only

        with running_containers() as found:
            # Real servers: production's settings, with the test tuning on top.
            yield Infra(isolated(found), None)
    else:
        raise RuntimeError(f"FERRY_TEST_INFRA={mode!r}: expected 'embedded', 'env' or 'containers'")


def isolated(connection: dict[str, str], *, fast_timings: bool = True) -> dict[str, str]:
    """`connection` plus names of its own: database, bucket, topics, consumer groups; with
    `fast_timings`, short leases and intervals so tests take seconds (benchmarks keep defaults)."""
    run = uuid.uuid4().hex[:10]
    return {
        **{name: value for name, value in connection.items() if name in _CONNECTION_VARIABLES},
        **(_TEST_TUNING if fast_timings else {"FERRY_ENVIRONMENT": "development"}),
        "FERRY_MONGO__DATABASE": f"ferry_test_{run}",
        "FERRY_S3__BUCKET": f"ferry-test-{run}",
        "FERRY_KAFKA__REQUESTS_TOPIC": f"ferry.requests.{run}",
        "FERRY_KAFKA__STATUS_TOPIC": f"ferry.status.{run}",
        "FERRY_KAFKA__DEAD_LETTER_TOPIC": f"ferry.requests.dlq.{run}",
        "FERRY_KAFKA__INTAKE_GROUP": f"ferry-intake-{run}",
        "FERRY_KAFKA__READ_MODEL_GROUP": f"ferry-api-{run}",
        "FERRY_KAFKA__WEBHOOKS_GROUP": f"ferry-webhooks-{run}",
    }


async def drop_test_database(settings: MongoSettings) -> None:
    """Remove a run's database at the end, through a client of its own: a session's long-lived
    client can hold pooled connections the server has closed during a long run (seen on CI after
    the chaos suite), and a cleanup must not fail a run that passed."""
    client = connect(settings, app_name="ferry-tests-cleanup")
    try:
        await client.drop_database(settings.database)
    finally:
        await client.close()


_COMMAND_NOT_FOUND = 59


async def sweep_expired_now(database: Database) -> None:
    """Have the database remove what its TTL indexes say has expired, now. The embedded server
    takes a command for it (its own sweep runs every 60 s, like MongoDB's, and its configured
    period is not passed on by its launcher); MongoDB has none, and its next pass is awaited."""
    try:
        await database.client.admin.command({"secantusAdmin.pruneTtl": 1})
    except OperationFailure as error:
        if error.code != _COMMAND_NOT_FOUND:
            raise
