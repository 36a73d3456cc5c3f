"""Cells a spreadsheet would run as a formula: shared by the CSV files Ferry writes, the export
files and the import reports alike, so both escape the same starters (OWASP's advice)."""

from __future__ import annotations

# OWASP's list: formula starters, plus tab and carriage return which some spreadsheets strip first.
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")


def escape_formula(value: str) -> str:
    """`value` with a `'` before it if a spreadsheet would run it as a formula."""
    return "'" + value if value.startswith(FORMULA_PREFIXES) else value
