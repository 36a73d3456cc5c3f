"""Secrets and signatures, checked with the `standardwebhooks` library as receivers use it."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta

import pytest
from standardwebhooks import Webhook, WebhookVerificationError

from service.webhooks.signing import new_secret, secret_hint, signed_headers

BODY = '{"type":"export.completed","timestamp":"2025-12-06T12:00:00Z","data":{"id":"j"}}'


def test_secrets_are_whsec_and_base64_of_24_to_64_random_bytes() -> None:
    secrets = {new_secret() for _ in range(50)}
    assert len(secrets) == 50
    for secret in secrets:
        assert secret.startswith("whsec_")
        raw = base64.b64decode(secret.removeprefix("whsec_"), validate=True)
        assert 24 <= len(raw) <= 64


def test_a_signed_delivery_verifies() -> None:
    secret = new_secret()
    now = datetime.now(UTC)
    headers = signed_headers([secret], message_id="evt-1", sent_at=now, body=BODY)
    assert headers["webhook-id"] == "evt-1"
    assert headers["webhook-timestamp"] == str(int(now.timestamp()))
    assert Webhook(secret).verify(BODY.encode(), headers) == {
        "type": "export.completed",
        "timestamp": "2025-12-06T12:00:00Z",
        "data": {"id": "j"},
    }


def test_any_change_breaks_the_signature() -> None:
    secret = new_secret()
    headers = signed_headers([secret], message_id="evt-1", sent_at=datetime.now(UTC), body=BODY)
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(BODY.replace("completed", "failed"), headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(BODY, {**headers, "webhook-id": "evt-2"})
    with pytest.raises(WebhookVerificationError):
        Webhook(new_secret()).verify(BODY, headers)


def test_a_stale_timestamp_is_refused_by_receivers() -> None:
    secret = new_secret()
    old = datetime.now(UTC) - timedelta(minutes=6)
    headers = signed_headers([secret], message_id="evt-1", sent_at=old, body=BODY)
    with pytest.raises(WebhookVerificationError, match="too old"):
        Webhook(secret).verify(BODY, headers)


def test_during_rotation_both_secrets_sign_and_either_verifies() -> None:
    new, old = new_secret(), new_secret()
    headers = signed_headers([new, old], message_id="evt-1", sent_at=datetime.now(UTC), body=BODY)
    signatures = headers["webhook-signature"].split(" ")
    assert len(signatures) == 2
    assert all(signature.startswith("v1,") for signature in signatures)
    Webhook(new).verify(BODY, headers)
    Webhook(old).verify(BODY, headers)


def test_nothing_is_signed_without_a_secret() -> None:
    with pytest.raises(ValueError, match="unsigned"):
        signed_headers([], message_id="evt-1", sent_at=datetime.now(UTC), body=BODY)


def test_the_hint_does_not_give_the_secret_away() -> None:
    secret = new_secret()
    hint = secret_hint(secret)
    assert hint.startswith("whsec_")
    assert len(hint) < 12
