"""The figures README.md states in prose, against the settings and constants they describe: the
settings table is generated (test_schemas_in_sync.py), these sentences are not and can drift."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from service.config import (
    SVIX_RETRY_SCHEDULE_SECONDS,
    ApiSettings,
    KafkaSettings,
    WebhookSettings,
    WorkerSettings,
)
from service.echo import ECHO_ITEMS, ECHO_LIMIT

README = (Path(__file__).parents[2] / "README.md").read_text()
PROSE = re.sub(r"\s+", " ", README)  # sentences wrap across lines


def spoken(seconds: float) -> str:
    """`5 s`, `5 min`, `2 h`: how the README writes a delay."""
    if seconds < 60:
        return f"{seconds:g} s"
    if seconds < 3600:
        return f"{seconds / 60:g} min"
    return f"{seconds / 3600:g} h"


def test_the_webhook_retry_schedule_and_its_length() -> None:
    delays = SVIX_RETRY_SCHEDULE_SECONDS[1:]
    listed = ", ".join(spoken(delay) for delay in delays[:-1]) + f" and {spoken(delays[-1])}"
    assert f"retried after {listed}" in PROSE
    hours = round(sum(SVIX_RETRY_SCHEDULE_SECONDS) / 3600)
    words = {8: "eight"}  # as the README spells it
    count = len(SVIX_RETRY_SCHEDULE_SECONDS)
    assert f"{words.get(count, count)} attempts over about {hours} hours" in PROSE
    assert f"retried for about {hours} hours" in PROSE
    assert "day and a half" not in PROSE


@pytest.mark.parametrize(
    ("sentence", "value"),
    [
        ("failed for {} days", WebhookSettings().disable_after_failing_seconds / 86400),
        ("Deliveries are kept {} days", WebhookSettings().retention_seconds / 86400),
        ("no complete answer within {} s", WebhookSettings().timeout_seconds),
        ("per second (default {})", ApiSettings().rate_limit_per_second),
        ("bursts of `FERRY_API__RATE_LIMIT_BURST` (default {})", ApiSettings().rate_limit_burst),
        ("`FERRY_KAFKA__INTAKE_MAX_ATTEMPTS` times ({})", KafkaSettings().intake_max_attempts),
        ("project limit of {} running jobs", WorkerSettings().max_running_per_project),
        ("capped at {} characters", ECHO_LIMIT),
        ("lists at {} items", ECHO_ITEMS),
    ],
)
def test_a_figure_in_prose_is_the_code_s(sentence: str, value: float) -> None:
    assert sentence.format(f"{value:g}") in PROSE, sentence
