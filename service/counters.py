"""Integer sequences shared by every process: process ids per installation, contact ids per project.

Each sequence is one document bumped by `$inc`, an atomic single-document write, so two workers
never receive the same number whatever they race on. Numbers handed out and then not used (a
duplicate request, a failed insert) are simply skipped: the sequences are unique and increasing,
not gapless. The bump is never part of a multi-document transaction: a process killed in one
leaves the documents it touched locked until the server reaps the transaction, and a shared
counter locked for a minute would stop every intake of the installation.
"""

from __future__ import annotations

from typing import Any

from pymongo import ReturnDocument
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

COUNTERS_COLLECTION = "counters"

PROCESS_IDS = "process_id"
_ATTEMPTS = 5


def contact_ids(project_id: str) -> str:
    """The sequence of a project's contact ids."""
    return f"contact_id:{project_id}"


class Counters:
    def __init__(self, database: AsyncDatabase[dict[str, Any]]) -> None:
        self._counters = database[COUNTERS_COLLECTION]

    async def take(self, name: str, count: int = 1) -> int:
        """Reserve `count` consecutive numbers of sequence `name`; returns the first. The first
        number a sequence gives is 1."""
        if count < 1:
            raise ValueError("count must be at least 1")
        for _ in range(_ATTEMPTS):
            try:
                document = await self._counters.find_one_and_update(
                    {"_id": name},
                    {"$inc": {"value": count}},
                    upsert=True,
                    return_document=ReturnDocument.AFTER,
                )
            except DuplicateKeyError:
                # Two first-ever bumps raced to create the document; the loser's retry matches it.
                continue
            # The embedded test server answers the losing upsert of that race with no document
            # rather than an error. Trying again can at worst skip numbers, never repeat one.
            if document is not None:
                return int(document["value"]) - count + 1
        raise RuntimeError(f"counter {name} could not be bumped in {_ATTEMPTS} attempts")

    async def at_least(self, name: str, value: int) -> None:
        """Make sure the sequence never hands out `value` or anything below it again (numbers
        assigned by other means than this sequence)."""
        try:
            await self._counters.update_one({"_id": name}, {"$max": {"value": value}}, upsert=True)
        except DuplicateKeyError:
            await self._counters.update_one({"_id": name}, {"$max": {"value": value}})
