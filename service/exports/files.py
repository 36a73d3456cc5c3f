"""Where an export's file lives and how it is named: one rule for the exporter and the API."""

from __future__ import annotations

from service.jobs.model import Compression, ExportFormat

_CONTENT_TYPES: dict[ExportFormat, str] = {
    "csv": "text/csv; charset=utf-8",
    "jsonl": "application/x-ndjson",
    "parquet": "application/vnd.apache.parquet",
}


def extension(export_format: ExportFormat, compression: Compression) -> str:
    return export_format + (".gz" if compression == "gzip" else "")


def content_type(export_format: ExportFormat, compression: Compression) -> str:
    return "application/gzip" if compression == "gzip" else _CONTENT_TYPES[export_format]


def object_key(
    project_id: str, job_id: str, export_format: ExportFormat, compression: Compression
) -> str:
    """`exports/{project_id}/{job_id}.{ext}`: fixed per job, so a retried attempt overwrites the
    same object and there is never more than one file per job."""
    return f"exports/{project_id}/{job_id}.{extension(export_format, compression)}"


def download_filename(
    dataset: str, job_id: str, export_format: ExportFormat, compression: Compression
) -> str:
    return f"{dataset}-{job_id}.{extension(export_format, compression)}"
