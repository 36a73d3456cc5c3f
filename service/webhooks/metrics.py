"""Everything the dispatcher reports about deliveries goes through here: a structlog event, and
the Prometheus counter and latency histogram of `service.observability.metrics`.

Outcomes of an attempt: `succeeded` (2xx), `retry_scheduled` (failed, attempts left),
`failed_permanent` (the last attempt failed), `endpoint_disabled` (410 Gone, or failing for too
long), `blocked` (the SSRF guard refused the address; retried like any failure).
"""

from __future__ import annotations

import structlog

from service.observability.metrics import WebhookOutcome, record_webhook_delivery

log = structlog.get_logger("service.webhooks")


def record_delivery_attempt(outcome: WebhookOutcome, seconds: float, **context: object) -> None:
    """One attempt and how it ended; `context` names the delivery (ids, status code, ...)."""
    record_webhook_delivery(outcome, seconds)
    fields = {"outcome": outcome, "latency_ms": round(seconds * 1000, 1), **context}
    if outcome == "succeeded":
        log.info("webhook.delivered", **fields)
    elif outcome == "retry_scheduled":
        log.info("webhook.attempt_failed", **fields)
    else:
        log.warning("webhook.attempt_failed", **fields)


def record_endpoint_disabled(endpoint_id: str, project_id: str, *, reason: str) -> None:
    log.warning(
        "webhook.endpoint_disabled", endpoint_id=endpoint_id, project_id=project_id, reason=reason
    )
