"""Text shown to a person: names and values from outside (file names, headers, URLs) made safe
for a terminal and a log line.

A file name may hold an ANSI escape (`\\x1b[31m`), a carriage return or a newline; printed raw it
recolours the terminal or forges a line of a summary. Everything salesflow shows passes through
`printable`; the data itself (the warehouse, `.source` of an error) keeps the real text.
"""

from __future__ import annotations

from typing import Final

_NAMED: Final = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escape(code: int) -> str:
    char = chr(code)
    if char in _NAMED:
        return _NAMED[char]
    return f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}"


# C0 controls (ESC among them), DEL and C1 controls (a lone 0x9b is an ANSI CSI to some
# terminals); also the Unicode line and paragraph separators, which some viewers break lines on,
# and the bidirectional embeddings, overrides and isolates, which reorder what a line shows.
_ESCAPED_CODES: Final = (
    *range(0x00, 0x20),
    *range(0x7F, 0xA0),
    0x2028,
    0x2029,
    *range(0x202A, 0x202F),
    *range(0x2066, 0x206A),
)
_TABLE: Final = {code: _escape(code) for code in _ESCAPED_CODES}


def printable(text: str) -> str:
    """`text` with every control character written as a visible escape (`\\x1b`, `\\n`, `\\t`,
    `\\u202e`); other characters, non-ASCII letters such as `é` included, stay as they are.

    Idempotent: an escaped text holds no control character, so escaping it again changes nothing.
    """
    return text.translate(_TABLE)
