"""The composer's part plan: S3's rules (every part but the last >= 5 MiB, none > 5 GiB), the
chunk objects' bytes laid end to end in order exactly once, and a bounded read buffer."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from service.exports.compose import MIN_PART, PartPlan, plan_parts

MIN = 100  # scaled down: the rules do not depend on the figure
MAX = 1000


def _laid_out(plan: list[PartPlan]) -> list[tuple[int, int]]:
    """(source, offset) of every byte, in upload order."""
    return [
        (piece.source, offset)
        for part in plan
        for piece in part.pieces
        for offset in range(piece.start, piece.end)
    ]


@given(st.lists(st.integers(0, 3500), max_size=25))
def test_parts_follow_s3s_rules_and_keep_every_byte_in_order(sizes: list[int]) -> None:
    plan = plan_parts(sizes, min_part=MIN, max_part=MAX)
    assert all(part.size >= MIN for part in plan[:-1])
    assert all(0 < part.size <= MAX for part in plan)
    expected = [(source, offset) for source, size in enumerate(sizes) for offset in range(size)]
    assert _laid_out(plan) == expected
    for part in plan:
        if part.copy:
            assert len(part.pieces) == 1
        else:
            assert part.size <= MIN  # what is read into memory is at most one minimum part


@given(st.lists(st.integers(MIN, 3 * MIN), min_size=1, max_size=10))
def test_chunk_objects_of_the_minimum_size_are_copied_whole_by_the_store(
    sizes: list[int],
) -> None:
    plan = plan_parts(sizes, min_part=MIN, max_part=MAX)
    assert all(part.copy for part in plan)
    assert len(plan) == len(sizes)


def test_small_chunks_are_buffered_and_a_large_one_after_them_tops_the_buffer_up() -> None:
    mib = 1024 * 1024
    plan = plan_parts([2 * mib, 9 * mib])
    assert [part.copy for part in plan] == [False, True]
    assert plan[0].size == MIN_PART
    assert plan[1].pieces[0].start == 3 * mib
