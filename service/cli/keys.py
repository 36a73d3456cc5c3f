"""`ferry keys`: API keys for the lookup API."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Annotated, TypeVar

import typer

from service.cli.common import console, fail, settings_or_fail

if TYPE_CHECKING:
    from service.api.keys import ApiKeys

T = TypeVar("T")

keys_app = typer.Typer(help="API keys for the lookup API.", no_args_is_help=True)


@keys_app.command("create")
def keys_create(
    project: Annotated[str, typer.Option(help="The project the key may read.")],
) -> None:
    """Create an API key. The key is printed alone on the last line and is not shown again."""
    from service.contracts.requests import is_valid_project_id

    if not is_valid_project_id(project):
        fail(f"invalid project id {project!r}")

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

    settings = settings_or_fail()

    async def run() -> T:
        client = connect(settings.mongo, app_name="ferry-cli")
        try:
            return await operation(ApiKeys(client[settings.mongo.database]))
        finally:
            await client.close()

    try:
        return asyncio.run(run())
    except FerryError as exc:
        fail(f"{exc.code}: {exc.message}")
