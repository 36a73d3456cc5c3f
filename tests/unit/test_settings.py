from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from service.config import (
    DEV_S3_ACCESS_KEY,
    DEV_S3_SECRET_KEY,
    DEV_SECRET_ENCRYPTION_KEY,
    Settings,
    settings_from_env,
)
from service.webhooks.secret_cipher import SecretCipher, new_encryption_key

ENCRYPTION_KEY = new_encryption_key()
CREDENTIALS = {
    "FERRY_S3__ACCESS_KEY": "AK",
    "FERRY_S3__SECRET_KEY": "SK",
    "FERRY_WEBHOOKS__SECRET_ENCRYPTION_KEYS": ENCRYPTION_KEY,
}


def test_nested_variables_and_defaults() -> None:
    settings = settings_from_env(
        {**CREDENTIALS, "FERRY_KAFKA__BOOTSTRAP_SERVERS": "k:1", "FERRY_WORKER__CONCURRENCY": "9"}
    )
    assert settings.kafka.bootstrap_servers == "k:1"
    assert settings.worker.concurrency == 9
    assert settings.mongo.database == "ferry"
    assert settings.s3.bucket == "ferry"
    assert settings.kafka.requests_topic == "ferry.requests"
    assert settings.files.retention.days == 7


def test_s3_credentials_have_no_default() -> None:
    with pytest.raises(ValidationError, match="access_key"):
        settings_from_env({})


def test_dev_placeholders_are_refused_in_production() -> None:
    dev = {
        **CREDENTIALS,
        "FERRY_S3__ACCESS_KEY": DEV_S3_ACCESS_KEY,
        "FERRY_S3__SECRET_KEY": DEV_S3_SECRET_KEY,
    }
    with pytest.raises(ValidationError, match="refused outside development"):
        settings_from_env(dev)
    assert (
        settings_from_env({**dev, "FERRY_ENVIRONMENT": "development"}).environment == "development"
    )


def test_heartbeat_must_be_shorter_than_the_lease() -> None:
    with pytest.raises(ValidationError, match="heartbeat"):
        settings_from_env(
            {
                **CREDENTIALS,
                "FERRY_WORKER__LEASE_SECONDS": "5",
                "FERRY_WORKER__HEARTBEAT_SECONDS": "5",
            }
        )


def test_environment_and_dev_env_file_are_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / ".ferry").mkdir()
    (tmp_path / ".ferry" / "dev.env").write_text(
        "FERRY_S3__ACCESS_KEY=from-file\nFERRY_S3__SECRET_KEY=from-file\nFERRY_API__PORT=8123\n"
        f"FERRY_WEBHOOKS__SECRET_ENCRYPTION_KEYS={ENCRYPTION_KEY}\n"
    )
    monkeypatch.setenv("FERRY_API__PORT", "8999")
    settings = Settings()
    assert settings.s3.access_key.get_secret_value() == "from-file"
    assert settings.api.port == 8999  # a real variable wins over the file


def test_s3_endpoint_must_be_a_url() -> None:
    settings = settings_from_env({**CREDENTIALS, "FERRY_S3__ENDPOINT": "minio:9000"})
    with pytest.raises(ValueError, match="http"):
        settings.s3.split_endpoint()
    assert settings_from_env(
        {**CREDENTIALS, "FERRY_S3__ENDPOINT": "https://s3.example.com"}
    ).s3.split_endpoint() == ("s3.example.com", True)


def test_production_refuses_to_start_without_a_secret_encryption_key() -> None:
    without = {k: v for k, v in CREDENTIALS.items() if "ENCRYPTION" not in k}
    with pytest.raises(ValidationError, match="FERRY_WEBHOOKS__SECRET_ENCRYPTION_KEYS"):
        settings_from_env(without)
    with pytest.raises(ValidationError, match="development placeholder"):
        settings_from_env(
            {**without, "FERRY_WEBHOOKS__SECRET_ENCRYPTION_KEYS": DEV_SECRET_ENCRYPTION_KEY}
        )
    # Development falls back to the published placeholder.
    dev = settings_from_env({**without, "FERRY_ENVIRONMENT": "development"})
    assert dev.webhooks.encryption_keys == [DEV_SECRET_ENCRYPTION_KEY]


@pytest.mark.parametrize(
    "bad",
    ["short", "x" * 44, ENCRYPTION_KEY[:-4], f"{ENCRYPTION_KEY},nope"],
    # Named, not shown: the key is new each run, and pytest-xdist's processes must agree on ids.
    ids=["short", "not-base64", "truncated", "second-of-two-bad"],
)
def test_secret_encryption_keys_must_be_fernet_keys(bad: str) -> None:
    with pytest.raises(ValidationError, match="not a Fernet key"):
        settings_from_env({**CREDENTIALS, "FERRY_WEBHOOKS__SECRET_ENCRYPTION_KEYS": bad})


def test_several_encryption_keys_the_first_encrypting() -> None:
    old, new = new_encryption_key(), new_encryption_key()
    settings = settings_from_env(
        {**CREDENTIALS, "FERRY_WEBHOOKS__SECRET_ENCRYPTION_KEYS": f" {new} , {old} "}
    )
    assert settings.webhooks.encryption_keys == [new, old]
    token = SecretCipher([old]).encrypt("p", "whsec_x")
    both = SecretCipher.from_settings(settings.webhooks)
    assert both.decrypt("p", token) == "whsec_x"
    assert SecretCipher([new]).decrypt("p", both.reencrypt("p", token)) == "whsec_x"
