"""Duplicates inside one file: the first row accepted with a value of an identifier wins; a
later row with the same value is rejected, naming the line it repeats.

Every identifier value of every accepted row must be remembered until the end of the file, so
the memory is per value, kept small: a keyed 64-bit fingerprint and a line number, 12 bytes in
flat arrays at most half full (about 24 bytes a value), instead of the ~100 bytes of a Python
set entry holding the string. The fingerprint is Python's own string hash (SipHash, keyed per
process) of the value behind a random prefix drawn per import, a tenth of the cost of a
separate keyed hash: no file can be crafted to make two values collide without knowing both
keys; by chance, two of a million values collide with odds of about 3 in 10^8. (Where the
interpreter's hash is narrower than 64 bits, BLAKE2b keyed per import is used instead.)
"""

from __future__ import annotations

import hashlib
import os
import sys
from array import array

from service.imports.validation import ContactRow, Outcome, Rejection

_INITIAL_SLOTS = 1 << 12
_HASH_BITS = 64
_WIDE_HASH = sys.hash_info.width >= _HASH_BITS
_BITS = (1 << 64) - 1


class FingerprintTable:
    """An open-addressing hash table of (fingerprint -> line) in two flat arrays, sized for
    `expected` values from the start when that is known (growing costs a pass over them)."""

    def __init__(self, expected: int = 0) -> None:
        self._key = os.urandom(16)
        # Before the value: the key, then the kind of identifier (the same text as an email and
        # as an ext_id is two values).
        self._prefixes: dict[str, str] = {}
        size = _INITIAL_SLOTS
        while size < 2 * expected:
            size *= 2
        self._allocate(size)

    def __len__(self) -> int:
        return self._used

    def prefix(self, kind: str) -> str:
        prefix = self._prefixes.get(kind)
        if prefix is None:
            prefix = self._prefixes[kind] = f"{self._key.hex()}{kind}\x1f"
        return prefix

    def fingerprint(self, kind: str, value: str) -> int:
        if _WIDE_HASH:
            return (hash(self.prefix(kind) + value) & _BITS) | 1  # never 0 (an empty slot)
        digest = hashlib.blake2b(
            f"{kind}\x1f{value}".encode(), digest_size=8, key=self._key
        ).digest()
        return int.from_bytes(digest, "little") | 1

    def line_of(self, fingerprint: int) -> int | None:
        slots, mask = self._slots, self._mask
        index = fingerprint & mask
        while True:
            held = slots[index]
            if held == fingerprint:
                return self._lines[index]
            if held == 0:
                return None
            index = (index + 1) & mask

    def add(self, fingerprint: int, line: int) -> None:
        if (self._used + 1) * 2 > len(self._slots):
            self._grow()
        self._place(fingerprint, line)

    def _place(self, fingerprint: int, line: int) -> None:
        slots, mask = self._slots, self._mask
        index = fingerprint & mask
        while (held := slots[index]) and held != fingerprint:
            index = (index + 1) & mask
        if not held:
            self._used += 1
        slots[index] = fingerprint
        self._lines[index] = line

    def _allocate(self, size: int) -> None:
        self._slots = array("Q", bytes(8 * size))
        self._lines = array("I", bytes(4 * size))
        self._mask = size - 1
        self._used = 0

    def _grow(self) -> None:
        slots, lines = self._slots, self._lines
        self._allocate(len(slots) * 2)
        for fingerprint, line in zip(slots, lines, strict=True):
            if fingerprint:
                self._place(fingerprint, line)


class DuplicateFinder(FingerprintTable):
    """Checks a row's identifiers against the earlier accepted rows of the file."""

    def earlier(self, identifiers: dict[str, str]) -> tuple[str, int] | None:
        """(field, line) of the first identifier an earlier accepted row had, in the order of
        `identifiers`; None when every value is new."""
        for field, value in identifiers.items():
            line = self.line_of(self.fingerprint(field, value))
            if line is not None:
                return field, line
        return None

    def accept(self, identifiers: dict[str, str], line: int) -> None:
        for field, value in identifiers.items():
            self.add(self.fingerprint(field, value), line)

    def sift(self, outcomes: list[Outcome], *, only: str | None = None) -> list[Outcome]:
        """`outcomes` in order, each row that repeats an identifier of an earlier accepted row
        replaced by its rejection (`duplicate_<field>`, naming the line), the others accepted:
        `earlier` and `accept` row by row, with the table's lookups written out (the loop runs
        for every row of every import). `only`: the one identifier every row has (the file has
        one identifier column), the most common case, with a shorter loop."""
        if not _WIDE_HASH:
            return [self._sift_one(outcome) for outcome in outcomes]
        if only is not None:
            return self._sift_only(outcomes, only)
        prefixes = self._prefixes
        slots, lines, mask = self._slots, self._lines, self._mask
        sifted: list[Outcome] = []
        for outcome in outcomes:
            if type(outcome) is not ContactRow:
                sifted.append(outcome)
                continue
            prints: list[int] = []
            for field, value in outcome.identifiers.items():
                prefix = prefixes.get(field) or self.prefix(field)
                print_ = (hash(prefix + value) & _BITS) | 1
                index = print_ & mask
                while (held := slots[index]) and held != print_:
                    index = (index + 1) & mask
                if held:  # seen before
                    sifted.append(_duplicate(outcome, field, lines[index]))
                    break
                prints.append(print_)
            else:
                if len(prints) == 1 and (self._used + 1) * 2 <= mask + 1:
                    slots[index] = print_  # the free slot its lookup ended on
                    lines[index] = outcome.line
                    self._used += 1
                else:
                    for print_ in prints:
                        self.add(print_, outcome.line)
                    slots, lines, mask = self._slots, self._lines, self._mask
                sifted.append(outcome)
        return sifted

    def _sift_only(self, outcomes: list[Outcome], field: str) -> list[Outcome]:
        prefix = self.prefix(field)
        slots, lines, mask = self._slots, self._lines, self._mask
        sifted: list[Outcome] = []
        for outcome in outcomes:
            if type(outcome) is not ContactRow:
                sifted.append(outcome)
                continue
            print_ = (hash(prefix + outcome.identifiers[field]) & _BITS) | 1
            index = print_ & mask
            while (held := slots[index]) and held != print_:
                index = (index + 1) & mask
            if held:
                sifted.append(_duplicate(outcome, field, lines[index]))
                continue
            if (self._used + 1) * 2 <= mask + 1:
                slots[index] = print_
                lines[index] = outcome.line
                self._used += 1
            else:
                self.add(print_, outcome.line)
                slots, lines, mask = self._slots, self._lines, self._mask
            sifted.append(outcome)
        return sifted

    def _sift_one(self, outcome: Outcome) -> Outcome:
        if type(outcome) is not ContactRow:
            return outcome
        earlier = self.earlier(outcome.identifiers)
        if earlier is not None:
            return _duplicate(outcome, *earlier)
        self.accept(outcome.identifiers, outcome.line)
        return outcome


def _duplicate(row: ContactRow, field: str, line: int) -> Rejection:
    return Rejection(
        row.line,
        f"duplicate_{field}",
        f"{field.upper()} {row.identifiers[field]} is already on line {line}",
        row.fields,
        row.raw,
    )
