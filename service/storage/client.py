"""The object store client (S3/MinIO): one bucket, its uploads, download links, reads, deletes.

The minio SDK is synchronous, so every call runs in a thread and the event loop never blocks.
Its public `put_object` cannot take data produced by an async pipeline part by part, nor tell us
the upload id, so the multipart calls go through the client's 7.2 internals, in this package
(here and in `multipart.py`) and only here.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING

import urllib3
from minio import Minio
from minio.commonconfig import ENABLED, Filter
from minio.datatypes import Part
from minio.error import S3Error
from minio.lifecycleconfig import AbortIncompleteMultipartUpload, LifecycleConfig, Rule

from service.config import S3Settings
from service.error_codes import ErrorCode
from service.errors import FerryError
from service.storage.multipart import MultipartUpload

if TYPE_CHECKING:
    from collections.abc import Iterator

    from urllib3.response import BaseHTTPResponse


_RULE_ID = "ferry-abort-incomplete-uploads"
_HTTP_RETRIES = 2
_MISSING = frozenset({"NoSuchKey", "NoSuchObject", "ResourceNotFound", "NoSuchBucket"})


@dataclass(frozen=True)
class StoredObject:
    bucket: str
    key: str
    size: int
    etag: str


class ObjectChangedError(FerryError):
    """An object was replaced while it was being read in parts."""

    code = ErrorCode.SOURCE_CHANGED

    def __init__(self, bucket: str, key: str) -> None:
        super().__init__(f"{bucket}/{key} changed while it was being read; submit it again")


class ObjectStore:
    """One bucket of the object store."""

    def __init__(self, settings: S3Settings) -> None:
        self.bucket = settings.bucket
        self._client = _client(settings, public=False)
        # Links are signed for the host clients use, which may differ from ours (e.g. in Docker).
        # With the region fixed, presigning is pure computation: no request is made.
        self._signer = _client(settings, public=True)

    async def ensure_bucket(self) -> None:
        """Create the bucket if missing, with a rule that clears abandoned multipart uploads."""
        if not await asyncio.to_thread(self._client.bucket_exists, self.bucket):
            try:
                await asyncio.to_thread(self._client.make_bucket, self.bucket)
            except S3Error as exc:
                if exc.code not in {"BucketAlreadyOwnedByYou", "BucketAlreadyExists"}:
                    raise
        await asyncio.to_thread(self._ensure_lifecycle_rule)

    def _ensure_lifecycle_rule(self) -> None:
        # Keep the bucket's other rules: replace only ours.
        existing = self._client.get_bucket_lifecycle(self.bucket)
        rules = [rule for rule in (existing.rules if existing else []) if rule.rule_id != _RULE_ID]
        rules.append(
            Rule(
                ENABLED,
                rule_filter=Filter(prefix=""),
                rule_id=_RULE_ID,
                abort_incomplete_multipart_upload=AbortIncompleteMultipartUpload(
                    days_after_initiation=1
                ),
            )
        )
        self._client.set_bucket_lifecycle(self.bucket, LifecycleConfig(rules))

    async def abort_upload(self, key: str, upload_id: str) -> None:
        """Abort a multipart upload by id; one that is already gone is fine."""
        try:
            await asyncio.to_thread(
                self._client._abort_multipart_upload,  # noqa: SLF001 - see the module docstring
                self.bucket,
                key,
                upload_id,
            )
        except S3Error as exc:
            if exc.code != "NoSuchUpload":
                raise

    async def bucket_exists(self) -> bool:
        return await asyncio.to_thread(self._client.bucket_exists, self.bucket)

    async def put(self, key: str, data: bytes, *, content_type: str) -> None:
        await asyncio.to_thread(
            self._client.put_object,
            self.bucket,
            key,
            io.BytesIO(data),
            len(data),
            content_type=content_type,
        )

    async def start_multipart(self, key: str, *, content_type: str) -> MultipartUpload:
        upload_id = await asyncio.to_thread(
            self._client._create_multipart_upload,  # noqa: SLF001 - see the module docstring
            self.bucket,
            key,
            {"Content-Type": content_type},
        )
        return MultipartUpload(self._client, self.bucket, key, upload_id)

    def resume_multipart(
        self, key: str, upload_id: str, parts: list[tuple[int, str]]
    ) -> MultipartUpload:
        """An upload started earlier (perhaps by another process), with the parts it already
        has as (number, ETag), numbered 1..n: the next part uploaded is n + 1."""
        if [number for number, _ in parts] != list(range(1, len(parts) + 1)):
            raise ValueError(f"parts of {key} must be numbered 1..n")
        return MultipartUpload(
            self._client, self.bucket, key, upload_id, [Part(n, etag) for n, etag in parts]
        )

    async def uploaded_parts(self, key: str, upload_id: str) -> dict[int, str] | None:
        """Part number -> ETag (unquoted) of an upload in progress; None when it is gone
        (completed, aborted or cleared by the lifecycle rule)."""

        def fetch() -> dict[int, str] | None:
            found: dict[int, str] = {}
            marker: str | None = None
            while True:
                try:
                    page = self._client._list_parts(  # noqa: SLF001 - see the module docstring
                        self.bucket, key, upload_id, part_number_marker=marker
                    )
                except S3Error as exc:
                    if exc.code in {"NoSuchUpload", *_MISSING}:
                        return None
                    raise
                for part in page.parts:
                    found[part.part_number] = (part.etag or "").strip('"')
                if not page.is_truncated or not page.next_part_number_marker:
                    return found
                marker = page.next_part_number_marker

        return await asyncio.to_thread(fetch)

    async def sha256(self, key: str, *, chunk_size: int = 8 * 1024 * 1024) -> str:
        """SHA-256 of an object, read back in ranged chunks (bounded memory)."""
        stored = await self.stat(key)
        if stored is None:
            raise FileNotFoundError(key)

        def digest() -> str:
            hashed = hashlib.sha256()
            for chunk in self.chunks(stored, chunk_size=chunk_size):
                hashed.update(chunk)
            return hashed.hexdigest()

        return await asyncio.to_thread(digest)

    async def presigned_get(self, key: str, *, ttl: timedelta, filename: str | None = None) -> str:
        params: dict[str, str | list[str] | tuple[str]] | None = (
            {"response-content-disposition": f'attachment; filename="{filename}"'}
            if filename
            else None
        )
        return await asyncio.to_thread(
            self._signer.presigned_get_object,
            self.bucket,
            key,
            expires=ttl,
            response_headers=params,
        )

    async def delete(self, key: str) -> None:
        """Delete an object; deleting one that is already gone is fine."""
        await asyncio.to_thread(self._client.remove_object, self.bucket, key)

    async def size(self, key: str) -> int | None:
        found = await self.stat(key)
        return None if found is None else found.size

    async def stat(self, key: str, *, bucket: str | None = None) -> StoredObject | None:
        """Size and ETag of an object (of this bucket, or another the credentials can read);
        None when it, or its bucket, does not exist."""
        name = bucket or self.bucket
        try:
            stat = await asyncio.to_thread(self._client.stat_object, name, key)
        except S3Error as exc:
            if exc.code in _MISSING:
                return None
            raise
        return StoredObject(name, key, stat.size or 0, (stat.etag or "").strip('"'))

    def chunks(self, stored: StoredObject, *, chunk_size: int) -> Iterator[bytes]:
        """The object's bytes in ranged reads of `chunk_size`, each checked to come from the same
        version of the object. Blocking: iterate it on a worker thread. Each range is its own
        request, so a dropped connection costs one chunk's retry, not the whole file."""
        offset = 0
        while offset < stored.size:
            response: BaseHTTPResponse = self._client.get_object(
                stored.bucket,
                stored.key,
                offset=offset,
                length=min(chunk_size, stored.size - offset),
            )
            try:
                if response.headers.get("ETag", "").strip('"') != stored.etag:
                    raise ObjectChangedError(stored.bucket, stored.key)
                data = response.read()
            finally:
                response.close()
                response.release_conn()
            if not data:
                raise ObjectChangedError(stored.bucket, stored.key)  # shorter than it was
            offset += len(data)
            yield data

    async def read_range(self, key: str, start: int, end: int) -> bytes:
        """Bytes [start, end) of an object (a bounded read: the caller bounds the range)."""
        if end <= start:
            return b""

        def fetch() -> bytes:
            response: BaseHTTPResponse = self._client.get_object(
                self.bucket, key, offset=start, length=end - start
            )
            try:
                return response.read()
            finally:
                response.close()
                response.release_conn()

        return await asyncio.to_thread(fetch)

    async def read(self, key: str) -> bytes:
        """Whole object into memory: for tests and small files only."""

        def fetch() -> bytes:
            response: BaseHTTPResponse = self._client.get_object(self.bucket, key)
            try:
                return response.read()
            finally:
                response.close()
                response.release_conn()

        return await asyncio.to_thread(fetch)


def _client(settings: S3Settings, *, public: bool) -> Minio:
    host, secure = settings.split_endpoint(public=public)
    # minio's default waits five minutes per request: an unreachable store must fail fast so
    # the job is retried (with backoff) instead of hanging.
    http = urllib3.PoolManager(
        timeout=urllib3.Timeout(connect=settings.timeout_seconds, read=settings.timeout_seconds),
        maxsize=10,
        retries=urllib3.Retry(
            total=_HTTP_RETRIES, backoff_factor=0.2, status_forcelist=[500, 502, 503, 504]
        ),
    )
    return Minio(
        host,
        access_key=settings.access_key.get_secret_value(),
        secret_key=settings.secret_key.get_secret_value(),
        secure=secure,
        region=settings.region,
        http_client=http,
    )
