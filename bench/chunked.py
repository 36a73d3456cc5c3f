"""Chunked exports (issue 12, "Performance"): one export split into chunks, exported by one
`ferry worker` and by two, and what a `kill -9` of a chunk's worker costs.

    .venv/bin/python bench/chunked.py [--rows N] [--kill-format csv|csv+gzip] [--workdir DIR]

10*N outbound `messages` of one project are seeded and FERRY_EXPORT__CHUNK_ROWS is N. The job's
own worker writes the first N rows itself (the head), then splits the rows left into about 9
chunks (README, "Big exports are chunked"); a worker exports one chunk at a time
(FERRY_EXPORT__CHUNK_CONCURRENCY=1, FERRY_EXPORT__MAX_CHUNKS_PER_JOB=1).

Throughput: the 10*N rows as CSV and as CSV+gzip, with one worker (the baseline) and with two,
timed from the job's start to its completion as the ledger records them (head, plan, chunks and
composition). Beside each: the workers' CPU time per row (utime + stime from /proc, idle rate
subtracted, as bench/cpu.py does), and the cores the workers, the database server and the
object store server kept busy over the run: a worker far below one core waits on the database.
The database alone: the export's query drained as raw batches (nothing decoded) by one cursor,
and by two at once over the two halves of the time range.

Kill: two fresh workers export the 10*N rows; each time the rows they processed (each worker's
`ferry_rows_processed` counter on its /metrics) pass 40% and 70%, a worker holding a chunk (the
job's own worker only if no other holds one) gets `kill -9` and a replacement starts. The chunk's
lease lapses (FERRY_WORKER__LEASE_SECONDS, 10 here) and a worker continues it from the chunk's
checkpoint. Re-read, counted twice: the chunk's view (rows the victim had processed in it, from
its counter read just before the kill less the rows its log says it wrote elsewhere, minus the
rows the chunk's checkpoint held after the kill, where the next holder starts), and the whole
job's (rows every worker processed minus rows exported). Both count rows written to the
encoder: a batch fetched ahead and not written (the victim's, and the one the head stops
before when it splits) is read from the database too and is not in them. Then the composed
file is downloaded and checked: every id once and in the dataset's order (created_at, _id), the
job's SHA-256, no chunk object and no open upload left, and the job's re-read no more than one
chunk (N rows) per kill.

Split output: the 10*N rows as gzipped CSV files of N rows each (max_rows_per_file; such
exports are not chunked), each file read back: a header in each, every id once and in order
across them, and each file's rows, bytes and SHA-256 as the manifest lists them.

Any check failed prints FAIL and exits 1.

What to expect on the embedded stack: its database is a single-threaded Python server that
drains ~10,000 rows a second however many cursors read it, so two workers cannot beat one here
(a ratio about 1, or below); the figures that matter here are the re-read after a kill and the
check of the file. A chunk's range is read as flat queries in turn
(service/exports/key_ranges.py): as one `$and` of the filter and its bounds this database filtered
the whole collection before a chunk's first row.

A chunk checkpoints once per stored part (FERRY_S3__PART_SIZE_BYTES, 5 MiB here, the least S3
allows). These rows take ~150 bytes as CSV and ~17 gzipped, so a chunk smaller than a part
(CSV+gzip below ~300,000 rows, the default N included; CSV below ~35,000) checkpoints only when
it ends, and a kill re-reads all the victim had read of it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import csv
import gzip
import hashlib
import io
import json
import os
import struct
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Self, cast

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402

from bench.cpu import cpu_seconds, load_average, seed  # noqa: E402
from bench.worker import BenchWorker  # noqa: E402
from service.clock import as_utc, utcnow  # noqa: E402
from service.config import Settings, settings_from_env  # noqa: E402
from service.database import Database, connect  # noqa: E402
from service.datasets.messages import DATASET  # noqa: E402
from service.devstack import DevStack, Ports, free_port  # noqa: E402
from service.events.submit import export_request  # noqa: E402
from service.exports.chunk_ledger import CHUNKS_COLLECTION, PENDING, Chunk, ChunkLedger  # noqa: E402
from service.jobs.ledger import Ledger  # noqa: E402
from service.jobs.model import ExportResult, Job  # noqa: E402
from service.provisioning import provision  # noqa: E402
from service.storage import ObjectStore  # noqa: E402
from tests.chaos.helpers import incomplete_uploads, object_keys  # noqa: E402
from tests.support.infra import isolated  # noqa: E402

KILLS_AT = (0.4, 0.7)  # shares of the rows processed at which a worker is killed
BATCH = 2000  # FERRY_WORKER__BATCH_SIZE's default: the drains read the same batches
PART_SIZE = 5 * 1024 * 1024
FORMATS = {"csv": "none", "csv+gzip": "gzip"}
METRIC = "ferry_rows_processed_total"


def chunked_env(connection: dict[str, str], rows: int) -> dict[str, str]:
    return {
        **isolated(connection, fast_timings=False),
        "FERRY_LOG_LEVEL": "info",  # the chunk events: who exported, who resumed which chunk
        "FERRY_LOG_FORMAT": "json",
        "FERRY_EXPORT__CHUNK_ROWS": str(rows),
        "FERRY_EXPORT__MAX_CHUNKS": "64",
        "FERRY_EXPORT__CHUNK_CONCURRENCY": "1",
        "FERRY_EXPORT__MAX_CHUNKS_PER_JOB": "1",
        "FERRY_S3__PART_SIZE_BYTES": str(PART_SIZE),
        # A killed worker's chunk waits for its lease to lapse: 10 s rather than 30.
        "FERRY_WORKER__LEASE_SECONDS": "10",
        "FERRY_WORKER__HEARTBEAT_SECONDS": "3",
    }


def server_pid(module: str) -> int:
    """The pid of the embedded server run as `python -m module` by this process's DevStack."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == os.getpid() and module.encode() in argv:
            return int(entry.name)
    raise SystemExit(f"no {module} server among this process's children")


