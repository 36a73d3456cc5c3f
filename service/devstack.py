"""The embedded stack: Kafka-, MongoDB- and S3-compatible servers from PyPI, as child processes.

Used by `ferry dev` and by the tests. The servers come from the `embedded` extra and are only ever
started as programs, never imported by the service (the MongoDB-compatible one is GPL-licensed).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Self

import structlog
from minio import Minio

from service.config import DEV_S3_ACCESS_KEY, DEV_S3_SECRET_KEY
from service.embedded_servers import kafka_argv, mongo_argv, s3_argv
from service.errors import ErrorCode, FerryError

log = structlog.get_logger(__name__)

_PR_SET_PDEATHSIG = 1
_KAFKA_BUCKET = "tansu"
_STOP_TIMEOUT_SECONDS = 8.0
IN_MEMORY_CACHE = "4G"


class DevStackError(FerryError, RuntimeError):
    """A server of the embedded stack could not start."""

    code = ErrorCode.DEV_STACK_FAILED


@dataclass(frozen=True)
class Ports:
    kafka: int = 9092
    mongo: int = 27017
    s3: int = 9000

    @classmethod
    def free(cls) -> Ports:
        """Ports nobody listens on now, so tests run beside `ferry dev` and each other."""
        return cls(kafka=free_port(), mongo=free_port(), s3=free_port())


@dataclass
class _Server:
    name: str
    port: int
    argv: list[str]
    env: dict[str, str] = field(default_factory=dict)
    process: subprocess.Popen[bytes] | None = None
    log_file: IO[bytes] | None = None


class DevStack:
    """Starts and stops the three servers.

    `mongo_storage` is a directory (data survives a restart of the server) or None (memory);
    `durable_mongo` makes every commit survive a crash of the server (slower).
    `durable_kafka` keeps the broker's messages and offsets across its restarts, in an object
    store of its own (a second S3-compatible server), for fault-injection tests.
    `mongo_cache` sizes the database's cache (the server's default is 1G). In memory, the cache
    holds every document and the oplog's copy of each: near full, the server stalls for minutes,
    then fails writes (at 1G, after ~400 MB of documents). A database in memory (the tests', the
    benchmarks') therefore gets IN_MEMORY_CACHE unless told otherwise.
    """

    def __init__(
        self,
        home: Path,
        ports: Ports,
        *,
        mongo_storage: Path | None = None,
        durable_mongo: bool = False,
        durable_kafka: bool = False,
        mongo_cache: str | None = None,
    ) -> None:
        # The embedded database ignores the journal flag of a commit; it syncs commits only
        # when told to. A database whose data is meant to outlive a crash is told to.
        self.home = home
        self.ports = ports
        self._servers: list[_Server] = []
        self._kafka_storage: _Server | None = None
        kafka_env: dict[str, str] = {}
        storage = "memory://tansu/"
        if durable_kafka:
            self._kafka_storage = _Server("kafka-storage", free_port(), [])
            self._kafka_storage.argv = s3_argv(self._kafka_storage.port)
            self._servers.append(self._kafka_storage)
            storage = f"s3://{_KAFKA_BUCKET}/"
            kafka_env = {
                "AWS_ENDPOINT": f"http://127.0.0.1:{self._kafka_storage.port}",
                "AWS_ALLOW_HTTP": "true",
                "AWS_ACCESS_KEY_ID": DEV_S3_ACCESS_KEY,
                "AWS_SECRET_ACCESS_KEY": DEV_S3_SECRET_KEY,
                "AWS_DEFAULT_REGION": "us-east-1",
            }
        self._servers += [
            _Server("kafka", ports.kafka, kafka_argv(ports.kafka, storage), kafka_env),
            _Server(
                "mongodb",
                ports.mongo,
                mongo_argv(
                    ports.mongo,
                    mongo_storage,
                    sync_on_commit=durable_mongo,
                    cache=mongo_cache or (IN_MEMORY_CACHE if mongo_storage is None else None),
                ),
            ),
            _Server("s3", ports.s3, s3_argv(ports.s3)),
        ]

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()

    def start(self, timeout: float = 60.0) -> None:
        logs = self.home / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        for server in self._servers:
            if port_in_use(server.port):
                self.stop()
                raise DevStackError(
                    f"port {server.port} for {server.name} is already in use; "
                    "choose another with the matching --*-port flag"
                )
            server.log_file = (logs / f"{server.name}.log").open("ab")
            _spawn(server)
            if server is self._kafka_storage:
                # The broker needs its bucket before it starts.
                self._await_listening(server, time.monotonic() + timeout)
                _make_bucket(server.port, _KAFKA_BUCKET)
        deadline = time.monotonic() + timeout
        for server in self._servers:
            self._await_listening(server, deadline)
        log.info("devstack.started", **{s.name: s.port for s in self._servers})

    def stop(self, *, graceful: bool = True) -> None:
        """Stop every server: asked to (SIGTERM, up to a few seconds each to close its files),
        or, for a throwaway stack whose data no one keeps (the tests'), killed at once."""
        for server in self._servers:
            if server.process is not None and server.process.poll() is None:
                if graceful:
                    server.process.terminate()
                else:
                    server.process.kill()
        for server in self._servers:
            if server.process is not None:
                try:
                    server.process.wait(_STOP_TIMEOUT_SECONDS)
                except subprocess.TimeoutExpired:
                    server.process.kill()
                    server.process.wait()
                server.process = None
            if server.log_file is not None:
                server.log_file.close()
                server.log_file = None

    def kill(self, name: str) -> None:
        """Kill one server at once (for fault-injection tests)."""
        server = self._server(name)
        if server.process is not None:
            server.process.kill()
            server.process.wait()
            server.process = None

    def restart(self, name: str, timeout: float = 60.0) -> None:
        server = self._server(name)
        self.kill(name)
        _spawn(server)
        self._await_listening(server, time.monotonic() + timeout)

    def pause(self, name: str) -> None:
        """Freeze a server (SIGSTOP): connections hang as with an unreachable host."""
        process = self._server(name).process
        if process is not None:
            process.send_signal(signal.SIGSTOP)

    def resume(self, name: str) -> None:
        process = self._server(name).process
        if process is not None:
            process.send_signal(signal.SIGCONT)

    def env(self) -> dict[str, str]:
        """The `FERRY_*` settings that reach these servers."""
        return {
            "FERRY_ENVIRONMENT": "development",
            "FERRY_KAFKA__BOOTSTRAP_SERVERS": f"127.0.0.1:{self.ports.kafka}",
            # The embedded broker has no idempotent producer (see INFRA.md).
            "FERRY_KAFKA__IDEMPOTENT_PRODUCER": "false",
            "FERRY_MONGO__URL": f"mongodb://127.0.0.1:{self.ports.mongo}/?directConnection=true",
            "FERRY_S3__ENDPOINT": f"http://127.0.0.1:{self.ports.s3}",
            "FERRY_S3__ACCESS_KEY": DEV_S3_ACCESS_KEY,
            "FERRY_S3__SECRET_KEY": DEV_S3_SECRET_KEY,
        }

    def _server(self, name: str) -> _Server:
        return next(server for server in self._servers if server.name == name)

    def _await_listening(self, server: _Server, deadline: float) -> None:
        while time.monotonic() < deadline:
            if server.process is None or server.process.poll() is not None:
                self.stop()
                raise DevStackError(
                    f"{server.name} exited during start-up; "
                    f"see {self.home / 'logs' / server.name}.log"
                )
            if port_in_use(server.port):
                return
            time.sleep(0.1)
        self.stop()
        raise DevStackError(f"{server.name} did not listen on port {server.port} in time")


def _spawn(server: _Server) -> None:
    server.process = subprocess.Popen(  # noqa: S603 - fixed argv of known programs
        server.argv,
        stdout=server.log_file,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        env={**os.environ, **server.env},
        # Own session: Ctrl-C reaches `ferry dev`, which stops the servers in order.
        start_new_session=True,
        preexec_fn=_die_with_parent,  # noqa: PLW1509 - only sets a flag via prctl
    )


def _make_bucket(port: int, bucket: str) -> None:
    client = Minio(
        f"127.0.0.1:{port}",
        access_key=DEV_S3_ACCESS_KEY,
        secret_key=DEV_S3_SECRET_KEY,
        secure=False,
    )
    if not client.bucket_exists(bucket):
        client.make_bucket(bucket)


def _die_with_parent() -> None:
    """Runs in the child before exec: if the parent dies, even by SIGKILL, so does the child."""
    if sys.platform == "linux":
        with contextlib.suppress(OSError):
            ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def port_in_use(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.2)
        return sock.connect_ex(("127.0.0.1", port)) == 0
