"""Export throughput and memory, against a baseline measured in the same run.

    .venv/bin/python bench/export.py [--rows N]

Pipeline: N rows exported by a real `ferry worker` process (request over Kafka, rows from
MongoDB, CSV written to S3 in multipart parts), timed from the job's start to its completion.
Baseline: the same query (filter, sort, projection, batch size) drained by the same driver into
`csv.writer` writing to nowhere. Memory: the worker's peak RSS (VmHWM) for N and for 10*N rows,
each with a fresh worker. Targets: ratio >= 0.8; peak at 10*N <= 1.25x peak at N.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import statistics
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.worker import BenchWorker  # noqa: E402
from service.config import Settings, settings_from_env  # noqa: E402
from service.database import connect  # noqa: E402
from service.datasets.messages import DATASET  # noqa: E402
from service.demo import demo_messages, load_messages  # noqa: E402
from service.devstack import DevStack, Ports  # noqa: E402
from service.events.submit import export_request  # noqa: E402
from service.jobs.model import ExportResult  # noqa: E402
from service.provisioning import provision  # noqa: E402
from tests.support.infra import isolated  # noqa: E402

END = datetime(2025, 12, 1, tzinfo=UTC)
SPAN = timedelta(days=30)
BATCH = 2000


class NullWriter:
    def write(self, text: str) -> int:
        return len(text)


async def seed(settings: Settings, project: str, rows: int) -> dict[str, str]:
    client = connect(settings.mongo, app_name="bench")
    database = client[settings.mongo.database]
    for index in DATASET.indexes:
        await database["messages"].create_index(list(index))
    chunk = 50_000
    for start in range(0, rows, chunk):
        batch = demo_messages(project, min(chunk, rows - start), end=END, span=SPAN, seed=start)
        # All outbound, so the export selects exactly the N rows seeded.
        outbound = [{**row, "direction": "outbound", "inbound_endpoint_id": None} for row in batch]
        await load_messages(database, outbound)
    await client.close()
    return {"start_time": (END - SPAN).isoformat(), "end_time": END.isoformat()}


async def baseline(settings: Settings, project: str, filters: dict[str, str]) -> tuple[int, float]:
    client = connect(settings.mongo, app_name="bench-baseline")
    collection = client[settings.mongo.database][DATASET.collection]
    parsed = DATASET.parse_filters(filters)
    fields = [column.field for column in DATASET.columns]
    writer = csv.writer(NullWriter())
    started = time.perf_counter()
    cursor = (
        collection.find(DATASET.query(project, parsed), dict.fromkeys(fields, 1))
        .sort(list(DATASET.sort))
        .batch_size(BATCH)
    )
    rows = 0
    while batch := await cursor.to_list(BATCH):
        writer.writerows([row.get(field) for field in fields] for row in batch)
        rows += len(batch)
    elapsed = time.perf_counter() - started
    await client.close()
    return rows, elapsed


async def export(worker: BenchWorker, project: str, filters: dict[str, str]) -> tuple[int, float]:
    """Rows exported, and seconds from the job's start to its completion."""
    request = export_request(project_id=project, job_id=str(uuid.uuid4()), filters=filters)
    job, seconds = await worker.run(request)
    if not isinstance(job.result, ExportResult):
        raise SystemExit(f"not an export: {job.id}")
    return job.result.row_count, seconds


async def main(rows: int, rounds: int) -> None:
    with tempfile.TemporaryDirectory() as scratch, DevStack(Path(scratch), Ports.free()) as stack:
        env = {**isolated(stack.env(), fast_timings=False), "FERRY_LOG_LEVEL": "warning"}
        settings = settings_from_env(env)
        await provision(settings)
        small, large = f"bench{rows}", f"bench{rows * 10}"
        print(f"seeding {rows} and {rows * 10} messages...", flush=True)
        small_filters = await seed(settings, small, rows)
        large_filters = await seed(settings, large, rows * 10)

        # This machine is noisy: warm both paths up, then alternate them and compare medians.
        base_rates, pipe_rates = [], []
        with BenchWorker(settings, env, Path(scratch)) as worker:
            await baseline(settings, small, small_filters)
            await export(worker, small, small_filters)
            for round_number in range(1, rounds + 1):
                base_rows, base_seconds = await baseline(settings, small, small_filters)
                pipe_rows, pipe_seconds = await export(worker, small, small_filters)
                if base_rows != pipe_rows:
                    raise SystemExit(f"row counts differ: {base_rows} vs {pipe_rows}")
                base_rates.append(base_rows / base_seconds)
                pipe_rates.append(pipe_rows / pipe_seconds)
                print(
                    f"round {round_number}: baseline {base_rates[-1]:.0f} rows/s, "
                    f"pipeline {pipe_rates[-1]:.0f} rows/s",
                    flush=True,
                )
        # Peak memory: a fresh worker for each size, one export each.
        with BenchWorker(settings, env, Path(scratch)) as worker:
            await export(worker, small, small_filters)
            peak_small = worker.peak_rss_kib()
        with BenchWorker(settings, env, Path(scratch)) as worker:
            large_rows, _ = await export(worker, large, large_filters)
            peak_large = worker.peak_rss_kib()

        base_rate, pipe_rate = statistics.median(base_rates), statistics.median(pipe_rates)
        print(f"rows exported (N)     {rows}")
        print(f"baseline              {base_rate:10.0f} rows/s  (drain + csv.writer to nowhere)")
        print(f"pipeline              {pipe_rate:10.0f} rows/s  (worker: MongoDB -> CSV -> S3)")
        ratio = pipe_rate / base_rate
        print(f"ratio                 {ratio:10.2f}  (median of {rounds} rounds; target >= 0.80)")
        print(f"worker peak RSS, N    {peak_small / 1024:10.1f} MiB  ({rows} rows)")
        print(f"worker peak RSS, 10N  {peak_large / 1024:10.1f} MiB  ({large_rows} rows)")
        print(f"memory growth         {peak_large / peak_small:10.2f}x (target <= 1.25x)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=100_000, help="N, messages in the small run")
    parser.add_argument("--rounds", type=int, default=3, help="alternating timed rounds")
    arguments = parser.parse_args()
    asyncio.run(main(arguments.rows, arguments.rounds))
