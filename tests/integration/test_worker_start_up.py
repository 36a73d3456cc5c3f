"""A worker told to stop while it is still starting stops at once, against the real servers."""

from __future__ import annotations

import asyncio
import time

import pytest

from service.config import settings_from_env
from service.provisioning import provision
from service.worker import run_worker
from tests.support.infra import Infra, isolated

pytestmark = pytest.mark.integration


async def test_a_stop_during_start_up_is_obeyed_without_waiting_for_the_broker(
    infra: Infra,
) -> None:
    # A "broker" that accepts connections and never answers: joining it would take the client's
    # request timeout (tens of seconds), as joining a group that waits out a crashed member does.
    connected = asyncio.Event()
    held: list[asyncio.StreamWriter] = []

    async def silent(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)
        connected.set()

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    env = isolated(infra.env)
    await provision(settings_from_env(env))  # topics and bucket, on the real broker
    settings = settings_from_env({**env, "FERRY_KAFKA__BOOTSTRAP_SERVERS": f"127.0.0.1:{port}"})
    stop = asyncio.Event()
    ready = asyncio.Event()
    worker = asyncio.create_task(run_worker(settings, stop, ready=ready))
    try:
        await asyncio.wait_for(connected.wait(), 60)  # start-up reached the broker
        asked = time.monotonic()
        stop.set()
        await asyncio.wait_for(worker, 20)
        took = time.monotonic() - asked
    finally:
        worker.cancel()
        for writer in held:
            writer.close()
        server.close()
    assert not ready.is_set()
    # The shutdown steps that touch the broker are bounded (5 s each); the join is not awaited.
    assert took < 15, f"the worker took {took:.1f}s to stop"
