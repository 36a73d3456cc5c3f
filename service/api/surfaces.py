"""The API's two surfaces and the shape each gives errors, decided in this one place.

`/v1/...` is HookBridge's: `{"error": {"code", "message"}, "meta": {"request_id"}}` with Ferry's
codes (NOT_FOUND, ...). `/v3/...` is Brevo's: `{"code", "message"}` with Brevo's lower-case
codes (document_not_found, ...). Errors are raised once, with Ferry's code and an HTTP status,
whatever route raises them; the surface of the request's path renders them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

from fastapi import Request
from fastapi.encoders import jsonable_encoder
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from service.error_codes import ErrorCode


class Surface(Protocol):
    def error(self, request: Request, status: int, code: str, message: str) -> JSONResponse: ...


class HookBridgeSurface:
    def error(self, request: Request, status: int, code: str, message: str) -> JSONResponse:
        body = {
            "error": {"code": code, "message": message},
            "meta": {"request_id": str(request.state.request_id)},
        }
        return JSONResponse(jsonable_encoder(body), status_code=status)


class BrevoError(BaseModel):
    """An error in Brevo's shape."""

    code: str
    message: str


# Ferry's codes in Brevo's words; others by HTTP status.
_BREVO_CODES: dict[str, str] = {
    ErrorCode.NOT_FOUND: "document_not_found",
    ErrorCode.UNAUTHORIZED: "unauthorized",
    ErrorCode.INVALID_REQUEST: "invalid_parameter",
    ErrorCode.METHOD_NOT_ALLOWED: "method_not_allowed",
    ErrorCode.RATE_LIMITED: "too_many_requests",
    ErrorCode.SERVICE_UNAVAILABLE: "service_unavailable",
}
_BREVO_BY_STATUS = {
    400: "invalid_parameter",
    401: "unauthorized",
    404: "document_not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    429: "too_many_requests",
    503: "service_unavailable",
}


class BrevoSurface:
    def error(self, request: Request, status: int, code: str, message: str) -> JSONResponse:
        del request  # Brevo's errors carry no request id (the X-Request-Id header still does)
        brevo = _BREVO_CODES.get(code) or _BREVO_BY_STATUS.get(status, "internal_error")
        return JSONResponse({"code": brevo, "message": message}, status_code=status)


HOOKBRIDGE = HookBridgeSurface()
BREVO = BrevoSurface()
_BY_PREFIX: tuple[tuple[str, Surface], ...] = (("/v3/", BREVO),)


def surface_for(path: str) -> Surface:
    return next((surface for prefix, surface in _BY_PREFIX if path.startswith(prefix)), HOOKBRIDGE)


_RETRY_AFTER = {
    "Retry-After": {
        "description": "Seconds to wait before trying again.",
        "required": True,
        "schema": {"type": "integer", "minimum": 1},
    }
}
# What any authenticated operation may answer, whatever it does.
_EVERY_OPERATION: dict[int, dict[str, Any]] = {
    401: {"description": "Missing, unknown or revoked API key"},
    429: {
        "description": "The key used up its rate limit (per API replica); retry after "
        "`Retry-After` seconds",
        "headers": _RETRY_AFTER,
    },
    500: {"description": "A bug in Ferry, logged with the request id; not a fault of the request"},
    503: {
        "description": "A dependency (the database) is unavailable; retry after `Retry-After` "
        "seconds",
        "headers": _RETRY_AFTER,
    },
}


def documented_errors(
    model: type[BaseModel], own: Mapping[int, str]
) -> dict[int | str, dict[str, Any]]:
    """The error responses of an authenticated operation for its OpenAPI document: `own` (status
    -> description) and those every one can answer, each in `model`, its surface's shape."""
    responses: dict[int | str, dict[str, Any]] = {
        status: {"model": model, "description": description} for status, description in own.items()
    }
    for status, response in _EVERY_OPERATION.items():
        responses[status] = {"model": model, **response}
    return dict(sorted(responses.items(), key=lambda item: str(item[0])))


def links_from_first_item(
    pointer: str, parameter: str, operations: Mapping[str, str]
) -> dict[str, Any]:
    """An OpenAPI 200 response whose first listed item (`pointer` into the body) leads to the
    operations (link name -> operation id) taking its id as `parameter`; schemathesis's
    stateful phase follows these to real jobs."""
    value = f"$response.body#{pointer}"
    return {
        "links": {
            link: {"operationId": operation, "parameters": {parameter: value}}
            for link, operation in operations.items()
        }
    }
