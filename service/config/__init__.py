"""Ferry's settings: one object, read once at start from `FERRY_*` variables.

Nested groups use `__`, e.g. `FERRY_KAFKA__BOOTSTRAP_SERVERS`, and each group is named for what
it governs (`jobs`: every job record; `files`: every file jobs leave; `export`, `imports`: one
kind's limits). When `.ferry/dev.env` exists (written by `ferry dev`), every command reads it
too, so commands run next to a dev stack just work; real environment variables always win over
that file.
"""

from service.config.clients import KafkaSettings, MongoSettings, OutboxSettings, S3Settings
from service.config.edges import (
    SVIX_RETRY_SCHEDULE_SECONDS,
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
from service.config.settings import (
    DEV_ENV_FILE,
    DEV_S3_ACCESS_KEY,
    DEV_S3_SECRET_KEY,
    DEV_SECRET_ENCRYPTION_KEY,
    MOVED_SETTINGS,
    Settings,
    load_settings,
    settings_from,
    settings_from_env,
    warn_moved_names,
)

__all__ = [
    "DEV_ENV_FILE",
    "DEV_S3_ACCESS_KEY",
    "DEV_S3_SECRET_KEY",
    "DEV_SECRET_ENCRYPTION_KEY",
    "MOVED_SETTINGS",
    "SVIX_RETRY_SCHEDULE_SECONDS",
    "ApiSettings",
    "ExportSettings",
    "FileSettings",
    "ImportSettings",
    "JobSettings",
    "KafkaSettings",
    "MongoSettings",
    "ObservabilitySettings",
    "OutboundSettings",
    "OutboxSettings",
    "S3Settings",
    "Settings",
    "WebhookSettings",
    "WorkerSettings",
    "load_settings",
    "settings_from",
    "settings_from_env",
    "warn_moved_names",
]