def documents_in(raw: bytes) -> int:
    """Documents in a raw batch: BSON documents end to end, each led by its int32 length."""
    count = offset = 0
    while offset < len(raw):
        offset += struct.unpack_from("<i", raw, offset)[0]
        count += 1
    return count


async def drain(settings: Settings, project: str, ranges: list[dict[str, str]]) -> float:
    """Rows per second of the export's query drained as raw batches, one cursor per range, all
    at once."""
    client = connect(settings.mongo, app_name="bench-drain")
    collection = client[settings.mongo.database][DATASET.collection]
    projection = dict.fromkeys((column.field for column in DATASET.columns), 1)

    async def one(filters: dict[str, str]) -> int:
        query = DATASET.query(project, DATASET.parse_filters(filters))
        cursor = (
            collection.find_raw_batches(query, projection)
            .sort(list(DATASET.sort))
            .batch_size(BATCH)
        )
        rows = 0
        async for raw in cursor:
            rows += documents_in(cast("bytes", raw))  # pymongo types raw batches as documents
        return rows

    started = time.perf_counter()
    rows = sum(await asyncio.gather(*(one(filters) for filters in ranges)))
    elapsed = time.perf_counter() - started
    await client.close()
    return rows / elapsed


def halves(filters: dict[str, str]) -> list[dict[str, str]]:
    start, end = (datetime.fromisoformat(filters[name]) for name in ("start_time", "end_time"))
    middle = (start + (end - start) / 2).isoformat()
    return [{**filters, "end_time": middle}, {**filters, "start_time": middle}]


@dataclass
class Worker:
    """A `ferry worker` of the pool, and the health port its /metrics answers on."""

    bench: BenchWorker
    port: int
    killed: bool = False

    async def rows_processed(self, http: httpx.AsyncClient) -> int:
        response = await http.get(f"http://127.0.0.1:{self.port}/metrics", timeout=5)
        response.raise_for_status()
        return round(
            sum(
                float(line.rsplit(" ", 1)[1])
                for line in response.text.splitlines()
                if line.startswith(METRIC)
            )
        )

    def events(self, name: str, job_id: str) -> list[dict[str, Any]]:
        """The worker's log events `name` of the job."""
        lines = self.bench.log_path.read_text(errors="replace").splitlines()
        found = [json.loads(line) for line in lines if line.startswith("{")]
        return [
            line for line in found if line.get("event") == name and line.get("job_id") == job_id
        ]


