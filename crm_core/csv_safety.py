"""Cells bound for a CSV file that people open in a spreadsheet: one rule that keeps them from becoming formulas."""

from __future__ import annotations

import re

# What makes Excel, LibreOffice or Google Sheets read a cell as a formula (or a DDE call), after OWASP's list.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r", "\n")
# A number, or a ;-list of numbers like the export's phones column (+15551230001;+15551230002): with no letters
# and no punctuation but + - . ; it can name no function, cell or program, so it is left readable as it is.
_NUMBERS = re.compile(r"[+-]?\d+(?:\.\d+)?(?:;[+-]?\d+(?:\.\d+)?)*")


def safe_cell(value: object) -> str:
    """`value` as CSV cell text that no spreadsheet evaluates: a leading formula character gets a ' before it."""
    text = "" if value is None else str(value)
    if text.startswith(FORMULA_STARTS) and not _NUMBERS.fullmatch(text):
        return "'" + text
    return text


def safe_row(row: dict[str, str]) -> dict[str, str]:
    return {column: safe_cell(value) for column, value in row.items()}
