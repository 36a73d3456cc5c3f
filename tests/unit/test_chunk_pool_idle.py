"""An idle chunk pool backs off: its waits double from the poll interval and stop growing at
IDLE_POLLS times it, so workers with no chunked export to help poll rarely."""

from __future__ import annotations

import itertools

from hypothesis import given
from hypothesis import strategies as st

from service.exports.chunk_workers import IDLE_POLLS, next_idle_wait


@given(poll=st.floats(0.001, 60), rounds=st.integers(0, 40))
def test_idle_waits_double_up_to_a_cap(poll: float, rounds: int) -> None:
    waits = [poll]
    for _ in range(rounds):
        waits.append(next_idle_wait(waits[-1], poll_seconds=poll))
    assert all(later >= earlier for earlier, later in itertools.pairwise(waits))
    assert max(waits) <= poll * IDLE_POLLS
    if rounds >= IDLE_POLLS.bit_length():
        assert waits[-1] == poll * IDLE_POLLS


def test_the_first_waits_are_the_poll_interval_doubled() -> None:
    assert next_idle_wait(0.5, poll_seconds=0.5) == 1.0
    assert next_idle_wait(1.0, poll_seconds=0.5) == 2.0
    assert next_idle_wait(4.0, poll_seconds=0.5) == 0.5 * IDLE_POLLS
