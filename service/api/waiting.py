"""For a pending job: its place in line and why it waits, from what the workers hold (see
service/jobs/queue.py). Computed when asked: the queue moves without any event of this job."""

from __future__ import annotations

from typing import Any

from service.api.dependencies import Services
from service.jobs.status import JobStatus


async def with_waiting_info(services: Services, view: dict[str, Any]) -> dict[str, Any]:
    if view["status"] != JobStatus.PENDING:
        return view
    waiting = await services.queue.waiting(view["id"])
    if waiting is None:  # the ledger has moved on; the read model catches up with its event
        return view
    return {**view, "queue_position": waiting.position, "waiting_reason": waiting.reason}
