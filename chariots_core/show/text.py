"""User text on its way into a drawing: cleaned, shortened and measured.

Names come from users (node names, op class names, dataset paths) and may hold anything,
including characters that no XML document may contain. Each renderer escapes for its own
format; what every format needs first is here.
"""

from __future__ import annotations

import re
import unicodedata

__all__ = ["clean", "shorten", "text_width", "CHAR_WIDTH"]

# Control characters (tab and newline included: labels are one line), lone surrogates and the
# two non-characters XML forbids.
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff\ufffe\uffff]")

CHAR_WIDTH = 0.62
"""Width of one character in em of the monospace font drawings use (DejaVu Sans Mono: 0.602)."""


def clean(text: str, lines: bool = False) -> str:
    """``text`` with every control or XML-forbidden character replaced by U+FFFD.

    :param lines: keep newlines (in tooltips, which may span several lines).
    """
    if lines:
        return "\n".join(_UNSAFE.sub("\ufffd", line) for line in text.split("\n"))
    return _UNSAFE.sub("\ufffd", text)


def shorten(text: str, limit: int) -> str:
    """``text`` cut to at most ``limit`` characters, ending in an ellipsis when cut."""
    return text if len(text) <= limit else text[: max(limit - 1, 0)] + "…"


def text_width(text: str, font_size: float) -> float:
    """The width ``text`` takes in the monospace font, in pixels: wide (CJK) characters count twice."""
    cells = sum(2 if unicodedata.east_asian_width(char) in "WF" else 1 for char in text)
    return cells * CHAR_WIDTH * font_size
