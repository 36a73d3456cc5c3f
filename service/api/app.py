"""The API application. The lifespan owns every client; endpoints get them as dependencies."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pymongo
import structlog
from fastapi import FastAPI
from starlette.types import ASGIApp, Receive, Scope, Send

from service.api import envelope
from service.api.dependencies import Services
from service.api.exports import router as exports_router
from service.api.imports import router as imports_router
from service.api.instrumentation import HttpMetrics
from service.api.keys import ApiKeys
from service.api.processes import router as processes_router
from service.api.ratelimit import RateLimiter
from service.api.read_model import ReadModel
from service.api.status_feed import subscribe_status_feed
from service.config import Settings
from service.database import connect
from service.events.kafka import make_broker
from service.jobs.queue import Queue
from service.observability.health import dependency_checks
from service.observability.health import router as health_router
from service.observability.metrics import set_build_info
from service.storage import ObjectStore

log = structlog.get_logger(__name__)

API_TITLE = "Ferry lookup API"
API_VERSION = "1.0.0"


def create_app(settings: Settings) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        client = connect(settings.mongo, app_name="ferry-api")
        database = client[settings.mongo.database]
        read_model = ReadModel(database, record_retention=settings.jobs.record_retention)
        store = ObjectStore(settings.s3)
        broker = make_broker(
            settings.kafka, client_id="ferry-api", tracing=settings.observability.tracing
        )
        subscribe_status_feed(broker, settings.kafka, read_model)
        await read_model.ensure_indexes()
        await broker.start()

        app.state.services = Services(
            settings=settings,
            read_model=read_model,
            keys=ApiKeys(database),
            store=store,
            limiter=RateLimiter(
                rate=settings.api.rate_limit_per_second, burst=settings.api.rate_limit_burst
            ),
            queue=Queue(database, max_running_per_project=settings.worker.max_running_per_project),
        )
        app.state.readiness_checks = dependency_checks(database, broker, store)
        set_build_info()
        log.info("api.started")
        try:
            yield
        finally:
            await broker.stop()
            await client.close()
            log.info("api.stopped")

    app = FastAPI(
        title=API_TITLE,
        version=API_VERSION,
        description="Read-only lookup of Ferry's jobs: exports and imports in HookBridge's shape "
        "(/v1, `Authorization: Bearer <key>`), and every job in Brevo's background-process "
        "shape (/v3/processes, `api-key: <key>`).",
        lifespan=lifespan,
    )
    envelope.install(app)
    app.add_middleware(DatabaseDeadline, seconds=settings.mongo.timeout_seconds)
    app.add_middleware(HttpMetrics)
    app.include_router(exports_router)
    app.include_router(imports_router)
    app.include_router(processes_router)
    app.include_router(health_router)
    _tidy_openapi(app)
    return app


class DatabaseDeadline:
    """Bounds the database work of each request (pymongo's client-side operation timeout): a
    database that stops answering makes requests answer 503 within the timeout, where an
    operation on an open connection would otherwise wait for as long as the socket lives."""

    def __init__(self, app: ASGIApp, *, seconds: float) -> None:
        self._app = app
        self._seconds = seconds

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        with pymongo.timeout(self._seconds):
            await self._app(scope, receive, send)


def _tidy_openapi(app: FastAPI) -> None:
    """The OpenAPI document as the API behaves: FastAPI declares a 422 that is never sent
    (invalid requests answer 400 in each surface's shape), and `anyOf [X, null]` for optional
    query parameters, where a client leaves the parameter out rather than sending a null."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            document = generate()
            for path in document["paths"].values():
                for operation in path.values():
                    operation["responses"].pop("422", None)
                    for parameter in operation.get("parameters", []):
                        parameter["schema"] = _without_null(parameter["schema"])
            schemas = document.get("components", {}).get("schemas", {})
            for unused in ("HTTPValidationError", "ValidationError"):
                schemas.pop(unused, None)
            app.openapi_schema = document
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def _without_null(schema: dict[str, Any]) -> dict[str, Any]:
    variants = [variant for variant in schema.get("anyOf", []) if variant != {"type": "null"}]
    if len(variants) != 1:
        return schema
    rest = {key: value for key, value in schema.items() if key != "anyOf"}
    return {**variants[0], **rest}
