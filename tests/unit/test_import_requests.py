"""An import request's bytes become a pending import job, or a failed one saying what to fix."""

from __future__ import annotations

import json
from typing import Any

import pytest

from service.clock import utcnow
from service.contracts.envelope import IMPORT_REQUESTED
from service.events.requests import parse_request
from service.imports.request import ImportRequests
from service.jobs.model import Job
from service.jobs.status import JobStatus

HANDLERS = {
    IMPORT_REQUESTED: ImportRequests(own_bucket="ferry", source_buckets=frozenset({"crm-drop"}))
}
SOURCE = {"bucket": "ferry", "key": "uploads/proj_1/contacts.csv"}


def parse(**data: Any) -> Job:
    event = {
        "specversion": "1.0",
        "id": "evt-1",
        "source": "/crm",
        "type": IMPORT_REQUESTED,
        "data": {"project_id": "proj_1", "source": SOURCE, **data},
    }
    job = parse_request(
        json.dumps(event).encode(), max_bytes=10_000, handlers=HANDLERS, now=utcnow()
    )
    assert isinstance(job, Job)
    return job


def test_a_valid_request_is_a_pending_import_with_its_options() -> None:
    job = parse(list_ids=[3, 3, 1], dry_run=True, encoding="latin-1", idempotency_key="k")
    assert (job.status, job.kind, job.dataset) == (JobStatus.PENDING, "import", "contacts")
    assert job.source is not None
    assert (job.source.bucket, job.source.key) == ("ferry", "uploads/proj_1/contacts.csv")
    assert job.options is not None
    assert (job.options.list_ids, job.options.dry_run, job.options.update_existing) == (
        [1, 3],
        True,
        True,
    )
    assert job.idempotency_key == "k"
    assert parse(source={"url": "https://files.example.com/c.csv?sig=x"}).source is not None
    assert parse(source={"bucket": "crm-drop", "key": "any/where.csv"}).status is JobStatus.PENDING


@pytest.mark.parametrize(
    ("data", "code", "words"),
    [
        ({"source": {"bucket": "ferry", "key": "uploads/other/c.csv"}}, "INVALID_SOURCE", "under"),
        ({"source": {"bucket": "ferry", "key": "exports/proj_1/x.csv"}}, "INVALID_SOURCE", "under"),
        ({"source": {"bucket": "ferry", "key": "uploads/proj_1/../x"}}, "INVALID_SOURCE", "under"),
        ({"source": {"bucket": "elsewhere", "key": "c.csv"}}, "INVALID_SOURCE", "may read"),
        ({"source": {"url": "ftp://x.test/c.csv"}}, "INVALID_REQUEST", "http"),
        ({"source": {"url": "https://u:p@x.test/c.csv"}}, "INVALID_REQUEST", "credentials"),
        ({"source": {}}, "INVALID_REQUEST", "source"),
        ({"dataset": "messages"}, "INVALID_REQUEST", "cannot be imported"),
        ({"dataset": "nope"}, "UNKNOWN_DATASET", "nope"),
        ({"encoding": "klingon"}, "INVALID_REQUEST", "encoding"),
        # Codecs that decompress (a few KB become gigabytes in one call) or are no charset.
        ({"encoding": "bz2"}, "INVALID_REQUEST", "not a text encoding"),
        ({"encoding": "zlib"}, "INVALID_REQUEST", "not a text encoding"),
        ({"encoding": "zip"}, "INVALID_REQUEST", "not a text encoding"),
        ({"encoding": "base64"}, "INVALID_REQUEST", "not a text encoding"),
        ({"encoding": "rot13"}, "INVALID_REQUEST", "not a text encoding"),
        ({"encoding": "idna"}, "INVALID_REQUEST", "not a text encoding"),
        ({"encoding": "unicode_escape"}, "INVALID_REQUEST", "not a text encoding"),
        ({"list_ids": [0]}, "INVALID_REQUEST", "list_ids"),
        ({"format": "xlsx"}, "INVALID_REQUEST", "format"),
        ({"surprise": 1}, "INVALID_REQUEST", "surprise"),
        ({"notify_url": "ftp://x.test/hook"}, "INVALID_NOTIFY_URL", "http"),
        ({"notify_url": 7}, "INVALID_NOTIFY_URL", "string"),
    ],
)
def test_requests_that_cannot_run_are_failed_jobs_saying_why(
    data: dict[str, Any], code: str, words: str
) -> None:
    job = parse(**data)
    assert (job.status, job.kind, job.error_code) == (JobStatus.FAILED, "import", code)
    assert job.error_message is not None
    assert words in job.error_message


def test_a_usable_notify_url_is_kept_even_on_a_request_that_cannot_run() -> None:
    # The requester then hears of the failed job where it asked to.
    hook = "https://crm.example.com/hooks/ferry"
    assert parse(notify_url=hook).notify_url == hook
    failed = parse(notify_url=hook, dataset="nope")
    assert (failed.status, failed.notify_url) == (JobStatus.FAILED, hook)
