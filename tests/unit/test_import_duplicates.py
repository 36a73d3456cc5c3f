"""Duplicates inside a file: the compact table finds every repeat, across growth, and only
repeats of the same kind of identifier count."""

from __future__ import annotations

from service.imports.duplicates import DuplicateFinder, FingerprintTable
from service.imports.validation import ContactRow, Rejection


def test_the_table_remembers_lines_through_growth() -> None:
    table = FingerprintTable()
    fingerprints = [table.fingerprint("email", f"user{n}@x.io") for n in range(20_000)]
    assert len(set(fingerprints)) == len(fingerprints)
    for line, fingerprint in enumerate(fingerprints, start=2):
        assert table.line_of(fingerprint) is None
        table.add(fingerprint, line)
    assert len(table) == len(fingerprints)
    assert all(table.line_of(fp) == line for line, fp in enumerate(fingerprints, start=2))
    assert table.line_of(table.fingerprint("email", "someone@else.io")) is None


def test_fingerprints_are_keyed_per_table() -> None:
    assert FingerprintTable().fingerprint("email", "a@x.io") != FingerprintTable().fingerprint(
        "email", "a@x.io"
    )


def test_the_first_repeated_identifier_and_its_line() -> None:
    finder = DuplicateFinder()
    assert finder.earlier({"email": "a@x.io", "ext_id": "7"}) is None
    finder.accept({"email": "a@x.io", "ext_id": "7"}, 2)
    assert finder.earlier({"email": "b@x.io", "ext_id": "7"}) == ("ext_id", 2)
    assert finder.earlier({"email": "a@x.io", "ext_id": "7"}) == ("email", 2)
    # the same text as another kind of identifier is no repeat
    assert finder.earlier({"ext_id": "a@x.io"}) is None


def _rows(count: int, *, fields: tuple[str, ...]) -> list[ContactRow | Rejection]:
    rows: list[ContactRow | Rejection] = []
    for line in range(2, count + 2):
        n = line * 7 % (count // 2 + 1)  # every value about twice, in no order
        ids = {field: f"{field}{(n + i) % (count // 3 + 1)}" for i, field in enumerate(fields)}
        rows.append(ContactRow(line, ids, {}, [], f"line {line}"))
        if line % 97 == 0:
            rows.append(Rejection(line, "ragged_row", "ragged", None, "x,y"))
    return rows


def test_sifting_a_whole_group_is_earlier_and_accept_row_by_row_across_growth() -> None:
    for fields in (("email",), ("email", "ext_id", "sms")):
        rows = _rows(9000, fields=fields)
        expected: list[tuple[int, str | None, str | None]] = []
        finder = DuplicateFinder()
        for row in rows:
            if isinstance(row, Rejection):
                expected.append((row.line, row.reason, row.message))
                continue
            earlier = finder.earlier(row.identifiers)
            if earlier is None:
                finder.accept(row.identifiers, row.line)
                expected.append((row.line, None, None))
            else:
                field, line = earlier
                message = f"{field.upper()} {row.identifiers[field]} is already on line {line}"
                expected.append((row.line, f"duplicate_{field}", message))
        only = fields[0] if len(fields) == 1 else None
        for sifter in (DuplicateFinder(), DuplicateFinder(expected=9000)):
            sifted = [
                outcome
                for start in range(0, len(rows), 500)
                for outcome in sifter.sift(rows[start : start + 500], only=only)
            ]
            got = [
                (o.line, None, None) if isinstance(o, ContactRow) else (o.line, o.reason, o.message)
                for o in sifted
            ]
            assert got == expected
            assert any(reason for _, reason, _ in got if reason and reason.startswith("dup"))
