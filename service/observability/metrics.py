"""Every Prometheus metric Ferry exports, in one place, with the few helpers that record them.

Metrics live in the process's default registry: each role is one process, and `/metrics` on the
API and on the background roles' health port serves that registry. Counters count what this
process did, so a cluster total is `sum()` over pods. Gauges marked "ledger-wide" are sampled
from MongoDB by every worker and read the same everywhere: aggregate them with `max()`.
"""

from __future__ import annotations

from collections import Counter as Counter_
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from importlib import metadata
from typing import Any, Literal

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    Counter,
    Gauge,
    Histogram,
    Info,
    generate_latest,
)

from service.contracts.envelope import JOB_STATUS_CHANGED

# Seconds: a tiny export takes well under a second, a large one tens of minutes.
_DURATION_BUCKETS = (0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600)
_ROWS_PER_SECOND_BUCKETS = (100, 500, 1_000, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000)
# Seconds from a job change to its event being published or applied: fractions when fresh.
_LAG_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
_HTTP_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)

BUILD = Info("ferry_build", "The running Ferry version.")

# Jobs ------------------------------------------------------------------------------------------

JOBS = Counter(
    "ferry_jobs",
    "Jobs that reached a status, by kind: counted by the outbox relay as it publishes each "
    "status change (at least once, so a relay crash may count one twice).",
    ["kind", "status"],
)
JOBS_IN_LEDGER = Gauge(
    "ferry_jobs_in_ledger",
    "Jobs waiting (pending) or running (processing) in the ledger, by kind. Ledger-wide.",
    ["kind", "status"],
)
JOBS_RUNNING = Gauge("ferry_jobs_running", "Jobs this worker process is running now.")
JOB_DURATION = Histogram(
    "ferry_job_duration_seconds",
    "Time one attempt of a job ran, by kind and outcome: succeeded, failed, or interrupted "
    "(cancelled, handed back on shutdown, or its lease was lost).",
    ["kind", "outcome"],
    buckets=_DURATION_BUCKETS,
)
JOB_ROWS_PER_SECOND = Histogram(
    "ferry_job_rows_per_second",
    "Throughput of each successful attempt: rows divided by its duration.",
    ["kind", "dataset"],
    buckets=_ROWS_PER_SECOND_BUCKETS,
)
ROWS = Counter(
    "ferry_rows_processed",
    "Rows read and written by running jobs, counted batch by batch: rate() is rows per second.",
    ["kind", "dataset"],
)

# Imports -----------------------------------------------------------------------------------------

IMPORT_ROWS = Counter(
    "ferry_import_rows",
    "Rows of imported files by outcome: created, updated, unchanged or rejected.",
    ["outcome"],
)
IMPORT_REJECTIONS = Counter(
    "ferry_import_rejected_rows",
    "Rejected rows of imported files by reason (invalid_email, duplicate_email, ragged_row, ...).",
    ["reason"],
)

# Requests and events ---------------------------------------------------------------------------

REQUESTS = Counter(
    "ferry_requests",
    "Requests consumed by the intake, by outcome: created (a new job), duplicate (no new job), "
    "conflict (the job id belongs to another project), reused (an idempotency key reused with "
    "other parameters: a failed job), cancel, dead_lettered, or dropped (not even a bare dead "
    "letter could be published; logged as request.dropped).",
    ["outcome"],
)
DEAD_LETTERS = Counter(
    "ferry_dead_letters", "Requests sent to the dead-letter topic, by code.", ["code"]
)
OUTBOX_PUBLISHED = Counter(
    "ferry_outbox_published", "Status events this process published from the outbox."
)
OUTBOX_COALESCED = Counter(
    "ferry_outbox_coalesced",
    "Progress events (job.updated) this process dropped unpublished because a later event of "
    "the same job superseded them.",
)
OUTBOX_PUBLISH_LAG = Histogram(
    "ferry_outbox_publish_lag_seconds",
    "Time from a job change (its outbox entry written) to the broker acknowledging its event.",
    buckets=_LAG_BUCKETS,
)
OUTBOX_SHARDS_HELD = Gauge(
    "ferry_outbox_shards_held", "Outbox shards whose events this process's relay publishes."
)
STATUS_DEAD_LETTERS = Counter(
    "ferry_status_dead_letters",
    "Status events that could never be published (too large, refused), sent to the status "
    "dead-letter topic instead, by code.",
    ["code"],
)
STATUS_CONSUMER_LAG = Histogram(
    "ferry_status_consumer_lag_seconds",
    "Time from a job change (the status event's `time`) to this process applying the event: "
    "the API's read model and the webhook dispatcher.",
    ["consumer"],
    buckets=_LAG_BUCKETS,
)
OUTBOX_BACKLOG = Gauge(
    "ferry_outbox_backlog", "Status events written but not yet published. Ledger-wide."
)
OUTBOX_OLDEST_AGE = Gauge(
    "ferry_outbox_oldest_age_seconds",
    "Age of the oldest unpublished status event (0 when none). Ledger-wide.",
)
CONSUMER_LAG = Gauge(
    "ferry_consumer_lag",
    "Records not yet committed by this process's consumer, per partition assigned to it. "
    "sum() over pods is the group's lag.",
    ["group", "topic", "partition"],
)

