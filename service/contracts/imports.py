"""What an import job asks for and what it produces, as the ledger stores them and its view
shows them.

Plain models with no behaviour, so that the job model and its public view can hold them
without importing the importer.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

# Brevo's report categories (`info.import` of `GET /v3/processes/{id}`), in Brevo's order.
# `duplicate_contact_id` never has rows: files cannot set contact ids, Ferry assigns them.
BREVO_CATEGORIES = (
    "invalid_emails",
    "duplicate_contact_id",
    "duplicate_ext_id",
    "duplicate_email_id",
    "duplicate_phone_id",
    "duplicate_whatsapp_id",
    "duplicate_landline_number_id",
)
# Every rejected row, whatever the reason, with its line number and the reason.
REJECTED_ROWS = "rejected_rows"


class ImportSource(BaseModel):
    """Where the file is: an object already uploaded (`bucket` + `key`), or an http(s) `url`."""

    model_config = ConfigDict(extra="forbid")

    bucket: str | None = None
    key: str | None = None
    url: str | None = None


class ImportOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    update_existing: bool = Field(
        default=True,
        description="Rows matching an existing contact update it; false leaves it untouched.",
    )
    empty_attributes: bool = Field(
        default=False,
        description="A blank attribute cell clears that attribute of an existing contact; by "
        "default blank cells leave it as it is. Identifiers are never cleared.",
    )
    list_ids: list[int] = Field(
        default_factory=list, description="Lists every imported contact is added to."
    )
    dry_run: bool = Field(
        default=False, description="Count and report as a real import would; write no contact."
    )
    encoding: str | None = Field(
        None,
        description="The file's text encoding (a Python codec name such as `latin-1` or "
        "`cp1252`). Default: UTF-8 with or without a BOM, or UTF-16 when the file starts "
        "with a UTF-16 BOM.",
    )


class ImportCounts(BaseModel):
    """`rows_read` = `created` + `updated` + `unchanged` + `rejected`."""

    rows_read: int = 0
    created: int = 0
    updated: int = 0
    unchanged: int = Field(
        0,
        description="Rows matching a contact that already had their values, or that "
        "`update_existing: false` left alone.",
    )
    rejected: int = 0
    rejected_by_reason: dict[str, int] = Field(default_factory=dict)


class ReportFile(BaseModel):
    """One report CSV in the object store."""

    key: str
    rows: int


class ImportResult(BaseModel):
    """What a finished import produced."""

    counts: ImportCounts
    # Report name (a Brevo category or `rejected_rows`) -> file. Only reports with rows exist.
    reports: dict[str, ReportFile] = Field(default_factory=dict)
    dry_run: bool = False
    source_size_bytes: int
    source_sha256: str

    @property
    def row_count(self) -> int:
        return self.counts.rows_read

    def object_keys(self) -> list[str]:
        return [report.key for report in self.reports.values()]
