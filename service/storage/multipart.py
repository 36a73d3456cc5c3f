"""An S3 multipart upload in progress (through the minio client's internals, as `client.py`
explains)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import dataclass, field
from urllib.parse import quote

from minio import Minio
from minio.datatypes import Part
from minio.error import S3Error


@dataclass
class MultipartUpload:
    """An S3 multipart upload in progress. Parts are numbered from 1, in order."""

    _client: Minio
    bucket: str
    key: str
    upload_id: str
    _parts: list[Part] = field(default_factory=list)

    @property
    def part_count(self) -> int:
        return len(self._parts)

    async def upload_part(self, data: bytes) -> str:
        """Upload the next part; its ETag."""
        number = len(self._parts) + 1
        self._parts.append(Part(number, ""))  # reserve the number before the await
        etag = await asyncio.to_thread(
            self._client._upload_part,  # noqa: SLF001 - see the module docstring
            self.bucket,
            self.key,
            data,
            None,
            self.upload_id,
            number,
        )
        self._parts[number - 1] = Part(number, etag)
        return etag

    async def copy_part(self, source_key: str, start: int, end: int) -> str:
        """Upload the next part as bytes [start, end) of another object of the bucket, copied
        by the store itself (UploadPartCopy): no byte passes through this process."""
        number = len(self._parts) + 1
        self._parts.append(Part(number, ""))
        headers: dict[str, str | list[str] | tuple[str]] = {
            "x-amz-copy-source": quote(f"/{self.bucket}/{source_key}"),
            "x-amz-copy-source-range": f"bytes={start}-{end - 1}",
        }
        etag, _ = await asyncio.to_thread(
            self._client._upload_part_copy,  # noqa: SLF001 - see the module docstring
            self.bucket,
            self.key,
            self.upload_id,
            number,
            headers,
        )
        self._parts[number - 1] = Part(number, etag)
        return etag

    async def complete(self) -> None:
        await asyncio.to_thread(
            self._client._complete_multipart_upload,  # noqa: SLF001
            self.bucket,
            self.key,
            self.upload_id,
            list(self._iter_parts()),
        )

    async def abort(self) -> None:
        """Abort the upload; one already completed or aborted is fine."""
        try:
            await asyncio.to_thread(
                self._client._abort_multipart_upload,  # noqa: SLF001
                self.bucket,
                self.key,
                self.upload_id,
            )
        except S3Error as exc:
            if exc.code != "NoSuchUpload":
                raise

    def _iter_parts(self) -> Iterator[Part]:
        for part in self._parts:
            if not part.etag:
                raise RuntimeError(f"part {part.part_number} of {self.key} was never uploaded")
            yield part
