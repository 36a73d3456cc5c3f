"""A status event becomes the webhook body: `{type, timestamp, data}` with data exactly the job
as /v1 shows it. Other events make no webhook; a broken one is reported, not retried."""

from __future__ import annotations

import contextlib
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from service.jobs.status import JobStatus
from service.jobs.view import job_view
from service.webhooks.payload import UnreadableEventError, WebhookPayload, webhook_message
from tests.support import poison
from tests.support.status_events import a_job, encoded, progress_event, status_event


def test_the_body_is_type_timestamp_and_the_job_as_the_api_shows_it() -> None:
    job = a_job("proj_1", status=JobStatus.COMPLETED, version=4, notify_url="https://x.example/h")
    event = status_event(job, event_id="evt-42")
    message = webhook_message(encoded(event))
    assert message is not None
    body = json.loads(message.body)
    assert body == {"type": "export.completed", "timestamp": event["time"], "data": job_view(job)}
    assert "previous_status" not in body["data"]
    assert (message.event_id, message.event_type, message.job_id) == (
        "evt-42",
        "export.completed",
        job.id,
    )
    assert (message.project_id, message.version, message.notify_url) == (
        "proj_1",
        4,
        "https://x.example/h",
    )
    WebhookPayload.model_validate(body)  # the published schema describes it


@pytest.mark.parametrize("status", list(JobStatus))
def test_every_status_change_has_its_type(status: JobStatus) -> None:
    message = webhook_message(encoded(status_event(a_job("p", status=status))))
    assert message is not None
    assert message.event_type == f"export.{status.value}"


def test_progress_events_make_no_webhook() -> None:
    assert webhook_message(encoded(progress_event(a_job("p")))) is None


@pytest.mark.parametrize(
    "raw",
    [
        b"not json",
        b"\xff",
        b"[1]",
        json.dumps({"type": "ferry.job.status_changed.v1", "data": {}}).encode(),
    ],
)
def test_a_broken_status_event_is_unreadable(raw: bytes) -> None:
    with pytest.raises(UnreadableEventError):
        webhook_message(raw)


@settings(max_examples=300, deadline=None)
@given(st.one_of(poison.structured, st.binary(max_size=200)))
def test_any_record_is_a_message_none_or_unreadable(raw: bytes) -> None:
    # Never anything else: any other exception would redeliver the dispatcher's whole batch.
    with contextlib.suppress(UnreadableEventError):
        assert webhook_message(raw) is None or raw.startswith(b"{")
