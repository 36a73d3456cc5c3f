"""Errors take the shape of the API surface the request was for: HookBridge's envelope on /v1,
Brevo's `{code, message}` on /v3, whatever raised them."""

from __future__ import annotations

from typing import Annotated

from fastapi import FastAPI, Query
from fastapi.testclient import TestClient
from pymongo.errors import OperationFailure, ServerSelectionTimeoutError

from service.api import envelope
from service.errors import NotFoundError, RateLimitedError, UnauthorizedError


def app() -> FastAPI:
    application = FastAPI()
    envelope.install(application)

    for prefix in ("/v1", "/v3"):

        @application.get(f"{prefix}/missing")
        async def missing() -> None:
            raise NotFoundError("Process not found")

        @application.get(f"{prefix}/locked")
        async def locked() -> None:
            raise UnauthorizedError("Key not found")

        @application.get(f"{prefix}/ranged")
        async def ranged(limit: Annotated[int, Query(le=50)] = 10) -> int:
            return limit

        @application.get(f"{prefix}/broken")
        async def broken() -> None:
            raise RuntimeError("boom")

        @application.get(f"{prefix}/busy")
        async def busy() -> None:
            raise RateLimitedError(retry_after=7)

        @application.get(f"{prefix}/database-down")
        async def database_down() -> None:
            raise ServerSelectionTimeoutError("No servers found yet, Timeout: 10.0s")

        @application.get(f"{prefix}/database-refuses")
        async def database_refuses() -> None:
            raise OperationFailure("unknown operator: $bogus", code=2)

    return application


def test_v3_errors_are_in_brevos_shape() -> None:
    client = TestClient(app(), raise_server_exceptions=False)
    cases = [
        ("/v3/missing", 404, "document_not_found"),
        ("/v3/locked", 401, "unauthorized"),
        ("/v3/ranged?limit=51", 400, "invalid_parameter"),
        ("/v3/ranged?limit=x", 400, "invalid_parameter"),
        ("/v3/nothing-here", 404, "document_not_found"),
        ("/v3/broken", 500, "internal_error"),
    ]
    for path, status, code in cases:
        response = client.get(path)
        assert response.status_code == status, path
        body = response.json()
        assert set(body) == {"code", "message"}, path
        assert body["code"] == code, path
        assert body["message"], path
        assert response.headers["x-request-id"].startswith("req_"), path  # a crash's too
    assert client.post("/v3/missing").json()["code"] == "method_not_allowed"
    assert "limit" in client.get("/v3/ranged?limit=51").json()["message"]


def test_v1_errors_keep_hookbridges_envelope() -> None:
    client = TestClient(app(), raise_server_exceptions=False)
    for path, status, code in [
        ("/v1/missing", 404, "NOT_FOUND"),
        ("/v1/locked", 401, "UNAUTHORIZED"),
        ("/v1/ranged?limit=51", 400, "INVALID_REQUEST"),
        ("/v1/broken", 500, "INTERNAL_ERROR"),
    ]:
        response = client.get(path)
        assert response.status_code == status
        body = response.json()
        assert body["error"]["code"] == code
        assert body["meta"]["request_id"].startswith("req_")
        assert response.headers["x-request-id"] == body["meta"]["request_id"], path


def test_rate_limits_and_outages_say_when_to_retry_in_each_shape() -> None:
    client = TestClient(app(), raise_server_exceptions=False)
    for path, status, code, retry_after in [
        ("/v1/busy", 429, "RATE_LIMITED", "7"),
        ("/v1/database-down", 503, "SERVICE_UNAVAILABLE", "5"),
        ("/v3/busy", 429, "too_many_requests", "7"),
        ("/v3/database-down", 503, "service_unavailable", "5"),
    ]:
        response = client.get(path)
        assert response.status_code == status, path
        assert response.headers["retry-after"] == retry_after, path
        assert response.headers["x-request-id"].startswith("req_"), path
        body = response.json()
        error = body["error"] if path.startswith("/v1") else body
        assert error["code"] == code, path
        assert "Timeout" not in error["message"]  # the driver's words stay in the log


def test_a_database_error_that_is_no_outage_is_a_500_without_retry_after() -> None:
    client = TestClient(app(), raise_server_exceptions=False)
    response = client.get("/v1/database-refuses")
    assert response.status_code == 500
    assert response.json()["error"]["code"] == "INTERNAL_ERROR"
    assert "retry-after" not in response.headers


def test_an_undeclared_method_answers_405_with_allow_in_each_shape() -> None:
    client = TestClient(app(), raise_server_exceptions=False)
    for path, code in [
        ("/v1/missing", "METHOD_NOT_ALLOWED"),
        ("/v3/missing", "method_not_allowed"),
    ]:
        for method in ("POST", "DELETE", "TRACE", "OPTIONS"):
            response = client.request(method, path)
            assert response.status_code == 405, (method, path)
            assert response.headers["allow"] == "GET", (method, path)
            body = response.json()
            assert (body["error"] if path.startswith("/v1") else body)["code"] == code
