"""`ferry submit` publishes a request as an upstream service would; `ferry cancel` stops a job."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated

import typer

from service.cli.common import console, fail, settings_or_fail
from service.cli.follow import follow_job, print_export_outcome, print_import_outcome, upload_file

submit_app = typer.Typer(
    help="Publish a request, as an upstream service would.", no_args_is_help=True
)


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
    settings = settings_or_fail()
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
        job = asyncio.run(follow_job(settings, chosen_id, wait_seconds=timeout))
        if job is None or not asyncio.run(print_export_outcome(settings, job)):
            raise typer.Exit(1)


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
    from service.contracts.requests import is_valid_project_id
    from service.events.submit import import_request, publish_request
    from service.imports import files

    if not is_valid_project_id(project):
        fail(f"invalid project id {project!r}")
    settings = settings_or_fail()
    chosen_id = job_id or uuid7()
    key = files.upload_key(project, f"{chosen_id}.csv")
    asyncio.run(upload_file(settings, file, key, size=file.stat().st_size))
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
        job = asyncio.run(follow_job(settings, chosen_id, wait_seconds=timeout))
        if job is None or not asyncio.run(print_import_outcome(settings, job)):
            raise typer.Exit(1)


def cancel(
    job_id: Annotated[str, typer.Argument(help="The job to stop.")],
    project: Annotated[str, typer.Option(help="The job's project.")],
    reason: Annotated[str | None, typer.Option(help="Shown on the cancelled job.")] = None,
) -> None:
    """Publish a cancel request: a pending job stops at once, a running one within seconds."""
    from service.events.submit import cancel_request, publish_request

    settings = settings_or_fail()
    asyncio.run(publish_request(settings.kafka, cancel_request(project, job_id, reason=reason)))
    console.print(f"Published cancel request for job {job_id}")
