"""The contacts collection as the importer reads and writes it.

Reads: the contacts a batch touches, one indexed `$in` query per identifier. Writes: one
unordered bulk write per batch (each contact at most once in it; see matching.py). New contacts
get contact ids reserved in one block per batch from the project's sequence.

Races with another import of the same project are settled by the unique indexes: a write that
hits a duplicate key (someone created that email a moment ago) is not an error, its rows are
matched again against what is stored now. Ids reserved for inserts that lost such a race are
skipped, never reused.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any

from pymongo import DESCENDING, InsertOne, UpdateOne
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import BulkWriteError

from service.counters import Counters, contact_ids
from service.datasets.contacts import DATASET
from service.imports.matching import IDENTIFIER_FIELDS, Plan
from service.imports.validation import ContactRow

_DUPLICATE_KEY = 11000
_READ = {
    "contact_id": 1,
    "attributes": 1,
    "list_ids": 1,
    "last_import": 1,
    **dict.fromkeys(IDENTIFIER_FIELDS, 1),
}


class ContactStore:
    def __init__(self, database: AsyncDatabase[dict[str, Any]]) -> None:
        self._contacts = database[DATASET.collection]
        self._counters = Counters(database)

    async def prepare(self, project_id: str) -> None:
        """Keep the project's sequence above every contact id already stored, including ids
        given by anything other than Ferry's imports."""
        highest = await self._contacts.find_one(
            {"project_id": project_id}, {"contact_id": 1}, sort=[("contact_id", DESCENDING)]
        )
        if highest is not None:
            await self._counters.at_least(contact_ids(project_id), int(highest["contact_id"]))

    async def touched(self, project_id: str, rows: Iterable[ContactRow]) -> list[dict[str, Any]]:
        """The stored contacts that have any identifier value of `rows`."""
        values: dict[str, set[str]] = {name: set() for name in IDENTIFIER_FIELDS}
        for row in rows:
            for name, value in row.identifiers.items():
                values[name].add(value)
        queries = [
            self._contacts.find(
                {"project_id": project_id, name: {"$in": sorted(wanted)}}, _READ
            ).to_list()
            for name, wanted in values.items()
            if wanted
        ]
        found: dict[Any, dict[str, Any]] = {}
        for documents in await asyncio.gather(*queries):
            for document in documents:
                found[document["_id"]] = document
        return list(found.values())

    async def write(self, project_id: str, plan: Plan) -> set[int]:
        """Apply the plan; returns the lines whose writes lost a race and must be matched again."""
        operations: list[InsertOne[dict[str, Any]] | UpdateOne] = []
        lines: list[list[int]] = []
        if plan.creates:
            first = await self._counters.take(contact_ids(project_id), len(plan.creates))
            for offset, new in enumerate(plan.creates):
                operations.append(InsertOne({**new.document, "contact_id": first + offset}))
                lines.append(new.lines)
        for key, change in plan.changes.items():
            update: dict[str, Any] = {}
            if change.assign:
                update["$set"] = change.assign
            if change.unset:
                update["$unset"] = dict.fromkeys(change.unset, "")
            if change.lists:
                update["$addToSet"] = {"list_ids": {"$each": sorted(change.lists)}}
            operations.append(UpdateOne({"_id": key, "project_id": project_id}, update))
            lines.append(change.lines)
        if not operations:
            return set()
        try:
            await self._contacts.bulk_write(operations, ordered=False)
        except BulkWriteError as exc:
            errors = exc.details.get("writeErrors", [])
            if any(error.get("code") != _DUPLICATE_KEY for error in errors):
                raise
            return {line for error in errors for line in lines[int(error["index"])]}
        return set()
