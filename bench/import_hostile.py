"""A real worker's peak memory on hostile import files at the real size limit (100 MB).

    .venv/bin/python bench/import_hostile.py [--only WORD ...] [--deadline SECONDS]
        [--parallel N] [--env VAR=VALUE ...]

Each case is one import run by a fresh `ferry worker` process (request over Kafka, file from S3
or from a loopback URL), with the default settings except a shorter fetch deadline (so the
trickling source takes seconds, not 15 minutes). Printed per case: how the job ended (its code
and message) and the worker's peak RSS (VmHWM), against the same worker's RSS once started
and idle. The bound in docs/reliability.md is checked against these figures; the test suite
asserts the same properties on files of 8 MB (tests/integration/test_import_bounds.py).
"""

from __future__ import annotations

import argparse
import asyncio
import bz2
import gzip
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.worker import BenchWorker  # noqa: E402
from service.config import Settings, settings_from_env  # noqa: E402
from service.database import connect  # noqa: E402
from service.datasets import ensure_dataset_indexes  # noqa: E402
from service.devstack import DevStack, Ports  # noqa: E402
from service.events.submit import import_request, publish_request  # noqa: E402
from service.imports import files  # noqa: E402
from service.jobs.ledger import Ledger  # noqa: E402
from service.jobs.model import Job  # noqa: E402
from service.provisioning import provision  # noqa: E402
from service.storage import ObjectStore  # noqa: E402
from service.storage.writer import ObjectWriter  # noqa: E402
from tests.support.infra import isolated  # noqa: E402

MB = 1024 * 1024
LIMIT = 100 * MB  # FERRY_IMPORTS__MAX_FILE_BYTES's default

Writer = Callable[[asyncio.StreamWriter], Awaitable[None]]


