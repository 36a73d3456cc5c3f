"""API keys on a real database: listed without the key, revoked by id, refused once revoked
(after the cache's few seconds at most), and when each was last used."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta

import pytest

from service.api.keys import KEYS_COLLECTION, LAST_USED_RESOLUTION, ApiKeys, KeyNotFoundError
from service.clock import utcnow
from service.database import Database

pytestmark = pytest.mark.integration


def a_project() -> str:
    return f"keys{uuid.uuid4().hex[:8]}"


async def test_keys_are_listed_by_id_and_prefix_never_in_full(database: Database) -> None:
    keys = ApiKeys(database, cache_seconds=0)
    project = a_project()
    first, second = await keys.create(project), await keys.create(project)
    await keys.create(a_project())  # another project's: not listed
    listed = await keys.of_project(project)
    assert [key.prefix for key in listed] == [first[:12], second[:12]]
    assert len({key.key_id for key in listed}) == 2
    assert all(len(key.key_id) == 16 for key in listed)
    for key in listed:
        assert key.project_id == project
        assert key.last_used_at is None
        assert key.revoked_at is None
        assert key.created_at <= utcnow()
        assert first not in repr(key)
        assert second not in repr(key)


async def test_a_revoked_key_is_refused_and_listed_as_revoked(database: Database) -> None:
    keys = ApiKeys(database, cache_seconds=0)
    project = a_project()
    kept, revoked = await keys.create(project), await keys.create(project)
    assert await keys.project_for(revoked) == project
    revoked_id = next(k.key_id for k in await keys.of_project(project) if k.prefix == revoked[:12])
    info = await keys.revoke(revoked_id)
    assert info.revoked_at is not None
    assert info.key_id == revoked_id
    assert await keys.project_for(revoked) is None
    assert await keys.project_for(kept) == project
    again = await keys.revoke(revoked_id)  # revoking twice keeps the first time
    assert again.revoked_at == info.revoked_at
    states = {key.prefix: key.revoked_at for key in await keys.of_project(project)}
    assert states == {kept[:12]: None, revoked[:12]: info.revoked_at}


@pytest.mark.parametrize("key_id", ["0" * 16, "not-an-id", "", "f" * 64, "a" * 15])
async def test_revoking_an_unknown_id_says_so(database: Database, key_id: str) -> None:
    with pytest.raises(KeyNotFoundError, match="no API key has the id"):
        await ApiKeys(database).revoke(key_id)


async def test_a_cached_key_is_refused_once_the_cache_time_has_passed(database: Database) -> None:
    cache_seconds = 1.0
    api = ApiKeys(database, cache_seconds=cache_seconds)  # one API replica
    admin = ApiKeys(database)  # the CLI
    project = a_project()
    key = await admin.create(project)
    assert await api.project_for(key) == project
    (info,) = await admin.of_project(project)
    await admin.revoke(info.key_id)
    revoked_at = asyncio.get_running_loop().time()
    deadline = revoked_at + 30
    while await api.project_for(key) is not None:
        assert asyncio.get_running_loop().time() < deadline, "a revoked key is still accepted"
        await asyncio.sleep(0.05)
    # Served from the cache for a while is allowed, but no longer than the cache keeps it (with
    # a loaded machine's margin).
    assert asyncio.get_running_loop().time() - revoked_at < cache_seconds + 10


async def test_last_use_is_recorded_at_most_once_a_minute(database: Database) -> None:
    keys = ApiKeys(database, cache_seconds=0)
    project = a_project()
    key = await keys.create(project)
    assert await keys.project_for(key) == project
    (first,) = await keys.of_project(project)
    assert first.last_used_at is not None
    assert await keys.project_for(key) == project
    (second,) = await keys.of_project(project)
    assert second.last_used_at == first.last_used_at  # within the minute: not written again
    # A use more than a minute after the recorded one moves it.
    earlier = utcnow() - LAST_USED_RESOLUTION - timedelta(seconds=5)
    await database[KEYS_COLLECTION].update_one(
        {"project_id": project}, {"$set": {"last_used_at": earlier}}
    )
    assert await keys.project_for(key) == project
    (third,) = await keys.of_project(project)
    assert third.last_used_at is not None
    assert third.last_used_at > earlier + LAST_USED_RESOLUTION


@pytest.mark.parametrize("key", ["", "fry_nope", "sk_live_abc", "fry_" + "x" * 5000])
async def test_things_that_are_not_keys_find_no_project(database: Database, key: str) -> None:
    assert await ApiKeys(database).project_for(key) is None
