"""Where an export's files live and how they are named: one rule for the exporter and the API.

An export without a size limit is one file, `exports/{project_id}/{job_id}.{ext}`, with its
manifest beside it at `exports/{project_id}/{job_id}.manifest.json`. An export asked to split
(`max_file_bytes` or `max_rows_per_file`) is a folder: `exports/{project_id}/{job_id}/` holding
`part-00001.{ext}`, `part-00002.{ext}`, ... and `manifest.json`. The layout follows from the
request alone, so a retried attempt writes the same keys and the API derives them without
believing any key it is shown.
"""

from __future__ import annotations

from service.jobs.model import Compression, ExportFormat

_CONTENT_TYPES: dict[ExportFormat, str] = {
    "csv": "text/csv; charset=utf-8",
    "jsonl": "application/x-ndjson",
    "parquet": "application/vnd.apache.parquet",
}
MANIFEST_CONTENT_TYPE = "application/json"
# Five digits keep the names sorting in order; the number of files is capped well below this.
MAX_PART_NUMBER = 99_999


def extension(export_format: ExportFormat, compression: Compression) -> str:
    return export_format + (".gz" if compression == "gzip" else "")


def content_type(export_format: ExportFormat, compression: Compression) -> str:
    return "application/gzip" if compression == "gzip" else _CONTENT_TYPES[export_format]


def object_key(
    project_id: str, job_id: str, export_format: ExportFormat, compression: Compression
) -> str:
    """`exports/{project_id}/{job_id}.{ext}`: the file of a one-file export; fixed per job, so a
    retried attempt overwrites the same object and there is never more than one file per job."""
    return f"exports/{project_id}/{job_id}.{extension(export_format, compression)}"


def file_name(
    job_id: str, export_format: ExportFormat, compression: Compression, *, part: int | None
) -> str:
    """A file's name relative to its manifest: `{job_id}.{ext}` for a one-file export,
    `part-00001.{ext}` for the files of a split one."""
    ext = extension(export_format, compression)
    if part is None:
        return f"{job_id}.{ext}"
    if not 1 <= part <= MAX_PART_NUMBER:
        raise ValueError(f"part {part} is out of range")
    return f"part-{part:05d}.{ext}"


def folder(project_id: str, job_id: str, *, split: bool) -> str:
    """The prefix an export's files share (with a trailing slash)."""
    return f"exports/{project_id}/{job_id}/" if split else f"exports/{project_id}/"


def file_key(
    project_id: str,
    job_id: str,
    export_format: ExportFormat,
    compression: Compression,
    *,
    part: int | None,
) -> str:
    """The key of one file: `part` None for a one-file export, else the file's number from 1."""
    name = file_name(job_id, export_format, compression, part=part)
    return folder(project_id, job_id, split=part is not None) + name


def chunk_key(
    project_id: str, job_id: str, index: int, export_format: ExportFormat, compression: Compression
) -> str:
    """A chunk's temporary object in a chunked export (service/exports/chunked.py): under the
    job's own folder, removed once the chunks are composed into the export's file."""
    return (
        f"exports/{project_id}/{job_id}/chunks/{index:05d}.{extension(export_format, compression)}"
    )


def manifest_key(project_id: str, job_id: str, *, split: bool) -> str:
    if split:
        return f"exports/{project_id}/{job_id}/manifest.json"
    return f"exports/{project_id}/{job_id}.manifest.json"


def download_filename(
    dataset: str,
    job_id: str,
    export_format: ExportFormat,
    compression: Compression,
    *,
    part: int | None = None,
) -> str:
    ext = extension(export_format, compression)
    if part is None:
        return f"{dataset}-{job_id}.{ext}"
    return f"{dataset}-{job_id}-part-{part:05d}.{ext}"


def manifest_filename(dataset: str, job_id: str) -> str:
    return f"{dataset}-{job_id}-manifest.json"
