"""Why an import fails as a whole. Each is final: running the same file again fails the same way.
(Rows that are wrong do not fail the import; they are rejected and reported.)"""

from __future__ import annotations

from service.errors import JobFailedError


class InvalidFileError(JobFailedError):
    """Not a CSV file Ferry can read: not text, or a header it cannot use."""

    def __init__(self, message: str) -> None:
        super().__init__("INVALID_FILE", message)


class FileTooLargeError(JobFailedError):
    def __init__(self, message: str) -> None:
        super().__init__("FILE_TOO_LARGE", message)


class SourceNotFoundError(JobFailedError):
    def __init__(self, message: str) -> None:
        super().__init__("SOURCE_NOT_FOUND", message)


class SourceUnavailableError(JobFailedError):
    """The source answered, but not with the file (a refusal, a redirect, a changed object)."""

    def __init__(self, message: str) -> None:
        super().__init__("SOURCE_UNAVAILABLE", message)
