"""Liveness, readiness and metrics over HTTP, for the API and for the background roles.

Alive means the process's own loops are running; ready means every dependency answers (MongoDB,
Kafka, the bucket). Liveness never looks at dependencies: a database outage must make pods
unready, not restart every one of them.

The API mounts `router` in its app. `ferry worker` (and `ferry webhooks`) have no HTTP server of
their own, so `serving_health` runs a small one beside their work when a health port is set.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from typing import Any, Literal

import uvicorn
from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import JSONResponse, Response
from faststream.kafka import KafkaBroker
from pydantic import BaseModel, Field
from pymongo.asynchronous.database import AsyncDatabase

from service.config import ObservabilitySettings
from service.observability.metrics import exposition
from service.storage import ObjectStore

# A check answers True when healthy; raising or running past the timeout counts as False.
Check = Callable[[], Awaitable[bool]]

_PING_TIMEOUT_SECONDS = 2.0


def dependency_checks(
    database: AsyncDatabase[dict[str, Any]], broker: KafkaBroker, store: ObjectStore | None = None
) -> dict[str, Check]:
    """Readiness of what a role depends on: MongoDB, Kafka and (if it uses one) the bucket."""

    async def mongodb() -> bool:
        await database.command("ping")
        return True

    async def kafka() -> bool:
        return await broker.ping(timeout=_PING_TIMEOUT_SECONDS)

    checks: dict[str, Check] = {"mongodb": mongodb, "kafka": kafka}
    if store is not None:
        checks["object_store"] = store.bucket_exists
    return checks


router = APIRouter(tags=["health"])

_CHECK_TIMEOUT_SECONDS = 2.0


class Liveness(BaseModel):
    status: Literal["ok", "failing"]
    checks: dict[str, bool] | None = Field(None, description="Each loop checked, when any is.")


class Readiness(BaseModel):
    status: Literal["ready", "not_ready"]
    checks: dict[str, bool] = Field(description="Each dependency: whether it answered.")


@router.get(
    "/healthz",
    summary="The process's own loops are running",
    operation_id="healthz",
    response_model=Liveness,
    responses={503: {"model": Liveness, "description": "A loop of the process has stopped"}},
)
async def healthz(request: Request) -> JSONResponse:
    results = await _run_checks(getattr(request.app.state, "liveness_checks", {}))
    alive = all(results.values())
    body: dict[str, Any] = {"status": "ok" if alive else "failing"}
    if results:
        body["checks"] = results
    return JSONResponse(body, status_code=200 if alive else 503)


@router.get(
    "/readyz",
    summary="Every dependency answers",
    operation_id="readyz",
    response_model=Readiness,
    responses={503: {"model": Readiness, "description": "A dependency does not answer"}},
)
async def readyz(request: Request) -> JSONResponse:
    results = await _run_checks(request.app.state.readiness_checks)
    ready = all(results.values())
    return JSONResponse(
        {"status": "ready" if ready else "not_ready", "checks": results},
        status_code=200 if ready else 503,
    )


@router.get("/metrics", summary="Prometheus metrics", include_in_schema=False)
async def metrics() -> Response:
    body, content_type = exposition()
    return Response(body, media_type=content_type)


async def _run_checks(checks: Mapping[str, Check]) -> dict[str, bool]:
    async def run(check: Check) -> bool:
        try:
            return bool(await asyncio.wait_for(check(), _CHECK_TIMEOUT_SECONDS))
        except Exception:  # noqa: BLE001 - any failure means "not healthy"
            return False

    # Concurrently: a probe's answer takes the slowest check's time, not the sum of them all.
    names = list(checks)
    outcomes = await asyncio.gather(*(run(checks[name]) for name in names))
    return dict(zip(names, outcomes, strict=True))


def health_app(*, readiness: Mapping[str, Check], liveness: Mapping[str, Check]) -> FastAPI:
    """The health endpoints alone, for a process whose work is not serving HTTP."""
    app = FastAPI(openapi_url=None, docs_url=None, redoc_url=None)
    app.state.readiness_checks = readiness
    app.state.liveness_checks = liveness
    app.include_router(router)
    return app


class EmbeddedServer(uvicorn.Server):
    """Uvicorn without its own signal handling: the process that embeds it owns the signals
    and the shutdown (uvicorn would otherwise replace their handlers)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


@contextlib.asynccontextmanager
async def serving_health(
    settings: ObservabilitySettings,
    *,
    readiness: Mapping[str, Check],
    liveness: Mapping[str, Check],
) -> AsyncIterator[int | None]:
    """Serve the health endpoints while the block runs; yields the port (None when off)."""
    if settings.health_port == 0:
        yield None
        return
    server = EmbeddedServer(
        uvicorn.Config(
            health_app(readiness=readiness, liveness=liveness),
            host=settings.health_host,
            port=settings.health_port,
            lifespan="off",
            log_config=None,
            access_log=False,
        )
    )
    task = asyncio.create_task(server.serve(), name="health-server")
    while not server.started:
        if task.done():
            task.result()  # raises what stopped it
            raise RuntimeError(f"the health server could not listen on {settings.health_port}")
        await asyncio.sleep(0.05)
    try:
        yield settings.health_port
    finally:
        server.should_exit = True
        await task
