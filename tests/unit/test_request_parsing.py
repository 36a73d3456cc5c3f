"""A request's bytes become a pending job, a failed job, or a dead letter with a reason."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest

from service.clock import utcnow
from service.contracts.envelope import CANCEL_REQUESTED, EXPORT_REQUESTED, IMPORT_REQUESTED
from service.contracts.requests import Rejected
from service.events.requests import Intent, parse_request
from service.exports.request import export_job_from_request
from service.imports.request import ImportRequests
from service.jobs.cancellation import CancelJob, cancel_from_request
from service.jobs.model import Job
from service.jobs.status import JobStatus
from service.jobs.view import job_view

HANDLERS = {EXPORT_REQUESTED: export_job_from_request, CANCEL_REQUESTED: cancel_from_request}
FILTERS = {"start_time": "2025-12-01T00:00:00Z", "end_time": "2025-12-07T00:00:00Z"}


def event(data: Any = None, **envelope: Any) -> dict[str, Any]:
    return {
        "specversion": "1.0",
        "id": "evt-1",
        "source": "/crm",
        "type": EXPORT_REQUESTED,
        "data": {"project_id": "proj_1", "filters": FILTERS} if data is None else data,
        **envelope,
    }


def parse(document: Any, max_bytes: int = 10_000) -> Intent:
    raw = document if isinstance(document, bytes) else json.dumps(document).encode()
    return parse_request(raw, max_bytes=max_bytes, handlers=HANDLERS, now=utcnow())


def test_a_valid_request_is_a_pending_job_with_a_uuid7() -> None:
    job = parse(event())
    assert isinstance(job, Job)
    assert job.status is JobStatus.PENDING
    assert uuid.UUID(job.id).version == 7
    assert (job.project_id, job.request_source, job.request_id) == ("proj_1", "/crm", "evt-1")
    assert (job.format, job.compression, job.dataset) == ("csv", "none", "messages")


def test_the_callers_job_id_and_options_are_kept() -> None:
    chosen = str(uuid.uuid4())
    job = parse(
        event(
            {
                "project_id": "proj_1",
                "job_id": chosen.upper(),
                "filters": FILTERS,
                "format": "jsonl",
                "compression": "gzip",
                "columns": ["id", "status"],
                "idempotency_key": "k-1",
            }
        )
    )
    assert isinstance(job, Job)
    assert (job.id, job.format, job.compression) == (chosen, "jsonl", "gzip")
    assert (job.columns, job.idempotency_key) == (["id", "status"], "k-1")


@pytest.mark.parametrize(
    ("document", "code"),
    [
        (b"{not json", "INVALID_JSON"),
        (b"\xff\xfe", "INVALID_JSON"),
        ([1, 2], "INVALID_CLOUDEVENT"),
        ({"id": "x"}, "INVALID_CLOUDEVENT"),
        (event(specversion="0.3"), "INVALID_CLOUDEVENT"),
        (event(type="ferry.export.requested.v9"), "UNKNOWN_EVENT_TYPE"),
        (event({"filters": FILTERS}), "MISSING_PROJECT_ID"),
        (event({"project_id": "", "filters": FILTERS}), "MISSING_PROJECT_ID"),
        (event({"project_id": "../etc", "filters": FILTERS}), "MISSING_PROJECT_ID"),
        (event("just a string"), "MISSING_PROJECT_ID"),
    ],
)
def test_unattributable_requests_are_dead_lettered(document: Any, code: str) -> None:
    verdict = parse(document)
    assert isinstance(verdict, Rejected)
    assert verdict.code == code
    assert verdict.reason


def test_an_oversized_event_is_dead_lettered_before_parsing() -> None:
    verdict = parse(event(), max_bytes=50)
    assert isinstance(verdict, Rejected)
    assert verdict.code == "EVENT_TOO_LARGE"
    assert "limit is 50" in verdict.reason


@pytest.mark.parametrize(
    ("data", "code", "says"),
    [
        ({"dataset": "invoices", "filters": FILTERS}, "UNKNOWN_DATASET", "invoices"),
        (
            {"filters": {"start_time": FILTERS["end_time"], "end_time": FILTERS["start_time"]}},
            "INVALID_TIME_RANGE",
            "must be after",
        ),
        ({"filters": {**FILTERS, "status": "nope"}}, "INVALID_FILTER", "filters.status"),
        ({"filters": FILTERS, "columns": ["id", "x"]}, "INVALID_COLUMNS", "'x'"),
        ({"filters": FILTERS, "format": "xlsx"}, "INVALID_REQUEST", "data.format"),
        ({"filters": FILTERS, "job_id": "not-a-uuid"}, "INVALID_REQUEST", "data.job_id"),
        ({"filters": FILTERS, "colour": "red"}, "INVALID_REQUEST", "data.colour"),
        ({}, "INVALID_REQUEST", "data.filters"),
    ],
)
def test_invalid_requests_with_a_project_become_failed_jobs(
    data: dict[str, Any], code: str, says: str
) -> None:
    job = parse(event({"project_id": "proj_1", **data}))
    assert isinstance(job, Job)
    assert job.status is JobStatus.FAILED
    assert job.error_code == code
    assert says in (job.error_message or "")
    assert job.completed_at == job.created_at


def test_a_notify_url_is_kept_on_the_job_and_shown_in_its_view() -> None:
    url = "https://crm.example.com/hooks/ferry?tenant=7"
    job = parse(event({"project_id": "proj_1", "filters": FILTERS, "notify_url": url}))
    assert isinstance(job, Job)
    assert job.status is JobStatus.PENDING
    assert job.notify_url == url
    assert job_view(job)["notify_url"] == url


@pytest.mark.parametrize(
    ("notify_url", "says"),
    [
        ("ftp://crm.example.com/x", "http:// or https://"),
        ("crm.example.com/hook", "http:// or https://"),
        ("https://user:secret@crm.example.com/", "credentials"),
        (42, "must be a string"),
    ],
)
def test_an_invalid_notify_url_fails_the_job_with_its_own_code(notify_url: Any, says: str) -> None:
    job = parse(event({"project_id": "proj_1", "filters": FILTERS, "notify_url": notify_url}))
    assert isinstance(job, Job)
    assert job.status is JobStatus.FAILED
    assert job.error_code == "INVALID_NOTIFY_URL"
    assert (job.error_message or "").startswith("data.notify_url: ")
    assert says in (job.error_message or "")
    assert job.notify_url is None  # nothing is ever sent to it


def test_a_failed_request_still_notifies_its_valid_notify_url() -> None:
    url = "https://crm.example.com/hooks/ferry"
    job = parse(event({"project_id": "proj_1", "filters": {}, "notify_url": url}))
    assert isinstance(job, Job)
    assert (job.status, job.error_code) == (JobStatus.FAILED, "INVALID_FILTER")
    assert job.notify_url == url


def test_a_cancel_request_names_the_job() -> None:
    job_id = str(uuid.uuid4())
    intent = parse(
        event(
            {"project_id": "proj_1", "job_id": job_id, "reason": "wrong range"},
            type=CANCEL_REQUESTED,
        )
    )
    assert intent == CancelJob("proj_1", job_id, "wrong range")


def test_an_unreadable_cancel_request_is_dead_lettered() -> None:
    verdict = parse(event({"project_id": "proj_1", "job_id": "nope"}, type=CANCEL_REQUESTED))
    assert isinstance(verdict, Rejected)
    assert verdict.code == "INVALID_REQUEST"
    assert "data.job_id" in verdict.reason


@pytest.mark.parametrize(
    ("data", "says"),
    [
        ({"filters": {**FILTERS, "start\x00": 1}}, 'data.filters."start\\u0000": a key may not'),
        ({"filters": {**FILTERS, "$where": "1"}}, 'data.filters."$where": a key may not'),
        ({"filters": {**FILTERS, "a.b": 1}}, 'data.filters."a.b": a key may not'),
        ({"filters": {**FILTERS, "status": 2**64}}, "data.filters.status: integer outside"),
        ({"filters": {**FILTERS, "status": -(2**63) - 1}}, "data.filters.status: integer outside"),
        ({"filters": {**FILTERS, "status": "\ud800"}}, "lone UTF-16 surrogate"),
        ({"filters": {**FILTERS, "status": "x" * 9000}}, "a string of 9000 characters"),
        ({"filters": {**FILTERS, "x": json.loads("[" * 40 + "]" * 40)}}, "nested more than 32"),
        ({"filters": FILTERS, "columns": ["\udfff"]}, "data.columns[0]: a string holding"),
    ],
)
def test_a_request_the_database_cannot_hold_is_a_failed_job_keeping_none_of_it(
    data: dict[str, Any], says: str
) -> None:
    job = parse(event({"project_id": "proj_1", "idempotency_key": "k", **data}))
    assert isinstance(job, Job)
    assert (job.status, job.error_code) == (JobStatus.FAILED, "UNSUPPORTED_VALUE")
    assert says in (job.error_message or "")
    assert (job.filters, job.columns, job.idempotency_key) == ({}, None, "k")
    (job.error_message or "").encode()  # the reason itself is storable: no surrogate, no NUL
    assert "\x00" not in (job.error_message or "")


def test_an_import_beyond_64_bits_is_a_failed_job() -> None:
    data = {"project_id": "proj_1", "source": {"url": "https://x.test/c.csv"}, "list_ids": [2**64]}
    verdict = parse_request(
        json.dumps(event(data, type=IMPORT_REQUESTED)).encode(),
        max_bytes=10_000,
        handlers={IMPORT_REQUESTED: ImportRequests(own_bucket="f", source_buckets=frozenset())},
        now=utcnow(),
    )
    assert isinstance(verdict, Job)
    assert (verdict.kind, verdict.error_code, verdict.options) == (
        "import",
        "UNSUPPORTED_VALUE",
        None,
    )
    assert "data.list_ids[0]: integer outside" in (verdict.error_message or "")


@pytest.mark.parametrize(
    ("raw", "code", "says"),
    [
        (b"[" * 5000, "INVALID_JSON", "nested too deep"),
        (b"{" * 3000, "INVALID_JSON", "not a JSON document"),
        (b'{"specversion": "1.0", "data": NaN}', "INVALID_JSON", "NaN is not JSON"),
        (b'{"data": ' + b"9" * 5000 + b"}", "INVALID_JSON", "not a JSON document"),
        (json.dumps(event(id="\ud800")).encode(), "INVALID_CLOUDEVENT", "id: a string holding"),
        (
            json.dumps(event(source="s" * 9000)).encode(),
            "INVALID_CLOUDEVENT",
            "source: a string of",
        ),
        (json.dumps(event(subject={"$x": 1})).encode(), "INVALID_CLOUDEVENT", 'subject."$x"'),
    ],
)
def test_an_event_the_database_cannot_hold_is_dead_lettered(
    raw: bytes, code: str, says: str
) -> None:
    verdict = parse(raw, max_bytes=100_000)
    assert isinstance(verdict, Rejected)
    assert verdict.code == code
    assert says in verdict.reason


def test_a_cancel_the_database_cannot_hold_is_dead_lettered() -> None:
    data = {"project_id": "proj_1", "job_id": str(uuid.uuid4()), "reason": "\ud800"}
    verdict = parse(event(data, type=CANCEL_REQUESTED))
    assert isinstance(verdict, Rejected)
    assert (verdict.code, verdict.reason.split(":")[0]) == ("UNSUPPORTED_VALUE", "data.reason")


def test_a_parquet_export_is_a_pending_job_and_gzip_with_it_is_refused() -> None:
    job = parse(event({"project_id": "proj_1", "filters": FILTERS, "format": "parquet"}))
    assert isinstance(job, Job)
    assert (job.status, job.format, job.compression) == (JobStatus.PENDING, "parquet", "none")
    refused = parse(
        event(
            {"project_id": "proj_1", "filters": FILTERS, "format": "parquet", "compression": "gzip"}
        )
    )
    assert isinstance(refused, Job)
    assert (refused.status, refused.error_code) == (JobStatus.FAILED, "INVALID_REQUEST")
    assert "use compression 'none' with parquet" in (refused.error_message or "")


def test_a_parquet_export_splits_by_rows_and_refuses_a_byte_limit() -> None:
    by_rows = parse(
        event(
            {
                "project_id": "proj_1",
                "filters": FILTERS,
                "format": "parquet",
                "max_rows_per_file": 1000,
            }
        )
    )
    assert isinstance(by_rows, Job)
    assert (by_rows.status, by_rows.max_rows_per_file) == (JobStatus.PENDING, 1000)
    by_bytes = parse(
        event(
            {
                "project_id": "proj_1",
                "filters": FILTERS,
                "format": "parquet",
                "max_file_bytes": 10_000_000,
            }
        )
    )
    assert isinstance(by_bytes, Job)
    assert (by_bytes.status, by_bytes.error_code) == (JobStatus.FAILED, "INVALID_REQUEST")
    assert "max_file_bytes is not supported with parquet" in (by_bytes.error_message or "")
    assert "max_rows_per_file" in (by_bytes.error_message or "")
