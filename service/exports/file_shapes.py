"""The shapes an export's files are described by: the limits that split them, a written file,
what checkpointing needs, and the error when the limits ask for too many files."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from service.datasets.base import Document
from service.error_codes import ErrorCode
from service.errors import FerryError
from service.exports.checkpoints import Checkpoint


class TooManyFilesError(FerryError):
    """The limits asked for would cut the export into more files than allowed."""

    code = ErrorCode.TOO_MANY_FILES

    def __init__(self, limit: int) -> None:
        super().__init__(
            f"the export would need more than {limit} files; raise max_file_bytes or "
            "max_rows_per_file, or narrow the filters"
        )


@dataclass(frozen=True)
class FileLimits:
    """How large one file may get; neither limit set means one file."""

    max_bytes: int | None = None
    max_rows: int | None = None

    @property
    def split(self) -> bool:
        return self.max_bytes is not None or self.max_rows is not None


@dataclass(frozen=True)
class WrittenFile:
    key: str
    part: int | None  # None for the file of a one-file export
    rows: int
    size_bytes: int
    sha256: str


@dataclass(frozen=True)
class Resumable:
    """What checkpointing needs: each row's sort key, where to save a checkpoint, when the
    export began reading, and the checkpoint to continue from (None: from the start)."""

    key_of: Callable[[Document], dict[str, Any]]
    save: Callable[[Checkpoint], Awaitable[None]]
    data_as_of: datetime
    start: Checkpoint | None = None
    # False for formats whose file cannot be continued mid-way (Parquet: its footer describes
    # every row group): checkpoints are then taken only when a file closes.
    mid_file: bool = True
