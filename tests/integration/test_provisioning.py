"""`ferry provision` makes every index before the first rows, against the real servers: a
process that starts later finds nothing left to build."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from service.api.keys import ApiKeys
from service.api.read_model import ReadModel
from service.config import settings_from_env
from service.database import Database, connect
from service.exports.chunk_ledger import ChunkLedger
from service.jobs.ledger import Ledger
from service.jobs.workers import WorkerPresence
from service.provisioning import provision
from service.start_steps import prepare_storage
from service.storage import ObjectStore
from service.webhooks.deliveries import DeliveryStore
from service.webhooks.endpoints import EndpointStore
from tests.support.infra import Infra, drop_test_database, isolated

pytestmark = pytest.mark.integration


async def _indexes(database: Database) -> dict[str, list[dict[str, Any]]]:
    found = {}
    for name in sorted(await database.list_collection_names()):
        specs = await (await database[name].list_indexes()).to_list()
        found[name] = sorted((dict(spec) for spec in specs), key=lambda spec: str(spec["name"]))
    return found


async def test_provision_makes_the_indexes_every_process_makes_as_it_starts(
    infra: Infra,
) -> None:
    settings = settings_from_env(isolated(infra.env))
    await provision(settings)
    client = connect(settings.mongo, app_name="ferry-tests-provision")
    try:
        database = client[settings.mongo.database]
        provisioned = await _indexes(database)
        # Those the exports read by, and the ledger's: more than each collection's _id.
        assert len(provisioned["messages"]) > 1
        assert len(provisioned["jobs"]) > 1

        # What the worker, the API and the webhook dispatcher make at their start.
        await prepare_storage(
            Ledger(database, event_source="/ferry"),
            WorkerPresence(database),
            database,
            ObjectStore(settings.s3),
            owner="test",
        )
        await ChunkLedger(database).ensure_indexes()
        await ReadModel(database).ensure_indexes()
        await ApiKeys(database).ensure_indexes()
        await EndpointStore(database).ensure_indexes()
        await DeliveryStore(database, retention=timedelta(days=30)).ensure_indexes()
        assert await _indexes(database) == provisioned

        await provision(settings)  # again, on a provisioned database: nothing changes
        assert await _indexes(database) == provisioned
    finally:
        await client.close()
        await drop_test_database(settings.mongo)
