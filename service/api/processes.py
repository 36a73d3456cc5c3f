"""Brevo's background-process view of every job: `GET /v3/processes/{processId}` and
`GET /v3/processes`, authenticated by the `api-key` header, errors in Brevo's shape.

Statuses: pending -> queued, processing -> in_process, completed -> completed, failed -> failed,
cancelled -> cancelled, and expired -> completed: Brevo shows a process whose file is gone as
the completed process it was, with its `info` but without `export_url` (Ferry adds
`expired: true`; an expired import's report links are all null). `info` appears for completed
imports (links to the reports, null for empty categories) and exports (rows and bytes);
`export_url` for completed exports. Links are signed afresh on every request. A failed process
carries `error: {code, message}`, an extra field Brevo's SDK keeps (its models allow extras).
Every process has a Brevo name: its dataset's, else the closest real one for its kind
(`CONTACT_EXPORT`, `IMPORTUSER`), also for requests naming no known dataset.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.responses import JSONResponse
from fastapi.security import APIKeyHeader
from pydantic import BaseModel, Field

from service.api.dependencies import Services, ServicesDep, authenticate
from service.api.exports import export_link
from service.api.links import report_links
from service.api.surfaces import BrevoError, documented_errors, links_from_first_item
from service.datasets import get_dataset
from service.datasets.base import CLOSEST_PROCESS_NAMES
from service.errors import InvalidRequestError, NotFoundError
from service.imports.model import BREVO_CATEGORIES
from service.jobs.status import JobStatus

router = APIRouter(prefix="/v3/processes", tags=["processes (Brevo)"])

_INVALID = "invalid_parameter: a parameter is malformed or out of range"
_LIST_ERRORS = documented_errors(BrevoError, {400: _INVALID})
_ERRORS = documented_errors(
    BrevoError, {400: _INVALID, 404: "document_not_found: no such process in the key's account"}
)
# The first process of a page leads to its details (schemathesis follows this).
_TO_PROCESS = links_from_first_item("/processes/0/id", "processId", {"GetProcess": "getProcess"})
_MAX_LIMIT = 50
_MAX_ID = 2**63 - 1  # Brevo's ids are int64, and so are MongoDB's integers
# MongoDB takes skip and skip + limit as int64s; a larger offset cannot reach the database.
_MAX_OFFSET = _MAX_ID - _MAX_LIMIT
BREVO_STATUS = {
    JobStatus.PENDING: "queued",
    JobStatus.PROCESSING: "in_process",
    JobStatus.COMPLETED: "completed",
    JobStatus.FAILED: "failed",
    JobStatus.CANCELLED: "cancelled",
    JobStatus.EXPIRED: "completed",
}

_api_key = APIKeyHeader(
    name="api-key", auto_error=False, description="An API key from `ferry keys create`."
)


async def _project(
    request: Request, services: ServicesDep, key: Annotated[str | None, Depends(_api_key)]
) -> str:
    return await authenticate(services, request, key, "Key not found")


BrevoProjectDep = Annotated[str, Depends(_project)]


class ImportInfo(BaseModel):
    """A link to a CSV of the rows of each category, or null when there were none."""

    invalid_emails: str | None
    duplicate_contact_id: str | None
    duplicate_ext_id: str | None
    duplicate_email_id: str | None
    duplicate_phone_id: str | None
    duplicate_whatsapp_id: str | None
    duplicate_landline_number_id: str | None


class ExportInfo(BaseModel):
    total_records: int
    file_size: int


class ProcessInfo(BaseModel):
    import_: ImportInfo | None = Field(None, alias="import")
    export: ExportInfo | None = None


class ProcessError(BaseModel):
    code: str = Field(description="Machine-readable reason, e.g. `INVALID_FILTER`.")
    message: str = Field(description="What went wrong and what to fix.")


class Process(BaseModel):
    id: int = Field(description="The process id (int64).")
    name: str = Field(examples=["IMPORTUSER", "CONTACT_EXPORT", "EXPORT_WEBHOOK"])
    status: Literal["queued", "in_process", "completed", "failed", "cancelled"]
    info: ProcessInfo | None = Field(
        None, description="Completed (and expired) imports and exports only."
    )
    export_url: str | None = Field(
        None, description="Completed exports only, while the file is kept: a fresh link."
    )
    expired: bool | None = Field(
        None, description="Ferry's addition: true once the process's files were deleted."
    )
    error: ProcessError | None = Field(
        None, description="Ferry's addition, failed processes only: why it failed."
    )


class ProcessList(BaseModel):
    count: int = Field(description="Processes of the account in all.")
    processes: list[Process]


@router.get(
    "/{processId}",
    response_model=Process,
    responses=_ERRORS,
    summary="Get process details",
    operation_id="getProcess",
)
async def get_process(
    services: ServicesDep,
    project_id: BrevoProjectDep,
    process_id: Annotated[int, Path(alias="processId", ge=1, le=_MAX_ID)],
) -> JSONResponse:
    view = await services.read_model.process(project_id, process_id)
    if view is None:
        raise NotFoundError("Process not found")
    return JSONResponse(await _process(services, view))


@router.get(
    "",
    response_model=ProcessList,
    responses={200: _TO_PROCESS, **_LIST_ERRORS},
    summary="Get background processes",
    operation_id="listProcesses",
)
async def list_processes(
    services: ServicesDep,
    project_id: BrevoProjectDep,
    *,
    limit: Annotated[int, Query(ge=1, le=_MAX_LIMIT, description="Page size.")] = 10,
    offset: Annotated[int, Query(ge=0, le=_MAX_OFFSET, description="Processes to skip.")] = 0,
    sort: Annotated[Literal["asc", "desc"], Query(description="By creation.")] = "desc",
) -> JSONResponse:
    count, views = await services.read_model.processes(
        project_id, limit=limit, offset=offset, newest_first=sort == "desc"
    )
    processes = [await _process(services, view) for view in views]
    return JSONResponse({"count": count, "processes": processes})


async def _process(services: Services, view: dict[str, Any]) -> dict[str, Any]:
    status = JobStatus(view["status"])
    process: dict[str, Any] = {
        "id": view["process_id"],
        "name": _name(view),
        "status": BREVO_STATUS[status],
    }
    if status is JobStatus.FAILED:
        process["error"] = {
            "code": view.get("error_code") or "FAILED",
            "message": view.get("error_message") or "the process failed",
        }
    if status not in {JobStatus.COMPLETED, JobStatus.EXPIRED}:
        return process
    if status is JobStatus.EXPIRED:
        process["expired"] = True
    if view["kind"] == "import":
        links = await report_links(services, view)
        process["info"] = {
            "import": {
                name: (link.url if (link := links.get(name)) else None) for name in BREVO_CATEGORIES
            }
        }
    else:
        process["info"] = {
            "export": {
                "total_records": view.get("row_count") or 0,
                "file_size": view.get("file_size_bytes") or 0,
            }
        }
        link = await export_link(services, view) if status is JobStatus.COMPLETED else None
        if link is not None:
            process["export_url"] = link.url
    return process


def _name(view: dict[str, Any]) -> str:
    try:
        return get_dataset(view["dataset"]).process_name(view["kind"])
    except InvalidRequestError:  # a request for an unknown dataset, failed at once
        return CLOSEST_PROCESS_NAMES[view["kind"]]
