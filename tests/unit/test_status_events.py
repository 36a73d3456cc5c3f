"""Status events are written and read as the same models: what the outbox writes, the one
reader (the API's feed, the webhooks) reads back as the job's view, on the wire unchanged;
and no bytes make the reader raise anything but its own error."""

from __future__ import annotations

import json
import re
from datetime import timedelta

from hypothesis import given
from hypothesis import strategies as st

from service.contracts.envelope import JOB_STATUS_CHANGED, JOB_UPDATED
from service.contracts.status_events import (
    JobStatusChanged,
    JobUpdated,
    UnreadableStatusEventError,
    read_status_event,
    view_of,
)
from service.jobs.outbox import encode_event, status_entry
from service.jobs.status import JobStatus
from service.jobs.view import job_view
from tests.support import poison
from tests.support.status_events import a_job

# As Ferry has always written event times: UTC with `Z`, milliseconds only when there are any.
_WIRE_TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{3})?Z$")


def test_a_status_change_is_read_back_as_the_model_it_was_written_as() -> None:
    job = a_job("proj_1", status=JobStatus.COMPLETED, version=4)
    job = job.model_copy(update={"updated_at": job.updated_at + timedelta(microseconds=123456)})
    entry = status_entry(job, JobStatus.PROCESSING, source="/tests")
    wire = encode_event(entry["event"])
    assert entry["event"]["type"] == JOB_STATUS_CHANGED
    assert _WIRE_TIME.match(entry["event"]["time"])
    assert entry["event"]["data"]["previous_status"] == "processing"

    event = read_status_event(wire)
    assert isinstance(event, JobStatusChanged)
    assert event.data.previous_status is JobStatus.PROCESSING
    assert view_of(event) == job_view(job)
    # Written again, it is the same JSON object.
    assert event.model_dump(mode="json") == json.loads(wire)


def test_a_change_that_keeps_the_status_is_an_update_without_previous_status() -> None:
    job = a_job("proj_1", status=JobStatus.PROCESSING, version=2)
    entry = status_entry(job, JobStatus.PROCESSING, source="/tests")
    assert entry["event"]["type"] == JOB_UPDATED
    assert "previous_status" not in entry["event"]["data"]
    event = read_status_event(encode_event(entry["event"]))
    assert isinstance(event, JobUpdated)
    assert view_of(event) == job_view(job)


def test_a_new_job_has_no_previous_status() -> None:
    entry = status_entry(a_job("proj_1", status=JobStatus.PENDING), None, source="/tests")
    assert entry["event"]["type"] == JOB_STATUS_CHANGED
    assert entry["event"]["data"]["previous_status"] is None


def test_events_of_other_types_are_not_status_events() -> None:
    assert read_status_event(b'{"type": "ferry.export.requested.v1", "data": {}}') is None


# Records that claim to be status events, whatever their envelope and data hold.
_forged = st.builds(
    lambda event_type, data, time: poison.encode(
        {
            "specversion": "1.0",
            "id": "e",
            "source": "/x",
            "type": event_type,
            "time": time,
            "subject": "j",
            "data": data,
        }
    ),
    st.sampled_from([JOB_STATUS_CHANGED, JOB_UPDATED]),
    poison.json_values,
    st.one_of(st.none(), st.text(max_size=30), st.integers()),
)


@given(st.one_of(poison.structured, _forged, st.binary(max_size=200)))
def test_no_bytes_make_the_reader_raise_anything_but_its_own_error(raw: bytes) -> None:
    try:
        event = read_status_event(raw)
    except UnreadableStatusEventError:
        return
    assert event is None or isinstance(event, JobStatusChanged | JobUpdated)
