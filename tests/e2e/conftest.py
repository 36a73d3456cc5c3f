"""The whole stack: `ferry api` and two `ferry worker` processes on the test servers."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Generator, Iterator
from typing import Any

import httpx
import pytest
import pytest_asyncio

from service.api.keys import ApiKeys
from service.config import Settings, settings_from_env
from service.database import Database, connect
from service.provisioning import provision
from tests.support.ferry import RunningFerry
from tests.support.infra import Infra, drop_test_database, isolated

FINISHED = {"completed", "failed", "expired", "cancelled"}


EXPORT_ROWS_PER_SECOND = 2000


@pytest.fixture(scope="session")
def e2e_env(infra: Infra) -> dict[str, str]:
    # Its own database and topics: these workers run for the whole session.
    # A low row limit, so that FILE_TOO_LARGE is reached with a small file. A rate limit high
    # enough never to throttle the tests' polling or the fuzzer (test_rate_limit.py lowers it).
    # Exports read at most EXPORT_ROWS_PER_SECOND, so that one of a few thousand rows runs for
    # seconds on any machine: the tests that read or cancel a running export need it running.
    return {
        **isolated(infra.env),
        "FERRY_KAFKA__MAX_EVENT_BYTES": "65536",
        "FERRY_IMPORTS__MAX_ROWS": "500",
        "FERRY_API__RATE_LIMIT_PER_SECOND": "10000",
        "FERRY_API__RATE_LIMIT_BURST": "10000",
        "FERRY_EXPORT__MAX_ROWS_PER_SECOND": str(EXPORT_ROWS_PER_SECOND),
    }


@pytest.fixture(scope="session")
def e2e_settings(e2e_env: dict[str, str]) -> Settings:
    settings = settings_from_env(e2e_env)
    asyncio.run(provision(settings))
    return settings


@pytest.fixture(scope="session")
def ferry(
    e2e_env: dict[str, str], e2e_settings: Settings, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningFerry]:
    running = RunningFerry(e2e_env, tmp_path_factory.mktemp("ferry"))
    running.start(workers=2)
    yield running
    running.stop()


@pytest_asyncio.fixture(scope="session")
async def e2e_db(e2e_settings: Settings) -> AsyncIterator[Database]:
    client = connect(e2e_settings.mongo, app_name="ferry-e2e")
    yield client[e2e_settings.mongo.database]
    await client.close()
    await drop_test_database(e2e_settings.mongo)


@pytest_asyncio.fixture(scope="session")
async def http(ferry: RunningFerry) -> AsyncIterator[httpx.AsyncClient]:
    # Longer than the API's own database deadline (FERRY_MONGO__TIMEOUT_SECONDS, 10 s): a slow
    # database then shows as the API's answer, a 503 in its envelope, not as this client's.
    async with httpx.AsyncClient(base_url=ferry.api_url, timeout=30) as client:
        yield client


_LOG_TAIL_CHARS = 6000


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """A failed test's report ends with the last lines each Ferry process logged: what the
    API and the workers did is most of what there is to know about an end-to-end failure,
    and on a CI machine the files are gone with it."""
    report = yield
    running = getattr(item, "funcargs", {}).get("ferry")
    if report.failed and isinstance(running, RunningFerry):
        for process in [running.api, *running.workers]:
            if process is not None:
                report.sections.append(
                    (
                        f"{process.name} log, last {_LOG_TAIL_CHARS} characters",
                        process.log()[-_LOG_TAIL_CHARS:],
                    )
                )
    return report


def unsigned(view: dict[str, Any]) -> dict[str, Any]:
    """An export's view without the links the API signs afresh on every read: what its status
    events and webhooks carry, and what two reads of an unchanged job have in common."""
    files = view.get("files") or []
    manifest = view.get("manifest")
    return {
        **view,
        "files": [{**file, "url": None, "expires_at": None} for file in files],
        "manifest": None if manifest is None else {**manifest, "url": None, "expires_at": None},
    }


async def api_key(database: Database, project: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {await ApiKeys(database).create(project)}"}


async def wait_for_job(
    http: httpx.AsyncClient,
    job_id: str,
    headers: dict[str, str],
    *,
    statuses: set[str] = FINISHED,
    timeout: float = 60.0,
    kind: str = "exports",
) -> dict[str, Any]:
    """Poll the API until the job reaches one of `statuses`; its view."""
    last: Any = None
    deadline = asyncio.get_running_loop().time() + timeout
    while asyncio.get_running_loop().time() < deadline:
        response = await http.get(f"/v1/{kind}/{job_id}", headers=headers)
        last = response.json()
        if response.status_code == httpx.codes.OK and last["data"]["status"] in statuses:
            return dict(last["data"])
        await asyncio.sleep(0.1)
    raise AssertionError(f"job {job_id} never reached {statuses}: {last}")
