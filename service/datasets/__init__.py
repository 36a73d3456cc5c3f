"""The exportable datasets: each module here defining `DATASET` is one; nothing else lists them."""

from __future__ import annotations

import importlib
import pkgutil
from functools import cache
from typing import Any

from pymongo import IndexModel
from pymongo.asynchronous.database import AsyncDatabase

from service.datasets.base import Dataset
from service.error_codes import ErrorCode
from service.errors import InvalidRequestError


@cache
def all_datasets() -> dict[str, Dataset[Any]]:
    found: dict[str, Dataset[Any]] = {}
    for module_info in pkgutil.iter_modules(__path__):
        module = importlib.import_module(f"{__name__}.{module_info.name}")
        dataset = getattr(module, "DATASET", None)
        if isinstance(dataset, Dataset):
            found[dataset.name] = dataset
    return found


async def ensure_dataset_indexes(database: AsyncDatabase[dict[str, Any]]) -> None:
    """Every dataset's indexes: those exports read by and the unique ones imports rely on."""
    for dataset in all_datasets().values():
        models = [IndexModel(list(keys)) for keys in dataset.indexes]
        models += [
            IndexModel(list(index.keys), unique=True, partialFilterExpression=index.partial)
            if index.partial
            else IndexModel(list(index.keys), unique=True)
            for index in dataset.unique_indexes
        ]
        if models:
            await database[dataset.collection].create_indexes(models)


def get_dataset(name: str) -> Dataset[Any]:
    try:
        return all_datasets()[name]
    except KeyError:
        known = sorted(all_datasets())
        raise InvalidRequestError(
            f"unknown dataset {name!r}; known datasets: {known}", code=ErrorCode.UNKNOWN_DATASET
        ) from None
