"""Why an import fails as a whole. Each is final: running the same file again fails the same way.
(Rows that are wrong do not fail the import; they are rejected and reported.)"""

from __future__ import annotations

from service.error_codes import ErrorCode
from service.errors import JobFailedError


class InvalidFileError(JobFailedError):
    """Not a CSV file Ferry can read: not text, or a header it cannot use."""

    def __init__(self, message: str) -> None:
        super().__init__(ErrorCode.INVALID_FILE, message)


class FileTooLargeError(JobFailedError):
    def __init__(self, message: str) -> None:
        super().__init__(ErrorCode.FILE_TOO_LARGE, message)


class SourceNotFoundError(JobFailedError):
    def __init__(self, message: str) -> None:
        super().__init__(ErrorCode.SOURCE_NOT_FOUND, message)


class SourceUnavailableError(JobFailedError):
    """The source answered, but not with the file (a refusal, a redirect, a changed object)."""

    def __init__(self, message: str) -> None:
        super().__init__(ErrorCode.SOURCE_UNAVAILABLE, message)


class SourceTooSlowError(JobFailedError):
    """The source kept sending, but too slowly to finish within the fetch deadline."""

    def __init__(self, message: str) -> None:
        super().__init__(ErrorCode.SOURCE_TOO_SLOW, message)


# What an import's messages may quote of its input (a header, a value, a URL): enough to
# recognise it, never enough to bloat the job record or the status event that carries it.
EXCERPT_CHARS = 200


def excerpt(text: str, limit: int = EXCERPT_CHARS) -> str:
    """`text`, cut to `limit` characters with a marker saying how much was left out."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}… ({len(text) - limit} more characters)"
