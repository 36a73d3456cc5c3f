"""Import throughput and memory, against a baseline measured in the same run.

    .venv/bin/python bench/import.py [--rows N] [--rounds R] [--memory-rows M] [--memory-dry-run]

Pipeline: a CSV of N valid new contacts imported by a real `ferry worker` process (request over
Kafka, the file streamed from S3 and read twice, rows validated, deduplicated, matched and
upserted into MongoDB), timed from the job's start to its completion, each round into a fresh
project. Baseline: the same rows, already parsed, bulk-upserted (matched on email) into a fresh
project by the same driver in the same batch size, against the same collection and indexes.
A second baseline inserts the same documents, already built, with insert_many: the importer's own
write for new contacts, so its ratio is what reading, validating and matching cost.
Memory: the worker's peak RSS (VmHWM) for M (default N) and for 10*M rows, each with a fresh
worker; with --memory-dry-run those imports are dry runs (everything but the writes), for the
embedded database, whose upserts scan the whole collection. Targets: ratio >= 0.7; peak at 10*M
<= 1.25x peak at M.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pymongo import UpdateOne  # noqa: E402

from bench.worker import BenchWorker  # noqa: E402
from service.clock import utcnow  # noqa: E402
from service.config import Settings, settings_from_env  # noqa: E402
from service.database import connect  # noqa: E402
from service.datasets import ensure_dataset_indexes  # noqa: E402
from service.devstack import DevStack, Ports  # noqa: E402
from service.events.submit import import_request  # noqa: E402
from service.imports import files  # noqa: E402
from service.imports.model import ImportResult  # noqa: E402
from service.provisioning import provision  # noqa: E402
from service.storage import ObjectStore  # noqa: E402
from service.storage.writer import ObjectWriter  # noqa: E402
from tests.support.infra import isolated  # noqa: E402

BATCH = 1000  # FERRY_IMPORTS__BATCH_SIZE's default: the baseline uses the same
CITIES = ("Paris", "Lyon", "Oslo", "Berlin", "Madrid", "Porto")


def contact(n: int) -> dict[str, str]:
    return {
        "EMAIL": f"user{n:08d}@example.com",
        "FIRSTNAME": f"First{n}",
        "LASTNAME": f"Last{n % 997}",
        "CITY": CITIES[n % len(CITIES)],
    }


def csv_lines(rows: int) -> list[str]:
    lines = ["EMAIL,FIRSTNAME,LASTNAME,CITY\r\n"]
    lines += [",".join(contact(n).values()) + "\r\n" for n in range(rows)]
    return lines


async def upload(settings: Settings, project: str, rows: int) -> dict[str, str]:
    """The CSV of `rows` contacts, uploaded in parts as `ferry submit import` does."""
    store = ObjectStore(settings.s3)
    key = files.upload_key(project, f"bench-{rows}.csv")
    writer = ObjectWriter(
        store, key, content_type="text/csv", part_size=settings.s3.part_size_bytes, gzip=False
    )
    lines = csv_lines(rows)
    for start in range(0, len(lines), 50_000):
        await writer.write("".join(lines[start : start + 50_000]).encode())
    await writer.close()
    return {"bucket": store.bucket, "key": key}


async def baseline(settings: Settings, project: str, rows: int) -> float:
    """Seconds to bulk-upsert the rows, already parsed, in batches of BATCH."""
    parsed = [contact(n) for n in range(rows)]
    client = connect(settings.mongo, app_name="bench-baseline")
    collection = client[settings.mongo.database]["contacts"]
    now = utcnow()
    started = time.perf_counter()
    for start in range(0, rows, BATCH):
        batch = parsed[start : start + BATCH]
        await collection.bulk_write(
            [
                UpdateOne(
                    {"project_id": project, "email": row["EMAIL"].lower()},
                    {
                        "$set": {
                            "attributes": {k: v for k, v in row.items() if k != "EMAIL"},
                            "modified_at": now,
                        },
                        "$setOnInsert": {"contact_id": start + offset + 1, "created_at": now},
                    },
                    upsert=True,
                )
                for offset, row in enumerate(batch)
            ],
            ordered=False,
        )
    elapsed = time.perf_counter() - started
    await client.close()
    return elapsed


async def insert_baseline(settings: Settings, project: str, rows: int) -> float:
    """Seconds to insert the same documents, already built, in batches of BATCH: the write the
    importer itself makes for new contacts, without reading, validating or matching."""
    now = utcnow()
    documents = [
        {
            "project_id": project,
            "contact_id": n + 1,
            "email": row["EMAIL"].lower(),
            "attributes": {k: v for k, v in row.items() if k != "EMAIL"},
            "created_at": now,
            "modified_at": now,
        }
        for n, row in enumerate(contact(n) for n in range(rows))
    ]
    client = connect(settings.mongo, app_name="bench-baseline")
    collection = client[settings.mongo.database]["contacts"]
    started = time.perf_counter()
    for start in range(0, rows, BATCH):
        await collection.insert_many(documents[start : start + BATCH], ordered=False)
    elapsed = time.perf_counter() - started
    await client.close()
    return elapsed


async def run_import(
    worker: BenchWorker, project: str, source: dict[str, str], *, dry_run: bool = False
) -> tuple[int, float]:
    """Contacts created (or that would be), and seconds from the job's start to its completion."""
    request = import_request(
        project_id=project, job_id=str(uuid.uuid4()), source=source, dry_run=dry_run
    )
    job, seconds = await worker.run(request)
    if not isinstance(job.result, ImportResult):
        raise SystemExit(f"not an import: {job.id}")
    return job.result.counts.created, seconds


