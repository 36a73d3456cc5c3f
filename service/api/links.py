"""Fresh download links, signed at request time from the object keys in a job's view: the read
model is built from status events alone, and a link stored in an event would go stale."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from pydantic import BaseModel

from service.api.dependencies import Services
from service.clock import rfc3339, utcnow
from service.imports import files as import_files
from service.jobs.status import JobStatus


class SignedLink(BaseModel):
    url: str
    expires_at: str


async def signed_link(
    services: Services, key: str, *, expires_at: datetime | None, filename: str
) -> SignedLink | None:
    """A link valid for the presign TTL, never past the file's own expiry; None once expired."""
    now = utcnow()
    ttl = timedelta(seconds=services.settings.s3.presign_ttl_seconds)
    if expires_at is not None:
        if expires_at <= now:
            return None
        ttl = min(ttl, expires_at - now)
    ttl = max(ttl, timedelta(seconds=1))
    url = await services.store.presigned_get(key, ttl=ttl, filename=filename)
    return SignedLink(url=url, expires_at=rfc3339(now + ttl))


def file_expiry(view: dict[str, Any]) -> datetime | None:
    return datetime.fromisoformat(view["expires_at"]) if view.get("expires_at") else None


async def report_links(services: Services, view: dict[str, Any]) -> dict[str, SignedLink | None]:
    """Report name -> a fresh link, for a completed import's reports; {} otherwise."""
    reports = view.get("reports") or {}
    if view["status"] != JobStatus.COMPLETED or not reports:
        return {}
    links: dict[str, SignedLink | None] = {}
    for name, report in reports.items():
        links[name] = await signed_link(
            services,
            report["key"],
            expires_at=file_expiry(view),
            filename=import_files.report_filename(name, view["id"]),
        )
    return links
