"""Ferry's own CPU cost per row, next to the bare Arrow path on the same documents.

    .venv/bin/python bench/cpu.py [--rows N] [--memory-rows M]

The embedded database hands out ~4,500 rows a second, so wall-clock benchmarks measure it, not
Ferry. This one measures the CPU time of a separate `ferry worker` process (utime + stime of all
its threads, from /proc/PID/stat) around each real job on the embedded stack, minus the process's
idle rate measured just before (its heartbeats and pollers); the database runs in other processes
and is not counted. Printed: rows per worker CPU-second for each export format and compression
(`messages`, N rows) and for a dry-run contacts import (N rows: parse, validate, dedupe).

Anchors, in the same run, on one core of this process (time.process_time), on the same data
already fetched, so the database is not in them either:
- export: the same query's raw BSON batches through pymongoarrow (`PyMongoArrowContext` with the
  dataset's schema, one batch at a time) into pyarrow's CSV writer, the same plus zlib level 6,
  and into pyarrow's ParquetWriter (zstd); JSON Lines is set against the floor, `bson.decode_all`.
- import: the same file through stdlib `csv` plus one e-mail regex, and through pyarrow's CSV
  reader plus an Arrow compute regex.
Memory: the worker's peak RSS (VmHWM) after a CSV export of M and of 10*M rows, each with a
fresh worker. Targets (issue 15): export CSV >= 250,000 rows/CPU-s, CSV+gzip >= 150,000, JSON
Lines >= 150,000, Parquet >= 250,000, import dry run >= 150,000; peak at 10*M <= 1.25x at M.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import io
import os
import re
import sys
import tempfile
import time
import uuid
import zlib
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import bson  # noqa: E402
import pyarrow as pa  # noqa: E402
import pyarrow.compute as pc  # noqa: E402
import pyarrow.csv as pa_csv  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402
from pymongoarrow.api import Schema  # noqa: E402
from pymongoarrow.context import PyMongoArrowContext  # noqa: E402

from bench.worker import BenchWorker  # noqa: E402
from service.config import Settings, settings_from_env  # noqa: E402
from service.database import connect  # noqa: E402
from service.datasets import ensure_dataset_indexes  # noqa: E402
from service.datasets.messages import DATASET  # noqa: E402
from service.demo import demo_messages, load_messages  # noqa: E402
from service.devstack import DevStack, Ports  # noqa: E402
from service.events.submit import export_request, import_request  # noqa: E402
from service.imports import files  # noqa: E402
from service.jobs.model import ExportResult  # noqa: E402
from service.provisioning import provision  # noqa: E402
from service.storage import ObjectStore  # noqa: E402
from service.storage.writer import ObjectWriter  # noqa: E402
from tests.support.infra import isolated  # noqa: E402

END = datetime(2025, 12, 1, tzinfo=UTC)
SPAN = timedelta(days=30)
BATCH = 2000  # FERRY_EXPORTS__BATCH_SIZE's default: the anchor reads the same batches
TICKS = os.sysconf("SC_CLK_TCK")
EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")
SCHEMA = Schema(
    {
        "_id": pa.string(),
        "direction": pa.string(),
        "endpoint_id": pa.string(),
        "inbound_endpoint_id": pa.string(),
        "status": pa.string(),
        "event_type": pa.string(),
        "attempt_count": pa.int64(),
        "last_response_status": pa.int64(),
        "last_error": pa.string(),
        "created_at": pa.timestamp("ms"),
        "delivered_at": pa.timestamp("ms"),
    }
)
EXPORTS = (("csv", "none"), ("csv", "gzip"), ("jsonl", "none"), ("parquet", "none"))
TARGETS = {
    "csv": 250_000,
    "csv+gzip": 150_000,
    "jsonl": 150_000,
    "parquet": 250_000,
    "import dry run": 150_000,
}


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS  # fields 14 and 15 of the whole line


async def idle_rate(pid: int, seconds: float = 3.0) -> float:
    """The worker's CPU seconds per second while it has no job."""
    before, started = cpu_seconds(pid), time.monotonic()
    await asyncio.sleep(seconds)
    return (cpu_seconds(pid) - before) / (time.monotonic() - started)


async def measured(worker: BenchWorker, request: dict[str, Any]) -> tuple[Any, float]:
    """The job, and the worker CPU seconds it cost (idle cost subtracted)."""
    pid = worker.pid
    idle = await idle_rate(pid)
    before, started = cpu_seconds(pid), time.monotonic()
    job, _ = await worker.run(request)
    # The job's last batch may still be in the relay/metrics path: a short settle, then read.
    await asyncio.sleep(0.5)
    spent = cpu_seconds(pid) - before - idle * (time.monotonic() - started)
    return job, max(spent, 1e-9)


