"""The header row: which columns are identifiers, which are attributes. Names are matched
without regard to case or surrounding spaces; a header Ferry cannot use fails the file, with a
message that quotes at most a few names (a header can be a megabyte of them)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from service.datasets.contacts import ATTRIBUTE_NAME, IDENTIFIERS, RESERVED_NAMES
from service.imports.errors import InvalidFileError, excerpt

# More columns than any contact file has (Brevo accounts have far fewer attributes): such a
# "header" is a data line or a generated file, and every row would be as wide.
MAX_COLUMNS = 1000


@dataclass(frozen=True)
class Header:
    names: list[str]  # as written in the file
    identifiers: list[tuple[int, str]]  # (column, field), e.g. (0, "email")
    attributes: list[tuple[int, str]]  # (column, attribute name), e.g. (2, "FIRSTNAME")


def parse_header(fields: list[str]) -> Header:
    if len(fields) > MAX_COLUMNS:
        raise InvalidFileError(
            f"header: {len(fields)} columns; at most {MAX_COLUMNS} are accepted (it begins "
            f"{_names(fields[:5])})"
        )
    names = [name.strip().removeprefix("\ufeff").strip() for name in fields]
    normalised = [name.upper() for name in names]
    _check_distinct(normalised)
    identifiers: list[tuple[int, str]] = []
    attributes: list[tuple[int, str]] = []
    bad: list[str] = []
    for column, name in enumerate(normalised):
        if name in IDENTIFIERS:
            identifiers.append((column, IDENTIFIERS[name]))
        elif name in RESERVED_NAMES:
            raise InvalidFileError(
                f"header: {excerpt(repr(names[column]))} cannot be set by an import"
            )
        elif ATTRIBUTE_NAME.fullmatch(name):
            attributes.append((column, name))
        else:
            bad.append(names[column])
    if bad:
        raise InvalidFileError(
            f"header: {_names(bad)} are not usable column names: attribute names are letters, "
            "digits and _ (at most 64)"
        )
    # In a fixed order (email, ext_id, sms, whatsapp, landline_number): when a row repeats
    # several values, the first in this order names its duplicate category.
    priority = list(IDENTIFIERS.values())
    identifiers.sort(key=lambda pair: priority.index(pair[1]))
    if not identifiers:
        raise InvalidFileError(
            f"header: no identifier column; name at least one of {sorted(IDENTIFIERS)} "
            f"(found {_names(names)})"
        )
    return Header(names, identifiers, attributes)


def _check_distinct(normalised: list[str]) -> None:
    for column, name in enumerate(normalised, start=1):
        if not name:
            raise InvalidFileError(f"header: column {column} has no name")
    repeated = sorted(name for name, count in Counter(normalised).items() if count > 1)
    if repeated:
        raise InvalidFileError(f"header: columns appear more than once: {_names(repeated)}")


def _names(names: list[str]) -> str:
    """The names as a list, cut short (with a marker) when long."""
    return excerpt(repr(names))
