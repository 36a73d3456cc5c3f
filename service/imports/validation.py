"""One row of the file: well formed, or rejected with a reason code, a message and, where Brevo
has one, the report category it belongs to.

Identifiers are normalised so that spellings of the same value match: emails in lower case,
phone numbers in E.164 (`+` and 7 to 15 digits, the first not 0; spaces, dots, dashes, slashes
and parentheses dropped; a leading `00` read as `+`). Attribute values are kept as text, with
surrounding spaces trimmed; a blank cell is None.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from service.imports.header import Header

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


@dataclass(slots=True)
class ContactRow:
    line: int
    identifiers: dict[str, str]  # field -> normalised value, only those given
    attributes: dict[str, str | None]  # name -> value, None for a blank cell
    fields: list[str]
    raw: str


@dataclass(frozen=True, slots=True)
class Rejection:
    line: int
    reason: str
    message: str
    fields: list[str] | None
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
