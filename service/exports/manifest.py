"""The manifest every export leaves beside its files (DynamoDB's export manifest is the model).

One JSON object: what was asked for, when the data was read, the columns and their types, and
each file with its rows, bytes and SHA-256, so that a consumer can check what it downloaded
without trusting anything but the manifest. It is written last: a manifest that exists lists
files that exist.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from service.clock import rfc3339
from service.datasets.base import Column, Dataset
from service.exports.file_shapes import WrittenFile
from service.jobs.model import Job

MANIFEST_VERSION = 1


def column_types(dataset: Dataset[Any], columns: Sequence[Column]) -> list[dict[str, Any]]:
    """Each column's name, the JSON type of its values (`datetime` for RFC 3339 strings) and
    whether it can be empty, from the dataset's record model."""
    schema = dataset.record_model.model_json_schema()
    properties: dict[str, Any] = schema.get("properties", {})
    definitions: dict[str, Any] = schema.get("$defs", {})
    described = []
    for column in columns:
        head, _, rest = column.field.partition(".")
        spec = properties.get(head, {})
        if rest:  # a nested field, e.g. a contact's `attributes.FIRSTNAME`
            spec = spec.get("additionalProperties") or {}
        kind, nullable = _type_of(spec, definitions)
        described.append({"name": column.name, "type": kind, "nullable": nullable or bool(rest)})
    return described


def _type_of(spec: dict[str, Any], definitions: dict[str, Any]) -> tuple[str, bool]:
    if "$ref" in spec:
        spec = definitions.get(spec["$ref"].rsplit("/", 1)[-1], {})
    options = spec.get("anyOf")
    if options:
        kinds = [_type_of(option, definitions)[0] for option in options]
        nullable = "null" in kinds
        concrete = [kind for kind in kinds if kind != "null"]
        return (concrete[0] if len(concrete) == 1 else "any"), nullable
    kind = spec.get("type", "any")
    if kind == "string" and spec.get("format") == "date-time":
        kind = "datetime"
    if kind == "array":
        item, _ = _type_of(spec.get("items", {}), definitions)
        kind = f"array<{item}>"
    return str(kind), kind == "null"


def build_manifest(
    job: Job,
    dataset: Dataset[Any],
    columns: Sequence[Column],
    files: Sequence[WrittenFile],
    *,
    data_as_of: datetime,
    names: Sequence[str],
) -> dict[str, Any]:
    """The manifest of `job`'s finished output; `names[i]` is `files[i]`'s name relative to the
    manifest (the manifest sits in the same folder)."""
    return {
        "manifest_version": MANIFEST_VERSION,
        "job_id": job.id,
        "project_id": job.project_id,
        "dataset": job.dataset,
        # Rows are read by one cursor that started here: a row written after this instant may
        # or may not be in the export, one written before it and matching the filters is.
        "data_as_of": rfc3339(data_as_of),
        "request": {
            "filters": job.filters,
            "columns": job.columns,
            "format": job.format,
            "compression": job.compression,
            "max_file_bytes": job.max_file_bytes,
            "max_rows_per_file": job.max_rows_per_file,
        },
        "columns": column_types(dataset, columns),
        "total_rows": sum(file.rows for file in files),
        "total_bytes": sum(file.size_bytes for file in files),
        "files": [
            {
                "name": name,
                "part": file.part,
                "rows": file.rows,
                "size_bytes": file.size_bytes,
                "sha256": file.sha256,
            }
            for name, file in zip(names, files, strict=True)
        ],
    }


def encode_manifest(manifest: dict[str, Any]) -> bytes:
    return (json.dumps(manifest, indent=2, ensure_ascii=False, default=str) + "\n").encode()
