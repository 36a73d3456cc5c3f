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
from minio.error import MinioException
from pydantic import BaseModel
from pymongo.errors import PyMongoError
from starlette.exceptions import HTTPException as StarletteHTTPException
from urllib3.exceptions import HTTPError as Urllib3Error

from service.api.surfaces import surface_for
from service.error_codes import ErrorCode
from service.errors import FerryError, RateLimitedError, ServiceUnavailableError
from service.jobs.failures import classify

log = structlog.get_logger(__name__)

_HTTP_CODES = {
    401: ErrorCode.UNAUTHORIZED,
    404: ErrorCode.NOT_FOUND,
    405: ErrorCode.METHOD_NOT_ALLOWED,
    429: ErrorCode.RATE_LIMITED,
}
# Error messages quote the request at times (a parameter's name, a path); never at length.
_MAX_MESSAGE = 1000

# What a dependency's failure may look like; `classify` tells an outage from a bug among them.
_OUTAGE_TYPES: tuple[type[Exception], ...] = (PyMongoError, MinioException, Urllib3Error, OSError)
_OUTAGES: dict[str, str] = {
    ErrorCode.DATABASE_UNAVAILABLE: "the database is unavailable; try again shortly",
    ErrorCode.STORAGE_UNAVAILABLE: "the object store is unavailable; try again shortly",
    ErrorCode.NETWORK_ERROR: "a dependency could not be reached; try again shortly",
}
_OUTAGE_RETRY_AFTER = 5  # seconds: a fail-over or restart of a dependency takes about as long


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
        response = error_response(request, exc.http_status, exc.code, exc.message)
        if isinstance(exc, RateLimitedError | ServiceUnavailableError):
            response.headers["Retry-After"] = str(exc.retry_after)
        return response

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in error['loc'][1:]) or error['loc'][0]}: {error['msg']}"
            for error in exc.errors()
        )
        return error_response(request, 400, ErrorCode.INVALID_REQUEST, problems[:_MAX_MESSAGE])

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = _HTTP_CODES.get(exc.status_code, ErrorCode.HTTP_ERROR)
        message = exc.detail if isinstance(exc.detail, str) else code.lower()
        response = error_response(request, exc.status_code, code, message[:_MAX_MESSAGE])
        # Starlette's own headers, e.g. `Allow` on a 405 (RFC 9110 requires it).
        response.headers.update(exc.headers or {})
        return response

    async def dependency_failure(request: Request, exc: Exception) -> JSONResponse:
        failure = classify(exc)
        if not failure.transient:
            raise exc  # a bug, not an outage: answered 500 by `unexpected`
        log.warning("api.dependency_unavailable", code=failure.code, error=failure.message)
        outage = ServiceUnavailableError(_OUTAGES[failure.code], retry_after=_OUTAGE_RETRY_AFTER)
        return await ferry_error(request, outage)

    # Handled here, inside the middleware, so these answers carry X-Request-Id as others do.
    for outage_type in _OUTAGE_TYPES:
        app.add_exception_handler(outage_type, dependency_failure)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.error("api.unexpected_error", exc_info=exc)
        response = error_response(
            request, 500, ErrorCode.INTERNAL_ERROR, "an unexpected error occurred"
        )
        # Answered by Starlette's outermost middleware, outside `assign_request_id`: the id the
        # log line and the body carry goes on the header here.
        response.headers["X-Request-Id"] = request_id(request)
        return response
