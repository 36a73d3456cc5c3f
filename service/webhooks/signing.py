"""Standard Webhooks signatures, made by the `standardwebhooks` library (the same code receivers
verify with), never by hand.

A secret is `whsec_` + base64 of random bytes. During a secret rotation every live secret signs,
and the signatures travel space-separated in one `webhook-signature` header: a receiver holding
either secret accepts the delivery.
"""

from __future__ import annotations

import base64
import secrets
from collections.abc import Sequence
from datetime import UTC, datetime

from standardwebhooks import Webhook

SECRET_PREFIX = "whsec_"  # noqa: S105 - the published prefix, not a secret
# Standard Webhooks asks for 24 to 64 random bytes; 32 matches the HMAC-SHA256 block of work.
SECRET_BYTES = 32


def new_secret() -> str:
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode()


def secret_hint(secret: str) -> str:
    """Enough of a secret to tell two apart in a listing, too little to sign with."""
    return secret[: len(SECRET_PREFIX) + 4] + "…"


def signed_headers(
    secrets_in_use: Sequence[str], *, message_id: str, sent_at: datetime, body: str
) -> dict[str, str]:
    """The three Standard Webhooks headers for one attempt to send `body`."""
    if not secrets_in_use:
        raise ValueError("a webhook is never sent unsigned")
    # Whole seconds: the header carries unix seconds and the signature must cover exactly that.
    timestamp = datetime.fromtimestamp(int(sent_at.timestamp()), UTC)
    signatures = [
        Webhook(secret).sign(msg_id=message_id, timestamp=timestamp, data=body)
        for secret in secrets_in_use
    ]
    return {
        "webhook-id": message_id,
        "webhook-timestamp": str(int(timestamp.timestamp())),
        "webhook-signature": " ".join(signatures),
    }
