"""Webhook event types: `{kind}.{status}` (`export.completed`, `import.failed`), and what an
endpoint may subscribe to: a type, every type of a kind (`export.*`), or everything (`*`).

Derived from the job kinds and statuses, so a new kind (imports) needs no change here.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import get_args

from service.jobs.model import JobKind
from service.jobs.status import JobStatus

ALL = "*"


def event_type(kind: str, status: str) -> str:
    return f"{kind}.{status}"


def known_event_types() -> list[str]:
    return [event_type(kind, status.value) for kind in get_args(JobKind) for status in JobStatus]


def subscriptions_matching(event: str) -> list[str]:
    """The subscriptions that receive `event`: itself, its kind's wildcard and `*`."""
    kind, _, _ = event.partition(".")
    return [event, f"{kind}.*", ALL]


def check_subscriptions(requested: Iterable[str]) -> list[str]:
    """The subscriptions, without duplicates; ValueError naming what is unknown."""
    valid = {ALL, *known_event_types(), *(f"{kind}.*" for kind in get_args(JobKind))}
    wanted = list(dict.fromkeys(item.strip() for item in requested if item.strip()))
    if not wanted:
        raise ValueError("subscribe to at least one event type (or `*` for all)")
    unknown = [item for item in wanted if item not in valid]
    if unknown:
        raise ValueError(
            f"unknown event types {unknown}; choose from `*`, "
            + ", ".join(f"`{item}`" for item in sorted(valid - {ALL}))
        )
    return wanted
