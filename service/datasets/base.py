"""What a dataset declares so it can be exported: its collection, filters, columns and rows.

A dataset is one module in this package exposing `DATASET`; the registry finds it, so adding a
dataset touches nothing else. A column's field may be a dotted path into a nested document
(`attributes.FIRSTNAME`), and a dataset may accept column names beyond its fixed list
(`column_for`), e.g. one per attribute its records carry.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Generic, TypeVar

from pydantic import BaseModel, ValidationError

from service.error_codes import ErrorCode
from service.errors import InvalidRequestError

FiltersT = TypeVar("FiltersT", bound=BaseModel)

Document = Mapping[str, Any]
Cell = str | int | float | bool | datetime | list[int] | None


# Brevo's names for a job of each kind whose dataset names none, or that names no known
# dataset at all (a request that could not be understood): the closest real process names.
CLOSEST_PROCESS_NAMES: Mapping[str, str] = {"export": "CONTACT_EXPORT", "import": "IMPORTUSER"}


@dataclass(frozen=True)
class Column:
    """One exported column: its name in the file and the document field it comes from."""

    name: str
    field: str


@dataclass(frozen=True)
class UniqueIndex:
    """A unique index; `partial` limits it to documents that have the field (absent values
    must not collide)."""

    keys: tuple[tuple[str, int], ...]
    partial: Mapping[str, Any] | None = None


@dataclass(frozen=True)
class Dataset(Generic[FiltersT]):
    """A collection that can be exported, filtered by a typed filter model.

    `process_names` names the dataset's jobs in Brevo's process view, per job kind; a dataset
    that can be imported into says so with `importable`.
    """

    name: str
    collection: str
    description: str
    filters_model: type[FiltersT]
    record_model: type[BaseModel]
    columns: tuple[Column, ...]
    sort: tuple[tuple[str, int], ...]
    indexes: tuple[tuple[tuple[str, int], ...], ...]
    unique_indexes: tuple[UniqueIndex, ...] = ()
    process_names: Mapping[str, str] = field(default_factory=dict)
    importable: bool = False

    def parse_filters(self, raw: Mapping[str, Any]) -> FiltersT:
        """Validate request filters; the error says which filter is wrong and how."""
        try:
            return self.filters_model.model_validate(raw)
        except ValidationError as exc:
            raise InvalidRequestError(
                describe_validation_error(exc, prefix="filters"),
                code=_filter_error_code(exc),
            ) from exc

    def select_columns(self, requested: Sequence[str] | None) -> tuple[Column, ...]:
        """The requested columns in the requested order, or all of them."""
        if not requested:
            return self.columns
        by_name = {column.name: column for column in self.columns}
        chosen = [by_name.get(name) or self.column_for(name) for name in requested]
        unknown = [name for name, column in zip(requested, chosen, strict=True) if column is None]
        if unknown:
            raise InvalidRequestError(
                f"unknown columns {unknown} for dataset {self.name!r}; "
                f"choose from {[column.name for column in self.columns]}"
                f"{self.more_columns_hint()}",
                code=ErrorCode.INVALID_COLUMNS,
            )
        selected = tuple(column for column in chosen if column is not None)
        if len({column.name for column in selected}) != len(selected):
            raise InvalidRequestError(
                "columns must not repeat a name", code=ErrorCode.INVALID_COLUMNS
            )
        return selected

    def query(self, project_id: str, filters: FiltersT) -> dict[str, Any]:
        """The MongoDB filter for one project's rows; datasets override `filter_query`."""
        return {"project_id": project_id, **self.filter_query(filters)}

    # Overridden by each dataset -------------------------------------------------------------

    def filter_query(self, filters: FiltersT) -> dict[str, Any]:
        raise NotImplementedError

    def column_for(self, name: str) -> Column | None:  # noqa: ARG002
        """A column beyond the fixed list, or None: most datasets have none."""
        return None

    def more_columns_hint(self) -> str:
        """Appended to the unknown-column error when `column_for` accepts more names."""
        return ""

    def process_name(self, kind: str) -> str:
        """The job's `name` in Brevo's process view: the dataset's own for the kind, else the
        closest real Brevo name (a messages import is no Brevo process, but an import is)."""
        return self.process_names.get(kind) or CLOSEST_PROCESS_NAMES[kind]

    def view_fields(self, filters: FiltersT) -> dict[str, Any]:
        """How the filters appear in the job as the API shows it (`filter_<name>` by default)."""
        return {f"filter_{name}": value for name, value in filters.model_dump(mode="json").items()}

    def estimate_progress(self, filters: FiltersT, last_row: Document) -> float | None:  # noqa: ARG002
        """Fraction done after `last_row` (rows come in `sort` order), or None when unknown."""
        return None


def describe_validation_error(exc: ValidationError, *, prefix: str = "") -> str:
    """One line per problem, naming the field path, e.g. `filters.end_time: must be after ...`."""
    parts = []
    for error in exc.errors(include_url=False):
        location = ".".join(str(part) for part in (prefix, *error["loc"]) if part != "")
        parts.append(f"{location or prefix or 'request'}: {error['msg']}")
    return "; ".join(parts)


def _filter_error_code(exc: ValidationError) -> str:
    types = {error["type"] for error in exc.errors(include_url=False)}
    return (
        ErrorCode.INVALID_TIME_RANGE if "invalid_time_range" in types else ErrorCode.INVALID_FILTER
    )
