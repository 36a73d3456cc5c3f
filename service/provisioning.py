"""Creates what Ferry needs to exist before it runs: its topics, its bucket and its indexes.
Idempotent.

Every process also creates the indexes it relies on as it starts, so nothing depends on this
having run. Made here, before the first rows, they cost nothing; built at a start on a
collection that already holds rows, an index is a scan of it under the database's lock, while
the other processes wait.
"""

from __future__ import annotations

import contextlib
from datetime import timedelta
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError
from pymongo.asynchronous.database import AsyncDatabase

from service.api.keys import ApiKeys
from service.api.read_model import ReadModel
from service.config import Settings
from service.database import connect
from service.datasets import ensure_dataset_indexes
from service.exports.chunk_ledger import ChunkLedger
from service.jobs.ledger import Ledger
from service.jobs.workers import WorkerPresence
from service.storage import ObjectStore
from service.webhooks.deliveries import DeliveryStore
from service.webhooks.endpoints import EndpointStore


async def provision(settings: Settings) -> None:
    await create_topics(settings)
    await ObjectStore(settings.s3).ensure_bucket()
    await create_indexes(settings)


async def create_topics(settings: Settings) -> None:
    kafka = settings.kafka
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka.bootstrap_servers)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        wanted = [
            NewTopic(
                name,
                num_partitions=kafka.topic_partitions,
                replication_factor=kafka.topic_replication_factor,
            )
            for name in (
                kafka.requests_topic,
                kafka.status_topic,
                kafka.dead_letter_topic,
                kafka.status_dead_letter_topic,
            )
            if name not in existing
        ]
        if wanted:
            # Another process may create them meanwhile.
            with contextlib.suppress(TopicAlreadyExistsError):
                await admin.create_topics(wanted)
    finally:
        await admin.close()


async def create_indexes(settings: Settings) -> None:
    """The indexes the worker, the API and the webhook dispatcher create as they start."""
    client = connect(settings.mongo, app_name="ferry-provision")
    try:
        await ensure_every_index(client[settings.mongo.database])
    finally:
        await client.close()


async def ensure_every_index(database: AsyncDatabase[dict[str, Any]]) -> None:
    # None of them depends on a setting: a TTL index expires at a time stored in each document.
    await Ledger(database, event_source="/ferry/provision").ensure_indexes()
    await WorkerPresence(database).ensure_indexes()
    await ChunkLedger(database).ensure_indexes()
    await ensure_dataset_indexes(database)
    await ReadModel(database).ensure_indexes()
    await ApiKeys(database).ensure_indexes()
    await EndpointStore(database).ensure_indexes()
    # A delivery record's retention is stamped on it; the store's setting is not in its index.
    await DeliveryStore(database, retention=timedelta(days=1)).ensure_indexes()
