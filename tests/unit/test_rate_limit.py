"""The per-key token bucket: bursts up to its size, then the rate; each key on its own; the
wait it names is enough; idle buckets are forgotten."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from service.api.ratelimit import RateLimiter
from service.errors import RateLimitedError


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_burst_is_allowed_then_the_rate_applies() -> None:
    clock = FakeClock()
    limiter = RateLimiter(rate=2, burst=3, clock=clock)
    assert [limiter.take("k") for _ in range(3)] == [None, None, None]
    assert limiter.take("k") == pytest.approx(0.5)
    clock.now += 0.5
    assert limiter.take("k") is None
    assert limiter.take("k") == pytest.approx(0.5)


def test_each_key_has_its_own_bucket() -> None:
    limiter = RateLimiter(rate=1, burst=1, clock=FakeClock())
    assert limiter.take("a") is None
    assert limiter.take("a") is not None
    assert limiter.take("b") is None


def test_a_refusal_names_whole_seconds_to_wait() -> None:
    limiter = RateLimiter(rate=0.25, burst=1, clock=FakeClock())
    limiter.check("k", route="/v1/exports")
    with pytest.raises(RateLimitedError) as refused:
        limiter.check("k", route="/v1/exports")
    assert refused.value.retry_after == 4
    assert refused.value.code == "RATE_LIMITED"
    assert refused.value.http_status == 429


def test_rate_zero_turns_the_limit_off() -> None:
    limiter = RateLimiter(rate=0, burst=1, clock=FakeClock())
    assert all(limiter.take("k") is None for _ in range(1000))


def test_buckets_that_filled_up_again_are_forgotten() -> None:
    clock = FakeClock()
    limiter = RateLimiter(rate=10, burst=10, clock=clock)
    for n in range(5000):
        limiter.take(f"key-{n}")
    assert len(limiter) >= 1024  # all were used within the last second
    clock.now += 2  # every bucket is full again
    # Sweeps come each time the count doubles; the next one (at 8192) drops the 5000 idle ones.
    for n in range(5000, 9000):
        limiter.take(f"key-{n}")
    assert len(limiter) == 4000


@given(
    rate=st.floats(min_value=0.1, max_value=100),
    burst=st.integers(min_value=1, max_value=50),
    gaps=st.lists(st.floats(min_value=0, max_value=2), min_size=1, max_size=300),
)
def test_never_more_than_the_burst_plus_the_rate_and_the_wait_named_is_enough(
    rate: float, burst: int, gaps: list[float]
) -> None:
    clock = FakeClock()
    start = clock.now
    limiter = RateLimiter(rate=rate, burst=burst, clock=clock)
    allowed = 0
    for gap in gaps:
        clock.now += gap
        wait = limiter.take("k")
        if wait is None:
            allowed += 1
            continue
        assert wait > 0
        # Asking again once the named wait has passed succeeds (the bucket is untouched by it).
        clock.now += wait + 1e-9
        assert limiter.take("k") is None
        allowed += 1
    assert allowed <= burst + rate * (clock.now - start) + 1e-6
