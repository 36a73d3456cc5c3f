"""Liveness and readiness. Ready means every dependency answers: MongoDB, Kafka, the bucket."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

router = APIRouter(tags=["health"])

_CHECK_TIMEOUT_SECONDS = 2.0


@router.get("/healthz", summary="The process is alive")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz", summary="Every dependency answers")
async def readyz(request: Request) -> JSONResponse:
    checks = request.app.state.readiness_checks
    results: dict[str, Any] = {}
    for name, check in checks.items():
        try:
            results[name] = bool(await asyncio.wait_for(check(), _CHECK_TIMEOUT_SECONDS))
        except Exception:  # noqa: BLE001 - any failure means "not ready"
            results[name] = False
    ready = all(results.values())
    return JSONResponse(
        {"status": "ready" if ready else "not_ready", "checks": results},
        status_code=200 if ready else 503,
    )
