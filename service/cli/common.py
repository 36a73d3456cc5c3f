"""What every `ferry` command shares: the consoles, loading the settings, failing with a
message, and running until a signal."""

from __future__ import annotations

import asyncio
import signal
import sys
from collections.abc import Awaitable, Callable
from typing import Literal, NoReturn

from pydantic import ValidationError
from rich.console import Console

from service.config import Settings, load_settings, warn_moved_names
from service.logging import configure_logging

console = Console()
err_console = Console(stderr=True)


def settings_or_fail(*, role: str | None = None) -> Settings:
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
        fail(
            f"Ferry is not configured: {problems}. Set these variables, "
            "or run `ferry dev` in this directory first."
        )
    log_format: Literal["auto", "json", "console"] = settings.log_format
    configure_logging(settings.log_level, log_format)
    warn_moved_names(settings)
    if role is not None and settings.observability.tracing:
        from service.observability.tracing import TracingUnavailableError, configure_tracing

        try:
            configure_tracing(role)
        except TracingUnavailableError as exc:
            fail(str(exc))
    return settings


async def until_signal(body: Callable[[asyncio.Event], Awaitable[None]]) -> None:
    """Run `body` with an event that SIGINT or SIGTERM sets."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    # `kill -USR1 <pid>` logs what every task is waiting on: for a process that seems stuck.
    loop.add_signal_handler(signal.SIGUSR1, log_task_stacks)
    await body(stop)


def log_task_stacks() -> None:
    """Log where every task of the running loop waits."""
    import structlog

    log = structlog.get_logger("service.cli")
    for task in asyncio.all_tasks():
        frames = [
            f"{frame.f_code.co_filename.rsplit('site-packages/', 1)[-1]}:{frame.f_lineno}"
            f" {frame.f_code.co_name}"
            for frame in task.get_stack(limit=8)
        ]
        log.warning("process.task", task=task.get_name(), stack=frames)


def fail(message: str) -> NoReturn:
    """Print `message` as an error and exit 2 (a usage or configuration problem)."""
    err_console.print(f"[red]error:[/] {message}")
    sys.exit(2)