class Pool:
    """The workers of one run, each on a health port of its own; stopped together at the end."""

    def __init__(self, settings: Settings, env: dict[str, str], workdir: Path) -> None:
        self._settings, self._env, self._workdir = settings, env, workdir
        self._stack = contextlib.ExitStack()
        self.workers: list[Worker] = []
        self.http = httpx.AsyncClient()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *_: object) -> None:
        self._stack.close()
        await self.http.aclose()

    @property
    def live(self) -> list[Worker]:
        return [worker for worker in self.workers if not worker.killed]

    async def start(self, *, joined: bool = True) -> Worker:
        """A new worker, once its health port answers and, with `joined`, once its intake has
        joined the consumer group (/readyz does not wait for that), so a request published
        next is taken at once."""
        port = free_port()
        env = {**self._env, "FERRY_OBSERVABILITY__HEALTH_PORT": str(port)}
        worker = Worker(
            self._stack.enter_context(BenchWorker(self._settings, env, self._workdir)), port
        )
        self.workers.append(worker)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            with contextlib.suppress(httpx.HTTPError):
                ready = await self.http.get(f"http://127.0.0.1:{port}/readyz", timeout=2)
                if ready.status_code == httpx.codes.OK and (
                    not joined or '"worker.started"' in worker.bench.log_path.read_text()
                ):
                    return worker
            await asyncio.sleep(0.2)
        raise SystemExit(f"a worker did not start in 120 s: see {worker.bench.log_path}")

    def kill(self, worker: Worker) -> None:
        worker.bench.kill()
        worker.killed = True


@dataclass(frozen=True)
class Run:
    """One timed export."""

    name: str
    workers: int
    rows: int
    seconds: float  # the job's start to its completion
    chunks: int
    chunks_by_worker: list[int]
    window: float  # seconds over which the CPU figures were taken
    worker_cpu: float  # CPU-seconds of every worker
    worker_idle: float  # of which their idle rate (heartbeats, pollers) accounts for
    db_cpu: float  # CPU-seconds of the database server
    s3_cpu: float  # CPU-seconds of the object store server

    @property
    def rate(self) -> float:
        return self.rows / self.seconds

    @property
    def micros_per_row(self) -> float:
        """The workers' CPU per row, their idle rate subtracted."""
        return max(0.0, self.worker_cpu - self.worker_idle) / self.rows * 1e6

    def line(self) -> str:
        return (
            f"{self.name:9}{self.workers:>3}{self.seconds:9.1f}{self.rate:10.0f}"
            f"{self.micros_per_row:10.1f}{self.worker_cpu / self.window:9.2f}"
            f"{self.db_cpu / self.window:8.2f}{self.s3_cpu / self.window:8.2f}"
            + (
                f"  head + {self.chunks - 1} ({'+'.join(map(str, self.chunks_by_worker))})"
                if self.chunks
                else "  NOT chunked"
            )
        )


HEADER = (
    f"{'format':9}{'wk':>3}{'wall s':>9}{'rows/s':>10}{'µs/row':>10}{'worker':>9}{'db':>8}"
    f"{'s3':>8}  ranges (chunks per worker)"
)


async def timed(
    pool: Pool, servers: tuple[int, int], name: str, job_rows: int, filters: dict[str, str]
) -> Run:
    """One export of the pool's workers, with the CPU its workers and servers spent on it."""
    workers = pool.live
    pids = [worker.bench.pid for worker in workers]
    # The idle rate (heartbeats, pollers) of every worker, taken together just before, after
    # a settle (a worker just started is still busy for a moment). Over a run that waits on
    # the database it is no small share of the workers' CPU.
    await asyncio.sleep(2)
    idle_before, idle_started = [cpu_seconds(pid) for pid in pids], time.monotonic()
    await asyncio.sleep(5)
    idle = [
        (cpu_seconds(pid) - before) / (time.monotonic() - idle_started)
        for pid, before in zip(pids, idle_before, strict=True)
    ]
    before = [cpu_seconds(pid) for pid in (*pids, *servers)]
    started = time.monotonic()
    job_id = str(uuid.uuid4())
    request = export_request(
        project_id=f"chunked{job_rows}", job_id=job_id, filters=filters, compression=FORMATS[name]
    )
    job, seconds = await workers[0].bench.run(request)
    await asyncio.sleep(0.5)  # the last batch's bookkeeping, as bench/cpu.py allows for
    window = time.monotonic() - started
    spent = [cpu_seconds(pid) - cpu for pid, cpu in zip((*pids, *servers), before, strict=True)]
    if not isinstance(job.result, ExportResult) or job.result.row_count != job_rows:
        raise SystemExit(f"the {name} export did not export {job_rows} rows: {job.result}")
    planned = [
        event["chunks"] for worker in workers for event in worker.events("export.chunked", job_id)
    ]
    return Run(
        name=name,
        workers=len(workers),
        rows=job_rows,
        seconds=seconds,
        chunks=planned[0] if planned else 0,
        chunks_by_worker=[len(worker.events("export.chunk_done", job_id)) for worker in workers],
        window=window,
        worker_cpu=sum(spent[: len(pids)]),
        worker_idle=sum(idle) * window,
        db_cpu=spent[-2],
        s3_cpu=spent[-1],
    )


