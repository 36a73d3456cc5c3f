"""The MongoDB client, built from settings by whoever owns the process's lifecycle."""

from __future__ import annotations

from typing import Any

from pymongo import AsyncMongoClient
from pymongo.asynchronous.database import AsyncDatabase

from service.config import MongoSettings

Database = AsyncDatabase[dict[str, Any]]


def connect(settings: MongoSettings, *, app_name: str) -> AsyncMongoClient[dict[str, Any]]:
    # tz_aware: datetimes come back as UTC-aware values, never as naive ones.
    return AsyncMongoClient(
        settings.url.get_secret_value(),
        tz_aware=True,
        appname=app_name,
        connect=False,
        serverSelectionTimeoutMS=int(settings.timeout_seconds * 1000),
        # A request's offset is committed once its job is recorded, so the record must survive
        # a crash of the database: acknowledged only when journaled on a majority of members.
        w="majority",
        journal=True,
    )
