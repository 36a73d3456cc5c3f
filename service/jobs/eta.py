"""When a running attempt will end, from its own rate so far.

The estimate is the attempt's elapsed time scaled by the share still to do: an attempt that took
two minutes for the first 40 % ends about three minutes later. Only the share done *by this
attempt* counts (`start_fraction` is where it began, e.g. a checkpoint), so a resumed attempt is
not credited with its predecessor's work.
"""

from __future__ import annotations

from datetime import datetime, timedelta

# Below this share done the rate is noise (a first batch, a warm-up): no estimate yet.
MIN_FRACTION = 0.01


def estimate_end(
    *, started_at: datetime, now: datetime, fraction: float | None, start_fraction: float = 0.0
) -> datetime | None:
    """The expected end of an attempt started at `started_at` that is `fraction` done (0-1)."""
    if fraction is None:
        return None
    done = fraction - start_fraction
    if done < MIN_FRACTION or fraction >= 1.0:
        return now if fraction >= 1.0 else None
    elapsed = (now - started_at).total_seconds()
    if elapsed <= 0:
        return None
    remaining = elapsed * (1.0 - fraction) / done
    return now + timedelta(seconds=remaining)
