"""Fresh download links, signed at request time: the read model is built from status events
alone, and a link stored in an event would go stale.

What is signed is derived, never believed: a key comes from the job's project, id and the file's
kind (the export's format, the report's name) by the layout the exporter and the importer write
to, and `signed_link` refuses any key outside that layout.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from typing import Any

from pydantic import BaseModel

from service.api.dependencies import Services
from service.api.read_model import REPORT_NAMES
from service.clock import rfc3339, utcnow
from service.contracts.requests import PROJECT_ID_PATTERN
from service.imports import files as import_files
from service.jobs.status import JobStatus

_PROJECT = PROJECT_ID_PATTERN.removeprefix("^").removesuffix("$")
_JOB = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
# An export's file `exports/{project}/{job}.{csv|jsonl|parquet}[.gz]` and its `.manifest.json`;
# a split export's `exports/{project}/{job}/part-NNNNN.{ext}` and `manifest.json`; and an
# import's reports, `imports/{project}/{job}/{report}.csv`.
_SIGNABLE = re.compile(
    rf"exports/{_PROJECT}/{_JOB}(?:\.(?:csv|jsonl|parquet)(?:\.gz)?|\.manifest\.json)"
    rf"|exports/{_PROJECT}/{_JOB}/(?:part-[0-9]{{5}}\.(?:csv|jsonl|parquet)(?:\.gz)?|manifest\.json)"
    rf"|imports/{_PROJECT}/{_JOB}/(?:{'|'.join(sorted(REPORT_NAMES))})\.csv"
)


class UnsignableKeyError(RuntimeError):
    """A key outside the layout Ferry writes: a bug, never a link."""

    def __init__(self, key: str) -> None:
        super().__init__(f"refusing to sign {key[:200]!r}: not a key Ferry writes")


def is_signable(key: str) -> bool:
    return _SIGNABLE.fullmatch(key) is not None and ".." not in key


class SignedLink(BaseModel):
    url: str
    expires_at: str


async def signed_link(
    services: Services, key: str, *, expires_at: datetime | None, filename: str
) -> SignedLink | None:
    """A link valid for the presign TTL, never past the file's own expiry; None once expired."""
    if not is_signable(key):
        raise UnsignableKeyError(key)
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


def report_keys(view: dict[str, Any]) -> dict[str, str]:
    """Report name -> its object key, derived from the job (the key the view carries is not
    used); reports of a name Ferry does not write are left out."""
    names = (view.get("reports") or {}).keys()
    return {
        name: import_files.report_key(view["project_id"], view["id"], name)
        for name in names
        if name in REPORT_NAMES
    }


async def report_links(services: Services, view: dict[str, Any]) -> dict[str, SignedLink | None]:
    """Report name -> a fresh link, for a completed import's reports; {} otherwise."""
    if view["status"] != JobStatus.COMPLETED:
        return {}
    links: dict[str, SignedLink | None] = {}
    for name, key in report_keys(view).items():
        links[name] = await signed_link(
            services,
            key,
            expires_at=file_expiry(view),
            filename=import_files.report_filename(name, view["id"]),
        )
    return links
