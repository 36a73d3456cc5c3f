"""HookBridge's envelope: `{"data": ..., "meta": {"request_id": ...}}`, and for errors
`{"error": {"code": ..., "message": ...}, "meta": {...}}`. Every error, whatever raised it, is
turned into a status, a code and a message here, and rendered in the shape of the request's
API surface (service/api/surfaces.py)."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import structlog
from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException

from service.api.surfaces import surface_for
from service.errors import FerryError

log = structlog.get_logger(__name__)

_HTTP_CODES = {
    401: "UNAUTHORIZED",
    404: "NOT_FOUND",
    405: "METHOD_NOT_ALLOWED",
    429: "RATE_LIMITED",
}


class ErrorBody(BaseModel):
    code: str
    message: str


class Meta(BaseModel):
    request_id: str


class PageMeta(Meta):
    has_more: bool
    next_cursor: str | None


class ErrorEnvelope(BaseModel):
    error: ErrorBody
    meta: Meta


def request_id(request: Request) -> str:
    return str(request.state.request_id)


def envelope(request: Request, data: object, **meta: object) -> dict[str, Any]:
    return {"data": data, "meta": {"request_id": request_id(request), **meta}}


def error_response(request: Request, status: int, code: str, message: str) -> JSONResponse:
    return surface_for(request.url.path).error(request, status, code, message)


def install(app: FastAPI) -> None:
    @app.middleware("http")
    async def assign_request_id(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        request.state.request_id = "req_" + uuid.uuid4().hex[:24]
        with structlog.contextvars.bound_contextvars(request_id=request.state.request_id):
            response = await call_next(request)
        response.headers["X-Request-Id"] = request.state.request_id
        return response

    @app.exception_handler(FerryError)
    async def ferry_error(request: Request, exc: FerryError) -> JSONResponse:
        return error_response(request, exc.http_status, exc.code, exc.message)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in error['loc'][1:]) or error['loc'][0]}: {error['msg']}"
            for error in exc.errors()
        )
        return error_response(request, 400, "INVALID_REQUEST", problems)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = _HTTP_CODES.get(exc.status_code, "HTTP_ERROR")
        message = exc.detail if isinstance(exc.detail, str) else code.lower()
        return error_response(request, exc.status_code, code, message)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.error("api.unexpected_error", exc_info=exc)
        return error_response(request, 500, "INTERNAL_ERROR", "an unexpected error occurred")
