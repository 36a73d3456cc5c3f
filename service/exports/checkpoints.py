"""Checkpoints: where an export got to, saved each time a part of its output is safely stored,
so that the next attempt after a crash continues there instead of starting over.

A checkpoint names the sort key of the last row stored (the dataset's sort ends with a unique
field, so "after this key" is exact), the files closed so far, and the file being uploaded: its
multipart upload and the parts it has, with their ETags, sizes and SHA-256. Rows are stored
only in whole parts, cut on row boundaries, and with gzip every part ends a gzip member (several
members concatenated are one valid gzip file), so the compressor carries no state across a
part and nothing else needs saving.

The one thing that cannot be resumed is a file's running SHA-256 (hashlib's state cannot be
saved): a file whose upload was continued by a later attempt is hashed by reading it back once
it is complete. Files written by one attempt from start to end are hashed as they are written.
Each part's own SHA-256 is kept in the checkpoint for diagnosis.

The ledger keeps the checkpoint as an opaque document on the job; this module gives it a shape.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from service.clock import as_utc
from service.datasets.base import Document

SortKey = tuple[tuple[str, int], ...]


class StoredPart(BaseModel):
    """One uploaded part of the file being written."""

    number: int
    etag: str
    size_bytes: int
    sha256: str


class OpenFile(BaseModel):
    """The file whose multipart upload is in progress."""

    key: str
    part: int | None  # the file's number in a split export
    upload_id: str
    rows: int = Field(description="Rows of this file in the parts stored.")
    parts: list[StoredPart]


class ClosedFile(BaseModel):
    key: str
    part: int | None
    rows: int
    size_bytes: int
    sha256: str


class Checkpoint(BaseModel):
    """Everything up to and including the row whose sort key is `after` is stored."""

    # Sort-key values are BSON values (datetimes, ObjectIds, ...), kept as they came.
    model_config = ConfigDict(arbitrary_types_allowed=True)

    rows: int
    after: dict[str, Any]
    files: list[ClosedFile] = Field(default_factory=list)
    open_file: OpenFile | None = None
    data_as_of: datetime

    @field_validator("data_as_of")
    @classmethod
    def _aware(cls, value: datetime) -> datetime:
        return as_utc(value)  # MongoDB gives datetimes back without their zone

    def to_document(self) -> dict[str, Any]:
        return self.model_dump(mode="python")

    @classmethod
    def from_document(cls, document: Mapping[str, Any]) -> Checkpoint:
        return cls.model_validate(dict(document))


def sort_fields(sort: SortKey) -> list[str]:
    return [field for field, _ in sort]


def key_of(sort: SortKey, row: Document) -> dict[str, Any]:
    """The sort-key values of `row` (which must have been read with the sort fields)."""
    return {field: row.get(field) for field, _ in sort}


def parts_match(stored: Mapping[int, str], expected: Sequence[StoredPart]) -> bool:
    """Whether the object store still has exactly the parts a checkpoint names (more parts are
    fine: a part uploaded after the checkpoint is overwritten by the next attempt)."""
    return all(stored.get(part.number) == part.etag.strip('"') for part in expected)
