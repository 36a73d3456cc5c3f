"""An import request becomes a job: pending when it can run, failed (with the reason) when not."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from pydantic import ValidationError

from service.contracts.envelope import CloudEvent
from service.contracts.requests import ImportRequestedData, ObjectSource
from service.datasets import all_datasets, get_dataset
from service.datasets.base import describe_validation_error
from service.error_codes import ErrorCode
from service.errors import InvalidRequestError
from service.imports import files
from service.imports.model import ImportOptions, ImportSource
from service.imports.text import charset
from service.jobs.from_request import failed_job, job_from_request
from service.jobs.model import Job
from service.jobs.status import JobStatus


class ImportRequests:
    """The handler of `ferry.import.requested.v1`. It knows which buckets imports may read:
    Ferry's own (only the project's `uploads/` there, since the bucket also holds every other
    project's files) and those the operator lists."""

    def __init__(self, *, own_bucket: str, source_buckets: frozenset[str]) -> None:
        self._own_bucket = own_bucket
        self._source_buckets = source_buckets

    def __call__(self, event: CloudEvent, data: Mapping[str, Any], now: datetime) -> Job:
        """`data` is known to hold a valid project_id; everything else is checked here."""
        job = job_from_request(event, data, now, kind="import", default_dataset="contacts")
        if job.status is JobStatus.FAILED:
            return job
        try:
            request = ImportRequestedData.model_validate(data)
            self._check(request)
        except ValidationError as exc:
            return failed_job(
                job, ErrorCode.INVALID_REQUEST, describe_validation_error(exc, prefix="data")
            )
        except InvalidRequestError as exc:
            return failed_job(job, exc.code, exc.message)
        return job.model_copy(
            update={
                "source": ImportSource.model_validate(request.source.model_dump()),
                "options": ImportOptions(
                    update_existing=request.update_existing,
                    empty_attributes=request.empty_attributes,
                    list_ids=sorted(set(request.list_ids)),
                    dry_run=request.dry_run,
                    encoding=request.encoding,
                ),
            }
        )

    def _check(self, request: ImportRequestedData) -> None:
        dataset = get_dataset(request.dataset)
        if not dataset.importable:
            importable = sorted(name for name, d in all_datasets().items() if d.importable)
            raise InvalidRequestError(
                f"dataset {dataset.name!r} cannot be imported into; importable: {importable}"
            )
        if request.encoding is not None:
            try:
                charset(request.encoding)
            except LookupError as exc:
                raise InvalidRequestError(f"encoding: {exc}") from None
        if isinstance(request.source, ObjectSource):
            self._check_object(request.project_id, request.source)

    def _check_object(self, project_id: str, source: ObjectSource) -> None:
        if source.bucket == self._own_bucket:
            prefix = files.uploads_prefix(project_id)
            if not source.key.startswith(prefix) or ".." in source.key.split("/"):
                raise InvalidRequestError(
                    f"source.key: files in bucket {source.bucket!r} are imported from under "
                    f"{prefix!r} only",
                    code=ErrorCode.INVALID_SOURCE,
                )
        elif source.bucket not in self._source_buckets:
            raise InvalidRequestError(
                f"source.bucket: {source.bucket!r} is not a bucket imports may read; upload "
                f"the file to {self._own_bucket!r} under {files.uploads_prefix(project_id)!r}",
                code=ErrorCode.INVALID_SOURCE,
            )
