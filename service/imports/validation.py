"""One row of the file: well formed, or rejected with a reason code, a message and, where Brevo
has one, the report category it belongs to.

Identifiers are normalised so that spellings of the same value match: emails in lower case,
phone numbers in E.164 (`+` and 7 to 15 digits, the first not 0; spaces, dots, dashes, slashes
and parentheses dropped; a leading `00` read as `+`). Attribute values are kept as text, with
surrounding spaces trimmed; a blank cell is None.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from functools import partial
from itertools import repeat
from operator import itemgetter
from typing import NamedTuple, cast

from service.imports.header import Header
from service.imports.records import Group

# Deliberately plain: ASCII addresses as mail systems and Brevo accept them. Internationalised
# addresses are rejected rather than guessed at.
_EMAIL = re.compile(
    r"(?P<local>[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*)"
    r"@(?P<domain>(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,63})"
)
_MAX_EMAIL = 254
_MAX_LOCAL = 64
_PHONE_SEPARATORS = str.maketrans("", "", " .-/()\u00a0")
_E164 = re.compile(r"\+[1-9][0-9]{6,14}")

PHONE_FIELDS = ("sms", "whatsapp", "landline_number")

# Reason code -> Brevo's report category, for the reasons that have one.
CATEGORIES = {
    "invalid_email": "invalid_emails",
    "duplicate_email": "duplicate_email_id",
    "duplicate_ext_id": "duplicate_ext_id",
    "duplicate_sms": "duplicate_phone_id",
    "duplicate_whatsapp": "duplicate_whatsapp_id",
    "duplicate_landline_number": "duplicate_landline_number_id",
}


class ContactRow(NamedTuple):
    """A row that can be imported. A tuple, so that a group's rows are made in one C loop."""

    line: int
    identifiers: dict[str, str]  # field -> normalised value, only those given
    attributes: dict[str, str | None]  # name -> value, None for a blank cell
    # A tuple once validated: a row of strings, dicts of strings and tuples is dropped from the
    # garbage collector's tracking, so that rows waiting in a batch cost it nothing (a list
    # would keep them tracked, and each full collection would walk every row in memory).
    fields: Sequence[str]
    raw: str


@dataclass(frozen=True, slots=True)
class Rejection:
    line: int
    reason: str
    message: str
    fields: Sequence[str] | None
    raw: str

    @property
    def category(self) -> str | None:
        return CATEGORIES.get(self.reason)


def normalise_email(value: str) -> str | None:
    match = _EMAIL.fullmatch(value)
    if match is None or len(value) > _MAX_EMAIL or len(match["local"]) > _MAX_LOCAL:
        return None
    return value.lower()


def normalise_phone(value: str) -> str | None:
    compact = value.translate(_PHONE_SEPARATORS)
    if compact.startswith("00"):
        compact = "+" + compact[2:]
    elif not compact.startswith("+"):
        compact = "+" + compact  # written without the +, as Brevo allows: country code first
    return compact if _E164.fullmatch(compact) else None


def _identifier(name: str, value: str) -> str | None:
    if name == "email":
        return normalise_email(value)
    if name in PHONE_FIELDS:
        return normalise_phone(value)
    return value  # ext_id: any text


def validate(
    line: int, fields: list[str], raw: str, header: Header, *, max_field_chars: int
) -> ContactRow | Rejection:
    def reject(reason: str, message: str) -> Rejection:
        return Rejection(line, reason, message, fields, raw)

    if len(fields) != len(header.names):
        return reject(
            "ragged_row", f"the row has {len(fields)} fields; the header has {len(header.names)}"
        )
    for column, value in enumerate(fields):
        if len(value) > max_field_chars:
            return reject(
                "field_too_long",
                f"{header.names[column]} has {len(value)} characters; the limit is "
                f"{max_field_chars}",
            )
    identifiers: dict[str, str] = {}
    for column, name in header.identifiers:
        value = fields[column].strip()
        if not value:
            continue
        normal = _identifier(name, value)
        if normal is None:
            if name == "email":
                return reject("invalid_email", f"{value!r} is not a valid email address")
            return reject(
                f"invalid_{name}",
                f"{header.names[column]} {value!r} is not a phone number in international "
                "form (country code first, e.g. +33612345678)",
            )
        identifiers[name] = normal
    if not identifiers:
        return reject(
            "missing_identifier",
            "the row has no identifier: EMAIL, EXT_ID, SMS, WHATSAPP or LANDLINE_NUMBER",
        )
    attributes = {name: (fields[column].strip() or None) for column, name in header.attributes}
    return ContactRow(line, identifiers, attributes, fields, raw)


