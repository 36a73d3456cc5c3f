"""What a batch of rows does to the contacts: a pure function of the rows, the contacts they
touch as stored now, and the options. No I/O, so every rule is tested without a database.

Rows apply in file order, as if one at a time: each is matched by email, then ext_id, then sms,
against the stored contacts as earlier rows of the batch left them. A row whose identifiers
belong to two different contacts cannot be applied (`identifier_conflict`). Each contact gets at
most one write per batch, its final state, so the order the database applies writes in does not
matter.

Re-running an import is safe: every identifier is unique per project, so a row already applied
matches the contact it made and changes nothing. Each write also records the job and line that
made it (`last_import`), so a retried attempt counts a row it finds already applied as what the
first attempt did (created or updated) rather than as unchanged.

A dry run's plan has the same outcomes and rejections; the documents of the contacts it would
create are left empty, since nothing writes them (building them was a third of a dry run's
cost per row).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from service.imports.model import ImportOptions
from service.imports.validation import ContactRow, Rejection

MATCH_ORDER = ("email", "ext_id", "sms")
IDENTIFIER_FIELDS = ("email", "ext_id", "sms", "whatsapp", "landline_number")

Outcome = Literal["created", "updated", "unchanged"]
Key = object  # a stored contact's _id, or a NewContact of this batch


@dataclass(eq=False, slots=True)
class NewContact:
    """A contact this batch creates; it gets its contact_id when written."""

    document: dict[str, Any]
    lines: list[int]


@dataclass
class Change:
    """One stored contact's update: the fields to set and to unset, lists to add."""

    contact_id: int
    assign: dict[str, Any] = field(default_factory=dict)
    unset: set[str] = field(default_factory=set)
    lists: set[int] = field(default_factory=set)
    lines: list[int] = field(default_factory=list)


@dataclass
class Plan:
    outcomes: list[tuple[ContactRow, Outcome]] = field(default_factory=list)
    rejections: list[Rejection] = field(default_factory=list)
    creates: list[NewContact] = field(default_factory=list)
    changes: dict[Any, Change] = field(default_factory=dict)  # by stored _id


def plan_batch(
    rows: list[ContactRow],
    stored: list[dict[str, Any]],
    *,
    project_id: str,
    options: ImportOptions,
    job_id: str,
    now: datetime,
) -> Plan:
    state: dict[Key, dict[str, Any]] = {doc["_id"]: _copy(doc) for doc in stored}
    owners: dict[str, dict[str, Key]] = {name: {} for name in IDENTIFIER_FIELDS}
    for key, doc in state.items():
        for name in IDENTIFIER_FIELDS:
            if doc.get(name) is not None:
                owners[name][doc[name]] = key
    plan = Plan()
    dry_run = options.dry_run
    for row in rows:
        identifiers = row.identifiers
        target: Key | None = None
        clash: str | None = None
        if _owned(identifiers, owners):  # most rows of most imports meet no contact
            target = _match(identifiers, owners)
            clash = _conflict(row, target, owners, state)
        if clash is not None:
            plan.rejections.append(
                Rejection(row.line, "identifier_conflict", clash, row.fields, row.raw)
            )
            continue
        if target is None:
            # A dry run writes nothing: the document is not built.
            document = {} if dry_run else _new_document(row, project_id, options, job_id, now)
            new = NewContact(document, [row.line])
            plan.creates.append(new)
            for name, value in identifiers.items():
                owners[name][value] = new
            plan.outcomes.append((row, "created"))
            continue
        doc = state[target]
        changed = _apply(row, doc, options, owners, target) if options.update_existing else {}
        if not changed:
            plan.outcomes.append((row, _already(doc, job_id, row.line)))
            continue
        plan.outcomes.append((row, "updated"))
        mark = {"job": job_id, "line": row.line, "created": False}
        _record(plan, target, doc, changed, list_ids=options.list_ids, mark=mark, now=now)
        plan.changes[target].lines.append(row.line)
    return plan


def _owned(identifiers: dict[str, str], owners: dict[str, dict[str, Key]]) -> bool:
    """Whether any identifier of the row belongs to a contact (stored, or created earlier)."""
    for name, value in identifiers.items():  # noqa: SIM110 - a loop: any() over a generator costs more per row
        if value in owners[name]:
            return True
    return False


