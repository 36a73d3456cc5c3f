"""What the CSV reader hands on: records, one by one or in groups of parallel lists."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class Record:
    line: int  # 1 is the file's first line
    fields: list[str] | None  # None when the record could not be parsed
    raw: str  # the record's text, without its final line break
    error: str | None = None


@dataclass(slots=True)
class Group:
    """Consecutive records, as parallel lists; blank lines are left out."""

    lines: list[int] = field(default_factory=list)
    fields: list[list[str] | None] = field(default_factory=list)
    raws: list[str] = field(default_factory=list)
    errors: dict[int, str] = field(default_factory=dict)  # index -> why it cannot be read

    def __len__(self) -> int:
        return len(self.lines)

    def records(self) -> Iterator[Record]:
        errors = self.errors
        for index, (line, fields, raw) in enumerate(
            zip(self.lines, self.fields, self.raws, strict=True)
        ):
            yield Record(line, fields, raw, errors.get(index))
