from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta, timezone

from service.clock import as_utc, rfc3339, uuid7


def test_uuid7_has_version_variant_and_sorts_by_time() -> None:
    ids = [uuid7() for _ in range(200)]
    parsed = [uuid.UUID(value) for value in ids]
    assert all(u.version == 7 and u.variant == uuid.RFC_4122 for u in parsed)
    assert len(set(ids)) == len(ids)
    stamps = [u.int >> 80 for u in parsed]
    assert stamps == sorted(stamps)


def test_rfc3339_is_utc_with_z_and_millis_only_when_present() -> None:
    assert rfc3339(datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)) == "2025-01-02T03:04:05Z"
    assert rfc3339(datetime(2025, 1, 2, 3, 4, 5, 120000, tzinfo=UTC)) == "2025-01-02T03:04:05.120Z"
    plus_two = timezone(timedelta(hours=2))
    assert rfc3339(datetime(2025, 1, 2, 5, 4, 5, tzinfo=plus_two)) == "2025-01-02T03:04:05Z"


def test_naive_values_are_read_as_utc() -> None:
    assert as_utc(datetime(2025, 1, 1)).tzinfo is UTC  # noqa: DTZ001 - naive on purpose