# Validating a group of rows column by column: a column's values joined one per line, checked
# by one regex call that captures the valid ones (each value is matched whole, as by
# `fullmatch`), and lower-cased in one call. Files whose values hold line breaks (quoted) take
# the value by value path.
_EMAIL_LINES = re.compile(
    "(?:(" + _EMAIL.pattern.replace("?P<local>", "?:").replace("?P<domain>", "?:") + ")\n|[^\n]*\n)"
)
_E164_LINES = re.compile(f"(?:({_E164.pattern})\n|[^\n]*\n)")
_PHONE_PREFIX = re.compile(r"^(?:00|\+)?", re.MULTILINE)  # `00` or nothing reads as `+`
# ContactRow(*values) without the Python-level __new__ of a named tuple.
_new_row = cast("Callable[[tuple[object, ...]], ContactRow]", partial(tuple.__new__, ContactRow))
_MISSING = "the row has no identifier: EMAIL, EXT_ID, SMS, WHATSAPP or LANDLINE_NUMBER"

Outcome = ContactRow | Rejection


def validate_group(group: Group, header: Header, *, max_field_chars: int) -> list[Outcome]:
    """What `validate` makes of each record of `group`, in order, computed column by column;
    unreadable records are rejected, and only rejections with a report category keep their
    fields (the others' text is enough, and a ragged row's fields can be many)."""
    lines, raws = group.lines, group.raws
    rejected = _unusable(group, len(header.names), max_field_chars, header)
    kept = [index for index in range(len(lines)) if index not in rejected] if rejected else None
    fields: list[list[str]] = group.fields if kept is None else [group.fields[i] for i in kept]  # type: ignore[assignment,misc]
    if kept is not None:
        lines = [lines[index] for index in kept]
        raws = [raws[index] for index in kept]
    identifiers, failures = _identifiers(fields, header)
    attributes = _attributes(fields, header)
    made: list[Outcome] = list(
        map(_new_row, zip(lines, identifiers, attributes, map(tuple, fields), raws, strict=True))
    )
    for index, (reason, message) in failures.items():
        keep = fields[index] if reason in CATEGORIES else None
        made[index] = Rejection(lines[index], reason, message, keep, raws[index])
    if kept is None:
        return made
    outcomes: list[Outcome] = [*rejected.values(), *made]
    outcomes.sort(key=_line_of)
    return outcomes


def _line_of(outcome: Outcome) -> int:
    return outcome.line


def _unusable(
    group: Group, width: int, max_field_chars: int, header: Header
) -> dict[int, Rejection]:
    """The records rejected before their values are looked at: unreadable, ragged, or with a
    field too long (in that order, as `validate` checks)."""
    lines, raws, fields = group.lines, group.raws, group.fields
    rejected = {
        index: Rejection(
            lines[index], "malformed_row", f"the row cannot be read: {error}", None, raws[index]
        )
        for index, error in group.errors.items()
    }
    if rejected or list(map(len, fields)).count(width) != len(fields):  # type: ignore[arg-type]
        for index, row in enumerate(fields):
            if row is not None and len(row) != width:
                message = f"the row has {len(row)} fields; the header has {width}"
                rejected[index] = Rejection(lines[index], "ragged_row", message, None, raws[index])
    if max(map(len, raws), default=0) > max_field_chars:  # no field is longer than its text
        for index, raw in enumerate(raws):
            row = fields[index]
            if len(raw) > max_field_chars and index not in rejected and row is not None:
                for column, value in enumerate(row):
                    if len(value) > max_field_chars:
                        message = (
                            f"{header.names[column]} has {len(value)} characters; the limit is "
                            f"{max_field_chars}"
                        )
                        rejected[index] = Rejection(
                            lines[index], "field_too_long", message, None, raw
                        )
                        break
    return rejected


