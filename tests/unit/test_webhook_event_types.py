"""Event types are `{kind}.{status}`; subscriptions are a type, `kind.*` or `*`."""

from __future__ import annotations

import re

import pytest

from service.webhooks.event_types import (
    check_subscriptions,
    event_type,
    known_event_types,
    subscriptions_matching,
)


def test_every_status_of_every_kind_is_an_event_type() -> None:
    assert set(known_event_types()) >= {
        "export.pending",
        "export.processing",
        "export.completed",
        "export.failed",
        "export.expired",
        "export.cancelled",
    }
    assert event_type("import", "failed") == "import.failed"


def test_an_event_reaches_its_type_its_kind_and_everything() -> None:
    assert subscriptions_matching("export.completed") == ["export.completed", "export.*", "*"]


def test_subscriptions_are_checked_and_deduplicated() -> None:
    assert check_subscriptions(["export.completed", " export.failed", "export.completed"]) == [
        "export.completed",
        "export.failed",
    ]
    assert check_subscriptions(["*"]) == ["*"]
    assert check_subscriptions(["export.*"]) == ["export.*"]


@pytest.mark.parametrize(
    ("requested", "says"),
    [
        ([], "at least one"),
        ([" ", ""], "at least one"),
        (["export.done"], "export.done"),
        (["invoice.completed"], "invoice.completed"),
        (["EXPORT.COMPLETED"], "EXPORT.COMPLETED"),
    ],
)
def test_unknown_subscriptions_are_refused_with_the_choices(
    requested: list[str], says: str
) -> None:
    with pytest.raises(ValueError, match=re.escape(says)) as refused:
        check_subscriptions(requested)
    if requested and requested[0].strip():
        assert "`export.completed`" in str(refused.value)
