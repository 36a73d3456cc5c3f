"""The object store: the client of one bucket, multipart uploads, and the writer that streams an
object into it in parts (gzip optional). Shared by exports, imports and the CLI."""

from service.storage.client import ObjectChangedError, ObjectStore, StoredObject
from service.storage.multipart import MultipartUpload
from service.storage.writer import ObjectWriter, ResumedUpload, UploadedPart, WrittenObject

__all__ = [
    "MultipartUpload",
    "ObjectChangedError",
    "ObjectStore",
    "ObjectWriter",
    "ResumedUpload",
    "StoredObject",
    "UploadedPart",
    "WrittenObject",
]
