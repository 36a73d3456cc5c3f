"""Which failures are worth another attempt. Unreachable servers and timeouts usually pass;
anything else would fail the same way again, so it fails the job at once."""

from __future__ import annotations

from dataclasses import dataclass

from minio.error import InvalidResponseError, S3Error, ServerError
from pymongo.errors import (
    ConnectionFailure,
    CursorNotFound,
    ExecutionTimeout,
    OperationFailure,
    WTimeoutError,
)
from urllib3.exceptions import HTTPError as Urllib3Error

from service.error_codes import ErrorCode
from service.errors import FerryError

# S3 error codes that mean "the store is struggling", not "your request is wrong".
_TRANSIENT_S3_CODES = frozenset(
    {"InternalError", "ServiceUnavailable", "SlowDown", "RequestTimeout", "OperationAborted"}
)

# MongoDB errors of a server going away or coming back rather than of the request: shutting down
# (91, 11600), stepping down or not primary (189, 10107, 13435, 11602), a cursor the server no
# longer knows because it restarted or reaped it (43, CursorNotFound). The next attempt resumes
# from the export's checkpoint; failing the job for good would lose it to a routine restart.
_TRANSIENT_MONGO_CODES = frozenset({43, 91, 189, 10107, 11600, 11602, 13435})


@dataclass(frozen=True)
class Failure:
    code: str
    message: str
    transient: bool


def classify(exc: BaseException) -> Failure:
    message = f"{type(exc).__name__}: {exc}"[:1000]
    if isinstance(exc, FerryError):
        return Failure(exc.code, exc.message, transient=exc.transient)
    if isinstance(exc, ConnectionFailure | ExecutionTimeout | WTimeoutError | CursorNotFound) or (
        isinstance(exc, OperationFailure) and exc.code in _TRANSIENT_MONGO_CODES
    ):
        return Failure(ErrorCode.DATABASE_UNAVAILABLE, message, transient=True)
    if isinstance(exc, ServerError | InvalidResponseError) or (
        isinstance(exc, S3Error) and exc.code in _TRANSIENT_S3_CODES
    ):
        return Failure(ErrorCode.STORAGE_UNAVAILABLE, message, transient=True)
    if isinstance(exc, Urllib3Error):  # the object store's HTTP client: refused, reset, timed out
        return Failure(ErrorCode.STORAGE_UNAVAILABLE, message, transient=True)
    if isinstance(exc, ConnectionError | TimeoutError):
        return Failure(ErrorCode.NETWORK_ERROR, message, transient=True)
    return Failure(ErrorCode.INTERNAL_ERROR, message, transient=False)
