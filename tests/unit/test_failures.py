"""Which failures get another attempt."""

from __future__ import annotations

import pytest
from minio.error import S3Error, ServerError
from pymongo.errors import (
    AutoReconnect,
    CursorNotFound,
    DuplicateKeyError,
    OperationFailure,
    ServerSelectionTimeoutError,
)
from urllib3 import HTTPConnectionPool, HTTPResponse
from urllib3.exceptions import MaxRetryError, ProtocolError

from service.errors import InvalidRequestError, JobFailedError
from service.jobs.failures import classify
from service.jobs.ledger import LedgerContentionError

POOL = HTTPConnectionPool("store.invalid")


def s3_error(code: str) -> S3Error:
    return S3Error(HTTPResponse(status=503), code, "message", "resource", "request-id", "host-id")


@pytest.mark.parametrize(
    ("exc", "code"),
    [
        (AutoReconnect("connection reset"), "DATABASE_UNAVAILABLE"),
        (ServerSelectionTimeoutError("no servers"), "DATABASE_UNAVAILABLE"),
        # Seen when the database restarted under a running export: its cursor is gone.
        (CursorNotFound("cursor id 1 not found", 43), "DATABASE_UNAVAILABLE"),
        (OperationFailure("interrupted at shutdown", 11600), "DATABASE_UNAVAILABLE"),
        (OperationFailure("not primary", 10107), "DATABASE_UNAVAILABLE"),
        (ServerError("bad gateway", 502), "STORAGE_UNAVAILABLE"),
        (s3_error("SlowDown"), "STORAGE_UNAVAILABLE"),
        (MaxRetryError(POOL, "/x", reason=ProtocolError("reset")), "STORAGE_UNAVAILABLE"),
        (ConnectionRefusedError("refused"), "NETWORK_ERROR"),
        (TimeoutError(), "NETWORK_ERROR"),
    ],
)
def test_unreachable_servers_and_timeouts_are_transient(exc: BaseException, code: str) -> None:
    failure = classify(exc)
    assert (failure.code, failure.transient) == (code, True)
    assert type(exc).__name__ in failure.message


def test_a_save_that_lost_every_compare_and_set_is_tried_again_later() -> None:
    failure = classify(LedgerContentionError("job-1"))
    assert (failure.code, failure.transient) == ("LEDGER_CONTENTION", True)
    assert "job-1" in failure.message


@pytest.mark.parametrize(
    ("exc", "code"),
    [
        (InvalidRequestError("bad filter", code="INVALID_FILTER"), "INVALID_FILTER"),
        (JobFailedError("FILE_TOO_LARGE", "too big"), "FILE_TOO_LARGE"),
        (s3_error("AccessDenied"), "INTERNAL_ERROR"),
        (DuplicateKeyError("dup"), "INTERNAL_ERROR"),
        (OperationFailure("unknown operator: $bad", 2), "INTERNAL_ERROR"),
        (ValueError("bug"), "INTERNAL_ERROR"),
    ],
)
def test_everything_else_fails_at_once(exc: BaseException, code: str) -> None:
    failure = classify(exc)
    assert (failure.code, failure.transient) == (code, False)
