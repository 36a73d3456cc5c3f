"""A running Ferry for end-to-end tests: `ferry worker` and `ferry api` as real processes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import httpx

from service.devstack import free_port


@dataclass
class FerryProcess:
    name: str
    argv: list[str]
    env: dict[str, str]
    workdir: Path
    process: subprocess.Popen[bytes] | None = None
    # Where /healthz, /readyz and /metrics answer (the API's port, or a worker's health port).
    http_port: int | None = None
    log_path: Path = field(init=False)
    _log: IO[bytes] | None = None
    _signalled: bool = False

    def __post_init__(self) -> None:
        self.log_path = self.workdir / f"{self.name}.log"

    def start(self) -> None:
        self._log = self.log_path.open("ab")
        # cwd is a scratch directory: the repository's .ferry/dev.env must never be read here.
        self.process = subprocess.Popen(
            self.argv,
            env={**base_env(), **self.env},
            cwd=self.workdir,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    def signal_stop(self) -> None:
        """Ask it to stop (SIGTERM) without waiting: several processes then shut down at once,
        each in its own grace period, and `stop()` waits for them one after the other."""
        if self.process is not None and self.process.poll() is None and not self._signalled:
            self.process.send_signal(signal.SIGTERM)
            self._signalled = True

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15.0) -> int | None:
        if self.process is None:
            return None
        if self.process.poll() is None:
            if not (self._signalled and sig == signal.SIGTERM):
                self.process.send_signal(sig)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                # Stuck: have it log what each task waits on, then kill it.
                self.process.send_signal(signal.SIGUSR1)
                time.sleep(1)
                self.process.kill()
                self.process.wait()
        code = self.process.returncode
        self.process = None
        self._signalled = False
        if self._log is not None:
            self._log.close()
        return code

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    @property
    def url(self) -> str:
        if self.http_port is None:
            raise RuntimeError(f"{self.name} serves no HTTP")
        return f"http://127.0.0.1:{self.http_port}"


def ferry_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "service.cli", *args]


def base_env() -> dict[str, str]:
    # Keep PATH and friends, drop any FERRY_* of the developer's shell.
    return {name: value for name, value in os.environ.items() if not name.startswith("FERRY_")}


@dataclass
class RunningFerry:
    """One API and a pool of workers against the test servers."""

    env: dict[str, str]
    workdir: Path
    api_port: int = field(default_factory=free_port)
    workers: list[FerryProcess] = field(default_factory=list)
    api: FerryProcess | None = None

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    def start(self, workers: int = 1) -> None:
        api_env = {**self.env, "FERRY_API__PORT": str(self.api_port)}
        self.api = FerryProcess(
            "api", ferry_command("api"), api_env, self.workdir, http_port=self.api_port
        )
        self.api.start()
        for _ in range(workers):
            self.add_worker()
        self._await_ready()

    def add_worker(self) -> FerryProcess:
        # Each worker on its own health port, as each pod would have.
        health_port = free_port()
        worker = FerryProcess(
            f"worker-{len(self.workers)}",
            ferry_command("worker"),
            {**self.env, "FERRY_OBSERVABILITY__HEALTH_PORT": str(health_port)},
            self.workdir,
            http_port=health_port,
        )
        worker.start()
        self.workers.append(worker)
        return worker

    def stop(self) -> None:
        for worker in self.workers:
            worker.signal_stop()
        for worker in self.workers:
            worker.stop()
        if self.api is not None:
            self.api.stop()

    def _await_ready(self, timeout: float = 60.0) -> None:
        """Until the API and every worker answer /readyz with 200."""
        waiting = [process for process in [self.api, *self.workers] if process is not None]
        deadline = time.monotonic() + timeout
        while waiting and time.monotonic() < deadline:
            for process in list(waiting):
                if process.process and process.process.poll() is not None:
                    raise RuntimeError(f"{process.name} exited:\n{process.log()[-3000:]}")
                try:
                    if httpx.get(f"{process.url}/readyz", timeout=2).status_code == httpx.codes.OK:
                        waiting.remove(process)
                except httpx.HTTPError:
                    pass
            time.sleep(0.2)
        if waiting:
            logs = "\n".join(f"{p.name}:\n{p.log()[-2000:]}" for p in waiting)
            raise RuntimeError(f"not ready in {timeout}s:\n{logs}")


def run_ferry(
    env: dict[str, str], cwd: Path, *args: str, timeout: float = 90
) -> subprocess.CompletedProcess[str]:
    """One `ferry ...` command, as a person would run it; cwd is a scratch directory, so no
    .ferry/dev.env is found."""
    return subprocess.run(
        ferry_command(*args),
        env={**base_env(), **env, "COLUMNS": "200"},
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def await_log_line(process: FerryProcess, marker: str, timeout: float = 60.0) -> None:
    """Wait until `marker` appears in the process's log (it fails fast if the process exits)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if marker in process.log():
            return
        if process.process is None or process.process.poll() is not None:
            raise RuntimeError(f"{process.name} exited:\n{process.log()[-3000:]}")
        time.sleep(0.1)
    raise RuntimeError(f"{process.name} never logged {marker!r}:\n{process.log()[-3000:]}")
