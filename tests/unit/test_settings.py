from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from service.config import DEV_S3_ACCESS_KEY, DEV_S3_SECRET_KEY, Settings, settings_from_env

CREDENTIALS = {"FERRY_S3__ACCESS_KEY": "AK", "FERRY_S3__SECRET_KEY": "SK"}


def test_nested_variables_and_defaults() -> None:
    settings = settings_from_env(
        {**CREDENTIALS, "FERRY_KAFKA__BOOTSTRAP_SERVERS": "k:1", "FERRY_WORKER__CONCURRENCY": "9"}
    )
    assert settings.kafka.bootstrap_servers == "k:1"
    assert settings.worker.concurrency == 9
    assert settings.mongo.database == "ferry"
    assert settings.s3.bucket == "ferry"
    assert settings.kafka.requests_topic == "ferry.requests"
    assert settings.export.retention.days == 7


def test_s3_credentials_have_no_default() -> None:
    with pytest.raises(ValidationError, match="access_key"):
        settings_from_env({})


def test_dev_placeholders_are_refused_in_production() -> None:
    dev = {"FERRY_S3__ACCESS_KEY": DEV_S3_ACCESS_KEY, "FERRY_S3__SECRET_KEY": DEV_S3_SECRET_KEY}
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