async def seed(settings: Settings, project: str, rows: int) -> dict[str, str]:
    client = connect(settings.mongo, app_name="bench")
    database = client[settings.mongo.database]
    for index in DATASET.indexes:
        await database["messages"].create_index(list(index))
    for start in range(0, rows, 50_000):
        batch = demo_messages(project, min(50_000, rows - start), end=END, span=SPAN, seed=start)
        outbound = [{**row, "direction": "outbound", "inbound_endpoint_id": None} for row in batch]
        await load_messages(database, outbound)
    await client.close()
    return {"start_time": (END - SPAN).isoformat(), "end_time": END.isoformat()}


async def raw_batches(settings: Settings, project: str, filters: dict[str, str]) -> list[bytes]:
    """The export's query, as raw BSON batches: what the worker reads."""
    client = connect(settings.mongo, app_name="bench-anchor")
    collection = client[settings.mongo.database][DATASET.collection]
    parsed = DATASET.parse_filters(filters)
    projection = dict.fromkeys((column.field for column in DATASET.columns), 1)
    cursor = (
        collection.find_raw_batches(DATASET.query(project, parsed), projection)
        .sort(list(DATASET.sort))
        .batch_size(BATCH)
    )
    batches: list[bytes] = [batch async for batch in cursor]  # type: ignore[misc]
    await client.close()
    return batches


def contacts_csv(rows: int) -> bytes:
    lines = ["EMAIL,FIRSTNAME,LASTNAME,CITY\r\n"]
    lines += [f"user{n:08d}@example.com,First{n},Last{n % 997},Paris\r\n" for n in range(rows)]
    return "".join(lines).encode()


async def upload(settings: Settings, project: str, data: bytes) -> dict[str, str]:
    store = ObjectStore(settings.s3)
    key = files.upload_key(project, f"cpu-{uuid.uuid4().hex[:6]}.csv")
    writer = ObjectWriter(
        store, key, content_type="text/csv", part_size=settings.s3.part_size_bytes, gzip=False
    )
    chunk = 4 << 20
    for start in range(0, len(data), chunk):
        await writer.write(data[start : start + chunk])
    await writer.close()
    return {"bucket": store.bucket, "key": key}


def arrow_tables(batches: list[bytes]) -> list[pa.Table]:
    tables = []
    for raw in batches:
        context = PyMongoArrowContext(SCHEMA)
        context.process_bson_stream(raw)
        tables.append(context.finish())
    return tables


def anchor_csv(batches: list[bytes], *, gzip: bool) -> None:
    compressor = zlib.compressobj(6, zlib.DEFLATED, 31) if gzip else None
    for table in arrow_tables(batches):
        sink = pa.BufferOutputStream()
        pa_csv.write_csv(table, sink)
        if compressor is not None:
            compressor.compress(sink.getvalue().to_pybytes())
    if compressor is not None:
        compressor.flush()


def anchor_parquet(batches: list[bytes]) -> None:
    sink = pa.BufferOutputStream()
    writer: pq.ParquetWriter | None = None
    for table in arrow_tables(batches):
        writer = writer or pq.ParquetWriter(sink, table.schema, compression="zstd")
        writer.write_table(table)
    if writer is not None:
        writer.close()


def anchor_decode(batches: list[bytes]) -> None:
    for raw in batches:
        bson.decode_all(raw)


def anchor_import_csv(data: bytes) -> None:
    reader = csv.reader(io.StringIO(data.decode("utf-8-sig"), newline=""))
    next(reader)
    fullmatch = EMAIL.fullmatch
    for row in reader:
        fullmatch(row[0])


