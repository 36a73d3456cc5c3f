"""Arrow types of a dataset's fields, from its record model's annotations: the schema the fast
decoder reads with and the column types of Parquet files."""

from __future__ import annotations

import datetime as dt
import types
import typing
from enum import Enum
from typing import Any

import pyarrow as pa
from pydantic import BaseModel

_SCALARS: dict[object, pa.DataType] = {
    str: pa.string(),
    int: pa.int64(),
    float: pa.float64(),
    bool: pa.bool_(),
    dt.datetime: pa.timestamp("ms", tz="UTC"),
}
# BSON element types (bsonspec.org) that pymongoarrow accepts into a column of another type,


def column_type(record_model: type[BaseModel], name: str) -> pa.DataType:
    """The Arrow type of a (possibly dotted) field, from the record model's annotations: `str`,
    enums and literals a string, `int` an int64, `float` a double, `bool` a boolean, `datetime`
    a UTC timestamp in milliseconds (BSON's precision), `list[int]` a list of int64, a value of
    `dict[str, V]` (`attributes.FIRSTNAME`) V's type; anything else, or untyped, a string."""
    head, _, rest = name.partition(".")
    annotation = _annotation(record_model, head)
    if rest:
        container = _without_none(annotation)
        if typing.get_origin(container) is not dict or "." in rest:
            return pa.string()
        annotation = typing.get_args(container)[-1]
    return _arrow_type(annotation)


def _annotation(record_model: type[BaseModel], name: str) -> object:
    for field_name, info in record_model.model_fields.items():
        if name in {field_name, info.alias}:
            return info.annotation
    return Any


def _without_none(annotation: object) -> object:
    args = typing.get_args(annotation)
    if typing.get_origin(annotation) in {typing.Union, types.UnionType}:
        rest = [arg for arg in args if arg is not type(None)]
        return rest[0] if len(rest) == 1 else Any
    return annotation


def _arrow_type(annotation: object) -> pa.DataType:
    annotation = _without_none(annotation)
    if isinstance(annotation, type) and issubclass(annotation, Enum):
        return pa.string()
    if typing.get_origin(annotation) is typing.Literal:
        return pa.string()
    if typing.get_origin(annotation) is list:
        (item,) = typing.get_args(annotation) or (Any,)
        if item is int:
            return pa.list_(pa.int64())
        if item is str:
            return pa.list_(pa.string())
        return pa.string()
    return _SCALARS.get(annotation, pa.string())
