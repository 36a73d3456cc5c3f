"""`FERRY_TEST_INFRA=containers`: real Apache Kafka (KRaft), MongoDB (a one-node replica set)
and MinIO in Docker containers, through testcontainers. The images are the ones
docker-compose.yml runs (a deploy test keeps them equal).

Needs a Docker engine; where none answers, this fails at once and says so rather than
skipping: a run that asked for real servers must not pass without them.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager

from service.devstack import free_port

KAFKA_IMAGE = "apache/kafka:3.9.1"
MONGO_IMAGE = "mongo:8.0"
MINIO_IMAGE = "minio/minio:RELEASE.2025-04-22T22-12-26Z"

_MINIO_USER = "ferry-test"
_MINIO_PASSWORD = "ferry-test-secret"  # noqa: S105 - a throwaway container's credential
_READY_TIMEOUT_SECONDS = 120.0


class DockerUnavailableError(RuntimeError):
    """FERRY_TEST_INFRA=containers was asked for where no Docker engine answers."""


def require_docker() -> None:
    import docker  # noqa: PLC0415 - only this mode needs it
    from docker.errors import DockerException  # noqa: PLC0415

    try:
        client = docker.from_env()
        client.ping()
    except DockerException as exc:
        raise DockerUnavailableError(
            "FERRY_TEST_INFRA=containers needs a Docker engine, and none answered "
            f"({exc}). Start Docker (or set DOCKER_HOST), or run the tests on the embedded "
            "stack: unset FERRY_TEST_INFRA."
        ) from exc
    client.close()


@contextmanager
def running_containers() -> Iterator[dict[str, str]]:
    """Start the three servers; yields the FERRY_* variables that reach them."""
    require_docker()
    from testcontainers.core.container import DockerContainer  # noqa: PLC0415
    from testcontainers.core.wait_strategies import (  # noqa: PLC0415
        HttpWaitStrategy,
        LogMessageWaitStrategy,
    )

    with ExitStack() as stack:
        # Kafka advertises the address clients use, so its host port is chosen up front.
        kafka_port = free_port()
        kafka = stack.enter_context(
            DockerContainer(KAFKA_IMAGE)
            .with_bind_ports(9092, kafka_port)
            .with_envs(
                KAFKA_NODE_ID="1",
                KAFKA_PROCESS_ROLES="broker,controller",
                KAFKA_CONTROLLER_QUORUM_VOTERS="1@localhost:9093",
                KAFKA_CONTROLLER_LISTENER_NAMES="CONTROLLER",
                KAFKA_LISTENERS="PLAINTEXT://:9092,CONTROLLER://:9093",
                KAFKA_ADVERTISED_LISTENERS=f"PLAINTEXT://localhost:{kafka_port}",
                KAFKA_LISTENER_SECURITY_PROTOCOL_MAP="PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
                KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR="1",
                KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR="1",
                KAFKA_TRANSACTION_STATE_LOG_MIN_ISR="1",
                KAFKA_GROUP_INITIAL_REBALANCE_DELAY_MS="0",
            )
            .waiting_for(
                LogMessageWaitStrategy("Kafka Server started").with_startup_timeout(
                    int(_READY_TIMEOUT_SECONDS)
                )
            )
        )
        mongo = stack.enter_context(
            DockerContainer(MONGO_IMAGE)
            .with_command("mongod --replSet rs0 --bind_ip_all")
            .with_exposed_ports(27017)
            .waiting_for(LogMessageWaitStrategy("Waiting for connections"))
        )
        _initiate_replica_set(mongo)
        minio = stack.enter_context(
            DockerContainer(MINIO_IMAGE)
            .with_command("server /data")
            .with_envs(MINIO_ROOT_USER=_MINIO_USER, MINIO_ROOT_PASSWORD=_MINIO_PASSWORD)
            .with_exposed_ports(9000)
            .waiting_for(HttpWaitStrategy(9000, "/minio/health/live").for_status_code(200))
        )
        host = mongo.get_container_host_ip()
        yield {
            "FERRY_KAFKA__BOOTSTRAP_SERVERS": f"{kafka.get_container_host_ip()}:{kafka_port}",
            "FERRY_KAFKA__IDEMPOTENT_PRODUCER": "true",
            # The member calls itself localhost:27017 inside its container: connect directly.
            "FERRY_MONGO__URL": (
                f"mongodb://{host}:{mongo.get_exposed_port(27017)}/?directConnection=true"
            ),
            "FERRY_S3__ENDPOINT": (
                f"http://{minio.get_container_host_ip()}:{minio.get_exposed_port(9000)}"
            ),
            "FERRY_S3__ACCESS_KEY": _MINIO_USER,
            "FERRY_S3__SECRET_KEY": _MINIO_PASSWORD,
        }


def _initiate_replica_set(mongo: object) -> None:
    from testcontainers.core.container import DockerContainer  # noqa: PLC0415

    assert isinstance(mongo, DockerContainer)
    script = (
        "try { rs.status() } catch (e) { rs.initiate({_id: 'rs0', "
        "members: [{_id: 0, host: 'localhost:27017'}]}) }; "
        "quit(db.hello().isWritablePrimary ? 0 : 1)"
    )
    deadline = time.monotonic() + _READY_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        if mongo.exec(["mongosh", "--quiet", "--eval", script]).exit_code == 0:
            return
        time.sleep(1)
    raise RuntimeError("MongoDB's replica set did not elect a primary in time")
