"""User text (labels, file names) shown as inert text: never markdown, HTML or LaTeX."""

from __future__ import annotations

import html
import re

_MARKDOWN_SPECIAL = re.compile(r"([\\`*_{}\[\]()<>#+\-.!|~$:=^&])")


def plain(text: str) -> str:
    """User text made inert for Streamlit markdown (no emphasis, links, colours or LaTeX).

    Streamlit reads ``:material/name:`` icons after markdown escapes are resolved, so a
    zero-width space also follows each colon that precedes a letter.
    """
    escaped = _MARKDOWN_SPECIAL.sub(r"\\\1", " ".join(str(text).split()))
    return re.sub(r":(?=[A-Za-z])", ":\u200b", escaped)


def html_text(text: object) -> str:
    """User text for plotly, which reads a few HTML tags (``<b>``, ``<a href>``) in labels."""
    return html.escape(str(text))


def number_text(value: object) -> str:
    """A number as ``%g`` (``8.0`` -> "8", ``0.5`` -> "0.5"); anything else as typed."""
    try:
        return f"{float(value):g}"  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return str(value)
