"""What an export job asks for and what it produces, as the ledger stores them and its view
shows them. Plain models, so the job model can hold them without importing the exporter."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

ExportFormat = Literal["csv", "jsonl", "parquet"]
Compression = Literal["none", "gzip"]


class ExportFile(BaseModel):
    """One file of a finished export."""

    key: str
    # The file's number from 1 in a split export; None for the file of a one-file export.
    part: int | None = None
    rows: int
    size_bytes: int
    sha256: str


class ExportResult(BaseModel):
    """What a finished export produced. Exports finished before files were split have only
    `object_key` and the file fields; `files` then stays empty."""

    object_key: str  # the first (or only) file
    row_count: int
    file_size_bytes: int  # all files together
    file_sha256: str | None  # the only file's; None when there are several (see `files`)
    files: list[ExportFile] = Field(default_factory=list)
    manifest_key: str | None = None

    def object_keys(self) -> list[str]:
        """Every object the export left: its files, then its manifest."""
        keys = [file.key for file in self.files] or [self.object_key]
        return keys + ([self.manifest_key] if self.manifest_key else [])
