"""How `make test` shares the tests between its two pytest-xdist processes.

The fault-injection scenarios stay together in one process, one after the other, as do the
whole-stack tests: each suite shares its servers and running Ferry processes, and its timing
bounds assume no twin of itself on the same cores. Everything else is spread over both.

The suites are grouped here rather than by `xdist_group` marks: xdist 3.8 applies those by
renaming each test through an attribute that pytest 9 no longer reads, so the marks were
silently ignored, and both suites were spread over both processes, scenarios running beside
one another.
"""

from __future__ import annotations

from xdist.scheduler import LoadScopeScheduling

SUITES_KEPT_TOGETHER = frozenset({"chaos", "e2e"})


def scope_of(nodeid: str) -> str:
    """The unit of work a test belongs to: its suite for a kept suite, else the test alone."""
    parts = nodeid.split("/", 2)
    if len(parts) == 3 and parts[0] == "tests" and parts[1] in SUITES_KEPT_TOGETHER:
        return parts[1]
    return nodeid


class SuiteScheduling(LoadScopeScheduling):  # type: ignore[misc]  # xdist has no types
    """xdist's scope scheduling over `scope_of`. It hands out the largest scopes first, so each
    kept suite starts at once, in a process of its own."""

    def _split_scope(self, nodeid: str) -> str:
        return scope_of(nodeid)
