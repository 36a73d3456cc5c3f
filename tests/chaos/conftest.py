"""The fault-injection suite: servers killed, restarted and frozen under load.

The servers are shared by the scenarios and keep their data in memory, except for the two
restart scenarios, each with a stack of its own: the broker-restart one keeps the broker's log in
an object store of its own, the database-restart one keeps MongoDB on disk, synced on every
commit (both slower, but they survive restarts). Each scenario runs its own
`ferry worker` processes and records the figures it asserts; they are printed at the end.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from service.config import Settings, settings_from_env
from service.database import Database, connect
from service.devstack import DevStack, Ports
from service.provisioning import provision
from tests.support.ferry import FerryProcess, ferry_command
from tests.support.infra import drop_test_database, isolated

# Figures recorded by the scenario running in this process; each test's leave with its report,
# so that they reach the process that prints the summary (pytest-xdist's controller, or this).
_RECORDED: list[tuple[str, str, str]] = []
FIGURES: list[tuple[str, str, str]] = []
_FIGURE = "chaos-figure"


def record(scenario: str, figure: str, value: object) -> None:
    _RECORDED.append((scenario, figure, str(value)))


@pytest.fixture(autouse=True)
def _figures_in_the_report(request: pytest.FixtureRequest) -> Iterator[None]:
    yield
    request.node.user_properties.extend((_FIGURE, figure) for figure in _RECORDED)
    _RECORDED.clear()


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.when == "teardown":
        for name, figure in report.user_properties:
            if name == _FIGURE and isinstance(figure, tuple | list):  # a list once it travelled
                scenario, label, value = figure
                FIGURES.append((str(scenario), str(label), str(value)))


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not FIGURES:
        return
    terminalreporter.section("fault-injection figures")
    width = max(len(f"{scenario}: {figure}") for scenario, figure, _ in FIGURES)
    for scenario, figure, value in FIGURES:
        terminalreporter.write_line(f"{f'{scenario}: {figure}':<{width}}  {value}")


@pytest.fixture(scope="session")
def chaos_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevStack]:
    # Servers frozen and workers killed, but no server restarted: nothing needs to outlive a
    # crash of the database, so it keeps its data in memory (a commit synced to disk costs).
    home = tmp_path_factory.mktemp("chaos")
    with DevStack(home, Ports.free()) as stack:
        yield stack
        stack.stop(graceful=False)  # throwaway data: no need to wait for a clean close


@pytest.fixture(scope="session")
def durable_db_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevStack]:
    # For the database-restart scenario alone: every commit on disk before it is acknowledged.
    home = tmp_path_factory.mktemp("durable-db")
    with DevStack(home, Ports.free(), mongo_storage=home / "mongo", durable_mongo=True) as stack:
        yield stack
        stack.stop(graceful=False)  # throwaway data: no need to wait for a clean close


@pytest.fixture(scope="session")
def durable_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevStack]:
    home = tmp_path_factory.mktemp("durable")
    with DevStack(home, Ports.free(), durable_kafka=True) as stack:
        yield stack
        stack.stop(graceful=False)  # throwaway data: no need to wait for a clean close


@dataclass
class Scenario:
    """One scenario's isolated names, settings and worker processes."""

    env: dict[str, str]
    settings: Settings
    workdir: Path
    stack: DevStack
    workers: list[FerryProcess] = field(default_factory=list)
    started: int = 0

    def start_worker(self) -> FerryProcess:
        self.started += 1
        worker = FerryProcess(
            f"worker-{self.started}", ferry_command("worker"), self.env, self.workdir
        )
        worker.start()
        self.workers.append(worker)
        return worker

    def kill(self, victim: FerryProcess) -> None:
        victim.stop(signal.SIGKILL)
        self.workers.remove(victim)

    def worker_with_pid(self, pid: int) -> FerryProcess | None:
        return next(
            (w for w in self.workers if w.process is not None and w.process.pid == pid), None
        )

    def stop(self) -> None:
        for worker in self.workers:
            worker.signal_stop()
        for worker in self.workers:
            worker.stop()
        self.workers.clear()

    def logs(self) -> str:
        return "\n".join(path.read_text()[-3000:] for path in self.workdir.glob("worker-*.log"))


@pytest.fixture
def scenario(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Scenario]:
    """Parametrize indirectly with FERRY_* overrides; `"stack": "durable"` picks the stack
    whose broker survives restarts, `"stack": "durable_db"` the one whose database does."""
    overrides = dict(getattr(request, "param", {}))
    stack: DevStack = request.getfixturevalue(f"{overrides.pop('stack', 'chaos')}_stack")
    env = {**isolated(stack.env()), **overrides}
    settings = settings_from_env(env)
    asyncio.run(provision(settings))
    running = Scenario(env, settings, tmp_path, stack)
    yield running
    running.stop()
    # The stacks live for the session: what a scenario loaded must not fill the next ones'
    # database (see service/devstack.py, IN_MEMORY_CACHE).
    asyncio.run(drop_test_database(settings.mongo))


@pytest_asyncio.fixture
async def scenario_db(scenario: Scenario) -> AsyncIterator[Database]:
    client = connect(scenario.settings.mongo, app_name="ferry-chaos")
    yield client[scenario.settings.mongo.database]
    await client.close()
