"""`ferry schemas`: the documents generated from the code."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from service.cli.common import console, fail


def schemas(
    check: Annotated[bool, typer.Option(help="Fail if schemas/ differs from the code.")] = False,
    directory: Annotated[Path, typer.Option(help="Where the documents live.")] = Path("schemas"),
    readme: Annotated[Path, typer.Option(help="README whose settings table is refreshed.")] = Path(
        "README.md"
    ),
) -> None:
    """Write (or check) the JSON Schemas, AsyncAPI and OpenAPI documents and the list of error
    codes generated from the code, and the settings table in the README."""
    from service.specs import stale_documents, write_documents

    if check:
        stale = stale_documents(directory)
        if stale:
            fail(f"out of date: {', '.join(stale)}; run `ferry schemas` and commit the result")
        console.print("schemas/ matches the code.")
    else:
        for path in write_documents(directory, readme):
            console.print(f"wrote {path}")