@dataclass(frozen=True)
class Verification:
    rows: int
    expected: int
    out_of_place: int  # positions whose id is not the one the dataset's order puts there
    duplicates: int
    missing: int
    sha256_matches: bool
    leftovers: list[str]

    @property
    def passed(self) -> bool:
        return (
            self.rows == self.expected
            and not self.out_of_place
            and self.sha256_matches
            and not self.leftovers
        )


class _Chunks(io.RawIOBase):
    """An iterator of bytes as a readable file, hashing what passes through."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self._chunks = chunks
        self._pending = b""
        self.sha256 = hashlib.sha256()

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:  # noqa: ANN401 - io's WriteableBuffer
        while not self._pending:
            try:
                self._pending = next(self._chunks)
            except StopIteration:
                return 0
            self.sha256.update(self._pending)
        size = min(len(buffer), len(self._pending))
        memoryview(buffer).cast("B")[:size] = self._pending[:size]
        self._pending = self._pending[size:]
        return size


def exported_ids(source: _Chunks, *, compressed: bool) -> Iterator[str]:
    raw = io.BufferedReader(source, 1 << 20)
    # GzipFile reads every member of concatenated gzip members, as the chunks compose them.
    text = io.TextIOWrapper(
        gzip.GzipFile(fileobj=raw) if compressed else raw, encoding="utf-8", newline=""
    )
    reader = csv.reader(text)
    column = next(reader).index("id")
    for row in reader:
        yield row[column]


async def expected_ids(database: Database, project: str, filters: dict[str, str]) -> list[str]:
    """The ids the export must hold, in the dataset's order."""
    query = DATASET.query(project, DATASET.parse_filters(filters))
    cursor = database[DATASET.collection].find(query, {"_id": 1}).sort(list(DATASET.sort))
    return [str(document["_id"]) async for document in cursor.batch_size(10_000)]


async def verify(settings: Settings, job: Job, expected: list[str]) -> Verification:
    result = job.result
    if not isinstance(result, ExportResult):
        raise SystemExit(f"not an export: {job.id}")
    store = ObjectStore(settings.s3)
    stored = await store.stat(result.object_key)
    if stored is None:
        raise SystemExit(f"the export's file {result.object_key} is not in the bucket")
    compressed = job.compression == "gzip"

    def read() -> tuple[int, int, str]:
        source = _Chunks(store.chunks(stored, chunk_size=8 << 20))
        rows = out_of_place = 0
        for position, found in enumerate(exported_ids(source, compressed=compressed)):
            rows += 1
            if position >= len(expected) or expected[position] != found:
                out_of_place += 1
        return rows, out_of_place, source.sha256.hexdigest()

    def counted() -> Counter[str]:
        source = _Chunks(store.chunks(stored, chunk_size=8 << 20))
        return Counter(exported_ids(source, compressed=compressed))

    rows, out_of_place, sha256 = await asyncio.to_thread(read)
    duplicates = missing = 0
    if out_of_place or rows != len(expected):  # only then: what went wrong, at the cost of a set
        found = await asyncio.to_thread(counted)
        duplicates = sum(count - 1 for count in found.values() if count > 1)
        missing = len(set(expected) - set(found))
    leftovers = object_keys(settings, f"exports/{job.project_id}/{job.id}/")
    leftovers += [f"upload of {key}" for key in incomplete_uploads(settings)]
    return Verification(
        rows,
        len(expected),
        out_of_place,
        duplicates,
        missing,
        sha256 == result.file_sha256,
        leftovers,
    )


@dataclass(frozen=True)
class Cut:
    """One `kill -9` of the kill run."""

    at: float  # share of the rows processed when the victim was chosen
    ledger_percent: float | None
    victim_owned_job: bool
    chunk: Chunk
    victim_from: int  # rows of the chunk its checkpoint held when the victim started it
    victim_in_chunk: int  # rows the victim had processed of the chunk
    checkpoint_rows: int  # rows its checkpoint held after the kill: where the next holder started
    chunk_rows: int | None  # the chunk's rows once done
    taken_over: str  # by whom, and whether from its checkpoint
    cut: bool  # False: the victim finished the chunk before it died

    @property
    def re_read(self) -> int:
        """The chunk's view: rows the victim processed past the checkpoint the next holder
        continued from."""
        return self.victim_from + self.victim_in_chunk - self.checkpoint_rows


