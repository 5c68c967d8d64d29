"""Text from users and files (labels, class names, file names) as one bounded, visible line.

Labels come from people and from files other people made (a weights file's class names, a
dataset's classes): they may hold newlines, control characters, marks that reverse or hide
text, or pages of characters. :func:`one_line` turns any of that into one line of at most
``limit`` characters that reads as what it is, with an ellipsis where it was cut.
"""

from __future__ import annotations

import unicodedata

ELLIPSIS = "…"
# Marks that reorder or hide text (right-to-left overrides and isolates, zero-width joiners,
# the byte-order mark): they could make a label read as something else, so they are shown by
# their code point.
INVISIBLE = frozenset(
    {*range(0x200B, 0x2010), *range(0x202A, 0x202F), *range(0x2060, 0x2070), 0x061C, 0xFEFF}
)


def one_line(text: object, limit: int) -> str:
    """``text`` as one line of at most ``limit`` characters: white space (newlines included)
    folded to single spaces, control characters dropped, direction and zero-width marks shown
    as ``<U+202E>``, and an ellipsis where it was cut."""
    out = []
    for ch in " ".join(str(text).split()):
        code = ord(ch)
        if code in INVISIBLE:
            out.append(f"<U+{code:04X}>")
        elif unicodedata.category(ch) != "Cc":
            out.append(ch)
    result = "".join(out)
    if len(result) > limit:
        result = result[: limit - 1] + ELLIPSIS
    return result
