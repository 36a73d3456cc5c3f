"""API keys: each belongs to one project and is stored only as a hash.

A key is named by its id, the first 16 hex digits of that hash: `ferry keys list` shows it and
`ferry keys revoke` takes it, and it reveals nothing of the key. Every key made so far has one,
with no migration.

The API remembers a key it has looked up for a few seconds (`CACHE_SECONDS`), so a burst of
requests costs one read; a revoked key therefore answers 401 within that time on every replica.
When a key was last used is written at most once a minute, on a lookup that missed the cache.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import structlog
from pymongo import IndexModel
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import PyMongoError

from service.clock import as_utc, utcnow
from service.error_codes import ErrorCode
from service.errors import FerryError

log = structlog.get_logger(__name__)

KEYS_COLLECTION = "api_keys"
KEY_PREFIX = "fry_"
CACHE_SECONDS = 5.0
LAST_USED_RESOLUTION = timedelta(minutes=1)
_KEY_ID = re.compile(r"[0-9a-f]{16}")
# Keys are 47 characters; anything much longer is not one, and is not hashed.
_MAX_KEY_CHARS = 100
# Enough for every key in use on a busy replica; an old entry is dropped when it is full.
_CACHE_ENTRIES = 10_000


class KeyNotFoundError(FerryError):
    code = ErrorCode.KEY_NOT_FOUND
    http_status = 404

    def __init__(self, key_id: str) -> None:
        super().__init__(f"no API key has the id {key_id[:64]!r} (see `ferry keys list`)")


@dataclass(frozen=True)
class KeyInfo:
    """What is known of a key besides the key itself."""

    key_id: str
    project_id: str
    prefix: str
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None


def _digest(key: str) -> str:
    # The key has 256 random bits, so a plain SHA-256 is enough: unlike a password it cannot be
    # guessed, and a fast hash keeps every request's lookup cheap.
    return hashlib.sha256(key.encode()).hexdigest()


def key_id_of(key: str) -> str:
    return _digest(key)[:16]


class ApiKeys:
    def __init__(
        self, database: AsyncDatabase[dict[str, Any]], *, cache_seconds: float = CACHE_SECONDS
    ) -> None:
        self._keys = database[KEYS_COLLECTION]
        self._cache_seconds = cache_seconds
        # digest -> (project id, when it was read, on the monotonic clock)
        self._cache: dict[str, tuple[str, float]] = {}

    async def ensure_indexes(self) -> None:
        await self._keys.create_indexes([IndexModel([("project_id", 1), ("created_at", 1)])])

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
        """The project `key` belongs to; None when it is not a key, or is revoked."""
        if not key.startswith(KEY_PREFIX) or len(key) > _MAX_KEY_CHARS:
            return None
        digest = _digest(key)
        cached = self._cache.get(digest)
        if cached is not None and time.monotonic() - cached[1] < self._cache_seconds:
            return cached[0]
        document = await self._keys.find_one(
            {"_id": digest, "revoked_at": {"$exists": False}}, {"project_id": 1, "last_used_at": 1}
        )
        if document is None:
            self._cache.pop(digest, None)
            return None
        project_id = str(document["project_id"])
        self._remember(digest, project_id)
        await self._touch(digest, document.get("last_used_at"))
        return project_id

    async def of_project(self, project_id: str) -> list[KeyInfo]:
        """The project's keys, revoked ones too, oldest first."""
        documents = await self._keys.find({"project_id": project_id}).sort("created_at").to_list()
        return [_info(document) for document in documents]

    async def revoke(self, key_id: str) -> KeyInfo:
        """Revoke the key with id `key_id` (revoking it again changes nothing); the key as it is
        now. KeyNotFoundError when no key has that id."""
        if not _KEY_ID.fullmatch(key_id):
            raise KeyNotFoundError(key_id)
        # The id is a prefix of the hex digest that is the document's _id: a range of _id.
        selector = {"_id": {"$gte": key_id, "$lt": key_id + "g"}}
        await self._keys.update_many(
            {**selector, "revoked_at": {"$exists": False}}, {"$set": {"revoked_at": utcnow()}}
        )
        document = await self._keys.find_one(selector)
        if document is None:
            raise KeyNotFoundError(key_id)
        return _info(document)

    def _remember(self, digest: str, project_id: str) -> None:
        if self._cache_seconds <= 0:
            return
        self._cache.pop(digest, None)
        if len(self._cache) >= _CACHE_ENTRIES:
            self._cache.pop(next(iter(self._cache)))  # the entry read longest ago
        self._cache[digest] = (project_id, time.monotonic())

    async def _touch(self, digest: str, last_used_at: datetime | None) -> None:
        now = utcnow()
        stale = now - LAST_USED_RESOLUTION
        if last_used_at is not None and as_utc(last_used_at) > stale:
            return
        try:
            await self._keys.update_one(
                {
                    "_id": digest,
                    "$or": [
                        {"last_used_at": {"$exists": False}},
                        {"last_used_at": {"$lte": stale}},
                    ],
                },
                {"$set": {"last_used_at": now}},
            )
        except PyMongoError:
            # When a key was last used is for people; the request it serves goes on.
            log.warning("api_key.last_used_not_saved", key_id=digest[:16], exc_info=True)


def _info(document: dict[str, Any]) -> KeyInfo:
    def when(name: str) -> datetime | None:
        value = document.get(name)
        return None if value is None else as_utc(value)

    return KeyInfo(
        key_id=str(document["_id"])[:16],
        project_id=str(document["project_id"]),
        prefix=str(document["prefix"]),
        created_at=as_utc(document["created_at"]),
        last_used_at=when("last_used_at"),
        revoked_at=when("revoked_at"),
    )
