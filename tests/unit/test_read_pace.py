"""An export's read pace: on average no faster than the cap, and no wait without one."""

from __future__ import annotations

import asyncio

from hypothesis import given, settings
from hypothesis import strategies as st

from service.exports.read_pace import ReadPace


def paced(rate: float, batches: list[int]) -> float:
    """Seconds `batches` take through a pace of `rate` rows a second."""

    async def run() -> float:
        loop = asyncio.get_running_loop()
        pace = ReadPace(rate)
        started = loop.time()
        for rows in batches:
            await pace.after(rows)
        return loop.time() - started

    return asyncio.run(run())


@settings(max_examples=25, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=200), min_size=1, max_size=6))
def test_rows_take_at_least_their_share_of_a_second(batches: list[int]) -> None:
    rate = 20_000.0
    took = paced(rate, batches)
    assert took >= sum(batches) / rate - 0.002  # the loop's clock resolution
    assert took < sum(batches) / rate + 0.5


def test_no_cap_means_no_wait() -> None:
    assert paced(0.0, [10_000_000] * 3) < 0.05


def test_a_slow_batch_is_made_up_by_the_next_ones() -> None:
    async def run() -> float:
        loop = asyncio.get_running_loop()
        pace = ReadPace(1000.0)
        await pace.after(100)  # due at 0.1 s
        await asyncio.sleep(0.3)  # the caller was slow: 0.2 s behind
        before = loop.time()
        await pace.after(100)  # due at 0.2 s, long past
        return loop.time() - before

    assert asyncio.run(run()) < 0.02
