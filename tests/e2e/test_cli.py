"""The `ferry` command as people use it: keys (create, list, revoke), submitting with --wait,
and `ferry dev --demo`."""

from __future__ import annotations

import asyncio
import json
import re
import signal
import time
import uuid
from datetime import timedelta
from pathlib import Path

import httpx
import pytest

from service.api.keys import CACHE_SECONDS
from service.clock import rfc3339, utcnow
from service.database import Database
from service.demo import demo_messages, load_messages
from service.devstack import Ports, free_port, port_in_use
from tests.support.ferry import FerryProcess, RunningFerry, ferry_command, run_ferry

pytestmark = pytest.mark.e2e


async def test_keys_create_prints_a_working_key_alone_on_the_last_line(
    ferry: RunningFerry, e2e_env: dict[str, str], tmp_path: Path, http: httpx.AsyncClient
) -> None:
    result = run_ferry(e2e_env, tmp_path, "keys", "create", "--project", "cli-project")
    assert result.returncode == 0, result.stderr
    key = result.stdout.strip().splitlines()[-1]
    assert re.fullmatch(r"fry_[A-Za-z0-9_-]{43}", key)
    listed = await http.get("/v1/exports", headers={"Authorization": f"Bearer {key}"})
    assert listed.status_code == httpx.codes.OK


async def test_keys_list_and_revoke_a_key_the_api_then_refuses(
    ferry: RunningFerry, e2e_env: dict[str, str], tmp_path: Path, http: httpx.AsyncClient
) -> None:
    project = f"rev{uuid.uuid4().hex[:6]}"
    created = run_ferry(e2e_env, tmp_path, "keys", "create", "--project", project)
    assert created.returncode == 0, created.stderr
    key = created.stdout.strip().splitlines()[-1]
    headers = {"Authorization": f"Bearer {key}"}
    assert (await http.get("/v1/exports", headers=headers)).status_code == httpx.codes.OK

    listed = run_ferry(e2e_env, tmp_path, "keys", "list", "--project", project, "--json")
    assert listed.returncode == 0, listed.stderr
    (shown,) = json.loads(listed.stdout)
    assert shown["prefix"] == key[:12]
    assert shown["last_used_at"] is not None  # the request above
    assert shown["revoked"] is False
    assert key not in listed.stdout
    table = run_ferry(e2e_env, tmp_path, "keys", "list", "--project", project)
    assert shown["key_id"] in table.stdout
    assert key[:12] in table.stdout

    revoked = run_ferry(e2e_env, tmp_path, "keys", "revoke", shown["key_id"])
    assert revoked.returncode == 0, revoked.stderr
    assert "revoked" in revoked.stdout
    started = time.monotonic()
    while (await http.get("/v1/exports", headers=headers)).status_code != httpx.codes.UNAUTHORIZED:
        assert time.monotonic() - started < 60, "the API still accepts a revoked key"
        await asyncio.sleep(0.2)
    # "Within seconds": the API's cache keeps a key CACHE_SECONDS; the rest is a loaded machine.
    assert time.monotonic() - started < CACHE_SECONDS + 15
    brevo = await http.get("/v3/processes", headers={"api-key": key})
    assert brevo.status_code == httpx.codes.UNAUTHORIZED
    (after,) = json.loads(
        run_ferry(e2e_env, tmp_path, "keys", "list", "--project", project, "--json").stdout
    )
    assert after["revoked"] is True

    unknown = run_ferry(e2e_env, tmp_path, "keys", "revoke", "0" * 16)
    assert unknown.returncode == 2
    assert "KEY_NOT_FOUND" in unknown.stderr


async def test_submit_export_waits_and_prints_a_download_link(
    ferry: RunningFerry, e2e_env: dict[str, str], e2e_db: Database, tmp_path: Path
) -> None:
    project = f"cli{uuid.uuid4().hex[:6]}"
    end = utcnow()
    await load_messages(e2e_db, demo_messages(project, 300, end=end, span=timedelta(hours=1)))
    result = run_ferry(
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
    result = run_ferry(
        e2e_env, tmp_path, "submit", "export", "--project", "cli-bad",
        "--start", "2025-01-02T00:00:00Z", "--end", "2025-01-01T00:00:00Z", "--wait",
    )  # fmt: skip
    assert result.returncode == 1
    assert "INVALID_TIME_RANGE" in result.stdout


def test_commands_explain_missing_configuration(tmp_path: Path) -> None:
    result = run_ferry({}, tmp_path, "worker")
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


async def test_submit_import_uploads_waits_and_summarises(
    ferry: RunningFerry, e2e_env: dict[str, str], e2e_db: Database, tmp_path: Path
) -> None:
    project = f"cli{uuid.uuid4().hex[:6]}"
    contacts = tmp_path / "contacts.csv"
    contacts.write_bytes(
        b"\xef\xbb\xbfEMAIL;FIRSTNAME\r\nann@x.io;Ann\r\nbad;Bo\r\nann@x.io;Dup\r\n"
    )
    dry = run_ferry(
        e2e_env, tmp_path, "submit", "import", "--project", project, "--file", str(contacts),
        "--dry-run", "--wait",
    )  # fmt: skip
    assert dry.returncode == 0, dry.stdout + dry.stderr
    assert "Dry run" in dry.stdout
    assert "3 rows read, 1 created, 0 updated, 0 unchanged, 2 rejected" in dry.stdout
    assert await e2e_db["contacts"].count_documents({"project_id": project}) == 0

    real = run_ferry(
        e2e_env, tmp_path, "submit", "import", "--project", project, "--file", str(contacts),
        "--list-id", "3", "--wait",
    )  # fmt: skip
    assert real.returncode == 0, real.stdout + real.stderr
    assert "3 rows read, 1 created" in real.stdout
    report = re.search(r"Report rejected_rows \(2 rows\): (\S+)", real.stdout)
    assert report is not None, real.stdout
    async with httpx.AsyncClient() as client:
        body = (await client.get(report.group(1))).text
    assert "invalid_email" in body
    assert "duplicate_email" in body
    stored = await e2e_db["contacts"].find_one({"project_id": project})
    assert stored is not None
    assert (stored["email"], stored["list_ids"]) == ("ann@x.io", [3])


def test_submit_import_wait_exits_1_on_a_failed_import(
    ferry: RunningFerry, e2e_env: dict[str, str], tmp_path: Path
) -> None:
    binary = tmp_path / "contacts.xlsx"
    binary.write_bytes(b"PK\x03\x04\x14\x00\x00\x00\x08\x00\x00 not text")
    result = run_ferry(
        e2e_env, tmp_path, "submit", "import", "--project", "cli-bad", "--file", str(binary),
        "--wait",
    )  # fmt: skip
    assert result.returncode == 1
    assert "INVALID_FILE" in result.stdout
