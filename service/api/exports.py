"""HookBridge's export endpoints: `GET /v1/exports`, `/v1/exports/{id}` and its `/download`.

A job of another project answers exactly like a missing one, so ids reveal nothing.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from service.api.dependencies import ProjectDep, Services, ServicesDep
from service.api.envelope import ErrorEnvelope, Meta, PageMeta, envelope
from service.api.links import SignedLink, file_expiry, signed_link
from service.api.read_model import CURSOR_PATTERN
from service.api.surfaces import documented_errors, links_from_first_item
from service.api.waiting import with_waiting_info
from service.clock import utcnow
from service.errors import ExportExpiredError, ExportNotReadyError, NotFoundError
from service.exports import files
from service.jobs.status import JobStatus
from service.jobs.view import JobView

router = APIRouter(prefix="/v1/exports", tags=["exports"])

_INVALID = "INVALID_REQUEST: a parameter is malformed or out of range"
_NOT_FOUND = "NOT_FOUND: no such export in the key's project"
_LIST_ERRORS = documented_errors(ErrorEnvelope, {400: _INVALID})
_ERRORS = documented_errors(ErrorEnvelope, {400: _INVALID, 404: _NOT_FOUND})
# The first export of a page leads to its details and its file (schemathesis follows these).
_TO_EXPORT = links_from_first_item(
    "/data/0/id", "export_id", {"GetExport": "getExport", "DownloadExport": "downloadExport"}
)


class ExportEnvelope(BaseModel):
    data: JobView
    meta: Meta


class ExportPage(BaseModel):
    data: list[JobView]
    meta: PageMeta


class DownloadLink(BaseModel):
    url: str
    expires_at: datetime


class DownloadEnvelope(BaseModel):
    data: DownloadLink
    meta: Meta


@router.get(
    "",
    response_model=ExportPage,
    responses={200: _TO_EXPORT, **_LIST_ERRORS},
    summary="List exports",
    operation_id="listExports",
)
async def list_exports(
    request: Request,
    services: ServicesDep,
    project_id: ProjectDep,
    *,
    status: Annotated[JobStatus | None, Query(description="Only exports in this status.")] = None,
    limit: Annotated[int, Query(ge=1, le=100, description="Page size.")] = 20,
    cursor: Annotated[
        str | None,
        Query(description="`next_cursor` of the previous page.", pattern=CURSOR_PATTERN),
    ] = None,
) -> dict[str, Any]:
    views, next_cursor = await services.read_model.page(
        project_id,
        "export",
        status=status.value if status else None,
        limit=limit,
        cursor=cursor,
    )
    views = [await with_waiting_info(services, view) for view in views]
    return envelope(request, views, has_more=next_cursor is not None, next_cursor=next_cursor)


@router.get(
    "/{export_id}",
    response_model=ExportEnvelope,
    responses=_ERRORS,
    summary="Get export",
    operation_id="getExport",
)
async def get_export(
    request: Request, services: ServicesDep, project_id: ProjectDep, export_id: UUID
) -> dict[str, Any]:
    view = await _view(services, project_id, export_id)
    return envelope(request, await with_waiting_info(services, view))


@router.get(
    "/{export_id}/download",
    status_code=302,
    response_model=DownloadEnvelope,
    responses=documented_errors(
        ErrorEnvelope,
        {
            400: _INVALID,
            404: _NOT_FOUND,
            409: "EXPORT_NOT_READY: not completed yet",
            410: "EXPORT_EXPIRED: the file was deleted",
        },
    ),
    summary="Download export",
    operation_id="downloadExport",
    description="Redirects (302) to a freshly signed URL of the file, valid for a short time "
    "and never beyond the export's expiry. The body carries the same URL.",
)
async def download_export(
    request: Request, services: ServicesDep, project_id: ProjectDep, export_id: UUID
) -> JSONResponse:
    view = await _view(services, project_id, export_id)
    expires_at = file_expiry(view)
    now = utcnow()
    if view["status"] == JobStatus.EXPIRED or (
        view["status"] == JobStatus.COMPLETED and expires_at is not None and expires_at <= now
    ):
        raise ExportExpiredError(f"export {export_id} has expired and its file was deleted")
    if view["status"] != JobStatus.COMPLETED or expires_at is None:
        raise ExportNotReadyError(f"export {export_id} is {view['status']}, not completed")
    link = await export_link(services, view)
    if link is None:
        raise ExportExpiredError(f"export {export_id} has expired and its file was deleted")
    body = envelope(request, link.model_dump())
    response = JSONResponse(body, status_code=302)
    response.headers["Location"] = link.url
    response.headers["Cache-Control"] = "no-store"
    return response


async def export_link(services: Services, view: dict[str, Any]) -> SignedLink | None:
    """A fresh link to a completed export's file."""
    args = (view["project_id"], view["id"], view["format"], view["compression"])
    return await signed_link(
        services,
        files.object_key(*args),
        expires_at=file_expiry(view),
        filename=files.download_filename(view["dataset"], *args[1:]),
    )


async def _view(services: ServicesDep, project_id: str, export_id: UUID) -> dict[str, Any]:
    view = await services.read_model.get(project_id, "export", str(export_id))
    if view is None:
        raise NotFoundError(f"export {export_id} not found")
    return view
