"""Whatever a request held, its job reads as both official SDKs read it: HookBridge's client
parses every view (required date-times included) and Brevo's process name is a real one."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, get_args

from hookbridge.client import _parse_export_record
from hypothesis import given
from hypothesis import strategies as st

from service.api.processes import _name
from service.jobs.from_request import failed_job
from service.jobs.model import Job, JobKind
from service.jobs.status import JobStatus
from service.jobs.view import OPEN_END, OPEN_START, JobView, job_view
from tests.support.seed_shapes import BREVO_NAMES, SEED_TIMESTAMP

CREATED = datetime(2025, 12, 6, 12, 0, 0, 123000, tzinfo=UTC)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3)
    ),
    max_leaves=8,
)
filters = st.dictionaries(
    st.sampled_from(["start_time", "end_time", "status", "list_id", "modified_since"])
    | st.text(max_size=10),
    json_values
    | st.sampled_from(["2025-12-01T00:00:00Z", "2025-12-07T00:00:00+02:00", "yesterday"]),
    max_size=4,
)


def a_job(dataset: str, kind: JobKind, raw: dict[str, Any], status: JobStatus) -> Job:
    job = Job(
        id="0193a000-0000-7000-8000-000000000000",
        project_id="p",
        kind=kind,
        process_id=7,
        dataset=dataset,
        filters=raw,
        request_source="/t",
        request_id="r",
        status=JobStatus.PENDING,
        created_at=CREATED,
        updated_at=CREATED,
    )
    return failed_job(job, "INVALID_FILTER", "filters: bad") if status is JobStatus.FAILED else job


@given(
    dataset=st.sampled_from(["messages", "contacts"]) | st.text(max_size=12),
    kind=st.sampled_from(list(get_args(JobKind))),
    raw=filters,
    status=st.sampled_from([JobStatus.PENDING, JobStatus.FAILED]),
)
def test_every_view_parses_with_hookbridge_and_has_a_brevo_name(
    dataset: str, kind: JobKind, raw: dict[str, Any], status: JobStatus
) -> None:
    view = job_view(a_job(dataset, kind, raw, status))
    JobView.model_validate(view)
    record = _parse_export_record(view)
    assert record.filter_start_time <= record.filter_end_time
    assert SEED_TIMESTAMP.fullmatch(view["created_at"])
    assert _name(view) in BREVO_NAMES
    if view["requested_filters"] is not None:  # not understood: the open range, as documented
        assert (view["filter_start_time"], view["filter_end_time"]) == (OPEN_START, OPEN_END)


def test_a_contact_exports_range_starts_at_modified_since() -> None:
    since = {"modified_since": "2025-12-01T00:00:00Z"}
    view = job_view(a_job("contacts", "export", since, JobStatus.PENDING))
    assert (view["filter_start_time"], view["filter_end_time"]) == (
        "2025-12-01T00:00:00Z",
        OPEN_END,
    )
    assert view["filter_modified_since"] == "2025-12-01T00:00:00Z"
    assert view["requested_filters"] is None
    bad = job_view(
        a_job("messages", "export", {"start_time": "yesterday", "end_time": 5}, JobStatus.FAILED)
    )
    assert bad["requested_filters"] == {"start_time": "yesterday", "end_time": 5}
    assert "filter_status" not in bad