@dataclass(frozen=True)
class Kill:
    """What the kill run measured."""

    name: str
    seconds: float
    cuts: list[Cut]
    processed: int  # every worker's rows processed
    exported: int
    verification: Verification = field(repr=False)

    @property
    def re_read(self) -> int:
        return self.processed - self.exported


def own_intake(env: dict[str, str], run: str) -> dict[str, str]:
    """A requests topic and an intake group of the run's own: on the embedded broker a group
    whose members all left (an earlier run's workers) was seen to keep new members waiting in
    JoinGroup for over ten minutes."""
    return {
        **env,
        "FERRY_KAFKA__REQUESTS_TOPIC": f"{env['FERRY_KAFKA__REQUESTS_TOPIC']}.{run}",
        "FERRY_KAFKA__INTAKE_GROUP": f"{env['FERRY_KAFKA__INTAKE_GROUP']}-{run}",
    }


@dataclass(frozen=True)
class SplitCheck:
    """The split-output run: files and manifest against the rows."""

    seconds: float
    files: int
    rows: int
    expected: int
    in_order: bool  # every file's ids, in part order, are exactly the expected ones
    headers: bool  # every file starts with the CSV header
    manifest_matches: bool  # every file's rows, bytes and SHA-256 as the manifest says
    manifest_total: int

    @property
    def passed(self) -> bool:
        return (
            self.in_order
            and self.headers
            and self.manifest_matches
            and self.rows == self.expected == self.manifest_total
        )


async def split_run(
    settings: Settings,
    *,
    env: dict[str, str],
    workdir: Path,
    job_rows: int,
    rows_per_file: int,
    filters: dict[str, str],
) -> SplitCheck:
    """The 10*N rows as gzipped CSV files of `rows_per_file` rows (one worker: split output is
    not chunked), each file read back and held against the manifest."""
    project = f"chunked{job_rows}"
    env = own_intake(env, "split")
    settings = settings_from_env(env)
    await provision(settings)
    client = connect(settings.mongo, app_name="bench-split")
    expected = await expected_ids(client[settings.mongo.database], project, filters)
    await client.close()
    async with Pool(settings, env, workdir) as pool:
        worker = await pool.start()
        request = export_request(
            project_id=project,
            job_id=str(uuid.uuid4()),
            filters=filters,
            compression="gzip",
            max_rows_per_file=rows_per_file,
        )
        job, seconds = await worker.bench.run(request)
    result = job.result
    if not isinstance(result, ExportResult) or result.manifest_key is None:
        raise SystemExit(f"the split export has no manifest: {result}")
    store = ObjectStore(settings.s3)
    manifest = json.loads(await store.read(result.manifest_key))
    listed = {entry["part"]: entry for entry in manifest["files"]}
    ids: list[str] = []
    headers = matches = True
    for file in sorted(result.files, key=lambda file: file.part or 0):
        stored = await store.read(file.key)
        text = gzip.decompress(stored)
        headers = headers and text.startswith(b"id,")
        of_file = list(exported_ids(_Chunks(iter([stored])), compressed=True))
        ids += of_file
        entry = listed.get(file.part, {})
        matches = matches and (
            entry.get("rows"),
            entry.get("size_bytes"),
            entry.get("sha256"),
        ) == (len(of_file), len(stored), hashlib.sha256(stored).hexdigest())
    return SplitCheck(
        seconds=seconds,
        files=len(result.files),
        rows=len(ids),
        expected=len(expected),
        in_order=ids == expected,
        headers=headers,
        manifest_matches=matches and len(listed) == len(result.files),
        manifest_total=int(manifest["total_rows"]),
    )


def report_split(check: SplitCheck, rows_per_file: int) -> bool:
    print(f"\nsplit run (csv+gzip, max_rows_per_file {rows_per_file}, 1 worker)")
    print(f"  job start to completion    {check.seconds:8.1f} s")
    print(
        f"  {check.files} files, {check.rows} rows of {check.expected} (manifest: "
        f"{check.manifest_total}); every id once and in order: {check.in_order}; a header in "
        f"every file: {check.headers}; rows, bytes and SHA-256 as the manifest says: "
        f"{check.manifest_matches}"
    )
    print(f"  verification               {'PASS' if check.passed else 'FAIL'}")
    return check.passed


