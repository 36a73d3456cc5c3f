"""Where an import's bytes come from.

An object source is read where it is. A URL source is first copied into Ferry's bucket, streamed
through the SSRF guard webhooks use (the host must resolve to allowed addresses only, the socket
connects to a checked one, no redirects, no proxies): the importer reads the file twice, and the
copy makes sure both reads see the same bytes without asking the remote server twice. The copy
is deleted when the import ends.

The bytes counted against the size limit are the bytes received: Ferry asks for
`Accept-Encoding: identity` and refuses a response that is compressed anyway (decoding it would
let a few KB expand into gigabytes before anything is counted). Each read has a timeout, and the
whole fetch a deadline, so that a source trickling a byte at a time cannot hold a worker.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass

import httpx

from service.imports import files
from service.imports.errors import (
    FileTooLargeError,
    SourceNotFoundError,
    SourceTooSlowError,
    SourceUnavailableError,
    excerpt,
)
from service.jobs.model import Job
from service.outbound.guard import DestinationGuard
from service.outbound.transport import guarded_client
from service.storage import ObjectStore, StoredObject
from service.storage.writer import ObjectWriter

_GONE = frozenset({404, 410})
_IDENTITY = {"Accept-Encoding": "identity"}
_RETRY_LATER = frozenset({408, 429, 500, 502, 503, 504})


@dataclass(frozen=True)
class Located:
    stored: StoredObject
    copied: bool  # a copy of a URL's file, to delete afterwards


class Sources:
    def __init__(
        self,
        store: ObjectStore,
        guard: DestinationGuard,
        *,
        max_bytes: int,
        timeout: float,
        deadline: float,
        part_size: int,
    ) -> None:
        """`timeout`: of each read (and connect); `deadline`: of the whole fetch (seconds)."""
        self._store = store
        self._guard = guard
        self._max_bytes = max_bytes
        self._timeout = timeout
        self._deadline = deadline
        self._part_size = part_size

    async def locate(self, job: Job) -> Located:
        source = job.source
        if source is None:
            raise SourceNotFoundError("the job names no source")
        if source.url is not None:
            key = files.fetched_source_key(job.project_id, job.id)
            await self._copy(source.url, key)
            stored = await self._store.stat(key)
            if stored is None:  # pragma: no cover - just written
                raise SourceNotFoundError(f"the copy of {_shown(source.url)} vanished")
            return Located(stored, copied=True)
        if source.bucket is None or source.key is None:
            raise SourceNotFoundError("the job's source names no object")
        stored = await self._store.stat(source.key, bucket=source.bucket)
        if stored is None:
            raise SourceNotFoundError(
                f"no object {excerpt(repr(source.key))} in bucket {source.bucket!r}"
            )
        return Located(stored, copied=False)

    async def release(self, located: Located) -> None:
        if located.copied:
            with contextlib.suppress(Exception):
                await self._store.delete(located.stored.key)

    async def _copy(self, url: str, key: str) -> None:
        shown = _shown(url)
        progress = [0]  # bytes received so far, for the message if the deadline passes
        deadline = asyncio.timeout(self._deadline)
        try:
            async with (
                deadline,
                guarded_client(self._guard, timeout=self._timeout, headers=_IDENTITY) as client,
                client.stream("GET", url) as response,
            ):
                self._check_response(response, shown)
                await self._store_body(response, key, shown, progress)
        except TimeoutError as exc:
            if not deadline.expired():
                raise
            raise SourceTooSlowError(
                f"fetching {shown} took longer than the limit of {self._deadline:g} s "
                f"(FERRY_IMPORTS__FETCH_DEADLINE_SECONDS); {progress[0]} bytes had arrived"
            ) from exc
        except httpx.TimeoutException as exc:
            raise TimeoutError(f"fetching {shown} timed out: {exc}") from exc
        except httpx.TransportError as exc:
            raise ConnectionError(f"fetching {shown} failed: {exc}") from exc

    def _check_response(self, response: httpx.Response, shown: str) -> None:
        status = response.status_code
        if status in _GONE:
            raise SourceNotFoundError(f"{shown} answered {status}")
        if status in _RETRY_LATER:
            # Worth another attempt later: the runner retries network errors with backoff.
            raise ConnectionError(f"{shown} answered {status}")
        if response.is_redirect:
            raise SourceUnavailableError(
                f"{shown} answered {status} (a redirect); redirects are not followed: give the "
                "file's final URL"
            )
        if status != httpx.codes.OK:
            raise SourceUnavailableError(f"{shown} answered {status}")
        coding = response.headers.get("content-encoding", "identity").strip().lower()
        if coding not in {"", "identity"}:
            raise SourceUnavailableError(
                f"{shown} answered with Content-Encoding {excerpt(repr(coding), 50)} although "
                "asked for identity; Ferry imports files as sent, uncompressed"
            )
        declared = response.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > self._max_bytes:
            raise FileTooLargeError(
                f"{shown} is {declared} bytes; the limit is {self._max_bytes} "
                "(FERRY_IMPORTS__MAX_FILE_BYTES)"
            )

    def _check_size(self, size: int, shown: str) -> None:
        if size > self._max_bytes:
            raise FileTooLargeError(
                f"{shown} is larger than the limit of {self._max_bytes} bytes "
                "(FERRY_IMPORTS__MAX_FILE_BYTES)"
            )

    async def _store_body(
        self, response: httpx.Response, key: str, shown: str, progress: list[int]
    ) -> None:
        writer = ObjectWriter(
            self._store,
            key,
            content_type="text/csv",
            part_size=self._part_size,
            gzip=False,
        )
        size = 0
        try:
            # Raw: the bytes as received, never decoded by httpx (see the check above).
            async for chunk in response.aiter_raw():
                size += len(chunk)
                progress[0] = size
                self._check_size(size, shown)
                await writer.write(chunk)
            await writer.close()
        except BaseException:
            with contextlib.suppress(Exception):
                await asyncio.shield(writer.abort())
            raise


def _shown(url: str) -> str:
    """The URL as messages show it: without its query string (it may hold a signature), cut."""
    return excerpt(url.split("?", 1)[0])
