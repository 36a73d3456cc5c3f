"""The `ferry` command. One module per area; each command parses its options and calls into
the service, importing what it needs inside itself so `ferry --help` starts fast and `ferry dev`
alone needs the embedded extra. `common` holds what the commands share."""

from __future__ import annotations

import typer

from service.cli.keys import keys_app
from service.cli.running import api, dev, provision, worker
from service.cli.schemas import schemas
from service.cli.submit import cancel, submit_app
from service.cli.webhooks import webhooks_app

app = typer.Typer(
    help="Ferry: export and import jobs requested over Kafka, run from a MongoDB ledger, "
    "served over HTTP.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
app.add_typer(keys_app, name="keys")
app.add_typer(submit_app, name="submit")
app.add_typer(webhooks_app, name="webhooks")
for command in (dev, worker, api, provision, schemas, cancel):
    app.command()(command)


def main() -> None:
    """The `ferry` entry point."""
    app()
