"""The suites `make test` keeps in one process each, and the tests it spreads."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from tests.support.suites import scope_of


def test_a_kept_suites_tests_share_one_scope() -> None:
    assert scope_of("tests/chaos/test_worker_kills.py::test_x[scenario0-csv]") == "chaos"
    assert scope_of("tests/chaos/test_chunk_kills.py::test_y") == "chaos"
    assert scope_of("tests/e2e/test_cli.py::test_keys") == "e2e"


@given(st.sampled_from(["unit", "integration", "deploy"]), st.text(min_size=1))
def test_every_other_test_is_a_scope_of_its_own(suite: str, rest: str) -> None:
    nodeid = f"tests/{suite}/{rest}"
    assert scope_of(nodeid) == nodeid
