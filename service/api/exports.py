"""HookBridge's export endpoints: `GET /v1/exports`, `/v1/exports/{id}` and its `/download`.

A job of another project answers exactly like a missing one, so ids reveal nothing.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

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


class FileLink(BaseModel):
    part: int | None = Field(description="The file's number from 1; null for a one-file export.")
    url: str
    expires_at: datetime


class DownloadLink(BaseModel):
    url: str
    expires_at: datetime
    part: int | None = Field(
        None, description="The file `url` leads to (split exports); null for a one-file export."
    )
    files: list[FileLink] | None = Field(
        None, description="Split exports: a fresh link to every file, in order."
    )
    manifest_url: str | None = Field(None, description="A fresh link to the export's manifest.")


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
    views = [await shown_export(services, view) for view in views]
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
    return envelope(request, await shown_export(services, view))


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
    "and never beyond the export's expiry. The body carries the same URL and a link to the "
    "manifest. An export split into several files (`max_file_bytes`, `max_rows_per_file`) "
    "redirects to its first file; `?part=N` redirects to file N instead, and the body lists "
    "a link to every file (as does the export's `files`).",
)
async def download_export(
    request: Request,
    services: ServicesDep,
    project_id: ProjectDep,
    export_id: UUID,
    part: Annotated[
        int | None,
        Query(ge=1, le=files.MAX_PART_NUMBER, description="Which file of a split export (from 1)."),
    ] = None,
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
    links = await file_links(services, view)
    if not links or any(link is None for _, link in links):
        raise ExportExpiredError(f"export {export_id} has expired and its file was deleted")
    split = links[0][0] is not None
    count = _file_count(view)
    if part is not None and (part > count or (not split and part != 1)):
        raise NotFoundError(f"export {export_id} has no file {part} ({count} in all)")
    number, link = links[0]
    if split and part is not None and part != 1:
        number, link = part, await _file_link(services, view, part)
    if link is None:
        raise ExportExpiredError(f"export {export_id} has expired and its file was deleted")
    manifest = await manifest_link(services, view)
    shown: dict[str, Any] = {
        **link.model_dump(),
        "part": number,
        "files": (
            [{"part": n, **found.model_dump()} for n, found in links if found is not None]
            if number is not None
            else None
        ),
        "manifest_url": manifest.url if manifest else None,
    }
    body = envelope(request, shown)
    response = JSONResponse(body, status_code=302)
    response.headers["Location"] = link.url
    response.headers["Cache-Control"] = "no-store"
    return response


async def export_link(services: Services, view: dict[str, Any]) -> SignedLink | None:
    """A fresh link to a completed export's (first) file."""
    links = await file_links(services, view)
    return links[0][1] if links else None


def _parts(view: dict[str, Any]) -> list[int | None]:
    """The files' numbers, from the view (null: the one file of an unsplit export). The keys
    are derived from the job and these numbers; no key is taken from the view."""
    shown = view.get("files")
    if not shown:
        return [None]
    return [
        part
        if isinstance(part := file.get("part"), int) and 1 <= part <= files.MAX_PART_NUMBER
        else None
        for file in shown
    ]


def _file_count(view: dict[str, Any]) -> int:
    """How many files the export has (the view may show only the first ones)."""
    count = view.get("file_count")
    shown = len(_parts(view))
    return count if isinstance(count, int) and shown <= count <= files.MAX_PART_NUMBER else shown


async def file_links(
    services: Services, view: dict[str, Any]
) -> list[tuple[int | None, SignedLink | None]]:
    """A fresh link to each file the view shows, in order: (part, link)."""
    return [(part, await _file_link(services, view, part)) for part in _parts(view)]


async def _file_link(
    services: Services, view: dict[str, Any], part: int | None
) -> SignedLink | None:
    args = (view["project_id"], view["id"], view["format"], view["compression"])
    return await signed_link(
        services,
        files.file_key(*args, part=part),
        expires_at=file_expiry(view),
        filename=files.download_filename(view["dataset"], *args[1:], part=part),
    )


async def manifest_link(services: Services, view: dict[str, Any]) -> SignedLink | None:
    """A fresh link to a completed export's manifest; None when it has none (finished before
    manifests existed) or has expired."""
    if not view.get("manifest"):
        return None
    split = any(part is not None for part in _parts(view))
    return await signed_link(
        services,
        files.manifest_key(view["project_id"], view["id"], split=split),
        expires_at=file_expiry(view),
        filename=files.manifest_filename(view["dataset"], view["id"]),
    )


async def shown_export(services: Services, view: dict[str, Any]) -> dict[str, Any]:
    """The view as served: fresh links on its files and manifest, queue place when pending."""
    view = await with_waiting_info(services, view)
    if view["status"] != JobStatus.COMPLETED or not view.get("files"):
        return view
    links = dict(await file_links(services, view))
    shown_files = []
    for file in view["files"]:
        link = links.get(file.get("part"))
        shown_files.append(
            {
                **file,
                "url": link.url if link else None,
                "expires_at": link.expires_at if link else None,
            }
        )
    manifest = view.get("manifest")
    if manifest:
        link = await manifest_link(services, view)
        manifest = {
            **manifest,
            "url": link.url if link else None,
            "expires_at": link.expires_at if link else None,
        }
    return {**view, "files": shown_files, "manifest": manifest}


async def _view(services: ServicesDep, project_id: str, export_id: UUID) -> dict[str, Any]:
    view = await services.read_model.get(project_id, "export", str(export_id))
    if view is None:
        raise NotFoundError(f"export {export_id} not found")
    return view
