"""Cancel requests: `ferry.job.cancel_requested.v1` names a job to stop."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pydantic import ValidationError

from service.contracts.envelope import CloudEvent
from service.contracts.requests import CancelRequestedData, Rejected
from service.datasets.base import describe_validation_error
from service.error_codes import ErrorCode


@dataclass(frozen=True)
class CancelJob:
    project_id: str
    job_id: str
    reason: str | None


def cancel_from_request(
    event: CloudEvent, data: Mapping[str, Any], now: datetime
) -> CancelJob | Rejected:
    """There is no job to fail for an unreadable cancel request: it is dead-lettered."""
    del event, now  # the signature every request handler shares
    try:
        request = CancelRequestedData.model_validate(data)
    except ValidationError as exc:
        return Rejected(ErrorCode.INVALID_REQUEST, describe_validation_error(exc, prefix="data"))
    return CancelJob(request.project_id, str(request.job_id), request.reason)
