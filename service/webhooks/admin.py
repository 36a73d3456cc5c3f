"""What `ferry webhooks add|list|enable|disable|remove|rotate-secret|deliveries|redeliver` do,
apart from printing: the CLI parses and shows, these operate."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import httpx
from pymongo.asynchronous.database import AsyncDatabase

from service.config import Settings
from service.contracts.requests import is_valid_project_id
from service.error_codes import ErrorCode
from service.errors import FerryError, InvalidRequestError, NotFoundError
from service.outbound.addresses import AddressPolicy
from service.outbound.guard import DestinationGuard, UnresolvableHostError, UnsafeDestinationError
from service.outbound.urls import check_http_url
from service.webhooks.deliveries import Delivery, DeliveryStore
from service.webhooks.endpoints import Endpoint, EndpointNotFoundError, EndpointStore
from service.webhooks.secret_cipher import SecretCipher
from service.webhooks.secret_store import ProjectSecrets


class EndpointDisabledError(FerryError):
    code = ErrorCode.ENDPOINT_DISABLED
    http_status = 409

    def __init__(self, endpoint: Endpoint) -> None:
        super().__init__(
            f"endpoint {endpoint.id} is disabled ({endpoint.disabled_reason}); "
            f"enable it first with `ferry webhooks enable {endpoint.id}`"
        )
        self.endpoint_id = endpoint.id


@dataclass(frozen=True)
class Added:
    endpoint: Endpoint
    secret: str | None  # the project's secret when this call made it; None when it had one
    warning: str | None = None


class WebhookAdmin:
    def __init__(self, database: AsyncDatabase[dict[str, Any]], settings: Settings) -> None:
        self.endpoints = EndpointStore(database)
        self.deliveries = DeliveryStore(
            database, retention=timedelta(seconds=settings.webhooks.retention_seconds)
        )
        self.secrets = ProjectSecrets(
            database, cipher=SecretCipher.from_settings(settings.webhooks)
        )
        self._guard = DestinationGuard(AddressPolicy.from_settings(settings.outbound))
        self._grace = timedelta(seconds=settings.webhooks.secret_grace_seconds)

    async def add(
        self, project_id: str, url: str, event_types: Sequence[str], description: str | None
    ) -> Added:
        """Check the URL as the dispatcher would connect to it, so a refused address is told
        now rather than found in an attempt log; a host that does not resolve yet only warns."""
        await self.endpoints.ensure_indexes()
        if not is_valid_project_id(project_id):
            raise InvalidRequestError(f"invalid project id {project_id!r}")
        try:
            parsed = httpx.URL(check_http_url(url))
        except ValueError as exc:
            raise InvalidRequestError(f"url {url!r} {exc}", code=ErrorCode.INVALID_URL) from exc
        default_port = 443 if parsed.scheme == "https" else 80
        warning = None
        try:
            await self._guard.checked_addresses(parsed.host, parsed.port or default_port)
        except UnsafeDestinationError as exc:
            raise InvalidRequestError(exc.message, code=exc.code) from exc
        except UnresolvableHostError as exc:
            warning = f"{exc.message}; deliveries fail until it resolves"
        endpoint = await self.endpoints.add(project_id, url, event_types, description=description)
        secret = await self.secrets.create_if_missing(project_id)
        return Added(endpoint, secret, warning)

    async def rotate_secret(self, project_id: str, grace: timedelta | None = None) -> str:
        """A new secret for the project (its first, if it has none)."""
        if not is_valid_project_id(project_id):
            raise InvalidRequestError(f"invalid project id {project_id!r}")
        return await self.secrets.rotate(project_id, grace=self._grace if grace is None else grace)

    async def deliveries_of(
        self, *, endpoint_id: str | None, job_id: str | None, limit: int
    ) -> list[Delivery]:
        return await self.deliveries.recent(endpoint_id=endpoint_id, job_id=job_id, limit=limit)

    async def redeliver(self, event_id: str, endpoint_id: str | None = None) -> list[Delivery]:
        """Send an event again to its destinations (or one endpoint of them). Refuses what
        could not be sent: no delivery recorded, or an endpoint removed or disabled."""
        recorded = await self.deliveries.for_event(event_id)
        if endpoint_id is not None:
            recorded = [d for d in recorded if d.endpoint_id == endpoint_id]
        if not recorded:
            where = f" to endpoint {endpoint_id}" if endpoint_id else ""
            raise NotFoundError(f"no delivery of event {event_id}{where} was recorded")
        endpoint_ids = {d.endpoint_id for d in recorded if d.endpoint_id is not None}
        endpoints = await self.endpoints.many(endpoint_ids)
        for wanted in endpoint_ids:
            endpoint = endpoints.get(wanted)
            if endpoint is None:
                raise EndpointNotFoundError(wanted)
            if not endpoint.enabled:
                raise EndpointDisabledError(endpoint)
        return await self.deliveries.redeliver(event_id, endpoint_id=endpoint_id)
