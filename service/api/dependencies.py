"""What endpoints receive: the services the lifespan built, and the caller's project."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from service.api.keys import ApiKeys
from service.api.ratelimit import RateLimiter
from service.api.read_model import ReadModel
from service.config import Settings
from service.errors import UnauthorizedError
from service.jobs.queue import Queue
from service.storage import ObjectStore


@dataclass(frozen=True)
class Services:
    settings: Settings
    read_model: ReadModel
    keys: ApiKeys
    store: ObjectStore
    limiter: RateLimiter
    queue: Queue


def _services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


ServicesDep = Annotated[Services, Depends(_services)]

_bearer = HTTPBearer(auto_error=False, description="An API key from `ferry keys create`.")


async def authenticate(services: Services, request: Request, key: str | None, refusal: str) -> str:
    """The project of `key`, once the key's rate limit allows this request; `refusal` is the
    message of the 401 for a missing or unknown key (each API words it its own way)."""
    project_id = await services.keys.project_for(key) if key else None
    if key is None or project_id is None:
        raise UnauthorizedError(refusal)
    services.limiter.check(key, route=getattr(request.scope.get("route"), "path", "unmatched"))
    return project_id


async def _project(
    request: Request,
    services: ServicesDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> str:
    key = None
    if credentials is not None and credentials.scheme.lower() == "bearer":
        key = credentials.credentials
    return await authenticate(services, request, key, "Invalid or missing API key")


ProjectDep = Annotated[str, Depends(_project)]
