"""What endpoints receive: the services the lifespan built, and the caller's project."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from service.api.keys import ApiKeys
from service.api.read_model import ReadModel
from service.config import Settings
from service.errors import UnauthorizedError
from service.storage import ObjectStore


@dataclass(frozen=True)
class Services:
    settings: Settings
    read_model: ReadModel
    keys: ApiKeys
    store: ObjectStore


def _services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


ServicesDep = Annotated[Services, Depends(_services)]

_bearer = HTTPBearer(auto_error=False, description="An API key from `ferry keys create`.")


async def _project(
    services: ServicesDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> str:
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise UnauthorizedError("Invalid or missing API key")
    project_id = await services.keys.project_for(credentials.credentials)
    if project_id is None:
        raise UnauthorizedError("Invalid or missing API key")
    return project_id


ProjectDep = Annotated[str, Depends(_project)]
