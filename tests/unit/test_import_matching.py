"""Matching rows to contacts, without a database: the match order, each option, conflicts,
several rows meeting one contact, and counting a retried attempt's rows as the first did."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from service.imports.matching import plan_batch
from service.imports.model import ImportOptions
from service.imports.validation import ContactRow

NOW = datetime(2025, 12, 6, tzinfo=UTC)
JOB = "job-1"


def row(line: int, attributes: dict[str, str | None] | None = None, **ids: str) -> ContactRow:
    return ContactRow(line, dict(ids), attributes or {}, [], f"line {line}")


def stored(key: str, contact_id: int, **fields: Any) -> dict[str, Any]:
    return {"_id": key, "contact_id": contact_id, "attributes": {}, "list_ids": [], **fields}


def plan(rows: list[ContactRow], docs: list[dict[str, Any]], **options: Any) -> Any:
    return plan_batch(
        rows, docs, project_id="p", options=ImportOptions(**options), job_id=JOB, now=NOW
    )


def outcomes(result: Any) -> list[tuple[int, str]]:
    return [(r.line, outcome) for r, outcome in result.outcomes]


def test_new_rows_create_contacts_with_lists_and_a_mark() -> None:
    result = plan([row(2, {"FIRSTNAME": "Ann", "CITY": None}, email="a@x.io")], [], list_ids=[4])
    assert outcomes(result) == [(2, "created")]
    (new,) = result.creates
    assert new.document["email"] == "a@x.io"
    assert new.document["attributes"] == {"FIRSTNAME": "Ann"}  # blank cells are not stored
    assert new.document["list_ids"] == [4]
    assert new.document["last_import"] == {"job": JOB, "line": 2, "created": True}


def test_match_by_email_then_ext_id_then_sms() -> None:
    docs = [
        stored("A", 1, email="a@x.io"),
        stored("B", 2, ext_id="e2"),
        stored("C", 3, sms="+33600000003"),
    ]
    result = plan(
        [
            row(2, {"N": "1"}, ext_id="e2"),
            row(3, {"N": "2"}, sms="+33600000003"),
            row(4, {"N": "3"}, email="a@x.io"),
        ],
        docs,
    )
    assert outcomes(result) == [(2, "updated"), (3, "updated"), (4, "updated")]
    assert {key: change.contact_id for key, change in result.changes.items()} == {
        "B": 2,
        "C": 3,
        "A": 1,
    }
    assert result.changes["A"].assign["attributes.N"] == "3"


def test_unchanged_rows_write_nothing_and_update_existing_false_leaves_contacts_alone() -> None:
    docs = [stored("A", 1, email="a@x.io", attributes={"N": "1"}, list_ids=[4])]
    same = plan([row(2, {"N": "1"}, email="a@x.io")], docs, list_ids=[4])
    assert (outcomes(same), same.changes) == ([(2, "unchanged")], {})
    kept = plan([row(2, {"N": "9"}, email="a@x.io")], docs, update_existing=False)
    assert (outcomes(kept), kept.changes, kept.creates) == ([(2, "unchanged")], {}, [])


def test_blank_cells_clear_attributes_only_when_asked() -> None:
    docs = [stored("A", 1, email="a@x.io", attributes={"CITY": "Paris", "N": "1"})]
    rows = [row(2, {"CITY": None, "N": "1"}, email="a@x.io")]
    assert outcomes(plan(rows, docs)) == [(2, "unchanged")]
    cleared = plan(rows, docs, empty_attributes=True)
    assert outcomes(cleared) == [(2, "updated")]
    assert cleared.changes["A"].unset == {"attributes.CITY"}


def test_lists_are_added_not_replaced() -> None:
    docs = [stored("A", 1, email="a@x.io", list_ids=[1, 2])]
    result = plan([row(2, email="a@x.io")], docs, list_ids=[2, 3])
    assert result.changes["A"].lists == {3}


def test_identifiers_of_two_contacts_conflict() -> None:
    docs = [stored("A", 1, email="a@x.io"), stored("B", 2, ext_id="e2")]
    result = plan(
        [row(2, email="a@x.io", ext_id="e2"), row(3, ext_id="e2", sms="+3312345678")], docs
    )
    assert [(r.line, r.reason) for r in result.rejections] == [(2, "identifier_conflict")]
    assert "EXT_ID e2 belongs to contact 2" in result.rejections[0].message
    assert outcomes(result) == [(3, "updated")]


def test_two_rows_meeting_one_contact_make_one_write_in_file_order() -> None:
    docs = [stored("A", 1, email="a@x.io", ext_id="e1")]
    result = plan(
        [row(2, {"N": "first"}, email="a@x.io"), row(3, {"N": "second"}, ext_id="e1")], docs
    )
    assert outcomes(result) == [(2, "updated"), (3, "updated")]
    assert list(result.changes) == ["A"]
    assert result.changes["A"].assign["attributes.N"] == "second"
    assert result.changes["A"].lines == [2, 3]


def test_an_identifier_moved_off_a_contact_is_free_for_later_rows() -> None:
    docs = [stored("A", 1, email="a@x.io", ext_id="old")]
    result = plan([row(2, email="a@x.io", ext_id="new"), row(3, ext_id="old")], docs)
    assert outcomes(result) == [(2, "updated"), (3, "created")]


def test_a_retry_counts_rows_the_first_attempt_applied_as_it_did() -> None:
    mine_created = {"job": JOB, "line": 2, "created": True}
    mine_updated = {"job": JOB, "line": 3, "created": False}
    docs = [
        stored("A", 1, email="a@x.io", last_import=mine_created),
        stored("B", 2, email="b@x.io", last_import=mine_updated),
        stored("C", 3, email="c@x.io", last_import={"job": "other", "line": 4, "created": True}),
    ]
    rows = [row(2, email="a@x.io"), row(3, email="b@x.io"), row(4, email="c@x.io")]
    assert outcomes(plan(rows, docs)) == [(2, "created"), (3, "updated"), (4, "unchanged")]


def test_a_dry_run_plans_the_same_outcomes_without_building_documents() -> None:
    rows = [
        row(2, {"CITY": "Oslo"}, email="a@x.io"),
        row(3, {"CITY": "Rome"}, email="new@x.io", ext_id="e9"),
        row(4, email="a@x.io", ext_id="e1"),  # two contacts: a conflict
        row(5, email="c@x.io", sms="+33612345678"),
        row(6, email="d@x.io", whatsapp="+33700000000"),  # not a match key, but k2's
    ]
    docs = [
        stored("k1", 1, email="a@x.io"),
        stored("k2", 2, email="z@x.io", ext_id="e1", whatsapp="+33700000000"),
    ]
    real, dry = plan(rows, docs), plan(rows, docs, dry_run=True)
    assert outcomes(dry) == outcomes(real) == [(2, "updated"), (3, "created"), (5, "created")]
    assert [(r.line, r.reason, r.message) for r in dry.rejections] == [
        (r.line, r.reason, r.message) for r in real.rejections
    ]
    assert [(r.line, r.reason) for r in real.rejections] == [
        (4, "identifier_conflict"),
        (6, "identifier_conflict"),
    ]
    assert [new.lines for new in dry.creates] == [new.lines for new in real.creates]
    assert all(new.document == {} for new in dry.creates)
    assert all(new.document["email"] for new in real.creates)
