"""Split exports and manifests against real MongoDB and S3: every file opens on its own, the
files together hold every row once and in order, the manifest's figures match the bytes stored,
and expiry removes every file and the manifest."""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
import json
import random
import uuid
from datetime import timedelta
from typing import Any

import pytest

from service.clock import utcnow
from service.config import Settings
from service.database import Database
from service.exports.expiry import ExpirySweeper
from service.jobs.ledger import Ledger
from service.jobs.model import ExportResult
from service.leadership import Leadership
from service.storage import ObjectStore
from tests.integration.conftest import new_job
from tests.integration.test_exporter import claimed, exporter, seed

pytestmark = pytest.mark.integration

FILTERS = {"start_time": "2025-12-01T00:00:00Z", "end_time": "2025-12-02T00:00:00Z"}


def csv_rows(data: bytes, *, gzipped: bool) -> list[dict[str, str]]:
    text = (gzip.decompress(data) if gzipped else data).decode()
    return list(csv.DictReader(io.StringIO(text, newline="")))


async def check_manifest(
    store: ObjectStore, result: ExportResult, *, gzipped: bool
) -> tuple[dict[str, Any], list[dict[str, str]]]:
    """The manifest, checked against the files it lists; all rows of all files, in order."""
    assert result.manifest_key is not None
    manifest = json.loads(await store.read(result.manifest_key))
    rows: list[dict[str, str]] = []
    assert [entry["part"] for entry in manifest["files"]] == [f.part for f in result.files]
    for entry, file in zip(manifest["files"], result.files, strict=True):
        stored = await store.read(file.key)
        assert file.key.endswith("/" + entry["name"]) or file.key.endswith(entry["name"])
        assert entry["size_bytes"] == len(stored) == file.size_bytes
        assert entry["sha256"] == hashlib.sha256(stored).hexdigest() == file.sha256
        these = csv_rows(stored, gzipped=gzipped)  # each file opens on its own, with its header
        assert entry["rows"] == len(these) == file.rows
        rows += these
    assert manifest["total_rows"] == len(rows) == result.row_count
    assert manifest["total_bytes"] == result.file_size_bytes
    return manifest, rows


async def test_max_rows_per_file_cuts_numbered_files_each_with_its_header(
    database: Database, store: ObjectStore, settings: Settings, ledger: Ledger
) -> None:
    project = f"p{uuid.uuid4().hex[:8]}"
    docs = await seed(database, project, rows=2500, note_size=10)
    job = new_job(project, filters=FILTERS, max_rows_per_file=1000)
    result = await exporter(database, store, settings).run(job, await claimed(ledger, job))

    assert [file.key for file in result.files] == [
        f"exports/{project}/{job.id}/part-0000{n}.csv" for n in (1, 2, 3)
    ]
    assert [file.rows for file in result.files] == [1000, 1000, 500]
    assert result.file_sha256 is None  # several files: each has its own
    assert result.manifest_key == f"exports/{project}/{job.id}/manifest.json"
    manifest, rows = await check_manifest(store, result, gzipped=False)
    assert [row["id"] for row in rows] == [doc["_id"] for doc in docs]
    assert manifest["request"]["max_rows_per_file"] == 1000
    assert manifest["request"]["filters"] == FILTERS
    assert manifest["columns"][0] == {"name": "id", "type": "string", "nullable": False}
    assert {"name": "created_at", "type": "datetime", "nullable": False} in manifest["columns"]
    assert {"name": "delivered_at", "type": "datetime", "nullable": True} in manifest["columns"]
    assert manifest["data_as_of"] <= utcnow().isoformat()


async def test_max_file_bytes_holds_for_gzip_files(
    database: Database, store: ObjectStore, settings: Settings, ledger: Ledger
) -> None:
    project = f"p{uuid.uuid4().hex[:8]}"
    docs = await seed(database, project, rows=1200, note_size=10)
    # Notes of random hex compress about 2:1, so the gzip bound must be checked, not guessed.
    rng = random.Random(7)
    for doc in docs:
        doc["last_error"] = "=" + rng.randbytes(400).hex()
        await database["messages"].update_one(
            {"_id": doc["_id"]}, {"$set": {"last_error": doc["last_error"]}}
        )
    limit = 256 * 1024
    job = new_job(project, filters=FILTERS, compression="gzip", max_file_bytes=limit)
    result = await exporter(database, store, settings).run(job, await claimed(ledger, job))

    assert len(result.files) >= 3
    assert all(file.size_bytes <= limit for file in result.files)
    # Files are filled, not cut early: all but the last hold most of what the limit allows.
    assert all(file.size_bytes > limit * 0.8 for file in result.files[:-1])
    assert all(file.key.endswith(".csv.gz") for file in result.files)
    _, rows = await check_manifest(store, result, gzipped=True)
    assert [row["id"] for row in rows] == [doc["_id"] for doc in docs]
    assert [row["last_error"] for row in rows] == ["'" + doc["last_error"] for doc in docs]


async def test_a_one_file_export_keeps_its_key_and_gets_a_manifest_beside_it(
    database: Database, store: ObjectStore, settings: Settings, ledger: Ledger
) -> None:
    project = f"p{uuid.uuid4().hex[:8]}"
    await seed(database, project, rows=30, note_size=10)
    job = new_job(project, filters=FILTERS, format="jsonl")
    result = await exporter(database, store, settings).run(job, await claimed(ledger, job))

    assert result.object_key == f"exports/{project}/{job.id}.jsonl"
    assert result.manifest_key == f"exports/{project}/{job.id}.manifest.json"
    assert [(file.part, file.rows) for file in result.files] == [(None, 30)]
    assert result.file_sha256 == result.files[0].sha256
    manifest = json.loads(await store.read(result.manifest_key))
    assert manifest["files"][0]["name"] == f"{job.id}.jsonl"
    assert (
        manifest["files"][0]["sha256"]
        == hashlib.sha256(await store.read(result.object_key)).hexdigest()
    )
    assert manifest["total_rows"] == 30


async def test_an_empty_split_export_is_one_file_with_its_header(
    database: Database, store: ObjectStore, settings: Settings, ledger: Ledger
) -> None:
    project = f"p{uuid.uuid4().hex[:8]}"
    job = new_job(project, filters=FILTERS, max_rows_per_file=10)
    result = await exporter(database, store, settings).run(job, await claimed(ledger, job))
    assert [(file.part, file.rows) for file in result.files] == [(1, 0)]
    assert (await store.read(result.object_key)).startswith(b"id,direction,")


async def test_expiry_removes_every_file_and_the_manifest(
    database: Database, store: ObjectStore, settings: Settings, ledger: Ledger
) -> None:
    project = f"p{uuid.uuid4().hex[:8]}"
    await seed(database, project, rows=45, note_size=10)
    job = new_job(project, filters=FILTERS, max_rows_per_file=20)
    context = await claimed(ledger, job)
    result = await exporter(database, store, settings).run(job, context)
    await ledger.complete(context.lease, result, retention=timedelta(seconds=0))
    keys = result.object_keys()
    assert len(keys) == 4  # three files and the manifest
    assert all([await store.size(key) is not None for key in keys])

    leader = Leadership(database, name=f"t{uuid.uuid4()}", owner="t", ttl=timedelta(minutes=1))
    sweeper = ExpirySweeper(ledger, store, leader, interval_seconds=60)
    assert await sweeper.sweep_once() >= 1
    assert [await store.size(key) for key in keys] == [None] * 4
