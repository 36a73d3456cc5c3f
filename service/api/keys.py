"""API keys: each belongs to one project and is stored only as a hash."""

from __future__ import annotations

import hashlib
import secrets
from typing import Any

from pymongo.asynchronous.database import AsyncDatabase

from service.clock import utcnow

KEYS_COLLECTION = "api_keys"
KEY_PREFIX = "fry_"


def _digest(key: str) -> str:
    # The key has 256 random bits, so a plain SHA-256 is enough: unlike a password it cannot be
    # guessed, and a fast hash keeps every request's lookup cheap.
    return hashlib.sha256(key.encode()).hexdigest()


class ApiKeys:
    def __init__(self, database: AsyncDatabase[dict[str, Any]]) -> None:
        self._keys = database[KEYS_COLLECTION]

    async def create(self, project_id: str) -> str:
        """A new key for `project_id`. It is returned once and cannot be recovered later."""
        key = KEY_PREFIX + secrets.token_urlsafe(32)
        await self._keys.insert_one(
            {
                "_id": _digest(key),
                "project_id": project_id,
                "prefix": key[:12],
                "created_at": utcnow(),
            }
        )
        return key

    async def project_for(self, key: str) -> str | None:
        document = await self._keys.find_one(
            {"_id": _digest(key), "revoked_at": {"$exists": False}}, {"project_id": 1}
        )
        return None if document is None else str(document["project_id"])
