"""Echoed input is capped: whatever a request holds, its job's status event stays small."""

from __future__ import annotations

import json
import uuid

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from service.clock import utcnow
from service.echo import ECHO_LIMIT, capped, capped_value
from service.jobs.from_request import failed_job
from service.jobs.model import Job
from service.jobs.outbox import MAX_STATUS_EVENT_BYTES, outbox_entry
from service.jobs.status import JobStatus
from service.jobs.view import job_view

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda children: (
        st.lists(children, max_size=80) | st.dictionaries(st.text(), children, max_size=80)
    ),
    max_leaves=120,
)


@given(st.text())
def test_a_capped_string_keeps_its_start_and_says_what_was_cut(text: str) -> None:
    shown = capped(text)
    assert shown.startswith(text[:ECHO_LIMIT])
    assert len(shown) <= ECHO_LIMIT + 40
    assert (shown == text) is (len(text) <= ECHO_LIMIT)


def test_a_long_string_names_how_much_was_cut() -> None:
    assert capped("x" * (ECHO_LIMIT + 12)).endswith("[12 more characters]")


@settings(max_examples=40)
@given(json_values)
def test_any_json_value_is_bounded_once_capped(value: object) -> None:
    # 50 items of 50 items of 50 items of a few hundred characters at most, whatever came in.
    assert len(json.dumps(capped_value(value))) < 50**3 * (ECHO_LIMIT + 60)


def job(**fields: object) -> Job:
    now = utcnow()
    values: dict[str, object] = {
        "id": str(uuid.uuid4()),
        "project_id": "p1",
        "dataset": "messages",
        "request_source": "/tests",
        "request_id": str(uuid.uuid4()),
        "status": JobStatus.PENDING,
        "created_at": now,
        "updated_at": now,
    }
    values.update(fields)
    return Job(**values)


@settings(max_examples=25, suppress_health_check=[HealthCheck.too_slow])  # large on purpose
@given(
    dataset=st.text(min_size=1, max_size=2_000),
    filters=st.dictionaries(st.text(max_size=1_000), json_values, max_size=10),
)
def test_a_failed_requests_event_is_small_whatever_it_echoes(
    dataset: str, filters: dict[str, object]
) -> None:
    failed = failed_job(
        job(dataset=dataset * 100, filters=filters),
        "UNKNOWN_DATASET",
        f"unknown dataset {dataset * 100!r}",
    )
    view = job_view(failed)
    assert len(view["dataset"]) <= ECHO_LIMIT + 40
    assert len(view["error_message"]) <= ECHO_LIMIT + 40
    entry = outbox_entry(key=failed.id, event={"data": view})
    assert "oversize" not in entry


def test_the_560_kb_dataset_name_of_the_issue_makes_a_few_kb_event() -> None:
    name = "d" * 560_000
    failed = failed_job(job(dataset=name), "UNKNOWN_DATASET", f"unknown dataset {name}")
    size = len(json.dumps(job_view(failed)))
    assert size < 4_000 < MAX_STATUS_EVENT_BYTES


def test_an_event_over_the_limit_is_marked_when_written() -> None:
    entry = outbox_entry(key="k", event={"data": "x" * 2_000}, max_bytes=1_000)
    assert entry["oversize"] > 1_000
