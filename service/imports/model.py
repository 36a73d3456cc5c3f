"""What an import job asks for and what it produces: contracts (the job record stores them and
its public view shows them), defined in service/contracts/imports.py and named here for the
importer."""

from __future__ import annotations

from service.contracts.imports import (
    BREVO_CATEGORIES,
    REJECTED_ROWS,
    ImportCounts,
    ImportOptions,
    ImportResult,
    ImportSource,
    ReportFile,
)

__all__ = [
    "BREVO_CATEGORIES",
    "REJECTED_ROWS",
    "ImportCounts",
    "ImportOptions",
    "ImportResult",
    "ImportSource",
    "ReportFile",
]