def written_elsewhere(worker: Worker, job_id: str) -> int:
    """Rows of the job the worker wrote outside the chunk it holds now: the chunks its log says
    it finished, and the head if it split the export."""
    rows = sum(int(event["rows"]) for event in worker.events("export.chunk_done", job_id))
    return rows + sum(int(event["head_rows"]) for event in worker.events("export.chunked", job_id))


async def victim_at(
    pool: Pool,
    database: Database,
    job_id: str,
    threshold: float,
    job: asyncio.Task[Any],
    *,
    killed_rows: int,
) -> tuple[Worker, Chunk, int, bool]:
    """Once the workers processed `threshold` rows: a worker mid-way through a chunk (at least
    a batch in, and a batch short of its estimated end, so that the kill does cut a chunk) and
    not the job's own worker unless no other is; its chunk, the rows processed, and whether it
    holds the job too. `killed_rows`: rows the workers killed before had processed."""
    chunks, ledger = ChunkLedger(database), Ledger(database, event_source="/bench")
    report = time.monotonic() + 30
    while not job.done():
        counts = {worker.bench.pid: await worker.rows_processed(pool.http) for worker in pool.live}
        processed = killed_rows + sum(counts.values())
        if time.monotonic() > report:  # a stall shows, instead of a silent wait
            states = Counter(chunk.state for chunk in await chunks.of_job(job_id))
            print(
                f"  waiting for {threshold:.0f} rows: {processed} processed, chunks {dict(states)}"
            )
            report = time.monotonic() + 30
        if processed >= threshold:
            by_pid = {worker.bench.pid: worker for worker in pool.live}
            found = await ledger.get(job_id)
            owner = found.lease_owner if found is not None else None
            held = []
            for chunk in await chunks.of_job(job_id):
                pid = int(chunk.holder.split(":")[1]) if chunk.holder else None
                if (
                    chunk.state != PENDING
                    or pid not in by_pid
                    or chunk.expires_at is None
                    or as_utc(chunk.expires_at) <= utcnow()
                    or (chunk.checkpoint or {}).get("files")  # closed, being marked done
                ):
                    continue
                worker = by_pid[pid]
                in_chunk = counts[pid] - written_elsewhere(worker, job_id)
                size = chunk.estimated_rows / max(1, chunk.total - 1)  # the head is no chunk
                if BATCH <= in_chunk <= size - BATCH:
                    held.append((chunk, worker))
            held.sort(key=lambda pair: pair[0].holder == owner)
            if held:
                chunk, worker = held[0]
                return worker, chunk, processed, chunk.holder == owner
        await asyncio.sleep(0.1)
    await job
    raise SystemExit(
        f"the export completed before a chunk could be cut at {threshold:.0f} rows: use more --rows"
    )


async def kill_run(
    settings: Settings,
    *,
    env: dict[str, str],
    workdir: Path,
    name: str,
    job_rows: int,
    filters: dict[str, str],
) -> Kill:
    project = f"chunked{job_rows}"
    env = own_intake(env, "kill")
    settings = settings_from_env(env)
    await provision(settings)
    client = connect(settings.mongo, app_name="bench-kill")
    database = client[settings.mongo.database]
    expected = await expected_ids(database, project, filters)
    async with Pool(settings, env, workdir) as pool:
        owner = await pool.start()
        await pool.start()
        job_id = str(uuid.uuid4())
        request = export_request(
            project_id=project, job_id=job_id, filters=filters, compression=FORMATS[name]
        )
        running = asyncio.create_task(owner.bench.run(request))
        killed_rows = 0
        victims: list[Victim] = []
        for share in KILLS_AT:
            victim, chunk, processed, owned = await victim_at(
                pool, database, job_id, share * job_rows, running, killed_rows=killed_rows
            )
            found = await Ledger(database, event_source="/bench").get(job_id)
            percent = found.progress.percent if found is not None else None
            victim_rows = await victim.rows_processed(pool.http)  # read just before the kill
            victim_pid = victim.bench.pid
            pool.kill(victim)
            killed_rows += victim_rows
            print(
                f"  killed pid {victim_pid} at {processed / job_rows:.0%} of the rows (ledger: "
                f"{percent}%), holding chunk {chunk.index + 1}/{chunk.total}"
                f"{' and the job' if owned else ''}",
                flush=True,
            )
            # Its intake joins only once the victim's session lapses; its chunk pool runs at
            # once.
            replacement = await pool.start(joined=False)
            # A write the victim sent before it died may still land: read the checkpoint after.
            await asyncio.sleep(0.5)
            document = await database[CHUNKS_COLLECTION].find_one({"_id": chunk.id}) or {}
            checkpoint_rows = int((document.get("checkpoint") or {}).get("rows", 0))
            victims.append(
                Victim(
                    victim,
                    chunk,
                    processed,
                    owned,
                    percent,
                    victim_rows,
                    checkpoint_rows,
                    replacement,
                )
            )
        job, seconds = await running
        total_processed = killed_rows + sum(
            [await worker.rows_processed(pool.http) for worker in pool.live]
        )
        cuts = [cut_of(pool, job_id, job_rows, victim) for victim in victims]
        verification = await verify(settings, job, expected)
    await client.close()
    if not isinstance(job.result, ExportResult):
        raise SystemExit(f"not an export: {job.id}")
    return Kill(
        name=name,
        seconds=seconds,
        cuts=cuts,
        processed=total_processed,
        exported=job.result.row_count,
        verification=verification,
    )