def anchor_import_arrow(data: bytes) -> None:
    reader = pa_csv.open_csv(pa.BufferReader(data))
    for batch in reader:
        pc.match_substring_regex(batch.column(0), r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


def one_core(work: Callable[[], None], rows: int, repeat: int = 3) -> float:
    """Rows per CPU-second of `work` in this process, the best of `repeat` runs."""
    best = float("inf")
    for _ in range(repeat):
        started = time.process_time()
        work()
        best = min(best, time.process_time() - started)
    return rows / max(best, 1e-9)


def load_average() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


async def main(rows: int, memory_rows: int) -> None:
    with tempfile.TemporaryDirectory() as scratch, DevStack(Path(scratch), Ports.free()) as stack:
        env = {**isolated(stack.env(), fast_timings=False), "FERRY_LOG_LEVEL": "warning"}
        settings = settings_from_env(env)
        await provision(settings)
        client = connect(settings.mongo, app_name="bench")
        await ensure_dataset_indexes(client[settings.mongo.database])
        await client.close()
        run = uuid.uuid4().hex[:6]
        project, small, large = f"cpu{run}", f"mem{run}", f"big{run}"
        print(f"seeding {rows} messages, {memory_rows} and {memory_rows * 10} more...", flush=True)
        filters = await seed(settings, project, rows)
        small_filters = await seed(settings, small, memory_rows)
        large_filters = await seed(settings, large, memory_rows * 10)
        contacts = contacts_csv(rows)
        source = await upload(settings, project, contacts)
        print(f"load average before: {load_average()}", flush=True)

        results: dict[str, float] = {}
        with BenchWorker(settings, env, Path(scratch)) as worker:
            warm = export_request(project_id=project, job_id=str(uuid.uuid4()), filters=filters)
            await worker.run(warm)
            for export_format, compression in EXPORTS:
                request = export_request(
                    project_id=project,
                    job_id=str(uuid.uuid4()),
                    filters=filters,
                    export_format=export_format,
                    compression=compression,
                )
                job, spent = await measured(worker, request)
                if not isinstance(job.result, ExportResult) or job.result.row_count != rows:
                    raise SystemExit(f"export {export_format} did not export {rows} rows: {job}")
                name = export_format + ("+gzip" if compression == "gzip" else "")
                results[name] = rows / spent
                print(f"  {name:15} {results[name]:10.0f} rows per worker CPU-s", flush=True)
            request = import_request(
                project_id=project, job_id=str(uuid.uuid4()), source=source, dry_run=True
            )
            job, spent = await measured(worker, request)
            results["import dry run"] = rows / spent
            print(f"  import dry run  {results['import dry run']:10.0f}", flush=True)

        batches = await raw_batches(settings, project, filters)
        anchors = {
            "csv": one_core(lambda: anchor_csv(batches, gzip=False), rows),
            "csv+gzip": one_core(lambda: anchor_csv(batches, gzip=True), rows),
            "jsonl": one_core(lambda: anchor_decode(batches), rows),
            "parquet": one_core(lambda: anchor_parquet(batches), rows),
            "import dry run": one_core(lambda: anchor_import_csv(contacts), rows),
        }
        arrow_import = one_core(lambda: anchor_import_arrow(contacts), rows)

        with BenchWorker(settings, env, Path(scratch)) as worker:
            await worker.run(
                export_request(project_id=small, job_id=str(uuid.uuid4()), filters=small_filters)
            )
            peak_small = worker.peak_rss_kib()
        with BenchWorker(settings, env, Path(scratch)) as worker:
            await worker.run(
                export_request(project_id=large, job_id=str(uuid.uuid4()), filters=large_filters)
            )
            peak_large = worker.peak_rss_kib()

        anchor_names = {
            "csv": "pymongoarrow + pyarrow CSV writer",
            "csv+gzip": "the same + zlib level 6",
            "jsonl": "floor: bson.decode_all alone",
            "parquet": "pymongoarrow + pyarrow ParquetWriter zstd",
            "import dry run": "stdlib csv + one regex",
        }
        print(f"\nrows (N) {rows}; load average after: {load_average()}")
        print(f"{'work':16}{'Ferry':>10}{'anchor':>11}{'ratio':>7}{'target':>9}  anchor")
        for name, rate in results.items():
            anchor = anchors[name]
            verdict = "met" if rate >= TARGETS[name] else "NOT met"
            print(
                f"{name:16}{rate:10.0f}{anchor:11.0f}{rate / anchor:7.2f}"
                f"{TARGETS[name]:9d}  {anchor_names[name]} ({verdict})"
            )
        print(f"{'':16}{'':10}{arrow_import:11.0f}{'':7}{'':9}  pyarrow CSV reader + compute regex")
        print(f"worker peak RSS, M    {peak_small / 1024:8.1f} MiB  ({memory_rows} rows)")
        print(f"worker peak RSS, 10M  {peak_large / 1024:8.1f} MiB  ({memory_rows * 10} rows)")
        print(f"memory growth         {peak_large / peak_small:8.2f}x (target <= 1.25x)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=60_000, help="N, messages and contacts")
    parser.add_argument("--memory-rows", type=int, default=20_000, help="M for the memory runs")
    arguments = parser.parse_args()
    asyncio.run(main(arguments.rows, arguments.memory_rows))
