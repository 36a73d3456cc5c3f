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
    """Under pytest-xdist (`make test` runs two processes), the fault-injection scenarios stay
    together in one process, one after the other, as do the whole-stack tests: each suite shares
    its servers and running Ferry processes, and its timing bounds assume no twin of itself on
    the same cores. Everything else is spread over both."""
    for item in items:
        suite = item.path.parent.name
        if suite in {"chaos", "e2e"}:
            item.add_marker(pytest.mark.xdist_group(suite))


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