def _identifiers(
    rows: list[list[str]], header: Header
) -> tuple[list[dict[str, str]], dict[int, tuple[str, str]]]:
    """Each row's normalised identifiers, and (reason, message) for the rows that cannot be
    imported: the first invalid identifier in the header's order, else none at all."""
    failures: dict[int, tuple[str, str]] = {}
    names = [name for _, name in header.identifiers]
    columns: list[list[str | None]] = []
    for column, name in header.identifiers:
        values = list(map(str.strip, map(itemgetter(column), rows)))
        normal = _normalised(name, values)
        if None in normal:
            for index, value in enumerate(normal):
                if value is None and index not in failures:
                    failures[index] = _invalid(name, header.names[column], values[index])
        columns.append(normal)
    # A row with an invalid value (None) is rejected: its identifiers are never used.
    identifiers: list[dict[str, str]]
    if len(columns) == 1 and "" not in columns[0]:
        name = names[0]
        identifiers = [{name: value} for value in cast("list[str]", columns[0])]
    else:
        identifiers = [
            {name: value for name, value in zip(names, values, strict=True) if value}
            for values in cast("Iterator[tuple[str, ...]]", zip(*columns, strict=True))
        ]
        for index, found in enumerate(identifiers):
            if not found and index not in failures:
                failures[index] = ("missing_identifier", _MISSING)
    return identifiers, failures


def _invalid(name: str, column_name: str, value: str) -> tuple[str, str]:
    if name == "email":
        return "invalid_email", f"{value!r} is not a valid email address"
    message = (
        f"{column_name} {value!r} is not a phone number in international form (country code "
        "first, e.g. +33612345678)"
    )
    return f"invalid_{name}", message


def _normalised(name: str, values: list[str]) -> list[str | None]:
    """Each value normalised as `_identifier` does; "" for a blank, None for an invalid one."""
    if name not in ("email", *PHONE_FIELDS):
        return values  # type: ignore[return-value]
    joined = "\n".join(values)
    if joined.count("\n") != len(values) - 1:  # a value holds a line break
        return [(_identifier(name, value) if value else "") for value in values]
    if name == "email":
        found = _EMAIL_LINES.findall(joined + "\n")
        normal: list[str | None] = "\n".join(found).lower().split("\n")  # type: ignore[assignment]
        if max(map(len, values), default=0) > _MAX_LOCAL:  # the lengths, where they matter
            for index, value in enumerate(values):
                if len(value) > _MAX_LOCAL and found[index] and normalise_email(value) is None:
                    normal[index] = None
    else:
        compact = _PHONE_PREFIX.sub("+", joined.translate(_PHONE_SEPARATORS))
        found = _E164_LINES.findall(compact + "\n")
        normal = found
    if found.count("") != values.count(""):  # some value did not match
        for index, value in enumerate(values):
            if value and not found[index]:
                normal[index] = None
    return normal


def _attributes(rows: list[list[str]], header: Header) -> list[dict[str, str | None]]:
    if not header.attributes:
        return [{} for _ in rows]
    names = [name for _, name in header.attributes]
    columns: list[list[str | None]] = []
    for column, _ in header.attributes:
        values: list[str | None] = list(map(str.strip, map(itemgetter(column), rows)))
        if "" in values:  # blank cells are None
            values = [value or None for value in values]
        columns.append(values)
    return list(map(dict, map(zip, repeat(names), zip(*columns, strict=True))))
