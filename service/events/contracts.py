"""Ferry's wire contracts, version 1, by the names they had here before they moved to the
bottom layer (service/contracts/). Kept for the modules of other areas still importing them
from here; new code imports service.contracts.
"""

from __future__ import annotations

from service.contracts.envelope import (
    CANCEL_REQUESTED,
    CLOUDEVENTS_CONTENT_TYPE,
    EXPORT_REQUESTED,
    IMPORT_REQUESTED,
    JOB_STATUS_CHANGED,
    JOB_UPDATED,
    REQUEST_TYPES,
    CloudEvent,
    make_event,
)
from service.contracts.requests import (
    MAX_FILE_BYTES,
    MAX_ROWS_PER_FILE,
    MIN_FILE_BYTES,
    PROJECT_ID_PATTERN,
    CancelRequested,
    CancelRequestedData,
    ExportRequested,
    ExportRequestedData,
    ImportRequested,
    ImportRequestedData,
    JobRequestData,
    NotifyUrl,
    ObjectSource,
    ProjectId,
    UrlSource,
    is_valid_project_id,
)
from service.contracts.status_events import JobStatusChanged, JobUpdated, StatusChangedData

__all__ = [
    "CANCEL_REQUESTED",
    "CLOUDEVENTS_CONTENT_TYPE",
    "EXPORT_REQUESTED",
    "IMPORT_REQUESTED",
    "JOB_STATUS_CHANGED",
    "JOB_UPDATED",
    "MAX_FILE_BYTES",
    "MAX_ROWS_PER_FILE",
    "MIN_FILE_BYTES",
    "PROJECT_ID_PATTERN",
    "REQUEST_TYPES",
    "CancelRequested",
    "CancelRequestedData",
    "CloudEvent",
    "ExportRequested",
    "ExportRequestedData",
    "ImportRequested",
    "ImportRequestedData",
    "JobRequestData",
    "JobStatusChanged",
    "JobUpdated",
    "NotifyUrl",
    "ObjectSource",
    "ProjectId",
    "StatusChangedData",
    "UrlSource",
    "is_valid_project_id",
    "make_event",
]
