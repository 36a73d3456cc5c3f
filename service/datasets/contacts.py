"""The `contacts` dataset: a project's contacts, in Brevo's shape. Exported like messages, and
the target of contact imports.

A contact has up to five identifiers (email, ext_id, sms, whatsapp, landline_number), each unique
within its project, and free-form `attributes` (FIRSTNAME, LASTNAME, ...). Exports select
attributes as columns by name: `columns: ["email", "FIRSTNAME"]`.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from service.clock import rfc3339
from service.datasets.base import Column, Dataset, UniqueIndex

# A file's identifier columns (header names, matched case-insensitively) and their fields.
IDENTIFIERS = {
    "EMAIL": "email",
    "EXT_ID": "ext_id",
    "SMS": "sms",
    "WHATSAPP": "whatsapp",
    "LANDLINE_NUMBER": "landline_number",
}
# Attribute names become field names inside `attributes`, so they are kept to a safe alphabet
# (no `.` or `$`, which MongoDB would read as paths or operators).
ATTRIBUTE_NAME = re.compile(r"[A-Z0-9_]{1,64}")
# Names a file cannot use for an attribute: they are the contact's own fields.
RESERVED_NAMES = frozenset({*IDENTIFIERS, "CONTACT_ID", "LIST_IDS", "ATTRIBUTES"})


class ContactFilters(BaseModel):
    """Filters of a contact export. Both optional: no filter exports every contact."""

    model_config = ConfigDict(extra="forbid")

    list_id: int | None = Field(None, gt=0, description="Only contacts in this list.")
    modified_since: AwareDatetime | None = Field(
        None, description="Only contacts modified at or after this instant (RFC 3339)."
    )


class ContactRecord(BaseModel):
    """One stored contact, as the `contacts` collection holds it."""

    project_id: str
    contact_id: int = Field(description="Unique per project; assigned by Ferry's imports.")
    email: str | None = Field(None, description="Lower case.")
    ext_id: str | None = None
    sms: str | None = Field(None, description="E.164: + and 7 to 15 digits.")
    whatsapp: str | None = Field(None, description="E.164.")
    landline_number: str | None = Field(None, description="E.164.")
    attributes: dict[str, str] = Field(default_factory=dict)
    list_ids: list[int] = Field(default_factory=list)
    email_blacklisted: bool = False
    sms_blacklisted: bool = False
    created_at: datetime
    modified_at: datetime
    last_import: dict[str, Any] | None = Field(
        None,
        description="The import job and line that last changed the contact, so that a retried "
        "attempt counts what the first one did.",
    )


class ContactsDataset(Dataset[ContactFilters]):
    def filter_query(self, filters: ContactFilters) -> dict[str, Any]:
        query: dict[str, Any] = {}
        if filters.list_id is not None:
            query["list_ids"] = filters.list_id
        if filters.modified_since is not None:
            query["modified_at"] = {"$gte": filters.modified_since}
        return query

    def column_for(self, name: str) -> Column | None:
        """Any attribute, by its name (case-insensitive): `FIRSTNAME` is `attributes.FIRSTNAME`."""
        attribute = name.upper()
        if attribute in RESERVED_NAMES or not ATTRIBUTE_NAME.fullmatch(attribute):
            return None
        return Column(attribute, f"attributes.{attribute}")

    def more_columns_hint(self) -> str:
        return ", or attribute names (letters, digits and _), e.g. FIRSTNAME"

    def view_fields(self, filters: ContactFilters) -> dict[str, Any]:
        # In HookBridge's shape the time range is the contacts' modification time: from
        # `modified_since` (the job view shows the open start when there is none), unbounded.
        fields = super().view_fields(filters)
        since = filters.modified_since
        fields["filter_start_time"] = rfc3339(since) if since is not None else None
        return fields


_COLUMNS = (
    "contact_id",
    "email",
    "ext_id",
    "sms",
    "whatsapp",
    "landline_number",
    "list_ids",
    "email_blacklisted",
    "sms_blacklisted",
    "created_at",
    "modified_at",
)

DATASET = ContactsDataset(
    name="contacts",
    collection="contacts",
    description="A project's contacts (Brevo): identifiers, attributes and list memberships.",
    filters_model=ContactFilters,
    record_model=ContactRecord,
    columns=tuple(Column(name, name) for name in _COLUMNS),
    sort=(("contact_id", 1),),
    indexes=((("project_id", 1), ("list_ids", 1), ("contact_id", 1)),),
    unique_indexes=(
        UniqueIndex((("project_id", 1), ("contact_id", 1))),
        *(
            UniqueIndex((("project_id", 1), (field, 1)), {field: {"$type": "string"}})
            for field in IDENTIFIERS.values()
        ),
    ),
    process_names={"export": "CONTACT_EXPORT", "import": "IMPORTUSER"},
    importable=True,
)
