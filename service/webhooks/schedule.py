"""When to try again, and what an answer means. Pure functions: the dispatcher applies them.

Svix's rules: a 2xx answer delivers; 410 Gone means the receiver wants nothing more (the
endpoint is disabled); anything else, a 3xx included (redirects are never followed), fails the
attempt, and the next one follows the schedule. A 429 or 5xx answer may ask for a longer pause
with `Retry-After`, which is honoured up to the schedule's longest delay.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from email.utils import parsedate_to_datetime
from typing import Literal

Verdict = Literal["succeeded", "gone", "failed"]

_GONE = 410
_TOO_MANY_REQUESTS = 429


def verdict(status_code: int | None) -> Verdict:
    """What an answer (None: no answer at all) means for the delivery."""
    if status_code is not None and 200 <= status_code < 300:  # noqa: PLR2004 - the 2xx range
        return "succeeded"
    if status_code == _GONE:
        return "gone"
    return "failed"


def may_ask_to_wait(status_code: int | None) -> bool:
    """Answers whose `Retry-After` is honoured: 429 and the 5xx family."""
    return status_code == _TOO_MANY_REQUESTS or (
        status_code is not None and 500 <= status_code < 600  # noqa: PLR2004 - the 5xx range
    )


def parse_retry_after(value: str | None, *, now: datetime) -> float | None:
    """Seconds to wait from a `Retry-After` value (delta-seconds or an HTTP date); None when
    absent or unreadable."""
    if value is None or not value.strip():
        return None
    text = value.strip()
    if text.isdigit():
        return float(text)
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        return None  # an HTTP date is always GMT; one without a zone is not an HTTP date
    return max(0.0, (when - now).total_seconds())


def next_delay(
    attempts_made: int, delays: Sequence[float], *, retry_after: float | None = None
) -> float | None:
    """Seconds until the next attempt after `attempts_made` failed ones, or None when the
    schedule is exhausted. `delays[n]` is the pause before attempt n + 1 (the first is 0)."""
    if attempts_made >= len(delays):
        return None
    delay = delays[attempts_made]
    if retry_after is not None:
        # Never sooner than the schedule; never later than its longest pause, so a receiver
        # cannot park a delivery for ever.
        delay = max(delay, min(retry_after, max(delays)))
    return delay