# Webhooks (the `ferry webhooks` dispatcher records these through `record_webhook_delivery`) --

WebhookOutcome = Literal[
    "succeeded",  # a 2xx answer
    "retry_scheduled",  # a failure with attempts left
    "failed_permanent",  # the last attempt failed
    "endpoint_disabled",  # 410 Gone, or failing for too long: the endpoint was turned off
    "blocked",  # the SSRF guard refused the address
]
WEBHOOK_DELIVERIES = Counter(
    "ferry_webhook_deliveries", "Webhook delivery attempts, by outcome.", ["outcome"]
)
WEBHOOK_DURATION = Histogram(
    "ferry_webhook_delivery_duration_seconds",
    "Time from sending a webhook to its outcome, by outcome.",
    ["outcome"],
    buckets=(*_HTTP_BUCKETS, 15, 30),  # a webhook times out after 15 s
)

# HTTP API ----------------------------------------------------------------------------------

HTTP_REQUESTS = Counter(
    "ferry_http_requests",
    "HTTP requests answered by the API, by method, route template and status code.",
    ["method", "route", "status"],
)
HTTP_DURATION = Histogram(
    "ferry_http_request_duration_seconds",
    "Time to answer an HTTP request, by method and route template.",
    ["method", "route"],
    buckets=_HTTP_BUCKETS,
)

HTTP_RATE_LIMITED = Counter(
    "ferry_http_rate_limited",
    "HTTP requests refused with 429 because their API key used up its rate limit, by route "
    "template (never by key or project).",
    ["route"],
)


def record_status_event(event: Mapping[str, Any]) -> None:
    """Count a published event if it is a status change (the relay calls this per event)."""
    if event.get("type") != JOB_STATUS_CHANGED:
        return
    data = event.get("data") or {}
    JOBS.labels(kind=data.get("kind", "unknown"), status=data.get("status", "unknown")).inc()


def observe_status_lag(consumer: Literal["api", "webhooks"], changed_at: datetime | str) -> None:
    """How far behind the ledger a consumer of status events is: now minus the change's time."""
    if isinstance(changed_at, str):
        try:
            changed_at = datetime.fromisoformat(changed_at)
        except ValueError:
            return
    if changed_at.tzinfo is None:
        changed_at = changed_at.replace(tzinfo=UTC)
    lag = (datetime.now(UTC) - changed_at).total_seconds()
    STATUS_CONSUMER_LAG.labels(consumer=consumer).observe(max(lag, 0.0))


def record_import_rows(outcomes: Sequence[str], rejected_reasons: Sequence[str]) -> None:
    for outcome, count in Counter_(outcomes).items():
        IMPORT_ROWS.labels(outcome=outcome).inc(count)
    if rejected_reasons:
        IMPORT_ROWS.labels(outcome="rejected").inc(len(rejected_reasons))
    for reason, count in Counter_(rejected_reasons).items():
        IMPORT_REJECTIONS.labels(reason=reason).inc(count)


def record_webhook_delivery(outcome: WebhookOutcome, seconds: float) -> None:
    WEBHOOK_DELIVERIES.labels(outcome=outcome).inc()
    WEBHOOK_DURATION.labels(outcome=outcome).observe(seconds)


def set_build_info() -> None:
    try:
        version = metadata.version("ferry")
    except metadata.PackageNotFoundError:  # pragma: no cover - running from a bare checkout
        version = "unknown"
    BUILD.info({"version": version})


def exposition() -> tuple[bytes, str]:
    """The registry in Prometheus' text format, and its content type."""
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST
