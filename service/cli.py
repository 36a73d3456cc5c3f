"""The `ferry` command. Each subcommand parses its options and calls into the service."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import signal
import sys
from collections.abc import Awaitable, Callable
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Literal, NoReturn, TypeVar

import typer
import uvicorn
from pydantic import ValidationError
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from service.config import Settings, load_settings

if TYPE_CHECKING:
    from service.api.keys import ApiKeys
    from service.jobs.model import Job
from service.logging import configure_logging
from service.webhooks.commands import webhooks_app

app = typer.Typer(
    help="Ferry: export and import jobs requested over Kafka, run from a MongoDB ledger, "
    "served over HTTP.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
keys_app = typer.Typer(help="API keys for the lookup API.", no_args_is_help=True)
submit_app = typer.Typer(
    help="Publish a request, as an upstream service would.", no_args_is_help=True
)
app.add_typer(keys_app, name="keys")
app.add_typer(submit_app, name="submit")
app.add_typer(webhooks_app, name="webhooks")

console = Console()
err_console = Console(stderr=True)

T = TypeVar("T")


def main() -> None:
    app()


# Running Ferry ------------------------------------------------------------------------------


@app.command()
def dev(
    demo: Annotated[
        bool, typer.Option(help="Load demo data and run an export end to end.")
    ] = False,
    infra_only: Annotated[
        bool, typer.Option(help="Start only Kafka, MongoDB and S3; run workers yourself.")
    ] = False,
    kafka_port: Annotated[int, typer.Option(envvar="FERRY_DEV__KAFKA_PORT")] = 9092,
    mongo_port: Annotated[int, typer.Option(envvar="FERRY_DEV__MONGO_PORT")] = 27017,
    s3_port: Annotated[int, typer.Option(envvar="FERRY_DEV__S3_PORT")] = 9000,
    api_port: Annotated[int, typer.Option(envvar="FERRY_API__PORT")] = 8000,
) -> None:
    """Run Ferry on the embedded stack (data and logs under .ferry/)."""
    from service.dev import DevOptions, run_dev
    from service.devstack import DevStackError, Ports

    configure_logging("info", "console")
    options = DevOptions(
        ports=Ports(kafka=kafka_port, mongo=mongo_port, s3=s3_port),
        api_port=api_port,
        demo=demo,
        infra_only=infra_only,
    )
    try:
        asyncio.run(run_dev(options, console))
    except DevStackError as exc:
        _fail(str(exc))


@app.command()
def worker() -> None:
    """Run a worker: request intake, job runner, outbox relay, expiry."""
    from service.worker import run_worker, tune_garbage_collector

    settings = _settings(role="worker")
    tune_garbage_collector()
    asyncio.run(_until_signal(lambda stop: run_worker(settings, stop)))


@app.command()
def api(
    host: Annotated[str | None, typer.Option(help="Overrides FERRY_API__HOST.")] = None,
    port: Annotated[int | None, typer.Option(help="Overrides FERRY_API__PORT.")] = None,
) -> None:
    """Run the read-only lookup API."""
    from service.api.app import create_app

    settings = _settings(role="api")
    uvicorn.run(
        create_app(settings),
        host=host or settings.api.host,
        port=port or settings.api.port,
        log_config=None,
        access_log=False,
    )


@app.command()
def provision() -> None:
    """Create Ferry's topics and bucket if they do not exist."""
    from service.provisioning import provision as run

    settings = _settings()
    asyncio.run(run(settings))
    console.print(
        f"Topics {settings.kafka.requests_topic}, {settings.kafka.status_topic}, "
        f"{settings.kafka.dead_letter_topic} and bucket {settings.s3.bucket} are ready."
    )


@app.command()
def schemas(
    check: Annotated[bool, typer.Option(help="Fail if schemas/ differs from the code.")] = False,
    directory: Annotated[Path, typer.Option(help="Where the documents live.")] = Path("schemas"),
    readme: Annotated[Path, typer.Option(help="README whose settings table is refreshed.")] = Path(
        "README.md"
    ),
) -> None:
    """Write (or check) the JSON Schemas, AsyncAPI and OpenAPI documents generated from the code,
    and the settings table in the README."""
    from service.specs import stale_documents, write_documents

    if check:
        stale = stale_documents(directory)
        if stale:
            _fail(f"out of date: {', '.join(stale)}; run `ferry schemas` and commit the result")
        console.print("schemas/ matches the code.")
    else:
        for path in write_documents(directory, readme):
            console.print(f"wrote {path}")


# API keys -----------------------------------------------------------------------------------


@keys_app.command("create")
def keys_create(
    project: Annotated[str, typer.Option(help="The project the key may read.")],
) -> None:
    """Create an API key. The key is printed alone on the last line and is not shown again."""
    from service.events.contracts import is_valid_project_id

    if not is_valid_project_id(project):
        _fail(f"invalid project id {project!r}")

    async def create(keys: ApiKeys) -> str:
        await keys.ensure_indexes()
        return await keys.create(project)

    key = _with_keys(create)
    console.print(f"API key for project {project} (store it now; it cannot be shown again):")
    print(key)  # noqa: T201 - alone and unstyled, so scripts can take the last line


@keys_app.command("list")
def keys_list(
    project: Annotated[str, typer.Option(help="The project whose keys are listed.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """List a project's API keys, revoked ones too: id, prefix, created, last used (to the
    minute). The keys themselves are never shown again."""
    from rich.table import Table

    keys = _with_keys(lambda keys: keys.of_project(project))
    if as_json:
        rows = [{**dataclasses.asdict(key), "revoked": key.revoked_at is not None} for key in keys]
        print(json.dumps(rows, indent=2, default=str))  # noqa: T201 - machine-readable output
        return
    if not keys:
        console.print(f"Project {project} has no API keys.")
        return
    table = Table("id", "prefix", "created", "last used", "revoked")
    for key in keys:
        table.add_row(
            key.key_id,
            key.prefix,
            key.created_at.isoformat(timespec="seconds"),
            key.last_used_at.isoformat(timespec="seconds") if key.last_used_at else "never",
            key.revoked_at.isoformat(timespec="seconds") if key.revoked_at else "",
        )
    console.print(table)


@keys_app.command("revoke")
def keys_revoke(
    key_id: Annotated[str, typer.Argument(help="The key's id, as `ferry keys list` shows it.")],
) -> None:
    """Revoke an API key. Every API replica refuses it (401) within seconds."""
    from service.api.keys import CACHE_SECONDS

    key = _with_keys(lambda keys: keys.revoke(key_id))
    when = key.revoked_at.isoformat(timespec="seconds") if key.revoked_at else "now"
    console.print(
        f"API key {key.key_id} ({key.prefix}...) of project {key.project_id} revoked at {when}; "
        f"the API refuses it within {CACHE_SECONDS:.0f} seconds."
    )


def _with_keys(operation: Callable[[ApiKeys], Awaitable[T]]) -> T:
    """Run one operation on the API keys of the configured database; a Ferry error is printed
    as a clear message (exit 2), not a traceback."""
    from service.api.keys import ApiKeys
    from service.database import connect
    from service.errors import FerryError

    settings = _settings()

    async def run() -> T:
        client = connect(settings.mongo, app_name="ferry-cli")
        try:
            return await operation(ApiKeys(client[settings.mongo.database]))
        finally:
            await client.close()

    try:
        return asyncio.run(run())
    except FerryError as exc:
        _fail(f"{exc.code}: {exc.message}")


# Requests -----------------------------------------------------------------------------------


@submit_app.command("export")
def submit_export(
    project: Annotated[str, typer.Option(help="Project id.")],
    start: Annotated[str, typer.Option(help="filters.start_time, RFC 3339.")],
    end: Annotated[str, typer.Option(help="filters.end_time, RFC 3339 (exclusive).")],
    status: Annotated[str | None, typer.Option(help="Only messages in this status.")] = None,
    endpoint_id: Annotated[str | None, typer.Option(help="Only this outbound endpoint.")] = None,
    inbound_endpoint_id: Annotated[
        str | None, typer.Option(help="Only this inbound endpoint.")
    ] = None,
    direction: Annotated[str, typer.Option(help="outbound or inbound.")] = "outbound",
    dataset: Annotated[str, typer.Option(help="Dataset to export.")] = "messages",
    export_format: Annotated[str, typer.Option("--format", help="csv, jsonl or parquet.")] = "csv",
    gzip: Annotated[
        bool, typer.Option(help="Compress the file with gzip (csv and jsonl only).")
    ] = False,
    columns: Annotated[str | None, typer.Option(help="Comma-separated subset of columns.")] = None,
    job_id: Annotated[str | None, typer.Option(help="Choose the job id (a UUID).")] = None,
    idempotency_key: Annotated[str | None, typer.Option(help="Repeats make no new job.")] = None,
    notify_url: Annotated[
        str | None, typer.Option(help="Also deliver the job's status changes here (webhooks).")
    ] = None,
    max_file_bytes: Annotated[
        int | None, typer.Option(help="Split into files of at most this many bytes each.")
    ] = None,
    max_rows_per_file: Annotated[
        int | None, typer.Option(help="Split into files of at most this many rows each.")
    ] = None,
    wait: Annotated[bool, typer.Option(help="Follow the job and print the download link.")] = False,
    timeout: Annotated[float, typer.Option(help="Seconds --wait waits at most.")] = 600.0,
) -> None:
    """Publish an export request to Kafka."""
    from service.clock import uuid7
    from service.events.submit import export_request, publish_request

    if export_format == "parquet" and gzip:
        raise typer.BadParameter(
            "parquet files are compressed inside (zstd); drop --gzip", param_hint="--gzip"
        )
    settings = _settings()
    filters = {"start_time": start, "end_time": end, "direction": direction}
    optional = {
        "status": status,
        "endpoint_id": endpoint_id,
        "inbound_endpoint_id": inbound_endpoint_id,
    }
    filters.update({name: value for name, value in optional.items() if value is not None})
    chosen_id = job_id or uuid7()
    event = export_request(
        project_id=project,
        dataset=dataset,
        filters=filters,
        export_format=export_format,
        compression="gzip" if gzip else "none",
        columns=[column.strip() for column in columns.split(",")] if columns else None,
        job_id=chosen_id,
        idempotency_key=idempotency_key,
        notify_url=notify_url,
        max_file_bytes=max_file_bytes,
        max_rows_per_file=max_rows_per_file,
    )
    asyncio.run(publish_request(settings.kafka, event))
    console.print(f"Published export request; job id {chosen_id}")
    if wait:
        job = asyncio.run(_follow_job(settings, chosen_id, wait_seconds=timeout))
        if job is None or not asyncio.run(_print_export_outcome(settings, job)):
            raise typer.Exit(1)


_LINE_SECONDS = 5.0  # how often `--wait` prints progress when not on a terminal


async def _follow_job(settings: Settings, job_id: str, *, wait_seconds: float) -> Job | None:
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


async def _print_export_outcome(settings: Settings, job: Job) -> bool:
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


@submit_app.command("import")
def submit_import(
    project: Annotated[str, typer.Option(help="Project id.")],
    file: Annotated[
        Path, typer.Option(exists=True, dir_okay=False, readable=True, help="The CSV to import.")
    ],
    dry_run: Annotated[bool, typer.Option(help="Count and report; write no contact.")] = False,
    update_existing: Annotated[
        bool, typer.Option(help="Update contacts the file matches (else leave them).")
    ] = True,
    empty_attributes: Annotated[
        bool, typer.Option(help="Blank cells clear attributes (else leave them).")
    ] = False,
    list_id: Annotated[
        list[int] | None, typer.Option(help="Add every imported contact to this list (repeat).")
    ] = None,
    encoding: Annotated[str | None, typer.Option(help="e.g. latin-1; default UTF-8.")] = None,
    job_id: Annotated[str | None, typer.Option(help="Choose the job id (a UUID).")] = None,
    idempotency_key: Annotated[str | None, typer.Option(help="Repeats make no new job.")] = None,
    notify_url: Annotated[
        str | None, typer.Option(help="Also deliver the job's status changes here (webhooks).")
    ] = None,
    wait: Annotated[bool, typer.Option(help="Follow the job and print its counts.")] = False,
    timeout: Annotated[float, typer.Option(help="Seconds --wait waits at most.")] = 600.0,
) -> None:
    """Upload a CSV of contacts and publish an import request for it."""
    from service.clock import uuid7
    from service.events.contracts import is_valid_project_id
    from service.events.submit import import_request, publish_request
    from service.imports import files

    if not is_valid_project_id(project):
        _fail(f"invalid project id {project!r}")
    settings = _settings()
    chosen_id = job_id or uuid7()
    key = files.upload_key(project, f"{chosen_id}.csv")
    asyncio.run(_upload(settings, file, key, size=file.stat().st_size))
    event = import_request(
        project_id=project,
        job_id=chosen_id,
        source={"bucket": settings.s3.bucket, "key": key},
        encoding=encoding,
        update_existing=None if update_existing else False,
        empty_attributes=empty_attributes or None,
        list_ids=list_id or None,
        dry_run=dry_run or None,
        idempotency_key=idempotency_key,
        notify_url=notify_url,
    )
    asyncio.run(publish_request(settings.kafka, event))
    console.print(f"Published import request; job id {chosen_id}")
    if wait:
        job = asyncio.run(_follow_job(settings, chosen_id, wait_seconds=timeout))
        if job is None or not asyncio.run(_print_import_outcome(settings, job)):
            raise typer.Exit(1)


async def _upload(settings: Settings, path: Path, key: str, *, size: int) -> None:
    """The file to the bucket in parts, with a progress bar; memory stays at a part or two."""
    from rich.progress import DownloadColumn, TransferSpeedColumn

    from service.exports.object_writer import ObjectWriter
    from service.storage import ObjectStore

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


async def _print_import_outcome(settings: Settings, job: Job) -> bool:
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


@app.command()
def cancel(
    job_id: Annotated[str, typer.Argument(help="The job to stop.")],
    project: Annotated[str, typer.Option(help="The job's project.")],
    reason: Annotated[str | None, typer.Option(help="Shown on the cancelled job.")] = None,
) -> None:
    """Publish a cancel request: a pending job stops at once, a running one within seconds."""
    from service.events.submit import cancel_request, publish_request

    settings = _settings()
    asyncio.run(publish_request(settings.kafka, cancel_request(project, job_id, reason=reason)))
    console.print(f"Published cancel request for job {job_id}")


# Helpers ------------------------------------------------------------------------------------


def _settings(*, role: str | None = None) -> Settings:
    """The settings, or a clear message and exit 2. A long-running `role` also gets tracing,
    when it is on."""
    try:
        settings = load_settings()
    except ValidationError as exc:
        problems = "; ".join(
            # A check of several settings at once names its variables in its message.
            f"FERRY_{'__'.join(str(part).upper() for part in error['loc'])}: "
            f"{error['msg'].removeprefix('Value error, ')}"
            if error["loc"]
            else error["msg"].removeprefix("Value error, ")
            for error in exc.errors(include_url=False)
        )
        _fail(
            f"Ferry is not configured: {problems}. Set these variables, "
            "or run `ferry dev` in this directory first."
        )
    log_format: Literal["auto", "json", "console"] = settings.log_format
    configure_logging(settings.log_level, log_format)
    if role is not None and settings.observability.tracing:
        from service.observability.tracing import TracingUnavailableError, configure_tracing

        try:
            configure_tracing(role)
        except TracingUnavailableError as exc:
            _fail(str(exc))
    return settings


async def _until_signal(body: Callable[[asyncio.Event], Awaitable[None]]) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    # `kill -USR1 <pid>` logs what every task is waiting on: for a process that seems stuck.
    loop.add_signal_handler(signal.SIGUSR1, _log_task_stacks)
    await body(stop)


def _log_task_stacks() -> None:
    import structlog

    log = structlog.get_logger("service.cli")
    for task in asyncio.all_tasks():
        frames = [
            f"{frame.f_code.co_filename.rsplit('site-packages/', 1)[-1]}:{frame.f_lineno}"
            f" {frame.f_code.co_name}"
            for frame in task.get_stack(limit=8)
        ]
        log.warning("process.task", task=task.get_name(), stack=frames)


def _fail(message: str) -> NoReturn:
    err_console.print(f"[red]error:[/] {message}")
    sys.exit(2)


if __name__ == "__main__":
    main()
