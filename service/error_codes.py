"""Every error code a requester or an operator can read, in one enum.

A code travels as its string (a failed job's `error_code`, the API's error envelope, a dead
letter's reason, the CLI's message); the strings never change. Each member also says which HTTP
status answers it when the API serves it (None: never an HTTP answer, only a job's or a
message's verdict), whether the same work may succeed if tried again, and what it means.
`ferry schemas` lists them in schemas/error-codes.md.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Self


class ErrorCode(StrEnum):
    """A stable, machine-readable error code."""

    http_status: int | None
    transient: bool
    meaning: str

    # The enum machinery passes each member's tuple positionally.
    def __new__(cls, value: str, http_status: int | None, transient: bool, meaning: str) -> Self:  # noqa: FBT001
        member = str.__new__(cls, value)
        member._value_ = value
        member.http_status = http_status
        member.transient = transient
        member.meaning = meaning
        return member

    # Requests over Kafka that are not even a request: dead-lettered with the reason.
    EVENT_TOO_LARGE = "EVENT_TOO_LARGE", None, False, "the request event exceeds the size limit"
    INVALID_JSON = "INVALID_JSON", None, False, "the request event is not a JSON document"
    INVALID_CLOUDEVENT = (
        "INVALID_CLOUDEVENT",
        None,
        False,
        "the request event is not a valid CloudEvent",
    )
    UNKNOWN_EVENT_TYPE = (
        "UNKNOWN_EVENT_TYPE",
        None,
        False,
        "the request event's type is not one Ferry handles",
    )
    MISSING_PROJECT_ID = (
        "MISSING_PROJECT_ID",
        None,
        False,
        "the request event names no valid project",
    )
    INTAKE_FAILED = (
        "INTAKE_FAILED",
        None,
        False,
        "the request could not be taken in after retries (dead-lettered)",
    )

    # Requests that parse but cannot be run: the job fails at once with the code.
    INVALID_REQUEST = (
        "INVALID_REQUEST",
        400,
        False,
        "the request (or an API call's parameters) is invalid",
    )
    INVALID_FILTER = "INVALID_FILTER", 400, False, "an export's filters are invalid"
    INVALID_TIME_RANGE = (
        "INVALID_TIME_RANGE",
        400,
        False,
        "an export's time range is empty, reversed or too long",
    )
    INVALID_COLUMNS = "INVALID_COLUMNS", 400, False, "an export names unknown or repeated columns"
    UNKNOWN_DATASET = (
        "UNKNOWN_DATASET",
        400,
        False,
        "the request names a dataset Ferry does not have",
    )
    INVALID_SOURCE = (
        "INVALID_SOURCE",
        400,
        False,
        "an import's source is neither Ferry's bucket nor an allowed URL",
    )
    INVALID_NOTIFY_URL = (
        "INVALID_NOTIFY_URL",
        400,
        False,
        "the request's notify_url is not an allowed destination",
    )
    UNSUPPORTED_VALUE = (
        "UNSUPPORTED_VALUE",
        None,
        False,
        "a value does not fit the format asked for (e.g. a Parquet column)",
    )
    JOB_ID_CONFLICT = (
        "JOB_ID_CONFLICT",
        None,
        False,
        "the job id is already used by a different request",
    )
    IDEMPOTENCY_KEY_REUSED = (
        "IDEMPOTENCY_KEY_REUSED",
        None,
        False,
        "the idempotency key was used for a different request",
    )
    TOO_MANY_FILES = (
        "TOO_MANY_FILES",
        None,
        False,
        "the file limits would cut the export into too many files",
    )

    # A job that started and ended without its result.
    CANCELLED = "CANCELLED", None, False, "the job was cancelled on request"
    WORKER_LOST = "WORKER_LOST", None, False, "the job's worker stopped answering too many times"
    JOB_TIMEOUT = "JOB_TIMEOUT", None, False, "the job ran longer than its time limit"
    INVALID_FILE = "INVALID_FILE", None, False, "an import's file is not a CSV Ferry can read"
    FILE_TOO_LARGE = "FILE_TOO_LARGE", None, False, "an import's file exceeds the size limit"
    SOURCE_NOT_FOUND = "SOURCE_NOT_FOUND", None, False, "an import's source does not exist"
    SOURCE_UNAVAILABLE = (
        "SOURCE_UNAVAILABLE",
        None,
        False,
        "an import's source answered, but not with the file",
    )
    SOURCE_TOO_SLOW = (
        "SOURCE_TOO_SLOW",
        None,
        False,
        "an import's source sent too slowly to finish in time",
    )
    SOURCE_CHANGED = "SOURCE_CHANGED", None, False, "an object was replaced while it was being read"
    WRITE_CONFLICT = (
        "WRITE_CONFLICT",
        None,
        False,
        "an import's rows kept colliding with concurrent writes",
    )

    # Outages: the runner retries with backoff; the API answers 503.
    DATABASE_UNAVAILABLE = "DATABASE_UNAVAILABLE", 503, True, "the database did not answer"
    STORAGE_UNAVAILABLE = "STORAGE_UNAVAILABLE", 503, True, "the object store did not answer"
    NETWORK_ERROR = "NETWORK_ERROR", 503, True, "a dependency could not be reached"
    SERVICE_UNAVAILABLE = (
        "SERVICE_UNAVAILABLE",
        503,
        True,
        "the API's dependency is unavailable; retry after Retry-After",
    )
    LEDGER_CONTENTION = "LEDGER_CONTENTION", None, True, "a job record kept changing under a write"
    LEASE_LOST = (
        "LEASE_LOST",
        None,
        False,
        "this worker no longer owns the job; another attempt took over",
    )
    INTERNAL_ERROR = (
        "INTERNAL_ERROR",
        500,
        False,
        "an unexpected error (a bug); the logs have the details",
    )

    # The lookup API's answers.
    UNAUTHORIZED = "UNAUTHORIZED", 401, False, "no API key, or one that is unknown or revoked"
    NOT_FOUND = "NOT_FOUND", 404, False, "no such job (or path) for this API key's project"
    METHOD_NOT_ALLOWED = "METHOD_NOT_ALLOWED", 405, False, "the path does not take this HTTP method"
    EXPORT_NOT_READY = (
        "EXPORT_NOT_READY",
        409,
        False,
        "the export has not completed; its file is not ready",
    )
    EXPORT_EXPIRED = "EXPORT_EXPIRED", 410, False, "the export's file has expired and was deleted"
    RATE_LIMITED = (
        "RATE_LIMITED",
        429,
        True,
        "the API key used up its rate limit; retry after Retry-After",
    )
    HTTP_ERROR = "HTTP_ERROR", None, False, "another HTTP error (its status says which)"

    # Operators: the CLI, the relay, the webhooks, outbound destinations.
    KEY_NOT_FOUND = "KEY_NOT_FOUND", 404, False, "no API key has this id"
    EVENT_UNDELIVERABLE = (
        "EVENT_UNDELIVERABLE",
        None,
        False,
        "the broker will never take this status event (dead-lettered)",
    )
    UNSAFE_DESTINATION = (
        "UNSAFE_DESTINATION",
        400,
        False,
        "a user-given URL points at a private, loopback or forbidden address",
    )
    UNRESOLVABLE_HOST = "UNRESOLVABLE_HOST", 400, False, "a user-given URL's host does not resolve"
    INVALID_URL = (
        "INVALID_URL",
        400,
        False,
        "a webhook endpoint's URL is not an allowed http(s) URL",
    )
    INVALID_EVENT_TYPES = (
        "INVALID_EVENT_TYPES",
        400,
        False,
        "a webhook endpoint names unknown event types",
    )
    ENDPOINT_DISABLED = "ENDPOINT_DISABLED", 409, False, "the webhook endpoint is disabled"
    SECRET_UNREADABLE = (
        "SECRET_UNREADABLE",
        None,
        False,
        "no configured key decrypts a project's webhook signing secret",
    )
    TRACING_UNAVAILABLE = (
        "TRACING_UNAVAILABLE",
        None,
        False,
        "tracing is on but the tracing extra is not installed",
    )
    DEV_STACK_FAILED = (
        "DEV_STACK_FAILED",
        None,
        False,
        "a server of the embedded dev stack could not start",
    )


def error_codes_markdown() -> str:
    """The registry as a Markdown table, for the generated docs."""
    lines = [
        "# Error codes",
        "",
        "Generated by `ferry schemas` from `service/error_codes.py`; do not edit.",
        "",
        (
            "Every code a requester or an operator can read: a failed job's `error_code`, the "
            "API's error envelope, a dead letter's reason, the CLI's messages. *HTTP* is the "
            "status the API answers with it (blank: never an HTTP answer); *transient* codes may "
            "succeed if tried again."
        ),
        "",
        "| code | HTTP | transient | meaning |",
        "| --- | --- | --- | --- |",
    ]
    lines += [
        f"| `{code.value}` | {code.http_status or ''} | {'yes' if code.transient else 'no'} "
        f"| {code.meaning} |"
        for code in ErrorCode
    ]
    return "\n".join(lines) + "\n"
