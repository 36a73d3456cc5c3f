"""For a pending job: its place in its project's queue and why it waits. Computed when asked:
the queue moves without any event of this job."""

from __future__ import annotations

from typing import Any

from service.api.dependencies import Services
from service.jobs.status import JobStatus


async def with_waiting_info(services: Services, view: dict[str, Any]) -> dict[str, Any]:
    if view["status"] != JobStatus.PENDING:
        return view
    position, reason = await services.read_model.waiting_info(
        view, max_running_per_project=services.settings.worker.max_running_per_project
    )
    return {**view, "queue_position": position, "waiting_reason": reason}
