"""Commands that run Ferry: `dev`, `worker`, `api`, and `provision` before a first start."""

from __future__ import annotations

import asyncio
from typing import Annotated

import typer

from service.cli.common import console, fail, settings_or_fail, until_signal
from service.logging import configure_logging


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
        fail(str(exc))


def worker() -> None:
    """Run a worker: request intake, job runner, outbox relay, expiry."""
    from service.worker import run_worker, tune_garbage_collector

    settings = settings_or_fail(role="worker")
    tune_garbage_collector()
    asyncio.run(until_signal(lambda stop: run_worker(settings, stop)))


def api(
    host: Annotated[str | None, typer.Option(help="Overrides FERRY_API__HOST.")] = None,
    port: Annotated[int | None, typer.Option(help="Overrides FERRY_API__PORT.")] = None,
) -> None:
    """Run the read-only lookup API."""
    import uvicorn

    from service.api.app import create_app

    settings = settings_or_fail(role="api")
    uvicorn.run(
        create_app(settings),
        host=host or settings.api.host,
        port=port or settings.api.port,
        log_config=None,
        access_log=False,
    )


def provision() -> None:
    """Create Ferry's topics, bucket and indexes if they do not exist."""
    from service.provisioning import provision as run

    settings = settings_or_fail()
    asyncio.run(run(settings))
    console.print(
        f"Topics {settings.kafka.requests_topic}, {settings.kafka.status_topic}, "
        f"{settings.kafka.dead_letter_topic}, bucket {settings.s3.bucket} and the indexes of "
        f"database {settings.mongo.database} are ready."
    )
