"""Key ranges read as flat queries against the real database: the same rows, in the same order,
as the range written as one `$and` of the export's filter and its bounds (which the database
serves, only slowly: service/exports/key_ranges.py)."""

from __future__ import annotations

import random
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from service.database import Database
from service.datasets.messages import DATASET
from service.exports.key_ranges import key_range_queries

pytestmark = pytest.mark.integration

START = datetime(2025, 12, 1, tzinfo=UTC)


def after(lower: dict[str, Any]) -> dict[str, Any]:
    """Rows after `lower` in (created_at, _id) order, written as one `$or`."""
    return {
        "$or": [
            {"created_at": {"$gt": lower["created_at"]}},
            {"created_at": lower["created_at"], "_id": {"$gt": lower["_id"]}},
        ]
    }


def through(upper: dict[str, Any]) -> dict[str, Any]:
    """Rows at or before `upper` in (created_at, _id) order, written as one `$or`."""
    return {
        "$or": [
            {"created_at": {"$lt": upper["created_at"]}},
            {"created_at": upper["created_at"], "_id": {"$lte": upper["_id"]}},
        ]
    }


async def test_flat_range_queries_read_what_the_and_form_reads(database: Database) -> None:
    collection = database[f"key_ranges_{uuid.uuid4().hex[:8]}"]
    rng = random.Random(12)
    # Few distinct timestamps, so that most bounds fall inside a run of ties.
    await collection.insert_many(
        {
            "_id": f"m{n:04d}",
            "project_id": "p",
            "direction": rng.choice(["outbound", "outbound", "inbound"]),
            "created_at": START + timedelta(seconds=rng.randrange(25)),
        }
        for n in range(300)
    )
    await collection.create_index([("project_id", 1), ("direction", 1), *DATASET.sort])
    base = {
        "project_id": "p",
        "direction": "outbound",
        "created_at": {"$gte": START + timedelta(seconds=2), "$lt": START + timedelta(seconds=22)},
    }
    sort = list(DATASET.sort)
    rows = await collection.find(base).sort(sort).to_list()
    keys = [{"created_at": row["created_at"], "_id": row["_id"]} for row in rows]

    async def ids(query: dict[str, Any]) -> list[str]:
        return [row["_id"] for row in await collection.find(query).sort(sort).to_list()]

    for _ in range(25):
        low, high = sorted(rng.sample(range(len(keys)), 2))
        lower = keys[low] if rng.random() < 0.8 else None
        upper = keys[high] if rng.random() < 0.8 else None
        reference = [
            base,
            *([after(lower)] if lower else []),
            *([through(upper)] if upper else []),
        ]
        expected = await ids({"$and": reference})
        read = [row for query in key_range_queries(base, DATASET.sort, lower=lower, upper=upper)
                for row in await ids(query)]  # fmt: skip
        assert read == expected, (lower, upper)
        assert len(expected) == (high + 1 if upper else len(keys)) - (low + 1 if lower else 0)
    await collection.drop()
