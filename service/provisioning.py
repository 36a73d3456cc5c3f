"""Creates what Ferry needs to exist before it runs: its topics and its bucket. Idempotent."""

from __future__ import annotations

import contextlib

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from service.config import Settings
from service.storage import ObjectStore


async def provision(settings: Settings) -> None:
    await create_topics(settings)
    await ObjectStore(settings.s3).ensure_bucket()


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
