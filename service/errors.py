"""One error root. Each error carries a stable, machine-readable code; where it surfaces decides
the outcome in one place: the HTTP layer renders the envelope, the intake turns request errors
into failed jobs, the runner fails or retries the job."""

from __future__ import annotations

from typing import ClassVar


class FerryError(Exception):
    """Base of every error Ferry raises on purpose."""

    code: ClassVar[str] = "INTERNAL_ERROR"
    http_status: ClassVar[int] = 500
    # Whether the same work may succeed if tried again (the runner retries it with backoff).
    transient: ClassVar[bool] = False

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidRequestError(FerryError):
    """A request that parses but cannot be run; the requester reads `code` and `message`."""

    code = "INVALID_REQUEST"
    http_status = 400

    def __init__(self, message: str, *, code: str = "INVALID_REQUEST") -> None:
        super().__init__(message)
        self.code = code  # type: ignore[misc]  # a finer code per instance, e.g. INVALID_FILTER


class UnauthorizedError(FerryError):
    code = "UNAUTHORIZED"
    http_status = 401


class NotFoundError(FerryError):
    code = "NOT_FOUND"
    http_status = 404


class ExportNotReadyError(FerryError):
    code = "EXPORT_NOT_READY"
    http_status = 409


class ExportExpiredError(FerryError):
    code = "EXPORT_EXPIRED"
    http_status = 410


class RateLimitedError(FerryError):
    """The caller's API key has used up its rate limit; `retry_after` seconds until it may retry."""

    code = "RATE_LIMITED"
    http_status = 429

    def __init__(self, retry_after: int) -> None:
        super().__init__(f"too many requests for this API key; retry in {retry_after} s")
        self.retry_after = retry_after


class ServiceUnavailableError(FerryError):
    """A dependency (the database, the object store) did not answer; the request may be retried."""

    code = "SERVICE_UNAVAILABLE"
    http_status = 503

    def __init__(self, message: str, *, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class LeaseLostError(FerryError):
    """This worker no longer owns the job: another attempt took it over. Write nothing more."""

    code = "LEASE_LOST"

    def __init__(self, job_id: str, attempt: int) -> None:
        super().__init__(f"lease on job {job_id} (attempt {attempt}) was lost")
        self.job_id = job_id
        self.attempt = attempt


class JobFailedError(FerryError):
    """A job cannot succeed; it fails with this code and message, visible to the requester."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code  # type: ignore[misc]
