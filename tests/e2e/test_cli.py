"""The `ferry` command as people use it: keys, submitting with --wait, and `ferry dev --demo`."""

from __future__ import annotations

import re
import signal
import subprocess
import time
import uuid
from datetime import timedelta
from pathlib import Path

import httpx
import pytest

from service.clock import rfc3339, utcnow
from service.database import Database
from service.demo import demo_messages, load_messages
from service.devstack import Ports, free_port, port_in_use
from tests.support.ferry import FerryProcess, RunningFerry, base_env, ferry_command

pytestmark = pytest.mark.e2e


def run_cli(
    env: dict[str, str], cwd: Path, *args: str, timeout: float = 90
) -> subprocess.CompletedProcess[str]:
    # cwd is a scratch directory, so no .ferry/dev.env is found.
    return subprocess.run(
        ferry_command(*args),
        env={**base_env(), **env, "COLUMNS": "200"},
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


async def test_keys_create_prints_a_working_key_alone_on_the_last_line(
    ferry: RunningFerry, e2e_env: dict[str, str], tmp_path: Path, http: httpx.AsyncClient
) -> None:
    result = run_cli(e2e_env, tmp_path, "keys", "create", "--project", "cli-project")
    assert result.returncode == 0, result.stderr
    key = result.stdout.strip().splitlines()[-1]
    assert re.fullmatch(r"fry_[A-Za-z0-9_-]{43}", key)
    listed = await http.get("/v1/exports", headers={"Authorization": f"Bearer {key}"})
    assert listed.status_code == httpx.codes.OK


async def test_submit_export_waits_and_prints_a_download_link(
    ferry: RunningFerry, e2e_env: dict[str, str], e2e_db: Database, tmp_path: Path
) -> None:
    project = f"cli{uuid.uuid4().hex[:6]}"
    end = utcnow()
    await load_messages(e2e_db, demo_messages(project, 300, end=end, span=timedelta(hours=1)))
    result = run_cli(
        e2e_env, tmp_path, "submit", "export", "--project", project,
        "--start", rfc3339(end - timedelta(hours=1)), "--end", rfc3339(end + timedelta(seconds=1)),
        "--format", "jsonl", "--gzip", "--wait",
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Completed:" in result.stdout
    url = re.search(r"Download \(valid \d+s\): (\S+)", result.stdout)
    assert url is not None, result.stdout
    async with httpx.AsyncClient() as client:
        assert (await client.get(url.group(1))).status_code == httpx.codes.OK


def test_submit_export_wait_exits_1_on_a_failed_job(
    ferry: RunningFerry, e2e_env: dict[str, str], tmp_path: Path
) -> None:
    result = run_cli(
        e2e_env, tmp_path, "submit", "export", "--project", "cli-bad",
        "--start", "2025-01-02T00:00:00Z", "--end", "2025-01-01T00:00:00Z", "--wait",
    )  # fmt: skip
    assert result.returncode == 1
    assert "INVALID_TIME_RANGE" in result.stdout


def test_commands_explain_missing_configuration(tmp_path: Path) -> None:
    result = run_cli({}, tmp_path, "worker")
    assert result.returncode == 2
    assert "FERRY_S3__ACCESS_KEY" in result.stderr
    assert "ferry dev" in result.stderr


def test_ferry_dev_demo_runs_an_export_and_stops_cleanly(tmp_path: Path) -> None:
    """What `make run` does, on free ports, in a scratch directory."""
    ports = Ports.free()
    api_port = free_port()
    dev = FerryProcess(
        "dev",
        ferry_command(
            "dev", "--demo", "--kafka-port", str(ports.kafka), "--mongo-port", str(ports.mongo),
            "--s3-port", str(ports.s3), "--api-port", str(api_port),
        ),
        {"COLUMNS": "300"},
        tmp_path,
    )  # fmt: skip
    dev.start()
    try:
        deadline = time.monotonic() + 120
        while "-o export.csv" not in dev.log() and time.monotonic() < deadline:
            assert dev.process is not None
            assert dev.process.poll() is None, dev.log()
            time.sleep(0.5)
        output = dev.log()
        assert "Demo export completed" in output, output
        assert (tmp_path / ".ferry" / "dev.env").exists()
        fetch, download = re.findall(r"curl (.*)", output)[-2:]
        key = re.search(r"Bearer (fry_\S+)'", fetch)
        assert key is not None
        headers = {"Authorization": f"Bearer {key.group(1)}"}
        job_url = fetch.split()[-1]
        job = httpx.get(job_url, headers=headers).json()["data"]
        assert job["status"] == "completed"
        file = httpx.get(download.split()[-3], headers=headers, follow_redirects=True)
        assert file.status_code == httpx.codes.OK
        assert len(file.content.splitlines()) == job["row_count"] + 1
    finally:
        code = dev.stop(signal.SIGTERM, timeout=30)
    assert code == 0, dev.log()[-2000:]
    assert not any(port_in_use(port) for port in (ports.kafka, ports.mongo, ports.s3, api_port))
    assert not (tmp_path / ".ferry" / "dev.env").exists()
