"""Retry timing and what answers mean: Svix's schedule (scalable), Retry-After, 2xx/3xx/410."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from service.config import SVIX_RETRY_SCHEDULE_SECONDS, WebhookSettings
from service.webhooks.schedule import may_ask_to_wait, next_delay, parse_retry_after, verdict

NOW = datetime(2025, 12, 6, 12, 0, 0, tzinfo=UTC)
SVIX = [0, 5, 300, 1800, 7200, 18000, 36000, 36000]


def test_the_default_schedule_is_svixs() -> None:
    assert list(SVIX_RETRY_SCHEDULE_SECONDS) == SVIX
    assert list(WebhookSettings().retry_delays) == SVIX


def test_the_scale_compresses_every_delay() -> None:
    delays = WebhookSettings(retry_schedule_scale=0.001).retry_delays
    assert delays == pytest.approx([0, 0.005, 0.3, 1.8, 7.2, 18, 36, 36])


def test_eight_attempts_then_no_more() -> None:
    waits = [next_delay(made, SVIX) for made in range(1, 9)]
    assert waits == [5, 300, 1800, 7200, 18000, 36000, 36000, None]


def test_retry_after_lengthens_but_never_shortens_and_is_capped() -> None:
    assert next_delay(1, SVIX, retry_after=60) == 60  # asked for more than 5 s
    assert next_delay(2, SVIX, retry_after=60) == 300  # the schedule already waits longer
    assert next_delay(1, SVIX, retry_after=10**9) == 36000  # at most the longest pause
    assert next_delay(8, SVIX, retry_after=1) is None  # nothing left to retry


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        (200, "succeeded"),
        (204, "succeeded"),
        (299, "succeeded"),
        (301, "failed"),
        (302, "failed"),
        (304, "failed"),
        (400, "failed"),
        (404, "failed"),
        (410, "gone"),
        (429, "failed"),
        (500, "failed"),
        (503, "failed"),
        (None, "failed"),
    ],
)
def test_verdicts(status: int | None, expected: str) -> None:
    assert verdict(status) == expected


def test_only_429_and_5xx_may_ask_to_wait() -> None:
    assert not may_ask_to_wait(None)
    assert [code for code in (400, 404, 410, 302) if may_ask_to_wait(code)] == []
    assert all(may_ask_to_wait(code) for code in (429, 500, 502, 503, 504, 599))


@pytest.mark.parametrize(
    ("header", "seconds"),
    [
        ("120", 120.0),
        (" 7 ", 7.0),
        ("Sat, 06 Dec 2025 12:01:30 GMT", 90.0),
        ("Sat, 06 Dec 2025 11:00:00 GMT", 0.0),  # in the past: at once (the schedule still applies)
        ("soon", None),
        ("-5", None),
        ("", None),
        (None, None),
    ],
)
def test_retry_after_values(header: str | None, seconds: float | None) -> None:
    assert parse_retry_after(header, now=NOW) == seconds


def test_a_lease_outlasts_three_attempts() -> None:
    with pytest.raises(ValueError, match="lease_seconds"):
        WebhookSettings(timeout_seconds=15, lease_seconds=45)
    assert WebhookSettings(timeout_seconds=1, lease_seconds=3.5).lease_seconds == 3.5
    assert timedelta(seconds=WebhookSettings().lease_seconds) > timedelta(seconds=45)
