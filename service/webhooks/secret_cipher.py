"""Encryption of the projects' webhook signing secrets at rest.

HMAC needs the secret itself, so it cannot be stored as a hash; it is stored encrypted with
Fernet (AES-128-CBC and HMAC-SHA256, from `cryptography`) under the keys of
FERRY_WEBHOOKS__SECRET_ENCRYPTION_KEYS: the first encrypts, every one decrypts, so keys rotate
without a moment when a secret cannot be read. The project id is sealed in with the secret, so a
token copied into another project's record is refused rather than signing for that project.
"""

from __future__ import annotations

from collections.abc import Sequence

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from service.config import WebhookSettings
from service.error_codes import ErrorCode
from service.errors import FerryError

_SEPARATOR = "\n"  # project ids cannot contain it


class SecretUnreadableError(FerryError):
    """A stored secret that none of the configured keys decrypts (or that is another project's)."""

    code = ErrorCode.SECRET_UNREADABLE

    def __init__(self, project_id: str) -> None:
        super().__init__(
            f"the webhook signing secret of project {project_id} cannot be decrypted with the "
            "keys of FERRY_WEBHOOKS__SECRET_ENCRYPTION_KEYS: add the key it was encrypted with"
        )


class SecretCipher:
    """Encrypts and decrypts signing secrets, each bound to its project."""

    def __init__(self, keys: Sequence[str]) -> None:
        if not keys:
            raise ValueError("at least one encryption key is needed")
        self._fernet = MultiFernet([Fernet(key) for key in keys])

    @classmethod
    def from_settings(cls, settings: WebhookSettings) -> SecretCipher:
        return cls(settings.encryption_keys)

    def encrypt(self, project_id: str, secret: str) -> str:
        return self._fernet.encrypt(f"{project_id}{_SEPARATOR}{secret}".encode()).decode()

    def decrypt(self, project_id: str, token: str) -> str:
        try:
            plain = self._fernet.decrypt(token.encode()).decode()
        except InvalidToken as exc:
            raise SecretUnreadableError(project_id) from exc
        owner, _, secret = plain.partition(_SEPARATOR)
        if owner != project_id:
            raise SecretUnreadableError(project_id)
        return secret

    def reencrypt(self, project_id: str, token: str) -> str:
        """`token` encrypted again under the first key (checked to be the project's)."""
        return self.encrypt(project_id, self.decrypt(project_id, token))


def new_encryption_key() -> str:
    return Fernet.generate_key().decode()
