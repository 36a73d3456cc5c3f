"""Duplicates inside a file: the compact table finds every repeat, across growth, and only
repeats of the same kind of identifier count."""

from __future__ import annotations

from service.imports.duplicates import DuplicateFinder, FingerprintTable


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
