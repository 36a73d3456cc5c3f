"""The settings object: every group, the checks across groups, where values come from, and the
old names of settings that moved to the group they govern."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import structlog
from pydantic import Field, ModelWrapValidatorHandler, PrivateAttr, SecretStr, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from service.config.clients import KafkaSettings, MongoSettings, OutboxSettings, S3Settings
from service.config.edges import (
    ApiSettings,
    ObservabilitySettings,
    OutboundSettings,
    WebhookSettings,
)
from service.config.jobs import (
    ExportSettings,
    FileSettings,
    ImportSettings,
    JobSettings,
    WorkerSettings,
)

DEV_ENV_FILE = Path(".ferry") / "dev.env"

# Credentials `ferry dev` hands to the embedded object store. The embedded server accepts
# anything; outside development they are refused so a deployment cannot run on them by mistake.
DEV_S3_ACCESS_KEY = "ferry-dev"
DEV_S3_SECRET_KEY = "ferry-dev-secret"  # noqa: S105 - a published placeholder, refused in production
# Likewise the key encrypting webhook signing secrets when development sets none.
DEV_SECRET_ENCRYPTION_KEY = "ZmVycnktZGV2LXdlYmhvb2stc2VjcmV0LWtleS0zMmI="  # noqa: S105 - as above


# Settings that moved to the group they govern, (old group, name) -> (new group, name). The old
# names are still read for one release, with a warning at start; then they are dropped.
MOVED_SETTINGS: dict[tuple[str, str], tuple[str, str]] = {
    ("export", "record_retention_seconds"): ("jobs", "record_retention_seconds"),
    ("export", "retention_seconds"): ("files", "retention_seconds"),
    ("export", "expiry_sweep_seconds"): ("files", "expiry_sweep_seconds"),
    ("export", "escape_formulas"): ("files", "escape_formulas"),
}


def variable_name(group: str, name: str) -> str:
    return f"FERRY_{group.upper()}__{name.upper()}"


def _move_old_names(data: Mapping[str, Any]) -> tuple[dict[str, Any], list[tuple[str, str]]]:
    """`data` with each old name's value under its new name (a new name set too wins)."""
    values = dict(data)
    moved: list[tuple[str, str]] = []
    for (old_group, old_name), (new_group, new_name) in MOVED_SETTINGS.items():
        old = values.get(old_group)
        if not isinstance(old, Mapping) or old_name not in old:
            continue
        old = dict(old)
        value = old.pop(old_name)
        values[old_group] = old
        new = values.get(new_group)
        new = dict(new) if isinstance(new, Mapping) else {}
        new.setdefault(new_name, value)
        values[new_group] = new
        moved.append((variable_name(old_group, old_name), variable_name(new_group, new_name)))
    return values, moved


def warn_moved_names(settings: Settings) -> None:
    """Log, once at start, each old setting name still in use and the name that replaces it."""
    log = structlog.get_logger("service.config")
    for old, new in settings.moved_names:
        log.warning(
            "settings.renamed",
            old=old,
            new=new,
            detail=f"{old} is read for one more release only; set {new} instead "
            "(when both are set, the new one wins)",
        )


