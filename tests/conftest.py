"""Fixtures: the servers (once per run), settings that reach them, and clients."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
import pytest_asyncio
from pymongo import AsyncMongoClient

from service.config import Settings, settings_from_env
from service.database import Database, connect
from service.provisioning import provision
from service.storage import ObjectStore
from tests.support.infra import Infra, drop_test_database, running_infra


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Under pytest-xdist (`make test` runs three processes on two cores: much of the suite
    waits on servers), the whole-stack tests stay together in one process, sharing their running
    Ferry; the fault-injection scenarios in two, those that restart a server (each on a stack of
    its own) apart from those that share the chaos stack, one scenario at a time in each, as
    their timing bounds assume. Everything else is spread over all three."""
    for item in items:
        suite = item.path.parent.name
        if suite == "e2e":
            item.add_marker(pytest.mark.xdist_group("e2e"))
        elif suite == "chaos":
            restarts = item.path.name == "test_server_restarts.py"
            item.add_marker(pytest.mark.xdist_group("chaos-restarts" if restarts else "chaos"))


@pytest.fixture(scope="session")
def infra(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Infra]:
    with running_infra(tmp_path_factory.mktemp("infra")) as running:
        yield running


@pytest.fixture(scope="session")
def settings(infra: Infra) -> Settings:
    settings = settings_from_env(infra.env)
    asyncio.run(provision(settings))  # before the session's event loop exists
    return settings


@pytest_asyncio.fixture(scope="session")
async def mongo(settings: Settings) -> AsyncIterator[AsyncMongoClient[dict[str, Any]]]:
    client = connect(settings.mongo, app_name="ferry-tests")
    yield client
    await client.close()
    await drop_test_database(settings.mongo)


@pytest.fixture(scope="session")
def database(mongo: AsyncMongoClient[dict[str, Any]], settings: Settings) -> Database:
    return mongo[settings.mongo.database]


@pytest.fixture(scope="session")
def store(settings: Settings) -> ObjectStore:
    return ObjectStore(settings.s3)