@dataclass(frozen=True)
class Victim:
    """A worker killed mid-chunk, and what was read at the kill."""

    worker: Worker
    chunk: Chunk
    processed: int  # every worker's rows processed when it was chosen
    owned: bool  # it held the job too
    percent: float | None  # the ledger's progress then
    rows: int  # its own rows processed, read just before the kill
    checkpoint_rows: int  # the chunk's checkpoint just after
    replacement: Worker


def cut_of(pool: Pool, job_id: str, job_rows: int, killed: Victim) -> Cut:
    """What one kill cost, read from the workers' logs once the job is done."""
    victim, chunk = killed.worker, killed.chunk
    finished = written_elsewhere(victim, job_id)
    # The chunk was chosen mid-way, but the victim may still have closed it before the kill.
    cut = not [
        event
        for event in victim.events("export.chunk_done", job_id)
        if event["chunk"] == chunk.index
    ]
    started = [
        event
        for event in victim.events("export.chunk_started", job_id)
        if event["chunk"] == chunk.index
    ]
    # Who took the chunk over after the kill, and whether from a checkpoint.
    takers = [
        (worker, event)
        for worker in pool.workers
        if worker is not victim
        for event in worker.events("export.chunk_started", job_id)
        if event["chunk"] == chunk.index and event["attempt"] > chunk.attempt
    ]
    done = [
        event["rows"]
        for worker in pool.workers
        for event in worker.events("export.chunk_done", job_id)
        if event["chunk"] == chunk.index
    ]
    return Cut(
        at=killed.processed / job_rows,
        ledger_percent=killed.percent,
        victim_owned_job=killed.owned,
        chunk=chunk,
        victim_from=int(started[-1].get("from_rows", 0)) if started else 0,
        victim_in_chunk=killed.rows - finished,
        checkpoint_rows=killed.checkpoint_rows,
        chunk_rows=done[-1] if done else None,
        cut=cut,
        taken_over=(
            "nobody"
            if not takers
            else ("resumed from its checkpoint" if takers[0][1]["resumed"] else "restarted")
            + f" by {'its replacement' if takers[0][0] is killed.replacement else 'another worker'}"
        ),
    )


