"""A `ferry api` with a low per-key rate limit: a key past its burst gets 429 with Retry-After in
each API's error shape, other keys are untouched, probes and metrics are never limited, and the
refusals are counted without naming any key or project."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from service.database import Database
from service.devstack import free_port
from tests.e2e.conftest import api_key
from tests.support.ferry import FerryProcess, ferry_command
from tests.support.metrics import scrape, total

pytestmark = pytest.mark.e2e

BURST = 3


@pytest.fixture
def limited_api(e2e_env: dict[str, str], tmp_path: Path) -> Iterator[FerryProcess]:
    port = free_port()
    env = {
        **e2e_env,
        "FERRY_API__PORT": str(port),
        # One request per 1000 s after the burst: no refill can happen while the test runs.
        "FERRY_API__RATE_LIMIT_PER_SECOND": "0.001",
        "FERRY_API__RATE_LIMIT_BURST": str(BURST),
        # Its own read model consumer: joining the shared group would move partitions away
        # from the session's API while other tests use it.
        "FERRY_KAFKA__READ_MODEL_GROUP": f"ferry-api-limited-{uuid.uuid4().hex[:6]}",
    }
    api = FerryProcess("api-limited", ferry_command("api"), env, tmp_path, http_port=port)
    api.start()
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{api.url}/readyz", timeout=2).status_code == httpx.codes.OK:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline or (api.process and api.process.poll() is not None):
                raise RuntimeError(f"the limited API never got ready:\n{api.log()[-3000:]}")
            time.sleep(0.2)
        yield api
    finally:
        api.stop()


async def test_a_key_past_its_limit_is_told_to_wait_in_each_apis_shape(
    limited_api: FerryProcess, e2e_db: Database
) -> None:
    project, other_project = f"rl{uuid.uuid4().hex[:6]}", f"rl{uuid.uuid4().hex[:6]}"
    bearer = await api_key(e2e_db, project)
    key = bearer["Authorization"].removeprefix("Bearer ")
    other = (await api_key(e2e_db, other_project))["Authorization"].removeprefix("Bearer ")
    async with httpx.AsyncClient(base_url=limited_api.url, timeout=10) as http:
        for _ in range(BURST):
            assert (await http.get("/v1/exports", headers=bearer)).status_code == httpx.codes.OK

        refused = await http.get("/v1/exports", headers=bearer)
        assert refused.status_code == httpx.codes.TOO_MANY_REQUESTS
        assert int(refused.headers["retry-after"]) >= 1
        body = refused.json()
        assert body["error"]["code"] == "RATE_LIMITED"
        assert body["meta"]["request_id"] == refused.headers["x-request-id"]

        # One bucket per key, whichever API it calls.
        brevo = await http.get("/v3/processes", headers={"api-key": key})
        assert brevo.status_code == httpx.codes.TOO_MANY_REQUESTS
        assert int(brevo.headers["retry-after"]) >= 1
        assert brevo.json()["code"] == "too_many_requests"
        assert set(brevo.json()) == {"code", "message"}

        # Another key is not affected; unknown keys get no bucket and stay 401.
        assert (await http.get("/v3/processes", headers={"api-key": other})).status_code == 200
        for _ in range(2 * BURST):
            unknown = await http.get("/v1/exports", headers={"Authorization": "Bearer fry_no"})
            assert unknown.status_code == httpx.codes.UNAUTHORIZED

        # Probes and metrics are not limited, and what they show names no project or key.
        for path in ("/healthz", "/readyz", "/metrics"):
            for _ in range(2 * BURST):
                answer = await http.get(path)
                assert answer.status_code == httpx.codes.OK, path
                for secret in (project, other_project, key, other):
                    assert secret not in answer.text, path
        samples = await scrape(http, limited_api.url)
    refusals = "ferry_http_rate_limited_total"
    assert total(samples, refusals, route="/v1/exports") == 1
    assert total(samples, refusals, route="/v3/processes") == 1
