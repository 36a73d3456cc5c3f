"""Header and row validation: what is an identifier, what is well formed, and each reason a row
is rejected for."""

from __future__ import annotations

import pytest

from service.imports.errors import InvalidFileError
from service.imports.header import parse_header
from service.imports.validation import (
    ContactRow,
    Rejection,
    normalise_email,
    normalise_phone,
    validate,
)

HEADER = parse_header(["Email ", "ext_id", "SMS", "WhatsApp", "LANDLINE_NUMBER", "FirstName"])


def test_header_names_are_case_insensitive_and_identifiers_ordered() -> None:
    assert HEADER.identifiers == [
        (0, "email"), (1, "ext_id"), (2, "sms"), (3, "whatsapp"), (4, "landline_number")
    ]  # fmt: skip
    assert HEADER.attributes == [(5, "FIRSTNAME")]
    assert parse_header(["\ufeffEMAIL"]).identifiers == [(0, "email")]


@pytest.mark.parametrize(
    ("names", "words"),
    [
        (["FIRSTNAME", "LASTNAME"], "no identifier column"),
        (["EMAIL", "email"], "more than once"),
        (["EMAIL", ""], "column 2 has no name"),
        (["EMAIL", "FIRST NAME"], "not usable column names"),
        (["EMAIL", "a.b"], "not usable column names"),
        (["EMAIL", "CONTACT_ID"], "cannot be set"),
    ],
)
def test_unusable_headers_fail_the_file(names: list[str], words: str) -> None:
    with pytest.raises(InvalidFileError, match=words):
        parse_header(names)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("Ann.Lee+tag@Example.COM", "ann.lee+tag@example.com"),
        ("a@b.co", "a@b.co"),
        ("plain", None),
        ("a@b", None),
        ("a..b@x.io", None),
        (".a@x.io", None),
        ("a@-x.io", None),
        ("a b@x.io", None),
        ("a@x.io,b@x.io", None),
        ("x" * 65 + "@x.io", None),
    ],
)
def test_emails(value: str, expected: str | None) -> None:
    assert normalise_email(value) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("+33 6 12 34 56 78", "+33612345678"),
        ("0033612345678", "+33612345678"),
        ("33612345678", "+33612345678"),
        ("+1 (415) 555-0100", "+14155550100"),
        ("+33", None),
        ("0612345678", None),  # national form: no country code
        ("+33 6 12 34 56 78 90 12 34", None),  # more than 15 digits
        ("+33abc", None),
    ],
)
def test_phones(value: str, expected: str | None) -> None:
    assert normalise_phone(value) == expected


def check(fields: list[str], *, max_chars: int = 50) -> ContactRow | Rejection:
    return validate(9, fields, ",".join(fields), HEADER, max_field_chars=max_chars)


def test_a_good_row_is_normalised() -> None:
    row = check(["A@X.IO", " e1 ", "", "+44 20 7946 0000", "", " Ann "])
    assert isinstance(row, ContactRow)
    assert row.identifiers == {"email": "a@x.io", "ext_id": "e1", "whatsapp": "+442079460000"}
    assert row.attributes == {"FIRSTNAME": "Ann"}
    assert check(["", "e2", "", "", "", ""]).attributes == {"FIRSTNAME": None}  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("fields", "reason", "category"),
    [
        (["a@x.io", "", ""], "ragged_row", None),
        (["a@x.io", "", "", "", "", "", "extra"], "ragged_row", None),
        (["", "", "", "", "", "Ann"], "missing_identifier", None),
        (["  ", " ", "", "", "", ""], "missing_identifier", None),
        (["not-an-email", "e1", "", "", "", ""], "invalid_email", "invalid_emails"),
        (["", "e1", "12", "", "", ""], "invalid_sms", None),
        (["", "e1", "", "abc", "", ""], "invalid_whatsapp", None),
        (["", "e1", "", "", "0", ""], "invalid_landline_number", None),
        (["a@x.io", "", "", "", "", "x" * 51], "field_too_long", None),
    ],
)
def test_rejections_have_a_reason_and_brevos_category(
    fields: list[str], reason: str, category: str | None
) -> None:
    rejected = check(fields)
    assert isinstance(rejected, Rejection)
    assert (rejected.reason, rejected.category, rejected.line) == (reason, category, 9)
    assert rejected.message
    assert rejected.raw == ",".join(fields)
