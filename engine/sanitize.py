"""Make untrusted text safe to show: escaped for a terminal, neutralised for a spreadsheet.

Keys and fields come from upstream, so a value can carry an ESC/OSC sequence (retitle or clear
the terminal), a newline or tab (break a table), a bidi override (reorder what is read) or a
formula (run in a spreadsheet). Tables show such characters as escapes; CSV cells that a
spreadsheet would evaluate get a leading single quote (OWASP "CSV injection"). JSON needs
neither: its encoder escapes control characters and nothing evaluates it.
"""

from __future__ import annotations

import unicodedata
from typing import Any

# Categories shown escaped: controls (C0, DEL, C1), format characters (bidi overrides and
# isolates, zero-width joiners, BOM, tag characters), line/paragraph separators, surrogates.
UNSAFE_CATEGORIES = frozenset({"Cc", "Cf", "Zl", "Zp", "Cs"})
SHORT = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}

# A spreadsheet evaluates a cell starting with one of these (OWASP: = + - @ tab CR; the
# full-width forms too, which some spreadsheets fold to ASCII).
FORMULA_START = ("=", "+", "-", "@", "\t", "\r", "\n", "\uff1d", "\uff0b", "\uff0d", "\uff20")


def is_unsafe(char: str) -> bool:
    """True for a character that must not reach a terminal as it is."""
    return unicodedata.category(char) in UNSAFE_CATEGORIES


def _escape(char: str) -> str:
    if char in SHORT:
        return SHORT[char]
    code = ord(char)
    if code <= 0xFF:
        return f"\\x{code:02x}"
    if code <= 0xFFFF:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"


def terminal_text(text: str) -> str:
    """`text` with every control, format and separator character written as an escape
    (`\\x1b`, `\\n`, `\\u202e`), so what reaches the terminal is inert and on one line.
    Backslashes are left as they are: the output is for reading, not for parsing back."""
    if text.isprintable():  # the common case, and no printable character is unsafe
        return text
    return "".join(_escape(c) if is_unsafe(c) else c for c in text)


def csv_cell(value: Any) -> Any:
    """A CSV cell value a spreadsheet will not evaluate: text starting with a formula character
    gets a leading `'`. Numbers (int, float, Decimal) stay numbers, so -5 stays -5: only text,
    which is where untrusted input lives, is neutralised. Booleans are `true`/`false`."""
    if isinstance(value, str) and value.startswith(FORMULA_START):
        return "'" + value
    if isinstance(value, bool):
        return "true" if value else "false"
    return value
