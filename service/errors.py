"""One error root. Each error carries a stable, machine-readable code; where it surfaces decides
the outcome in one place: the HTTP layer renders the envelope, the intake turns request errors
into failed jobs, the runner fails or retries the job. The codes, with their HTTP status and
whether they are transient, are the registry's (service/error_codes.py)."""

from __future__ import annotations

from typing import ClassVar

from service.error_codes import ErrorCode

__all__ = ["ErrorCode"]  # re-exported: an error's code is named where it is raised


class FerryError(Exception):
    """Base of every error Ferry raises on purpose.

    A subclass names its `code`; its `http_status` and `transient` come from the registry unless
    the class sets them itself (an error that is never an HTTP answer renders as 500)."""

    code: ClassVar[str] = ErrorCode.INTERNAL_ERROR
    http_status: ClassVar[int] = 500
    # Whether the same work may succeed if tried again (the runner retries it with backoff).
    transient: ClassVar[bool] = False

    def __init_subclass__(cls, **kwargs: object) -> None:
        super().__init_subclass__(**kwargs)
        code = cls.__dict__.get("code")
        if isinstance(code, ErrorCode):
            if "http_status" not in cls.__dict__:
                cls.http_status = code.http_status or 500
            if "transient" not in cls.__dict__:
                cls.transient = code.transient

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidRequestError(FerryError):
    """A request that parses but cannot be run; the requester reads `code` and `message`."""

    code: ClassVar[str] = ErrorCode.INVALID_REQUEST

    def __init__(self, message: str, *, code: str = ErrorCode.INVALID_REQUEST) -> None:
        super().__init__(message)
        self.code = code  # type: ignore[misc]  # a finer code per instance, e.g. INVALID_FILTER


class UnauthorizedError(FerryError):
    code = ErrorCode.UNAUTHORIZED


class NotFoundError(FerryError):
    code = ErrorCode.NOT_FOUND


class ExportNotReadyError(FerryError):
    code = ErrorCode.EXPORT_NOT_READY


class ExportExpiredError(FerryError):
    code = ErrorCode.EXPORT_EXPIRED


class RateLimitedError(FerryError):
    """The caller's API key has used up its rate limit; `retry_after` seconds until it may retry."""

    code = ErrorCode.RATE_LIMITED

    def __init__(self, retry_after: int) -> None:
        super().__init__(f"too many requests for this API key; retry in {retry_after} s")
        self.retry_after = retry_after


class ServiceUnavailableError(FerryError):
    """A dependency (the database, the object store) did not answer; the request may be retried."""

    code = ErrorCode.SERVICE_UNAVAILABLE

    def __init__(self, message: str, *, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class LeaseLostError(FerryError):
    """This worker no longer owns the job: another attempt took it over. Write nothing more."""

    code = ErrorCode.LEASE_LOST

    def __init__(self, job_id: str, attempt: int) -> None:
        super().__init__(f"lease on job {job_id} (attempt {attempt}) was lost")
        self.job_id = job_id
        self.attempt = attempt


class JobFailedError(FerryError):
    """A job cannot succeed; it fails with this code and message, visible to the requester."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code  # type: ignore[misc]