async def main(rows: int, rounds: int, *, memory_rows: int, memory_dry_run: bool) -> None:
    with tempfile.TemporaryDirectory() as scratch, DevStack(Path(scratch), Ports.free()) as stack:
        env = {**isolated(stack.env(), fast_timings=False), "FERRY_LOG_LEVEL": "warning"}
        settings = settings_from_env(env)
        await provision(settings)
        client = connect(settings.mongo, app_name="bench")
        await ensure_dataset_indexes(client[settings.mongo.database])
        await client.close()
        run = uuid.uuid4().hex[:6]
        print(f"uploading {rows}, {memory_rows} and {memory_rows * 10} rows...", flush=True)
        small = await upload(settings, f"src{run}", rows)
        memory_small = await upload(settings, f"src{run}", memory_rows)
        memory_large = await upload(settings, f"src{run}", memory_rows * 10)

        # This machine is noisy: warm both paths up, then alternate them and compare medians.
        base_rates, insert_rates, pipe_rates = [], [], []
        with BenchWorker(settings, env, Path(scratch)) as worker:
            await baseline(settings, f"warm{run}b", rows)
            await _clear(settings, f"warm{run}b")
            await run_import(worker, f"src{run}", small)
            await _clear(settings, f"src{run}")  # so that round 1 creates them again
            for round_number in range(1, rounds + 1):
                base_seconds = await baseline(settings, f"b{run}{round_number}", rows)
                await _clear(settings, f"b{run}{round_number}")  # both sides see one collection
                insert_seconds = await insert_baseline(settings, f"i{run}{round_number}", rows)
                await _clear(settings, f"i{run}{round_number}")
                insert_rates.append(rows / insert_seconds)
                created, pipe_seconds = await run_import(worker, f"src{run}", small)
                base_rates.append(rows / base_seconds)
                pipe_rates.append(created / pipe_seconds)
                print(
                    f"round {round_number}: baseline {base_rates[-1]:.0f} rows/s, "
                    f"inserts {insert_rates[-1]:.0f} rows/s, pipeline {pipe_rates[-1]:.0f} rows/s",
                    flush=True,
                )
                # The next import into the same project must create again: clear it.
                await _clear(settings, f"src{run}")
        # Peak memory: a fresh worker for each size, one import each.
        with BenchWorker(settings, env, Path(scratch)) as worker:
            await run_import(worker, f"src{run}", memory_small, dry_run=memory_dry_run)
            peak_small = worker.peak_rss_kib()
        await _clear(settings, f"src{run}")
        with BenchWorker(settings, env, Path(scratch)) as worker:
            large_rows, _ = await run_import(
                worker, f"src{run}", memory_large, dry_run=memory_dry_run
            )
            peak_large = worker.peak_rss_kib()

        base_rate, pipe_rate = statistics.median(base_rates), statistics.median(pipe_rates)
        print(f"rows imported (N)     {rows}")
        print(f"baseline              {base_rate:10.0f} rows/s  (parsed rows, bulk upserts)")
        print(f"pipeline              {pipe_rate:10.0f} rows/s  (worker: S3 -> CSV -> MongoDB)")
        ratio = pipe_rate / base_rate
        print(f"ratio                 {ratio:10.2f}  (median of {rounds} rounds; target >= 0.70)")
        insert_rate = statistics.median(insert_rates)
        print(f"inserts               {insert_rate:10.0f} rows/s  (built documents, insert_many)")
        print(
            f"ratio to inserts      {pipe_rate / insert_rate:10.2f}  (the importer's own overhead)"
        )
        print(f"worker peak RSS, M    {peak_small / 1024:10.1f} MiB  ({memory_rows} rows)")
        verb = "would be created (dry runs)" if memory_dry_run else "created"
        print(f"worker peak RSS, 10M  {peak_large / 1024:10.1f} MiB  ({large_rows} rows {verb})")
        print(f"memory growth         {peak_large / peak_small:10.2f}x (target <= 1.25x)")


async def _clear(settings: Settings, project: str) -> None:
    client = connect(settings.mongo, app_name="bench")
    await client[settings.mongo.database]["contacts"].delete_many({"project_id": project})
    await client.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=20_000, help="N, contacts in the small run")
    parser.add_argument(
        "--memory-rows", type=int, help="M, contacts in the smaller memory run (default: N)"
    )
    parser.add_argument(
        "--memory-dry-run",
        action="store_true",
        help="measure memory with dry runs (everything but the upserts): for the embedded "
        "database, whose upserts scan the whole collection, so 10*N rows would take hours",
    )
    parser.add_argument("--rounds", type=int, default=3, help="alternating timed rounds")
    arguments = parser.parse_args()
    asyncio.run(
        main(
            arguments.rows,
            arguments.rounds,
            memory_rows=arguments.memory_rows or arguments.rows,
            memory_dry_run=arguments.memory_dry_run,
        )
    )