def _repeat(piece: bytes, total: int) -> Iterator[bytes]:
    """`piece` repeated up to `total` bytes, in parts of about 8 MiB."""
    per_part = max(1, 8 * MB // len(piece))
    written = 0
    while written + len(piece) <= total:
        count = min(per_part, (total - written) // len(piece))
        yield piece * count
        written += len(piece) * count


def wide_header() -> Iterator[bytes]:
    yield b"EMAIL," + b",".join(f"COLUMN_{n}_{'x' * 40}".encode() for n in range(17_000))
    yield b"\n"
    yield from _repeat(b"a@x.io\n", LIMIT - 1_000_000)


def one_long_line() -> Iterator[bytes]:
    yield b"EMAIL\n"
    yield from _repeat(b"a" * 1024, LIMIT - 10)


def a_line_of_commas() -> Iterator[bytes]:
    yield b"EMAIL\n"
    yield from _repeat(b"," * 1024, LIMIT - 10)


def ragged_rows() -> Iterator[bytes]:
    """Rows just under the field limit: rejected one by one, all 100 MB of them."""
    yield b"EMAIL\n"
    yield from _repeat(b"," * 19_000 + b"\n", LIMIT - 10)


def endless_record() -> Iterator[bytes]:
    yield b'EMAIL,NOTE\na@x.io,"'
    yield from _repeat(b'a\n","', LIMIT - 20)


def valid_rows() -> Iterator[bytes]:
    """The largest legitimate file: 1,000,000 distinct contacts (the row limit), ~38 MB."""
    yield b"EMAIL,FIRSTNAME,CITY\n"
    for start in range(0, 1_000_000, 100_000):
        yield b"".join(
            f"user{n:08d}@example.com,First{n},Paris\n".encode()
            for n in range(start, start + 100_000)
        )


@dataclass(frozen=True)
class Case:
    name: str
    body: Callable[[], Iterator[bytes]] | None = None  # uploaded to S3
    answer: Writer | None = None  # served over HTTP instead
    encoding: str | None = None
    dry_run: bool = False


async def compressed(writer: asyncio.StreamWriter) -> None:
    # 2x the limit, compressed twice: ~200 KB on the wire.
    body = gzip.compress(gzip.compress(b"EMAIL\n" + b"a@x.io\n" * (2 * LIMIT // 7)))
    writer.write(
        b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip, gzip\r\n"
        + f"Content-Length: {len(body)}\r\n\r\n".encode()
        + body
    )
    await writer.drain()


async def endless(writer: asyncio.StreamWriter) -> None:
    writer.write(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nEMAIL\n")
    line = b"someone@example.com\n" * 50_000
    while True:
        writer.write(line)
        await writer.drain()


async def trickle(writer: asyncio.StreamWriter) -> None:
    writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100000000\r\n\r\nEMAIL\n")
    while True:
        writer.write(b"a")
        await writer.drain()
        await asyncio.sleep(0.5)


def bz2_bomb() -> Iterator[bytes]:
    # 256 MB in a few hundred bytes; the intake refuses the codec before any worker reads it.
    yield bz2.compress(b"\n" * (256 * MB))


CASES = (
    Case("wide header (850 KB, 17,000 columns)", wide_header),
    Case("one 100 MB line", one_long_line),
    Case("a 100 MB line of commas", a_line_of_commas),
    Case("ragged rows (100 MB, 19,000 commas a row)", ragged_rows),
    Case("a 100 MB record (quoted line breaks)", endless_record),
    Case("bz2 bomb (encoding bz2)", bz2_bomb, encoding="bz2"),
    Case("URL: Content-Encoding gzip, gzip", answer=compressed),
    Case("URL: endless, no Content-Length", answer=endless),
    Case("URL: a byte every 0.5 s", answer=trickle),
    Case("valid 1,000,000 rows (dry run)", valid_rows, dry_run=True),
)


async def upload(store: ObjectStore, settings: Settings, key: str, case: Case) -> None:
    if case.body is None:
        raise ValueError(f"{case.name} is served, not uploaded")
    writer = ObjectWriter(
        store, key, content_type="text/csv", part_size=settings.s3.part_size_bytes, gzip=False
    )
    for part in case.body():
        await writer.write(part)
    await writer.close()


@asynccontextmanager
async def serving(answer: Writer) -> AsyncIterator[str]:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await reader.readuntil(b"\r\n\r\n")
            await answer(writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    try:
        yield f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/contacts.csv"
    finally:
        server.close()


async def finished(settings: Settings, job_id: str, within: float = 1800) -> Job:
    client = connect(settings.mongo, app_name="bench")
    ledger = Ledger(client[settings.mongo.database], event_source="/bench")
    deadline = time.monotonic() + within
    try:
        while time.monotonic() < deadline:
            job = await ledger.get(job_id)
            if job is not None and job.status.value in {"completed", "failed"}:
                return job
            await asyncio.sleep(0.2)
    finally:
        await client.close()
    raise SystemExit(f"job {job_id} did not finish in {within} s")


def rss_kib(worker: BenchWorker) -> int:
    process = worker._process.process  # noqa: SLF001 - the bench's own helper
    if process is None:
        raise RuntimeError("the worker is not running")
    for line in Path(f"/proc/{process.pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


async def run_case(
    settings: Settings,
    env: dict[str, str],
    scratch: Path,
    store: ObjectStore,
    case: Case,
    *,
    parallel: int,
) -> None:
    """`parallel` copies of the case at once, in one fresh worker (each its own project)."""
    projects = [f"h{uuid.uuid4().hex[:8]}" for _ in range(parallel)]
    key = "hostile.csv"
    with BenchWorker(settings, env, scratch) as worker:
        if case.body is not None:
            for project in projects:
                await upload(store, settings, files.upload_key(project, key), case)
        await asyncio.sleep(8)  # started and idle: its broker connection and group joined
        idle = rss_kib(worker)
        started = time.monotonic()
        async with serving(case.answer or endless) as url:
            url_source = {"url": url} if case.body is None else None
            job_ids = [str(uuid.uuid4()) for _ in projects]
            for project, job_id in zip(projects, job_ids, strict=True):
                request = import_request(
                    project_id=project,
                    job_id=job_id,
                    source=url_source
                    or {"bucket": store.bucket, "key": files.upload_key(project, key)},
                    encoding=case.encoding,
                    dry_run=case.dry_run or None,
                )
                await publish_request(settings.kafka, request)
            jobs = [await finished(settings, job_id) for job_id in job_ids]
        seconds = time.monotonic() - started
        peak = worker.peak_rss_kib()
    outcomes = []
    for job in jobs:
        if job.error_code is not None:
            outcomes.append(f"{job.error_code}: {(job.error_message or '')[:150]}")
        else:
            counts = getattr(job.result, "counts", None)
            outcomes.append(f"completed: {counts.model_dump() if counts else job.result}")
    shown = "\n    ".join(sorted(set(outcomes)))
    print(
        f"{case.name:45} x{parallel} peak {peak / 1024:7.1f} MiB  (idle {idle / 1024:6.1f} MiB, "
        f"{seconds:6.1f} s)\n    {shown}",
        flush=True,
    )
    for project in projects:
        await store.delete(files.upload_key(project, key))


async def main(only: list[str], deadline: float, parallel: int, extra: list[str]) -> None:
    with tempfile.TemporaryDirectory() as scratch, DevStack(Path(scratch), Ports.free()) as stack:
        env = {
            **isolated(stack.env(), fast_timings=False),
            "FERRY_LOG_LEVEL": "warning",
            "FERRY_OUTBOUND__ALLOW_LOOPBACK": "true",
            "FERRY_IMPORTS__FETCH_DEADLINE_SECONDS": str(deadline),
            # Distinct projects, so `parallel` imports run at once up to the concurrency.
            **dict(item.split("=", 1) for item in extra),
        }
        settings = settings_from_env(env)
        await provision(settings)
        client = connect(settings.mongo, app_name="bench")
        await ensure_dataset_indexes(client[settings.mongo.database])
        await client.close()
        store = ObjectStore(settings.s3)
        for case in CASES:
            if not only or any(word.lower() in case.name.lower() for word in only):
                await run_case(settings, env, Path(scratch), store, case, parallel=parallel)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--only", nargs="*", default=[], help="run the cases whose name has one")
    parser.add_argument(
        "--deadline", type=float, default=20.0, help="FERRY_IMPORTS__FETCH_DEADLINE_SECONDS"
    )
    parser.add_argument(
        "--parallel", type=int, default=1, help="copies of each case run at once by one worker"
    )
    parser.add_argument(
        "--env", nargs="*", default=[], help="VAR=VALUE for the worker, e.g. MALLOC_ARENA_MAX=2"
    )
    arguments = parser.parse_args()
    asyncio.run(main(arguments.only, arguments.deadline, arguments.parallel, arguments.env))
