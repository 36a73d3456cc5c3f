"""Errors take the shape of the API surface the request was for: HookBridge's envelope on /v1,
Brevo's `{code, message}` on /v3, whatever raised them."""

from __future__ import annotations

from typing import Annotated

from fastapi import FastAPI, Query
from fastapi.testclient import TestClient

from service.api import envelope
from service.errors import NotFoundError, UnauthorizedError


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
        if status < 500:  # a crash is answered outside the request-id middleware
            assert response.headers["x-request-id"].startswith("req_")
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
