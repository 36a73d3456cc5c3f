"""Where an import's objects live: one rule for the importer, the API and the CLI.

- `uploads/{project_id}/...`: files uploaded to be imported (the CLI puts them there); an
  import from Ferry's own bucket may only read its own project's uploads.
- `imports/{project_id}/{job_id}/{report}.csv`: the reports, fixed per job so that a retried
  attempt overwrites rather than adds.
- `imports/{project_id}/{job_id}/source`: a file fetched from a URL, kept while it is imported.
"""

from __future__ import annotations

REPORT_CONTENT_TYPE = "text/csv; charset=utf-8"


def uploads_prefix(project_id: str) -> str:
    return f"uploads/{project_id}/"


def upload_key(project_id: str, name: str) -> str:
    return f"{uploads_prefix(project_id)}{name}"


def report_key(project_id: str, job_id: str, report: str) -> str:
    return f"imports/{project_id}/{job_id}/{report}.csv"


def fetched_source_key(project_id: str, job_id: str) -> str:
    return f"imports/{project_id}/{job_id}/source"


def report_filename(report: str, job_id: str) -> str:
    return f"{report}-{job_id}.csv"
