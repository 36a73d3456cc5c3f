"""The exportable datasets: each module here defining `DATASET` is one; nothing else lists them."""

from __future__ import annotations

import importlib
import pkgutil
from functools import cache
from typing import Any

from service.datasets.base import Dataset
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


def get_dataset(name: str) -> Dataset[Any]:
    try:
        return all_datasets()[name]
    except KeyError:
        known = sorted(all_datasets())
        raise InvalidRequestError(
            f"unknown dataset {name!r}; known datasets: {known}", code="UNKNOWN_DATASET"
        ) from None
