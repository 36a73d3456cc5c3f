"""Fixtures: the servers (once per run), settings that reach them, and clients."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
import pytest_asyncio
from pymongo import AsyncMongoClient
from xdist.scheduler import LoadScopeScheduling

from service.config import Settings, settings_from_env
from service.database import Database, connect
from service.provisioning import provision
from service.storage import ObjectStore
from tests.support.infra import Infra, drop_test_database, running_infra
from tests.support.suites import SuiteScheduling


def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> LoadScopeScheduling | None:
    """`--dist loadgroup` (as `make test` runs): each of the chaos and e2e suites in one process
    (tests/support/suites.py). Any other mode is xdist's own."""
    if config.getoption("dist") != "loadgroup":
        return None
    return SuiteScheduling(config, log)


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