def report_kill(kill: Kill, job_rows: int, chunk_rows: int) -> bool:
    """Print the kill run; whether it passed: the file checks out and the re-read is at most
    one chunk per kill."""
    check = kill.verification
    print(
        f"\nkill run ({kill.name}, 2 workers, {len(kill.cuts)} kill -9s, a replacement started "
        "after each)"
    )
    print(f"  job start to completion    {kill.seconds:8.1f} s  (the lease lapses in 10 s)")
    for number, cut in enumerate(kill.cuts, 1):
        print(
            f"  kill {number}: at {cut.at:.0%} of the rows processed (the ledger showed "
            f"{cut.ledger_percent}% of its estimate, saved at most once a second)"
            + (", the job's own worker" if cut.victim_owned_job else "")
        )
        print(
            f"    chunk {cut.chunk.index + 1}/{cut.chunk.total}, {cut.chunk_rows} rows, "
            f"{cut.taken_over}"
        )
        print(
            f"    the victim had processed {cut.victim_in_chunk} rows of it from row "
            f"{cut.victim_from}; its checkpoint then held {cut.checkpoint_rows} (parts of "
            f"{PART_SIZE >> 20} MiB stored)"
        )
        if cut.cut:
            print(f"    re-read, the chunk's view  {cut.re_read:8d} rows")
        else:
            print("    re-read, the chunk's view       n/a  (the victim finished it just before)")
    bound = len(kill.cuts) * chunk_rows
    within = kill.re_read <= bound
    print(
        f"  re-read, the job's view    {kill.re_read:8d} rows  ({kill.processed} processed for "
        f"{kill.exported} exported: {kill.re_read / job_rows:.1%} of the export; at most "
        f"{bound} = one chunk per kill: {'yes' if within else 'NO'})"
    )
    print(
        f"  file: {check.rows} rows of {check.expected}, {check.out_of_place} out of place, "
        f"{check.duplicates} duplicated, {check.missing} missing, SHA-256 "
        f"{'matches' if check.sha256_matches else 'DIFFERS'}, "
        f"{len(check.leftovers)} objects or uploads left over"
    )
    for leftover in check.leftovers[:5]:
        print(f"    left over: {leftover}")
    passed = check.passed and within
    print(f"  verification               {'PASS' if passed else 'FAIL'}")
    return passed


async def main(rows: int, kill_format: str, kept: Path | None) -> int:
    job_rows = rows * 10
    with contextlib.ExitStack() as scope:
        workdir = kept or Path(scope.enter_context(tempfile.TemporaryDirectory()))
        workdir.mkdir(parents=True, exist_ok=True)
        stack = scope.enter_context(DevStack(workdir, Ports.free()))
        env = chunked_env(stack.env(), rows)
        settings = settings_from_env(env)
        await provision(settings)
        project = f"chunked{job_rows}"
        print(f"seeding {job_rows} messages (chunks of ~{rows} rows)...", flush=True)
        filters = await seed(settings, project, job_rows)
        servers = (server_pid("secantus"), server_pid("moto.server"))
        print(f"load average before: {load_average()}", flush=True)

        await drain(settings, project, [filters])  # warm the database up
        one_cursor = await drain(settings, project, [filters])
        two_cursors = await drain(settings, project, halves(filters))
        print(f"  database alone: 1 cursor {one_cursor:.0f} rows/s, 2 cursors {two_cursors:.0f}")

        runs: dict[tuple[str, int], Run] = {}
        async with Pool(settings, env, workdir) as pool:
            for workers in (1, 2):
                while len(pool.live) < workers:
                    await pool.start()
                for name in FORMATS:
                    run = await timed(pool, servers, name, job_rows, filters)
                    runs[name, workers] = run
                    print(f"  {run.line()}", flush=True)
        kill = await kill_run(
            settings, env=env, workdir=workdir, name=kill_format, job_rows=job_rows, filters=filters
        )
        split = await split_run(
            settings,
            env=env,
            workdir=workdir,
            job_rows=job_rows,
            rows_per_file=rows,
            filters=filters,
        )

        print(f"\nrows {job_rows} (10*N, N={rows}); load average after: {load_average()}")
        print(
            "worker/db/s3: cores busy (CPU-seconds per second of the run); µs/row: the workers' "
            "CPU per row, idle rate subtracted"
        )
        print(HEADER)
        for run in runs.values():
            print(run.line())
        for name in FORMATS:
            ratio = runs[name, 2].rate / runs[name, 1].rate
            print(f"{name:9} 2 workers / 1 worker: {ratio:.2f}x rows/s")
        print(
            f"database alone (raw batches): 1 cursor {one_cursor:.0f} rows/s, 2 cursors "
            f"{two_cursors:.0f} rows/s ({two_cursors / one_cursor:.2f}x)"
        )
        killed = report_kill(kill, job_rows, rows)
        return 0 if report_split(split, rows) and killed else 1


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=100_000, help="N: rows per chunk (10*N seeded)")
    parser.add_argument(
        "--kill-format", choices=sorted(FORMATS), default="csv", help="format of the kill run"
    )
    parser.add_argument(
        "--workdir",
        type=Path,
        help="keep the servers' and workers' logs here (default: a temp dir)",
    )
    arguments = parser.parse_args()
    sys.exit(asyncio.run(main(arguments.rows, arguments.kill_format, arguments.workdir)))
