"""Settings moved to the group they govern: the new names are read, the old ones still are for
one release, and a configuration that uses one is warned once at start."""

from __future__ import annotations

from pathlib import Path

import pytest
from structlog.testing import capture_logs

from service.cli import common
from service.config import MOVED_SETTINGS, settings_from_env, warn_moved_names
from service.config.settings import variable_name
from service.webhooks.secret_cipher import new_encryption_key

BASE = {
    "FERRY_S3__ACCESS_KEY": "AK",
    "FERRY_S3__SECRET_KEY": "SK",
    "FERRY_WEBHOOKS__SECRET_ENCRYPTION_KEYS": new_encryption_key(),
}
# A value for each moved setting that differs from its default.
VALUES = {
    "record_retention_seconds": ("60", 60),
    "retention_seconds": ("120", 120),
    "expiry_sweep_seconds": ("2.5", 2.5),
    "escape_formulas": ("false", False),
}


def test_new_names_are_read_and_warn_nothing() -> None:
    env = dict(BASE)
    for new_group, new_name in MOVED_SETTINGS.values():
        env[variable_name(new_group, new_name)] = VALUES[new_name][0]
    settings = settings_from_env(env)
    for new_group, new_name in MOVED_SETTINGS.values():
        assert getattr(getattr(settings, new_group), new_name) == VALUES[new_name][1]
    assert settings.moved_names == ()
    with capture_logs() as logs:
        warn_moved_names(settings)
    assert logs == []


@pytest.mark.parametrize(("old", "new"), sorted(MOVED_SETTINGS.items()))
def test_an_old_name_is_still_read_and_named_with_its_new_one(
    old: tuple[str, str], new: tuple[str, str]
) -> None:
    settings = settings_from_env({**BASE, variable_name(*old): VALUES[old[1]][0]})
    assert getattr(getattr(settings, new[0]), new[1]) == VALUES[new[1]][1]
    assert settings.moved_names == ((variable_name(*old), variable_name(*new)),)
    with capture_logs() as logs:
        warn_moved_names(settings)
    assert [(log["event"], log["old"], log["new"]) for log in logs] == [
        ("settings.renamed", variable_name(*old), variable_name(*new))
    ]
    assert logs[0]["log_level"] == "warning"


def test_the_new_name_wins_over_the_old() -> None:
    settings = settings_from_env(
        {
            **BASE,
            "FERRY_EXPORT__RECORD_RETENTION_SECONDS": "60",
            "FERRY_JOBS__RECORD_RETENTION_SECONDS": "90",
        }
    )
    assert settings.jobs.record_retention_seconds == 90
    assert len(settings.moved_names) == 1


def test_the_old_groups_no_longer_hold_the_moved_settings() -> None:
    settings = settings_from_env(BASE)
    for old_group, old_name in MOVED_SETTINGS:
        assert old_name not in type(getattr(settings, old_group)).model_fields


def test_a_command_warns_at_start(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)  # no .ferry/dev.env here
    for name, value in {**BASE, "FERRY_EXPORT__ESCAPE_FORMULAS": "false"}.items():
        monkeypatch.setenv(name, value)
    # Leave the process's logging as it is: configured, it would keep writing to this test's
    # captured output after the test.
    monkeypatch.setattr(common, "configure_logging", lambda *_: None)
    with capture_logs() as logs:
        settings = common.settings_or_fail()
    assert settings.files.escape_formulas is False
    assert [(log["event"], log["old"], log["new"]) for log in logs] == [
        ("settings.renamed", "FERRY_EXPORT__ESCAPE_FORMULAS", "FERRY_FILES__ESCAPE_FORMULAS")
    ]
