"""What the scenarios share: seeding, publishing, waiting on the ledger, inspecting the bucket."""

from __future__ import annotations

import asyncio
import csv
import io
import random
import time
import uuid
from datetime import UTC, datetime, timedelta

from minio import Minio

from service.clock import utcnow
from service.config import Settings
from service.database import Database
from service.demo import demo_messages, load_messages
from service.events.submit import export_request
from service.jobs.model import JOBS_COLLECTION, Job
from service.jobs.status import FINISHED
from tests.support.kafka import publish

END = datetime(2025, 6, 1, tzinfo=UTC)
FILTERS = {"start_time": (END - timedelta(days=1)).isoformat(), "end_time": END.isoformat()}


async def seed(
    database: Database, project: str, rows: int, *, padding: int = 0, noise: bool = False
) -> list[str]:
    """Outbound messages in FILTERS' range; `padding` bytes of text per row make big files
    (random hex with `noise`, so that they stay big when gzipped). Returns the ids in export
    order."""
    messages = demo_messages(project, rows, end=END, span=timedelta(days=1))
    rng = random.Random(rows)
    for message in messages:
        message["direction"] = "outbound"
        if padding:
            message["last_error"] = rng.randbytes(padding // 2).hex() if noise else "x" * padding
    await load_messages(database, messages)
    return [m["_id"] for m in sorted(messages, key=lambda m: (m["created_at"], m["_id"]))]


async def request_exports(settings: Settings, project: str, count: int) -> list[str]:
    job_ids = [str(uuid.uuid4()) for _ in range(count)]
    requests = [export_request(project_id=project, job_id=job, filters=FILTERS) for job in job_ids]
    await publish(settings.kafka, list(requests), key=project.encode())
    return job_ids


async def jobs_of(database: Database, job_ids: list[str]) -> list[Job]:
    documents = await database[JOBS_COLLECTION].find({"_id": {"$in": job_ids}}).to_list()
    return [Job.from_document(document) for document in documents]


async def until_finished(
    database: Database, job_ids: list[str], *, timeout: float, logs: str = ""
) -> list[Job]:
    deadline = time.monotonic() + timeout
    jobs: list[Job] = []
    while time.monotonic() < deadline:
        jobs = await jobs_of(database, job_ids)
        if len(jobs) == len(job_ids) and all(job.status in FINISHED for job in jobs):
            return jobs
        await asyncio.sleep(0.25)
    now = utcnow()
    stuck = {
        job.id[:8]: {
            "status": job.status.value,
            "attempt": job.attempt,
            "run_after_in": job.run_after and round((job.run_after - now).total_seconds(), 1),
            "lease_owner": job.lease_owner,
            "lease_expires_in": job.lease_expires_at
            and round((job.lease_expires_at - now).total_seconds(), 1),
            "last_error": job.last_error and job.last_error.code,
        }
        for job in jobs
        if job.status not in FINISHED
    }
    missing = len(job_ids) - len(jobs)
    raise AssertionError(f"{missing} jobs missing, not finished: {stuck}\n{logs[-4000:]}")


def _minio(settings: Settings) -> Minio:
    host, secure = settings.s3.split_endpoint()
    return Minio(
        host,
        access_key=settings.s3.access_key.get_secret_value(),
        secret_key=settings.s3.secret_key.get_secret_value(),
        secure=secure,
    )


def object_keys(settings: Settings, prefix: str) -> list[str]:
    objects = _minio(settings).list_objects(settings.s3.bucket, prefix=prefix, recursive=True)
    return sorted(str(item.object_name) for item in objects)


def exported_ids(settings: Settings, key: str) -> list[str]:
    response = _minio(settings).get_object(settings.s3.bucket, key)
    try:
        text = response.read().decode()
    finally:
        response.close()
        response.release_conn()
    return [row["id"] for row in csv.DictReader(io.StringIO(text, newline=""))]


def incomplete_uploads(settings: Settings) -> list[str]:
    """Keys of multipart uploads begun and never completed nor aborted (the listing is one of
    minio's internal calls, like the multipart calls in service/storage.py)."""
    result = _minio(settings)._list_multipart_uploads(settings.s3.bucket)
    return [str(upload.object_name) for upload in result.uploads]