class Settings(BaseSettings):
    """Everything Ferry can be told. Built once at start; nothing reads the environment later."""

    model_config = SettingsConfigDict(
        env_prefix="FERRY_",
        env_nested_delimiter="__",
        env_file=DEV_ENV_FILE,
        extra="ignore",
    )

    environment: Literal["development", "production"] = Field(
        "production", description="`development` allows the dev stack's placeholder credentials."
    )
    log_level: Literal["debug", "info", "warning", "error"] = Field(
        "info", description="Log level."
    )
    log_format: Literal["auto", "json", "console"] = Field(
        "auto", description="`auto`: pretty on a terminal, JSON otherwise."
    )
    kafka: KafkaSettings = Field(default_factory=KafkaSettings)
    mongo: MongoSettings = Field(default_factory=MongoSettings)
    outbox: OutboxSettings = Field(default_factory=OutboxSettings)
    # Validated even when absent, so the error names the variables to set.
    s3: S3Settings = Field(default_factory=dict, validate_default=True)
    worker: WorkerSettings = Field(default_factory=WorkerSettings)
    jobs: JobSettings = Field(default_factory=JobSettings)
    files: FileSettings = Field(default_factory=FileSettings)
    export: ExportSettings = Field(default_factory=ExportSettings)
    imports: ImportSettings = Field(default_factory=ImportSettings)
    api: ApiSettings = Field(default_factory=ApiSettings)
    observability: ObservabilitySettings = Field(default_factory=ObservabilitySettings)
    outbound: OutboundSettings = Field(default_factory=OutboundSettings)
    webhooks: WebhookSettings = Field(default_factory=WebhookSettings)

    # The old names of moved settings that this configuration still uses, as (old, new).
    _moved_names: tuple[tuple[str, str], ...] = PrivateAttr(default=())

    @model_validator(mode="wrap")
    @classmethod
    def _read_moved_names(cls, data: Any, handler: ModelWrapValidatorHandler[Settings]) -> Settings:  # noqa: ANN401 - whatever the sources gave
        moved: list[tuple[str, str]] = []
        if isinstance(data, Mapping):
            data, moved = _move_old_names(data)
        settings = handler(data)
        settings._moved_names = tuple(moved)  # noqa: SLF001 - set by its own class
        return settings

    @property
    def moved_names(self) -> tuple[tuple[str, str], ...]:
        """Old variable names this configuration still sets, each with its new name."""
        return self._moved_names

    @model_validator(mode="after")
    def _no_dev_credentials_in_production(self) -> Settings:
        if self.environment == "production" and (
            self.s3.access_key.get_secret_value() == DEV_S3_ACCESS_KEY
            or self.s3.secret_key.get_secret_value() == DEV_S3_SECRET_KEY
        ):
            raise ValueError(
                "the dev stack's placeholder S3 credentials are refused outside development; "
                "set FERRY_S3__ACCESS_KEY and FERRY_S3__SECRET_KEY, "
                "or FERRY_ENVIRONMENT=development"
            )
        return self

    @model_validator(mode="after")
    def _secret_encryption_key_in_production(self) -> Settings:
        keys = self.webhooks.encryption_keys
        if self.environment == "development" and not keys:
            self.webhooks.secret_encryption_keys = SecretStr(DEV_SECRET_ENCRYPTION_KEY)
        elif self.environment == "production" and (not keys or DEV_SECRET_ENCRYPTION_KEY in keys):
            raise ValueError(
                "production needs a key that encrypts webhook signing secrets, and not the "
                "development placeholder: set FERRY_WEBHOOKS__SECRET_ENCRYPTION_KEYS (`ferry "
                "webhooks new-encryption-key` makes one), or FERRY_ENVIRONMENT=development"
            )
        return self


class _ExplicitSettings(Settings):
    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        del settings_cls, env_settings, dotenv_settings, file_secret_settings  # ignored on purpose
        return (init_settings,)


def settings_from(values: Mapping[str, Any]) -> Settings:
    """Settings from `values` alone, ignoring the environment and `.ferry/dev.env`: for tests
    and for documents that must not depend on where they are generated."""
    return _ExplicitSettings(**values)


def settings_from_env(env: Mapping[str, str]) -> Settings:
    """Settings from a `FERRY_*` variable mapping, as a child process given `env` would see them."""
    values: dict[str, Any] = {}
    for name, value in env.items():
        if not name.startswith("FERRY_"):
            continue
        *parents, leaf = name.removeprefix("FERRY_").lower().split("__")
        node = values
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return settings_from(values)


def load_settings() -> Settings:
    """Read the settings from the environment (and `.ferry/dev.env` when present)."""
    return Settings()
