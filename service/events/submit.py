"""Building and publishing requests, for the CLI, the demo and tests: what an upstream service
does when it asks Ferry for an export or an import."""

from __future__ import annotations

import json
from typing import Any

from aiokafka import AIOKafkaProducer

from service.clock import utcnow, uuid7
from service.config import KafkaSettings
from service.contracts.envelope import (
    CANCEL_REQUESTED,
    EXPORT_REQUESTED,
    IMPORT_REQUESTED,
    make_event,
)


def export_request(
    *,
    project_id: str,
    filters: dict[str, Any],
    dataset: str = "messages",
    export_format: str = "csv",
    compression: str = "none",
    columns: list[str] | None = None,
    job_id: str | None = None,
    idempotency_key: str | None = None,
    notify_url: str | None = None,
    max_file_bytes: int | None = None,
    max_rows_per_file: int | None = None,
    source: str = "/ferry/cli",
) -> dict[str, Any]:
    """A `ferry.export.requested.v1` CloudEvent. Optional fields left out are not sent."""
    data: dict[str, Any] = {
        "project_id": project_id,
        "job_id": job_id,
        "dataset": dataset,
        "filters": filters,
        "format": export_format,
        "compression": compression,
        "columns": columns,
        "idempotency_key": idempotency_key,
        "notify_url": notify_url,
        "max_file_bytes": max_file_bytes,
        "max_rows_per_file": max_rows_per_file,
    }
    return _request(EXPORT_REQUESTED, source=source, subject=project_id, data=data)


def import_request(
    *,
    project_id: str,
    source: dict[str, str],
    dataset: str = "contacts",
    job_id: str | None = None,
    encoding: str | None = None,
    update_existing: bool | None = None,
    empty_attributes: bool | None = None,
    list_ids: list[int] | None = None,
    dry_run: bool | None = None,
    idempotency_key: str | None = None,
    notify_url: str | None = None,
    source_uri: str = "/ferry/cli",
) -> dict[str, Any]:
    """A `ferry.import.requested.v1` CloudEvent. Options left out take their defaults."""
    data: dict[str, Any] = {
        "project_id": project_id,
        "job_id": job_id,
        "dataset": dataset,
        "source": source,
        "format": "csv",
        "encoding": encoding,
        "update_existing": update_existing,
        "empty_attributes": empty_attributes,
        "list_ids": list_ids,
        "dry_run": dry_run,
        "idempotency_key": idempotency_key,
        "notify_url": notify_url,
    }
    return _request(IMPORT_REQUESTED, source=source_uri, subject=project_id, data=data)


def cancel_request(
    project_id: str, job_id: str, *, reason: str | None = None, source: str = "/ferry/cli"
) -> dict[str, Any]:
    """A `ferry.job.cancel_requested.v1` CloudEvent."""
    data = {"project_id": project_id, "job_id": job_id, "reason": reason}
    return _request(CANCEL_REQUESTED, source=source, subject=job_id, data=data)


def _request(event_type: str, *, source: str, subject: str, data: dict[str, Any]) -> dict[str, Any]:
    """A request CloudEvent; fields left as None are not sent, so they take their defaults."""
    return make_event(
        event_id=uuid7(),
        source=source,
        event_type=event_type,
        subject=subject,
        time=utcnow(),
        data={name: value for name, value in data.items() if value is not None},
    )


async def publish_request(settings: KafkaSettings, event: dict[str, Any]) -> None:
    """Publish one request, keyed by project id (so a cancel follows the request it cancels),
    and wait for the broker's acknowledgement."""
    producer = AIOKafkaProducer(
        bootstrap_servers=settings.bootstrap_servers,
        acks="all",
        enable_idempotence=settings.idempotent_producer,
    )
    await producer.start()
    try:
        await producer.send_and_wait(
            settings.requests_topic,
            json.dumps(event).encode(),
            key=str(event["data"]["project_id"]).encode(),
            headers=[("content-type", b"application/cloudevents+json; charset=UTF-8")],
        )
    finally:
        await producer.stop()
