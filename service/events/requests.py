"""Turning a request record into a job, or into a reason to dead-letter it.

The rule: what cannot be attributed to a project goes to the dead-letter topic; what names its
project but cannot run becomes a failed job the requester can read. A request arrives in either
mode of the CloudEvents Kafka binding: structured (the whole event as the JSON value) or binary
(the attributes in `ce_*` headers, `data` as the value).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any

from pydantic import ValidationError

from service.contracts.envelope import CloudEvent
from service.contracts.requests import Rejected, is_valid_project_id
from service.datasets.base import describe_validation_error
from service.error_codes import ErrorCode
from service.events.storable import unstorable
from service.jobs.cancellation import CancelJob
from service.jobs.from_request import failed_job
from service.jobs.model import Job

# What a request asks for: a new job (pending, or failed when it cannot run), a cancellation,
# or nothing (rejected, with the reason).
Intent = Job | CancelJob | Rejected

# Reads one request type from its envelope and `data` (a dict with a valid project_id).
RequestHandler = Callable[[CloudEvent, Mapping[str, Any], datetime], Intent]

Headers = Sequence[tuple[str, bytes | None]]

# The envelope attributes a job keeps (as request_source, request_id) or a reason shows.
_STORED_ATTRIBUTES = ("specversion", "id", "source", "type", "subject", "time")
# The fields of `data` a failed job keeps: enough for the requester to find it and be told.
_IDENTITY_FIELDS = ("project_id", "job_id", "idempotency_key", "notify_url")
_BINARY_PREFIX = "ce_"


def parse_request(  # noqa: PLR0911 - one return per verdict
    raw: bytes,
    *,
    headers: Headers = (),
    max_bytes: int,
    handlers: Mapping[str, RequestHandler],
    now: datetime,
) -> Intent:
    if len(raw) > max_bytes:
        return Rejected(
            ErrorCode.EVENT_TOO_LARGE, f"event is {len(raw)} bytes; the limit is {max_bytes}"
        )
    document = _binary_event(raw, headers) if _is_binary(headers) else _json(raw)
    if isinstance(document, Rejected):
        return document
    if not isinstance(document, dict):
        return Rejected(ErrorCode.INVALID_CLOUDEVENT, "a CloudEvent must be a JSON object")
    envelope = {name: document[name] for name in _STORED_ATTRIBUTES if name in document}
    problem = unstorable(envelope)
    if problem is not None:
        return Rejected(ErrorCode.INVALID_CLOUDEVENT, problem)
    try:
        event = CloudEvent.model_validate(document)
    except ValidationError as exc:
        return Rejected(ErrorCode.INVALID_CLOUDEVENT, describe_validation_error(exc))
    handler = handlers.get(event.type)
    if handler is None:
        return Rejected(
            ErrorCode.UNKNOWN_EVENT_TYPE,
            f"unknown type {event.type!r}; expected one of {sorted(handlers)}",
        )
    data = event.data
    if not isinstance(data, dict) or not is_valid_project_id(data.get("project_id")):
        return Rejected(
            ErrorCode.MISSING_PROJECT_ID,
            "data.project_id is missing or invalid (1-128 characters: letters, digits, _ . -)",
        )
    problem = unstorable(data, path="data")
    if problem is not None:
        return _unsupported(handler(event, _identity(data), now), problem)
    return handler(event, data, now)


def _json(raw: bytes) -> object:
    try:
        return json.loads(raw, parse_constant=_no_constant)
    except RecursionError:
        return Rejected(ErrorCode.INVALID_JSON, "not a JSON document: nested too deep to read")
    # JSONDecodeError and UnicodeDecodeError are ValueErrors, and so are NaN (refused below)
    # and integers of more digits than Python converts.
    except ValueError as exc:
        return Rejected(ErrorCode.INVALID_JSON, f"not a JSON document: {str(exc)[:200]}")


def _no_constant(name: str) -> object:
    raise ValueError(f"{name} is not JSON")


def _is_binary(headers: Headers) -> bool:
    """Binary mode per the Kafka binding: a `ce_specversion` header, and a content type that
    is not `application/cloudevents...` (which marks structured mode)."""
    names = {name.lower(): value for name, value in headers}
    content_type = names.get("content-type") or b""
    return "ce_specversion" in names and not content_type.lower().startswith(
        b"application/cloudevents"
    )


def _binary_event(raw: bytes, headers: Headers) -> dict[str, Any] | Rejected:
    event: dict[str, Any] = {}
    content_type: str | None = None
    for name, value in headers:
        lowered = name.lower()
        if value is None or not (lowered.startswith(_BINARY_PREFIX) or lowered == "content-type"):
            continue
        try:
            text = value.decode()
        except UnicodeDecodeError:
            return Rejected(ErrorCode.INVALID_CLOUDEVENT, f"header {name[:40]!r} is not UTF-8")
        if lowered == "content-type":
            content_type = text
        else:
            event[lowered.removeprefix(_BINARY_PREFIX)] = text
    if content_type is not None:
        event["datacontenttype"] = content_type
        media_type = content_type.split(";")[0].strip().lower()
        if media_type not in {"application/json", "text/json"} and not media_type.endswith("+json"):
            return Rejected(
                ErrorCode.INVALID_CLOUDEVENT,
                f"data of content type {media_type[:100]!r}; Ferry reads JSON data only",
            )
    if raw:
        data = _json(raw)
        if isinstance(data, Rejected):
            return data
        event["data"] = data
    return event


def _identity(data: Mapping[str, Any]) -> dict[str, Any]:
    return {
        name: data[name]
        for name in _IDENTITY_FIELDS
        if name in data and unstorable(data[name]) is None
    }


def _unsupported(intent: Intent, problem: str) -> Intent:
    """A request naming its project whose data the ledger cannot hold: a failed job built from
    its identity alone (so nothing unstorable is kept), or a dead letter when it asks for none."""
    if isinstance(intent, Job):
        return failed_job(intent, ErrorCode.UNSUPPORTED_VALUE, problem)
    return Rejected(ErrorCode.UNSUPPORTED_VALUE, problem)
