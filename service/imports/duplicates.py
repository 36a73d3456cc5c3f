"""Duplicates inside one file: the first row accepted with a value of an identifier wins; a
later row with the same value is rejected, naming the line it repeats.

Every identifier value of every accepted row must be remembered until the end of the file, so
the memory is per value, kept small: a keyed 64-bit fingerprint and a line number, 12 bytes in
flat arrays at most half full (about 24 bytes a value), instead of the ~100 bytes of a Python
set entry holding the string. The key is random per import, so no file can be crafted to make
two values collide; by chance, two of a million values collide with odds of about 3 in 10^8.
"""

from __future__ import annotations

import hashlib
import os
from array import array

_INITIAL_SLOTS = 1 << 12


class FingerprintTable:
    """An open-addressing hash table of (fingerprint -> line) in two flat arrays."""

    def __init__(self) -> None:
        self._key = os.urandom(16)
        self._allocate(_INITIAL_SLOTS)

    def __len__(self) -> int:
        return self._used

    def fingerprint(self, kind: str, value: str) -> int:
        digest = hashlib.blake2b(
            f"{kind}\x1f{value}".encode(), digest_size=8, key=self._key
        ).digest()
        return int.from_bytes(digest, "little") | 1  # never 0, which marks an empty slot

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
        while slots[index] not in (0, fingerprint):
            index = (index + 1) & mask
        if slots[index] == 0:
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


class DuplicateFinder:
    """Checks a row's identifiers against the earlier accepted rows of the file."""

    def __init__(self) -> None:
        self._table = FingerprintTable()

    def earlier(self, identifiers: dict[str, str]) -> tuple[str, int] | None:
        """(field, line) of the first identifier an earlier accepted row had, in the order of
        `identifiers`; None when every value is new."""
        table = self._table
        for field, value in identifiers.items():
            line = table.line_of(table.fingerprint(field, value))
            if line is not None:
                return field, line
        return None

    def accept(self, identifiers: dict[str, str], line: int) -> None:
        table = self._table
        for field, value in identifiers.items():
            table.add(table.fingerprint(field, value), line)
