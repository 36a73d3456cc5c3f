"""Turning the bytes of a request event into a job, or into a reason to dead-letter them.

The rule: what cannot be attributed to a project goes to the dead-letter topic; what names its
project but cannot run becomes a failed job the requester can read.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

from pydantic import ValidationError

from service.datasets.base import describe_validation_error
from service.events.contracts import CloudEvent, is_valid_project_id
from service.events.rejection import Rejected
from service.jobs.cancellation import CancelJob
from service.jobs.model import Job

# What a request asks for: a new job (pending, or failed when it cannot run), a cancellation,
# or nothing (rejected, with the reason).
Intent = Job | CancelJob | Rejected

# Reads one request type from its envelope and `data` (a dict with a valid project_id).
RequestHandler = Callable[[CloudEvent, Mapping[str, Any], datetime], Intent]


def parse_request(  # noqa: PLR0911 - one return per verdict
    raw: bytes, *, max_bytes: int, handlers: Mapping[str, RequestHandler], now: datetime
) -> Intent:
    if len(raw) > max_bytes:
        return Rejected("EVENT_TOO_LARGE", f"event is {len(raw)} bytes; the limit is {max_bytes}")
    try:
        document = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        return Rejected("INVALID_JSON", f"not a JSON document: {exc}")
    if not isinstance(document, dict):
        return Rejected("INVALID_CLOUDEVENT", "a CloudEvent must be a JSON object")
    try:
        event = CloudEvent.model_validate(document)
    except ValidationError as exc:
        return Rejected("INVALID_CLOUDEVENT", describe_validation_error(exc))
    handler = handlers.get(event.type)
    if handler is None:
        return Rejected(
            "UNKNOWN_EVENT_TYPE", f"unknown type {event.type!r}; expected one of {sorted(handlers)}"
        )
    data = event.data
    if not isinstance(data, dict) or not is_valid_project_id(data.get("project_id")):
        return Rejected(
            "MISSING_PROJECT_ID",
            "data.project_id is missing or invalid (1-128 characters: letters, digits, _ . -)",
        )
    return handler(event, data, now)
