"""Each project's webhook signing secret, in MongoDB.

One secret per project signs every delivery of the project, to its endpoints and to the
`notify_url` of its requests alike. A rotation makes a new current secret and gives the previous
ones an expiry; until then they sign too. HMAC needs the secret itself (a hash of it would be
useless), so each is stored encrypted (`secret_cipher.py`, field `ciphertext`); they are shown to
people once, when made.

Secrets stored in plain text by earlier versions (field `value`) are still read, and are
encrypted when their project's secret is next rotated, or all at once by
`ferry webhooks reencrypt-secrets`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import structlog
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from service.clock import as_utc, utcnow
from service.webhooks.secret_cipher import SecretCipher, SecretUnreadableError
from service.webhooks.signing import new_secret

log = structlog.get_logger(__name__)

SECRETS_COLLECTION = "webhook_secrets"
_ROTATION_ATTEMPTS = 5


@dataclass
class Reencrypted:
    """What `reencrypt_all` did."""

    projects: int = 0
    secrets: int = 0
    plaintext_encrypted: int = 0
    unreadable: list[str] = field(default_factory=list)  # projects left as they were


class ProjectSecrets:
    def __init__(self, database: AsyncDatabase[dict[str, Any]], *, cipher: SecretCipher) -> None:
        self._secrets = database[SECRETS_COLLECTION]
        self._cipher = cipher

    async def create_if_missing(self, project_id: str) -> str | None:
        """The project's first secret, or None when it already has one (not shown again)."""
        secret = new_secret()
        document = {
            "_id": project_id,
            "secrets": [self._entry(project_id, secret, utcnow())],
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
                {
                    **self._sealed(project_id, entry),
                    "expires_at": min(_expiry(entry) or now + grace, now + grace),
                }
                for entry in document["secrets"]
                if _alive(entry, now)
            ]
            fresh = self._entry(project_id, secret, now)
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
            project_id = str(document["_id"])
            readable = []
            for entry in document["secrets"]:
                if not _alive(entry, now):
                    continue
                try:
                    readable.append(self._plain(project_id, entry))
                except SecretUnreadableError:
                    # This project's deliveries wait (and retry) until the key is configured;
                    # every other project's go on.
                    log.exception("webhooks.secret_unreadable", project_id=project_id)
            found[project_id] = readable
        return found

    async def reencrypt_all(self) -> Reencrypted:
        """Encrypt every live secret again under the first key: after a key is added in front,
        and to encrypt secrets stored in plain text. A project whose secret no key decrypts is
        left as it is and named in the result."""
        done = Reencrypted()
        async for document in self._secrets.find({}, {"_id": 1}):
            project_id = str(document["_id"])
            try:
                count, plaintext = await self._reencrypt(project_id)
            except SecretUnreadableError:
                done.unreadable.append(project_id)
                continue
            done.projects += 1
            done.secrets += count
            done.plaintext_encrypted += plaintext
        return done

    async def _reencrypt(self, project_id: str) -> tuple[int, int]:
        for _ in range(_ROTATION_ATTEMPTS):
            document = await self._secrets.find_one({"_id": project_id})
            if document is None:
                return 0, 0
            now = utcnow()
            alive = [entry for entry in document["secrets"] if _alive(entry, now)]
            entries = [
                {
                    **{k: v for k, v in entry.items() if k not in {"value", "ciphertext"}},
                    "ciphertext": self._cipher.encrypt(project_id, self._plain(project_id, entry)),
                }
                for entry in alive
            ]
            result = await self._secrets.update_one(
                {"_id": project_id, "revision": document["revision"]},
                {"$set": {"secrets": entries}, "$inc": {"revision": 1}},
            )
            if result.modified_count == 1:
                return len(entries), sum("value" in entry for entry in alive)
        raise RuntimeError(f"the secret of project {project_id} kept changing; try again")

    def _entry(self, project_id: str, secret: str, now: datetime) -> dict[str, Any]:
        return {
            "ciphertext": self._cipher.encrypt(project_id, secret),
            "created_at": now,
            "expires_at": None,
        }

    def _plain(self, project_id: str, entry: dict[str, Any]) -> str:
        if "ciphertext" in entry:
            return self._cipher.decrypt(project_id, entry["ciphertext"])
        return str(entry["value"])  # stored in plain text by an earlier version

    def _sealed(self, project_id: str, entry: dict[str, Any]) -> dict[str, Any]:
        """`entry` with its secret encrypted (it may have been stored in plain text)."""
        if "ciphertext" in entry:
            return entry
        sealed = {k: v for k, v in entry.items() if k != "value"}
        return {**sealed, "ciphertext": self._cipher.encrypt(project_id, str(entry["value"]))}

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
