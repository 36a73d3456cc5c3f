"""Each project's webhook signing secret, in MongoDB.

One secret per project signs every delivery of the project, to its endpoints and to the
`notify_url` of its requests alike. A rotation makes a new current secret and gives the previous
ones an expiry; until then they sign too. Secrets are stored as they are because HMAC needs the
key itself (a hash of it would be useless); they are shown to people once, when made.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from service.clock import as_utc, utcnow
from service.webhooks.signing import new_secret

SECRETS_COLLECTION = "webhook_secrets"
_ROTATION_ATTEMPTS = 5


class ProjectSecrets:
    def __init__(self, database: AsyncDatabase[dict[str, Any]]) -> None:
        self._secrets = database[SECRETS_COLLECTION]

    async def create_if_missing(self, project_id: str) -> str | None:
        """The project's first secret, or None when it already has one (not shown again)."""
        secret = new_secret()
        document = {
            "_id": project_id,
            "secrets": [{"value": secret, "created_at": utcnow(), "expires_at": None}],
            "revision": 1,
        }
        try:
            await self._secrets.insert_one(document)
        except DuplicateKeyError:
            return None
        return secret

    async def rotate(self, project_id: str, *, grace: timedelta) -> str:
        """A new current secret; the ones before it keep signing until `grace` has passed."""
        for _ in range(_ROTATION_ATTEMPTS):
            document = await self._secrets.find_one({"_id": project_id})
            if document is None:
                created = await self.create_if_missing(project_id)
                if created is not None:
                    return created
                continue  # made meanwhile by someone else: rotate that one
            now = utcnow()
            secret = new_secret()
            kept = [
                {**entry, "expires_at": min(_expiry(entry) or now + grace, now + grace)}
                for entry in document["secrets"]
                if _alive(entry, now)
            ]
            fresh = {"value": secret, "created_at": now, "expires_at": None}
            # Compare-and-set on the revision: two rotations at once cannot drop a secret.
            result = await self._secrets.update_one(
                {"_id": project_id, "revision": document["revision"]},
                {"$set": {"secrets": [fresh, *kept]}, "$inc": {"revision": 1}},
            )
            if result.modified_count == 1:
                return secret
        raise RuntimeError(f"the secret of project {project_id} kept changing; try again")

    async def signing_secrets(self, project_ids: Iterable[str]) -> dict[str, list[str]]:
        """Per project, the secrets that sign now: the current one first."""
        now = utcnow()
        found: dict[str, list[str]] = {}
        async for document in self._secrets.find({"_id": {"$in": list(set(project_ids))}}):
            found[str(document["_id"])] = [
                entry["value"] for entry in document["secrets"] if _alive(entry, now)
            ]
        return found

    async def created_at(self, project_id: str) -> datetime | None:
        """When the project's current secret was made; None when it has none."""
        document = await self._secrets.find_one({"_id": project_id})
        if document is None or not document["secrets"]:
            return None
        return as_utc(document["secrets"][0]["created_at"])


def _expiry(entry: dict[str, Any]) -> datetime | None:
    expires_at = entry.get("expires_at")
    return None if expires_at is None else as_utc(expires_at)


def _alive(entry: dict[str, Any], now: datetime) -> bool:
    expires_at = _expiry(entry)
    return expires_at is None or expires_at > now