def _match(identifiers: dict[str, str], owners: dict[str, dict[str, Key]]) -> Key | None:
    """The contact the row's first identifier in MATCH_ORDER belongs to, if any."""
    for name in MATCH_ORDER:
        value = identifiers.get(name)
        if value is not None and (owner := owners[name].get(value)) is not None:
            return owner
    return None


def _record(
    plan: Plan,
    target: Key,
    doc: dict[str, Any],
    changed: dict[str, Any],
    *,
    list_ids: list[int],
    mark: dict[str, Any],
    now: datetime,
) -> None:
    """Fold one row's changes into the contact's single write of this batch."""
    change = plan.changes.setdefault(target, Change(int(doc["contact_id"])))
    changed.pop("list_ids", None)  # added with $addToSet, below
    for name, value in changed.items():
        if value is None:
            change.assign.pop(name, None)
            change.unset.add(name)
        else:
            change.unset.discard(name)
            change.assign[name] = value
    change.lists.update(set(list_ids) - set(doc.get("list_ids", [])))
    doc["list_ids"] = sorted({*doc.get("list_ids", []), *list_ids})
    change.assign.update({"modified_at": now, "last_import": mark})
    doc["last_import"] = mark


def _conflict(
    row: ContactRow,
    target: Key | None,
    owners: dict[str, dict[str, Key]],
    state: dict[Key, dict[str, Any]],
) -> str | None:
    for name, value in row.identifiers.items():
        owner = owners[name].get(value)
        if owner is not None and owner != target:
            other = _describe(owner, state)
            matched = f", while the row matches {_describe(target, state)}" if target else ""
            return f"{name.upper()} {value} belongs to {other}{matched}"
    return None


def _describe(key: Key, state: dict[Key, dict[str, Any]]) -> str:
    if isinstance(key, NewContact):
        return f"the contact created by line {key.lines[0]}"
    return f"contact {state[key]['contact_id']}"


def _apply(
    row: ContactRow,
    doc: dict[str, Any],
    options: ImportOptions,
    owners: dict[str, dict[str, Key]],
    key: Key,
) -> dict[str, Any]:
    """The fields the row changes on `doc` (None: unset), applied to `doc` and `owners`."""
    changed: dict[str, Any] = {}
    for name, value in row.identifiers.items():
        if doc.get(name) != value:
            if doc.get(name) is not None:
                owners[name].pop(doc[name], None)  # the old value is free for later rows
            owners[name][value] = key
            doc[name] = value
            changed[name] = value
    attributes = doc.setdefault("attributes", {})
    for name, cell in row.attributes.items():
        if cell is not None and attributes.get(name) != cell:
            attributes[name] = cell
            changed[f"attributes.{name}"] = cell
        elif cell is None and options.empty_attributes and name in attributes:
            del attributes[name]
            changed[f"attributes.{name}"] = None
    if set(options.list_ids) - set(doc.get("list_ids", [])):
        changed["list_ids"] = True  # marks the change; the lists are added with $addToSet
    return changed


def _already(doc: dict[str, Any], job_id: str, line: int) -> Outcome:
    """Unchanged, unless this very row of this job already made the change (a retry)."""
    mark = doc.get("last_import") or {}
    if mark.get("job") == job_id and mark.get("line") == line:
        return "created" if mark.get("created") else "updated"
    return "unchanged"


def _new_document(
    row: ContactRow, project_id: str, options: ImportOptions, job_id: str, now: datetime
) -> dict[str, Any]:
    return {
        "project_id": project_id,
        **row.identifiers,
        "attributes": {name: value for name, value in row.attributes.items() if value is not None},
        "list_ids": list(options.list_ids),
        "email_blacklisted": False,
        "sms_blacklisted": False,
        "created_at": now,
        "modified_at": now,
        "last_import": {"job": job_id, "line": row.line, "created": True},
    }


def _copy(doc: dict[str, Any]) -> dict[str, Any]:
    copied = dict(doc)
    copied["attributes"] = dict(doc.get("attributes") or {})
    copied["list_ids"] = list(doc.get("list_ids") or [])
    return copied
