"""`ferry dev`: the embedded stack, Ferry's worker, API and webhook dispatcher in one process, and
the demo."""

from __future__ import annotations

import asyncio
import os
import signal
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import uvicorn
from rich.console import Console

from service.api.app import create_app
from service.api.keys import ApiKeys
from service.clock import rfc3339, utcnow, uuid7
from service.config import DEV_ENV_FILE, Settings, load_settings
from service.database import connect
from service.demo import demo_messages, load_messages
from service.devstack import DevStack, Ports
from service.events.submit import export_request, publish_request
from service.observability.health import EmbeddedServer
from service.provisioning import provision
from service.webhooks.dispatcher import run_dispatcher
from service.worker import run_worker

DEMO_PROJECT = "demo"
DEMO_MESSAGES = 5000
_DEMO_TIMEOUT_SECONDS = 120.0


@dataclass(frozen=True)
class DevOptions:
    ports: Ports
    api_port: int
    demo: bool
    infra_only: bool
    home: Path = DEV_ENV_FILE.parent


async def run_dev(options: DevOptions, console: Console) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    stack = DevStack(options.home, options.ports, mongo_storage=options.home / "mongo")
    console.print(
        "[bold]Starting the embedded stack[/] (Kafka, MongoDB and S3 compatible servers)..."
    )
    await asyncio.to_thread(stack.start)
    env_file = options.home / DEV_ENV_FILE.name
    try:
        env = {
            **stack.env(),
            "FERRY_API__PORT": str(options.api_port),
            # Webhook receivers under development run on this machine.
            "FERRY_OUTBOUND__ALLOW_LOOPBACK": "true",
        }
        env_file.write_text("".join(f"{name}={value}\n" for name, value in env.items()))
        os.environ.update(env)
        settings = load_settings()
        await provision(settings)
        _print_endpoints(console, settings, env_file)
        if options.infra_only:
            console.print(
                "Infrastructure only. Start workers with [bold]ferry worker[/] (and [bold]ferry "
                "webhooks[/] for webhooks). Ctrl-C stops."
            )
            await stop.wait()
        else:
            await _serve(settings, stop, console, demo=options.demo)
    finally:
        console.print("Stopping...")
        env_file.unlink(missing_ok=True)
        await asyncio.to_thread(stack.stop)
        console.print("Stopped.")


async def _serve(settings: Settings, stop: asyncio.Event, console: Console, *, demo: bool) -> None:
    worker_ready = asyncio.Event()
    dispatcher_ready = asyncio.Event()
    server = EmbeddedServer(
        uvicorn.Config(
            create_app(settings),
            host=settings.api.host,
            port=settings.api.port,
            log_config=None,
            access_log=False,
        )
    )
    tasks = [
        asyncio.create_task(run_worker(settings, stop, ready=worker_ready), name="worker"),
        asyncio.create_task(server.serve(), name="api"),
        asyncio.create_task(
            run_dispatcher(settings, stop, ready=dispatcher_ready), name="webhooks"
        ),
    ]

    async def stop_api() -> None:
        await stop.wait()
        server.should_exit = True

    watcher = asyncio.create_task(stop_api())
    try:
        await _wait_started([worker_ready, dispatcher_ready], server, tasks)
        console.print(
            f"Ferry is running. API: http://{settings.api.host}:{settings.api.port}  Ctrl-C stops."
        )
        if demo:
            await _run_demo(settings, console)
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
        for task in done:
            task.result()  # a crashed worker, API or dispatcher surfaces here
    finally:
        stop.set()
        await asyncio.gather(*tasks, return_exceptions=True)
        watcher.cancel()


async def _wait_started(
    ready: list[asyncio.Event], server: uvicorn.Server, tasks: list[asyncio.Task[Any]]
) -> None:
    while not (all(event.is_set() for event in ready) and server.started):
        for task in tasks:
            if task.done():
                task.result()
                raise RuntimeError(f"{task.get_name()} stopped during start-up")
        await asyncio.sleep(0.1)


async def _run_demo(settings: Settings, console: Console) -> None:
    """Load messages, make a key, request an export, follow it through the API, show curl lines."""
    client = connect(settings.mongo, app_name="ferry-demo")
    database = client[settings.mongo.database]
    end = utcnow()
    try:
        await load_messages(
            database, demo_messages(DEMO_PROJECT, DEMO_MESSAGES, end=end, span=timedelta(days=7))
        )
        key = await ApiKeys(database).create(DEMO_PROJECT)
    finally:
        await client.close()
    console.print(f"Demo: loaded {DEMO_MESSAGES} messages into project '{DEMO_PROJECT}'.")
    console.print(f"Demo API key (project '{DEMO_PROJECT}'): [bold]{key}[/]")

    job_id = uuid7()
    start = end - timedelta(days=7)
    await publish_request(
        settings.kafka,
        export_request(
            project_id=DEMO_PROJECT,
            job_id=job_id,
            filters={"start_time": rfc3339(start), "end_time": rfc3339(end + timedelta(seconds=1))},
            source="/ferry/demo",
        ),
    )
    console.print(f"Demo: published export request for job {job_id}.")
    base = f"http://{settings.api.host}:{settings.api.port}"
    headers = {"Authorization": f"Bearer {key}"}
    view = await _follow(f"{base}/v1/exports/{job_id}", headers, console)
    if view is None or view["status"] != "completed":
        console.print(f"[red]Demo export did not complete: {view}[/]")
        return
    console.print(
        f"Demo export completed: {view['row_count']} rows, {view['file_size_bytes']} bytes."
    )
    console.print("Fetch the job:")
    console.print(
        f"  curl -s -H 'Authorization: Bearer {key}' {base}/v1/exports/{job_id}", soft_wrap=True
    )
    console.print("Download the file:")
    console.print(
        f"  curl -sL -H 'Authorization: Bearer {key}' "
        f"{base}/v1/exports/{job_id}/download -o export.csv",
        soft_wrap=True,
    )


async def _follow(url: str, headers: dict[str, str], console: Console) -> dict[str, Any] | None:
    """Poll the job through the API, printing each change, until it finishes."""
    last = None
    deadline = asyncio.get_running_loop().time() + _DEMO_TIMEOUT_SECONDS
    async with httpx.AsyncClient(headers=headers, timeout=5.0) as http:
        while asyncio.get_running_loop().time() < deadline:
            response = await http.get(url)
            if response.status_code == httpx.codes.OK:
                view: dict[str, Any] = response.json()["data"]
                shown = (view["status"], view["progress"]["percent"])
                if shown != last:
                    percent = (
                        f" {view['progress']['percent']}%" if view["progress"]["percent"] else ""
                    )
                    console.print(f"  status: {view['status']}{percent}")
                    last = shown
                if view["status"] in {"completed", "failed", "expired", "cancelled"}:
                    return view
            await asyncio.sleep(0.2)
    return None


def _print_endpoints(console: Console, settings: Settings, env_file: Path) -> None:
    console.print(f"  Kafka    {settings.kafka.bootstrap_servers}")
    console.print(f"  MongoDB  {settings.mongo.url.get_secret_value()}")
    console.print(f"  S3       {settings.s3.endpoint} (bucket {settings.s3.bucket})")
    console.print(f"  Settings written to {env_file}; every `ferry` command here reads them.")
