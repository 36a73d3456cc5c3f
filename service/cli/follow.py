"""Following a job from the command line: its progress until it finishes, its outcome, and
the upload of an import's file."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from service.cli.common import console
from service.config import Settings

if TYPE_CHECKING:
    from service.jobs.model import Job

_LINE_SECONDS = 5.0  # how often `--wait` prints progress when not on a terminal


async def follow_job(settings: Settings, job_id: str, *, wait_seconds: float) -> Job | None:
    """Show the job's progress from the ledger until it finishes; None if it did not in time.

    On a terminal a bar with the ETA; elsewhere (a log, CI) a line each time the status, the
    reason for waiting or the ETA changes."""
    from service.clock import utcnow
    from service.database import connect
    from service.jobs.ledger import Ledger
    from service.jobs.queue import Queue
    from service.jobs.status import FINISHED, JobStatus
    from service.progress_text import eta_text, progress_line

    client = connect(settings.mongo, app_name="ferry-cli")
    database = client[settings.mongo.database]
    ledger = Ledger(database, event_source="/ferry/cli")
    queue = Queue(database, max_running_per_project=settings.worker.max_running_per_project)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait_seconds
    last_state, last_printed = ("", False), 0.0
    try:
        with Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            TextColumn("{task.fields[rows]} rows"),
            TimeElapsedColumn(),
            TextColumn("{task.fields[eta]}"),
            console=console,
        ) as bar:
            task = bar.add_task("waiting for a worker", total=100, rows=0, eta="")
            while loop.time() < deadline:
                job = await ledger.get(job_id)
                if job is not None:
                    now = utcnow()
                    waiting = (
                        await queue.waiting(job.id) if job.status is JobStatus.PENDING else None
                    )
                    percent = job.progress.percent or (100.0 if job.status in FINISHED else 0.0)
                    bar.update(
                        task,
                        description=job.status.value,
                        completed=percent,
                        rows=job.progress.rows_processed,
                        eta=eta_text(job.progress.eta, now)
                        if job.status is JobStatus.PROCESSING
                        else (waiting.reason if waiting else ""),
                    )
                    # Off a terminal: a line when the status changes or an ETA first shows,
                    # else every few seconds.
                    state = (job.status.value, job.progress.eta is not None)
                    if not console.is_terminal and (
                        state != last_state or loop.time() - last_printed >= _LINE_SECONDS
                    ):
                        console.print(progress_line(job, waiting, now))
                        last_state, last_printed = state, loop.time()
                    if job.status in FINISHED:
                        return job
                await asyncio.sleep(0.3)
        console.print(f"[yellow]Still not finished after {wait_seconds:.0f}s.[/]")
        return None
    finally:
        await client.close()


async def print_export_outcome(settings: Settings, job: Job) -> bool:
    """The export's figures and a download link; False if it did not complete."""
    from service.exports import files
    from service.jobs.model import ExportResult
    from service.storage import ObjectStore

    if job.status.value != "completed" or not isinstance(job.result, ExportResult):
        console.print(f"[red]Job {job.status.value}: {job.error_code}: {job.error_message}[/]")
        return False
    store = ObjectStore(settings.s3)
    ttl = timedelta(seconds=settings.s3.presign_ttl_seconds)
    result = job.result
    if len(result.files) > 1:
        console.print(
            f"Completed: {result.row_count} rows in {len(result.files)} files, "
            f"{result.file_size_bytes} bytes"
        )
    else:
        console.print(
            f"Completed: {result.row_count} rows, {result.file_size_bytes} bytes, "
            f"sha256 {result.file_sha256}"
        )
    for file in result.files or []:
        name = files.download_filename(
            job.dataset, job.id, job.format, job.compression, part=file.part
        )
        url = await store.presigned_get(file.key, ttl=ttl, filename=name)
        label = "Download" if file.part is None else f"Download part {file.part}"
        console.print(f"{label} (valid {ttl.seconds}s): {url}", soft_wrap=True)
    if not result.files:
        url = await store.presigned_get(result.object_key, ttl=ttl)
        console.print(f"Download (valid {ttl.seconds}s): {url}", soft_wrap=True)
    if result.manifest_key:
        url = await store.presigned_get(result.manifest_key, ttl=ttl)
        console.print(f"Manifest: {url}", soft_wrap=True)
    return True


async def upload_file(settings: Settings, path: Path, key: str, *, size: int) -> None:
    """The file to the bucket in parts, with a progress bar; memory stays at a part or two."""
    from rich.progress import DownloadColumn, TransferSpeedColumn

    from service.storage import ObjectStore
    from service.storage.writer import ObjectWriter

    writer = ObjectWriter(
        ObjectStore(settings.s3),
        key,
        content_type="text/csv",
        part_size=settings.s3.part_size_bytes,
        gzip=False,
    )
    source = await asyncio.to_thread(path.open, "rb")
    with (
        Progress(
            TextColumn("uploading"), BarColumn(), DownloadColumn(), TransferSpeedColumn(),
            console=console,
        ) as bar,
        source,
    ):  # fmt: skip
        task = bar.add_task("upload", total=size)
        try:
            while chunk := await asyncio.to_thread(source.read, 1 << 20):
                await writer.write(chunk)
                bar.advance(task, len(chunk))
            await writer.close()
        except BaseException:
            await writer.abort()
            raise


async def print_import_outcome(settings: Settings, job: Job) -> bool:
    """The import's counts and links to its reports; False if it did not complete."""
    from rich.table import Table

    from service.imports import files
    from service.imports.model import ImportResult
    from service.storage import ObjectStore

    if job.status.value != "completed" or not isinstance(job.result, ImportResult):
        console.print(f"[red]Job {job.status.value}: {job.error_code}: {job.error_message}[/]")
        return False
    counts = job.result.counts
    table = Table(title="Dry run: nothing was written" if job.result.dry_run else "Imported")
    table.add_column("rows")
    table.add_column("count", justify="right")
    for name in ("rows_read", "created", "updated", "unchanged", "rejected"):
        table.add_row(name, str(getattr(counts, name)))
    for reason, count in sorted(counts.rejected_by_reason.items()):
        table.add_row(f"  {reason}", str(count))
    console.print(table)
    console.print(
        f"Completed: {counts.rows_read} rows read, {counts.created} created, "
        f"{counts.updated} updated, {counts.unchanged} unchanged, {counts.rejected} rejected"
    )
    store = ObjectStore(settings.s3)
    for name, report in job.result.reports.items():
        url = await store.presigned_get(
            report.key,
            ttl=timedelta(seconds=settings.s3.presign_ttl_seconds),
            filename=files.report_filename(name, job.id),
        )
        console.print(f"Report {name} ({report.rows} rows): {url}", soft_wrap=True)
    return True
