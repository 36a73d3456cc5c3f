"""Import endpoints in the style of /v1/exports: `GET /v1/imports` and `/v1/imports/{id}`, with
the counts and fresh links to the reports.

A job of another project answers exactly like a missing one, so ids reveal nothing.
"""

from __future__ import annotations

from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel

from service.api.dependencies import ProjectDep, Services, ServicesDep
from service.api.envelope import ErrorEnvelope, Meta, PageMeta, envelope
from service.api.links import report_links
from service.api.read_model import CURSOR_PATTERN
from service.api.surfaces import documented_errors, links_from_first_item
from service.api.waiting import with_waiting_info
from service.errors import NotFoundError
from service.jobs.status import JobStatus
from service.jobs.view import JobView

router = APIRouter(prefix="/v1/imports", tags=["imports"])

_INVALID = "INVALID_REQUEST: a parameter is malformed or out of range"
_LIST_ERRORS = documented_errors(ErrorEnvelope, {400: _INVALID})
_ERRORS = documented_errors(
    ErrorEnvelope, {400: _INVALID, 404: "NOT_FOUND: no such import in the key's project"}
)
# The first import of a page leads to its details (schemathesis follows this).
_TO_IMPORT = links_from_first_item("/data/0/id", "import_id", {"GetImport": "getImport"})


class ImportView(JobView):
    """An import job: counts by outcome and the reports, each with a fresh link."""


class ImportEnvelope(BaseModel):
    data: ImportView
    meta: Meta


class ImportPage(BaseModel):
    data: list[ImportView]
    meta: PageMeta


@router.get(
    "",
    response_model=ImportPage,
    responses={200: _TO_IMPORT, **_LIST_ERRORS},
    summary="List imports",
    operation_id="listImports",
)
async def list_imports(
    request: Request,
    services: ServicesDep,
    project_id: ProjectDep,
    *,
    status: Annotated[JobStatus | None, Query(description="Only imports in this status.")] = None,
    limit: Annotated[int, Query(ge=1, le=100, description="Page size.")] = 20,
    cursor: Annotated[
        str | None,
        Query(description="`next_cursor` of the previous page.", pattern=CURSOR_PATTERN),
    ] = None,
) -> dict[str, Any]:
    views, next_cursor = await services.read_model.page(
        project_id,
        "import",
        status=status.value if status else None,
        limit=limit,
        cursor=cursor,
    )
    shown = [await _shown(services, view) for view in views]
    return envelope(request, shown, has_more=next_cursor is not None, next_cursor=next_cursor)


@router.get(
    "/{import_id}",
    response_model=ImportEnvelope,
    responses=_ERRORS,
    summary="Get import",
    operation_id="getImport",
)
async def get_import(
    request: Request, services: ServicesDep, project_id: ProjectDep, import_id: UUID
) -> dict[str, Any]:
    view = await services.read_model.get(project_id, "import", str(import_id))
    if view is None:
        raise NotFoundError(f"import {import_id} not found")
    return envelope(request, await _shown(services, view))


async def _shown(services: Services, view: dict[str, Any]) -> dict[str, Any]:
    """The view as served: report keys replaced by fresh links, queue place when pending."""
    view = await with_waiting_info(services, view)
    reports = view.get("reports")
    if reports is None:
        return view
    links = await report_links(services, view)
    shown = {}
    for name, report in reports.items():
        link = links.get(name)
        shown[name] = {
            "rows": report["rows"],
            "url": link.url if link else None,
            "expires_at": link.expires_at if link else None,
        }
    return {**view, "reports": shown}
