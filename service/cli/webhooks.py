"""`ferry webhooks`: without a subcommand it runs the dispatcher; with one it manages endpoints,
the project's signing secret, and deliveries. Printing only: `service/webhooks/admin.py` does
the work."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer
from rich.table import Table

from service.cli.common import console, err_console, fail, settings_or_fail, until_signal

if TYPE_CHECKING:
    from service.webhooks.admin import WebhookAdmin
    from service.webhooks.endpoints import Endpoint

webhooks_app = typer.Typer(
    help="Webhooks. Without a subcommand: run the dispatcher (consumes status events, records "
    "and sends signed deliveries). Subcommands manage endpoints, secrets and deliveries.",
    pretty_exceptions_enable=False,
)

T = TypeVar("T")

JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]


@webhooks_app.callback(invoke_without_command=True)
def dispatcher(context: typer.Context) -> None:
    """Run the webhook dispatcher, unless a subcommand is given."""
    if context.invoked_subcommand is not None:
        return
    from service.webhooks.dispatcher import run_dispatcher

    settings = settings_or_fail()
    asyncio.run(until_signal(lambda stop: run_dispatcher(settings, stop)))


@webhooks_app.command("add")
def add(
    project: Annotated[str, typer.Option(help="The project whose job changes are sent.")],
    url: Annotated[str, typer.Option(help="http(s) URL receiving the deliveries.")],
    events: Annotated[
        str,
        typer.Option(help="Comma-separated event types (export.completed, export.*, or *)."),
    ] = "*",
    description: Annotated[str | None, typer.Option(help="A note for people.")] = None,
    as_json: JsonOption = False,
) -> None:
    """Add an endpoint (a project's first also makes its signing secret, shown once).

    The secret is printed alone on the last line.
    """
    added = _run(
        lambda admin: admin.add(project, url, events.split(","), description),
    )
    endpoint = added.endpoint
    if as_json:
        _print_json({"endpoint": _endpoint_json(endpoint), "secret": added.secret})
        return
    if added.warning:
        console.print(f"[yellow]warning:[/] {added.warning}")
    console.print(
        f"Endpoint {endpoint.id} added for project {endpoint.project_id}: {endpoint.url} "
        f"({', '.join(endpoint.event_types)})"
    )
    if added.secret is None:
        console.print(
            f"Deliveries are signed with project {project}'s existing secret "
            f"(`ferry webhooks rotate-secret --project {project}` makes a new one)."
        )
        return
    console.print(f"Signing secret of project {project} (store it now; it is not shown again):")
    print(added.secret)  # noqa: T201 - alone and unstyled, so scripts can take the last line


@webhooks_app.command("list")
def list_endpoints(
    project: Annotated[str | None, typer.Option(help="Only this project's endpoints.")] = None,
    as_json: JsonOption = False,
) -> None:
    """List endpoints (secrets are never shown again)."""
    endpoints = _run(lambda admin: admin.endpoints.find(project))
    if as_json:
        _print_json([_endpoint_json(endpoint) for endpoint in endpoints])
        return
    table = Table("id", "project", "url", "events", "enabled", "failing since")
    for endpoint in endpoints:
        state = "yes" if endpoint.enabled else f"no ({endpoint.disabled_reason})"
        failing = endpoint.failing_since.isoformat() if endpoint.failing_since else ""
        table.add_row(
            endpoint.id,
            endpoint.project_id,
            endpoint.url,
            ", ".join(endpoint.event_types),
            state,
            failing,
        )
    console.print(table)


@webhooks_app.command("disable")
def disable(endpoint_id: Annotated[str, typer.Argument(help="The endpoint.")]) -> None:
    """Stop sending to an endpoint; its pending deliveries fail (`redeliver` sends them later)."""
    _run(lambda admin: admin.endpoints.disable(endpoint_id))
    _say(f"Endpoint {endpoint_id} disabled.")


@webhooks_app.command("enable")
def enable(endpoint_id: Annotated[str, typer.Argument(help="The endpoint.")]) -> None:
    """Send to an endpoint again (its failure record starts afresh)."""
    _run(lambda admin: admin.endpoints.enable(endpoint_id))
    _say(f"Endpoint {endpoint_id} enabled.")


@webhooks_app.command("remove")
def remove(endpoint_id: Annotated[str, typer.Argument(help="The endpoint.")]) -> None:
    """Delete an endpoint. Its delivery history stays until it expires."""
    _run(lambda admin: admin.endpoints.remove(endpoint_id))
    _say(f"Endpoint {endpoint_id} removed.")


@webhooks_app.command("rotate-secret")
def rotate_secret(
    project: Annotated[str, typer.Option(help="The project whose secret is replaced.")],
    grace_seconds: Annotated[
        float | None,
        typer.Option(help="How long the old secret keeps signing too (default: the setting)."),
    ] = None,
) -> None:
    """Make a new signing secret for a project; the old one signs too for a grace period.

    The new secret is printed alone on the last line.
    """
    grace = None if grace_seconds is None else timedelta(seconds=grace_seconds)
    secret = _run(lambda admin: admin.rotate_secret(project, grace))
    _say(f"New signing secret of project {project} (store it now; it is not shown again):")
    print(secret)  # noqa: T201 - alone and unstyled, so scripts can take the last line


@webhooks_app.command("new-encryption-key")
def new_encryption_key() -> None:
    """Print a new key for FERRY_WEBHOOKS__SECRET_ENCRYPTION_KEYS (touches nothing else).

    To rotate: put it first in the setting (comma-separated, old key after it), restart Ferry,
    run `ferry webhooks reencrypt-secrets`, then drop the old key.
    """
    from service.webhooks.secret_cipher import new_encryption_key as make_key

    print(make_key())  # noqa: T201 - alone and unstyled, for scripts


@webhooks_app.command("reencrypt-secrets")
def reencrypt_secrets() -> None:
    """Encrypt every project's signing secrets again with the first key of
    FERRY_WEBHOOKS__SECRET_ENCRYPTION_KEYS; secrets still stored in plain text are encrypted.
    Exits 1 when a project's secret cannot be decrypted with any configured key."""
    done = _run(lambda admin: admin.secrets.reencrypt_all())
    _say(
        f"Re-encrypted {done.secrets} secret(s) of {done.projects} project(s) with the first "
        f"key ({done.plaintext_encrypted} were stored in plain text)."
    )
    if done.unreadable:
        err_console.print(
            f"[red]error:[/] no configured key decrypts the secrets of "
            f"{', '.join(done.unreadable)}; they were left as they were"
        )
        raise typer.Exit(1)


@webhooks_app.command("deliveries")
def deliveries(
    endpoint: Annotated[str | None, typer.Option(help="Deliveries to this endpoint.")] = None,
    job: Annotated[str | None, typer.Option(help="Deliveries about this job.")] = None,
    limit: Annotated[int, typer.Option(min=1, max=500, help="Newest first, at most.")] = 20,
    as_json: JsonOption = False,
) -> None:
    """Show deliveries and their attempt logs (time, status, latency, start of the answer)."""
    if (endpoint is None) == (job is None):
        fail("give --endpoint or --job")
    found = _run(lambda admin: admin.deliveries_of(endpoint_id=endpoint, job_id=job, limit=limit))
    if as_json:
        _print_json([delivery.model_dump(mode="json", by_alias=True) for delivery in found])
        return
    for delivery in found:
        due = (
            f", next attempt {delivery.due_at.isoformat()}" if delivery.status == "pending" else ""
        )
        console.print(
            f"[bold]{delivery.event_type}[/] event {delivery.event_id} job {delivery.job_id} "
            f"v{delivery.version} → {delivery.url}: {delivery.status.value}, "
            f"{delivery.attempts} attempt(s){due}",
            soft_wrap=True,
        )
        for attempt in delivery.attempt_log:
            outcome = attempt.status_code if attempt.status_code is not None else attempt.error
            answer = (attempt.response or "").replace("\n", " ")[:120]
            console.print(
                f"    {attempt.at.isoformat()}  {outcome}  {attempt.latency_ms:.0f} ms  {answer}",
                soft_wrap=True,
            )
    if not found:
        console.print("No deliveries.")


@webhooks_app.command("redeliver")
def redeliver(
    event_id: Annotated[str, typer.Argument(help="The status event (the `webhook-id`).")],
    endpoint: Annotated[str | None, typer.Option(help="Only to this endpoint.")] = None,
) -> None:
    """Send an event again, with the same `webhook-id` and a fresh retry schedule."""
    again = _run(lambda admin: admin.redeliver(event_id, endpoint))
    _say(f"Event {event_id} will be sent again to {len(again)} destination(s).")


# Helpers -------------------------------------------------------------------------------------


def _run(operation: Callable[[WebhookAdmin], Awaitable[T]]) -> T:
    """Run one admin operation against the configured database; a Ferry error is printed as
    a clear message (exit 2), not a traceback."""
    from service.database import connect
    from service.errors import FerryError
    from service.webhooks.admin import WebhookAdmin

    settings = settings_or_fail()

    async def run() -> T:
        client = connect(settings.mongo, app_name="ferry-cli")
        try:
            return await operation(WebhookAdmin(client[settings.mongo.database], settings))
        finally:
            await client.close()

    try:
        return asyncio.run(run())
    except FerryError as exc:
        fail(f"{exc.code}: {exc.message}")


def _say(message: str) -> None:
    console.print(message)


def _print_json(value: object) -> None:
    print(json.dumps(value, indent=2, default=str))  # noqa: T201 - machine-readable output


def _endpoint_json(endpoint: Endpoint) -> dict[str, Any]:
    document: dict[str, Any] = endpoint.model_dump(mode="json")
    return document
