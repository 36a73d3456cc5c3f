"""Scenario 8: MongoDB frozen under a running `ferry api`: requests answer 503 with Retry-After
in each API's shape within the database timeout, never a 500 and never a hang, and the API
answers again once the database is back."""

from __future__ import annotations

import time
import uuid

import httpx
import pytest

from service.api.keys import ApiKeys
from service.database import Database
from service.devstack import DevStack, free_port
from tests.chaos.conftest import Scenario, record
from tests.support.ferry import FerryProcess, ferry_command

pytestmark = pytest.mark.chaos

DB_TIMEOUT_SECONDS = 2


def await_ready(api: FerryProcess, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{api.url}/readyz", timeout=5).status_code == httpx.codes.OK:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"{api.name} not ready:\n{api.log()[-3000:]}")


@pytest.mark.parametrize(
    "scenario", [{"FERRY_MONGO__TIMEOUT_SECONDS": str(DB_TIMEOUT_SECONDS)}], indirect=True
)
async def test_a_frozen_database_answers_503_with_retry_after(
    scenario: Scenario, scenario_db: Database, chaos_stack: DevStack
) -> None:
    port = free_port()
    api = FerryProcess(
        "api",
        ferry_command("api"),
        {**scenario.env, "FERRY_API__PORT": str(port)},
        scenario.workdir,
        http_port=port,
    )
    api.start()
    try:
        await_ready(api)
        key = await ApiKeys(scenario_db).create(f"out{uuid.uuid4().hex[:6]}")
        v1 = ("/v1/exports", {"Authorization": f"Bearer {key}"})
        v3 = ("/v3/processes", {"api-key": key})
        async with httpx.AsyncClient(base_url=api.url, timeout=30) as http:
            for path, headers in (v1, v3):
                assert (await http.get(path, headers=headers)).status_code == httpx.codes.OK
            chaos_stack.pause("mongodb")
            try:
                answers = []
                waited = []
                for path, headers in (v1, v3):
                    started = time.monotonic()
                    answers.append((await http.get(path, headers=headers), path))
                    seconds = time.monotonic() - started
                    # Bounded by the database timeout (and some slack for a loaded machine).
                    assert seconds < DB_TIMEOUT_SECONDS + 10, (path, seconds)
                    waited.append(seconds)
                readiness = await http.get("/readyz")
            finally:
                chaos_stack.resume("mongodb")
            for response, path in answers:
                assert response.status_code == httpx.codes.SERVICE_UNAVAILABLE, response.text
                assert int(response.headers["retry-after"]) >= 1
                body = response.json()
                code = body["error"]["code"] if path.startswith("/v1") else body["code"]
                assert code in {"SERVICE_UNAVAILABLE", "service_unavailable"}, body
            assert readiness.status_code == httpx.codes.SERVICE_UNAVAILABLE
            record(
                "9 database outage under the API",
                f"503 + Retry-After while frozen (timeout {DB_TIMEOUT_SECONDS}s), slowest",
                f"{max(waited):.2f}s",
            )

            deadline = time.monotonic() + 60
            while (await http.get(v1[0], headers=v1[1])).status_code != httpx.codes.OK:
                assert time.monotonic() < deadline, "the API never answered again"
                time.sleep(0.5)
    finally:
        api.stop()
        assert "api.unexpected_error" not in api.log()
