"""The documents in `schemas/`, generated from the code: a JSON Schema per event type and per
dataset, the AsyncAPI 3.0 document of the topics, the OpenAPI document of the HTTP API, and the
error codes (errors.json, and error-codes.md for people).

The pydantic models are the source; `ferry schemas` writes these files and a test fails when the
committed ones differ, so the published contract cannot drift from what the code does.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel, SecretStr
from pydantic.fields import FieldInfo

from service.api.app import API_VERSION, create_app
from service.config import MOVED_SETTINGS, KafkaSettings, Settings, settings_from
from service.contracts.envelope import (
    CANCEL_REQUESTED,
    CLOUDEVENTS_CONTENT_TYPE,
    EXPORT_REQUESTED,
    IMPORT_REQUESTED,
    JOB_STATUS_CHANGED,
    JOB_UPDATED,
)
from service.contracts.requests import CancelRequested, ExportRequested, ImportRequested
from service.contracts.status_events import JobStatusChanged, JobUpdated
from service.datasets import all_datasets
from service.error_codes import ErrorCode, error_codes_markdown
from service.webhooks.payload import WebhookPayload

_EVENTS: dict[str, tuple[type[BaseModel], str]] = {
    EXPORT_REQUESTED: (ExportRequested, "Asks for an export. Key: the project id."),
    IMPORT_REQUESTED: (
        ImportRequested,
        "Asks for a CSV file to be imported into a dataset (contacts). Key: the project id.",
    ),
    CANCEL_REQUESTED: (
        CancelRequested,
        (
            "Asks to stop a job: a pending one at once, a running one within seconds. Key: "
            "the project id (so it follows the request it cancels)."
        ),
    ),
    JOB_STATUS_CHANGED: (
        JobStatusChanged,
        "A job changed status. `data` is the job as the API shows it, plus `previous_status`.",
    ),
    JOB_UPDATED: (
        JobUpdated,
        "A job changed without changing status (progress, a new attempt).",
    ),
}


def generate_documents() -> dict[str, dict[str, Any]]:
    """Relative path -> JSON document."""
    documents: dict[str, dict[str, Any]] = {}
    for event_type, (model, description) in _EVENTS.items():
        schema = model.model_json_schema()
        schema["$id"] = f"https://ferry.dev/schemas/events/{event_type}.json"
        schema["description"] = description
        documents[f"events/{event_type}.json"] = schema
    for name, dataset in sorted(all_datasets().items()):
        documents[f"datasets/{name}.json"] = {
            "title": name,
            "description": dataset.description,
            "columns": [column.name for column in dataset.columns],
            "filters": dataset.filters_model.model_json_schema(),
            "record": dataset.record_model.model_json_schema(by_alias=True),
        }
    payload = WebhookPayload.model_json_schema()
    payload["$id"] = "https://ferry.dev/schemas/webhooks/payload.json"
    payload["description"] = (
        "The JSON body of every webhook, POSTed with the Standard Webhooks headers webhook-id "
        "(the status event's id, the same on every retry), webhook-timestamp and "
        "webhook-signature."
    )
    documents["webhooks/payload.json"] = payload
    documents["asyncapi.json"] = asyncapi_document()
    documents["errors.json"] = {
        "title": "Ferry's error codes",
        "description": "Every code a requester or an operator can read (see error-codes.md).",
        "codes": [
            {
                "code": code.value,
                "http_status": code.http_status,
                "transient": code.transient,
                "meaning": code.meaning,
            }
            for code in ErrorCode
        ],
    }
    documents["openapi.json"] = create_app(_placeholder_settings()).openapi()
    return documents


def asyncapi_document() -> dict[str, Any]:
    topics = KafkaSettings()  # the default topic names; each is a setting
    schemas: dict[str, Any] = {}
    messages: dict[str, Any] = {}
    for event_type, (model, description) in _EVENTS.items():
        payload = model.model_json_schema(ref_template="#/components/schemas/{model}")
        schemas.update(payload.pop("$defs", {}))
        schemas[model.__name__] = payload
        messages[model.__name__] = {
            "name": event_type,
            "title": event_type,
            "summary": description,
            "contentType": CLOUDEVENTS_CONTENT_TYPE,
            "payload": {"$ref": f"#/components/schemas/{model.__name__}"},
        }
    messages["DeadLetter"] = {
        "name": "dead-letter",
        "title": "Dead letter",
        "summary": "A request that could not become a job: its original bytes, unchanged, with "
        "the reason in the headers ferry-dlq-code, ferry-dlq-reason, ferry-dlq-topic, "
        "ferry-dlq-partition, ferry-dlq-offset, ferry-dlq-at.",
        "contentType": "application/octet-stream",
        "payload": {"type": "string", "format": "binary"},
    }

    def ref(message: str) -> dict[str, str]:
        return {"$ref": f"#/components/messages/{message}"}

    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": "Ferry events",
            "version": API_VERSION,
            "description": "Requests in, status events out. Every event is a CloudEvents 1.0 "
            "JSON object (structured mode). Topic names are settings; defaults shown.",
        },
        "defaultContentType": CLOUDEVENTS_CONTENT_TYPE,
        "channels": {
            "requests": {
                "address": topics.requests_topic,
                "description": "Export, import and cancel requests. Key: the project id.",
                "messages": {
                    "ExportRequested": ref("ExportRequested"),
                    "ImportRequested": ref("ImportRequested"),
                    "CancelRequested": ref("CancelRequested"),
                },
            },
            "status": {
                "address": topics.status_topic,
                "description": "Every published change of a job, in order per job. Key: the "
                "job id. `data.version` increases strictly per job; drop what you have seen.",
                "messages": {
                    "JobStatusChanged": ref("JobStatusChanged"),
                    "JobUpdated": ref("JobUpdated"),
                },
            },
            "deadLetters": {
                "address": topics.dead_letter_topic,
                "description": "Requests that cannot be attributed to a project or parsed.",
                "messages": {"DeadLetter": ref("DeadLetter")},
            },
        },
        "operations": {
            "receiveRequests": {
                "action": "receive",
                "channel": {"$ref": "#/channels/requests"},
                "messages": [
                    {"$ref": "#/channels/requests/messages/ExportRequested"},
                    {"$ref": "#/channels/requests/messages/ImportRequested"},
                    {"$ref": "#/channels/requests/messages/CancelRequested"},
                ],
            },
            "sendStatus": {
                "action": "send",
                "channel": {"$ref": "#/channels/status"},
                "messages": [
                    {"$ref": "#/channels/status/messages/JobStatusChanged"},
                    {"$ref": "#/channels/status/messages/JobUpdated"},
                ],
            },
            "sendDeadLetters": {
                "action": "send",
                "channel": {"$ref": "#/channels/deadLetters"},
                "messages": [{"$ref": "#/channels/deadLetters/messages/DeadLetter"}],
            },
        },
        "components": {"messages": messages, "schemas": schemas},
    }


SETTINGS_START = "<!-- settings:start (generated by `ferry schemas`; do not edit) -->"
SETTINGS_END = "<!-- settings:end -->"


def settings_reference() -> str:
    """A Markdown table of every setting: variable, default, meaning."""
    lines = ["| Variable | Default | Meaning |", "| --- | --- | --- |"]
    for name, field in Settings.model_fields.items():
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            for sub_name, sub_field in annotation.model_fields.items():
                lines.append(
                    f"| `FERRY_{name.upper()}__{sub_name.upper()}` | {_default_text(sub_field)} "
                    f"| {sub_field.description or ''} |"
                )
        else:
            lines.append(
                f"| `FERRY_{name.upper()}` | {_default_text(field)} | {field.description or ''} |"
            )
    lines += [
        "",
        (
            "Moved to the group they govern; the old names are still read for one release, "
            "with a warning at start naming the new one (when both are set, the new one wins):"
        ),
        "",
    ]
    lines += [
        f"- `FERRY_{old[0].upper()}__{old[1].upper()}` is now "
        f"`FERRY_{new[0].upper()}__{new[1].upper()}`"
        for old, new in MOVED_SETTINGS.items()
    ]
    return "\n".join(lines)


def _default_text(field: FieldInfo) -> str:
    if field.is_required():
        return "**required**"
    default = field.get_default(call_default_factory=True)
    if isinstance(default, SecretStr):
        default = default.get_secret_value()
    if isinstance(default, bool):
        default = str(default).lower()  # as written in the environment
    return "(none)" if default is None else f"`{default}`"


def readme_with_settings(readme: str) -> str:
    """`readme` with its settings block replaced by the current reference."""
    head, _, rest = readme.partition(SETTINGS_START)
    _, _, tail = rest.partition(SETTINGS_END)
    return f"{head}{SETTINGS_START}\n{settings_reference()}\n{SETTINGS_END}{tail}"


def render(document: dict[str, Any]) -> str:
    return json.dumps(document, indent=2, sort_keys=True) + "\n"


def generate_texts() -> dict[str, str]:
    """Relative path -> generated text that is not JSON (pages for people)."""
    return {"error-codes.md": error_codes_markdown()}


def write_documents(directory: Path, readme: Path | None = None) -> list[Path]:
    written = []
    if readme is not None and readme.exists():
        readme.write_text(readme_with_settings(readme.read_text()))
        written.append(readme)
    for relative, document in generate_documents().items():
        path = directory / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(render(document))
        written.append(path)
    for relative, text in generate_texts().items():
        path = directory / relative
        path.write_text(text)
        written.append(path)
    return written


def stale_documents(directory: Path) -> list[str]:
    """Documents missing from `directory` or different from what the code generates."""
    stale = []
    for relative, document in generate_documents().items():
        path = directory / relative
        if not path.exists() or path.read_text() != render(document):
            stale.append(relative)
    for relative, text in generate_texts().items():
        path = directory / relative
        if not path.exists() or path.read_text() != text:
            stale.append(relative)
    return stale


def _placeholder_settings() -> Settings:
    # The OpenAPI document depends on the routes only; no setting from the environment may
    # change it, so it is built from defaults with stand-in credentials (development: they
    # include no key encrypting webhook secrets).
    return settings_from(
        {"environment": "development", "s3": {"access_key": "unused", "secret_key": "unused"}}
    )
