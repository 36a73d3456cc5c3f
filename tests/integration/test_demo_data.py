"""Demo data loads idempotently: a retried load (or the demo run twice) adds nothing."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest

from service.clock import utcnow
from service.database import Database
from service.demo import demo_messages, load_messages

pytestmark = pytest.mark.integration


async def test_loading_the_same_messages_twice_keeps_one_copy(database: Database) -> None:
    project = f"demo{uuid.uuid4().hex[:6]}"
    messages = demo_messages(project, 120, end=utcnow(), span=timedelta(hours=1))
    await load_messages(database, messages[:50], batch=40)
    await load_messages(database, messages, batch=40)
    assert await database["messages"].count_documents({"project_id": project}) == 120
