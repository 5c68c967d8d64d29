"""Text that comes from users or files (labels, class names, file names, a dataset's or a
project's contents) shown as inert text everywhere: never markdown, HTML or LaTeX, one line,
no invisible direction controls, and at most :data:`MAX_CHARS` characters with a visible
ellipsis.

:func:`shown` makes such text safe to put anywhere that does not interpret it (tables, widget
options, file names); :func:`plain` for Streamlit's markdown (messages, captions); and
:func:`html_text` for plotly, which reads a few HTML tags in labels and hover text.
"""

from __future__ import annotations

import html
import re

from frcnn_core.text import one_line

# A label is a word or two; a file name a few words. Longer text is cut, with an ellipsis.
MAX_CHARS = 80
# A message of ours with such text in it.
MAX_MESSAGE_CHARS = 1000
_MARKDOWN_SPECIAL = re.compile(r"([\\`*_{}\[\]()<>#+\-.!|~$:=^&])")


def shown(text: object, limit: int = MAX_CHARS) -> str:
    """``text`` as one visible line of at most ``limit`` characters (see
    :func:`frcnn_core.text.one_line`): safe wherever text is not interpreted (tables, widget
    options, file names)."""
    return one_line(text, limit)


def plain(text: object, limit: int = MAX_CHARS) -> str:
    """User text made inert for Streamlit markdown (no emphasis, links, images, colours,
    LaTeX or HTML), after :func:`shown`.

    Streamlit reads ``:material/name:`` icons and ``:red[...]`` colours after markdown escapes
    are resolved, so a zero-width space also follows each colon that precedes a letter.
    """
    escaped = _MARKDOWN_SPECIAL.sub(r"\\\1", shown(text, limit))
    return re.sub(r":(?=[A-Za-z])", ":\u200b", escaped)


def plain_message(text: object) -> str:
    """A whole message that may hold user text (already bounded where it came in: labels,
    file names, class names), made inert for markdown like :func:`plain`."""
    return plain(text, MAX_MESSAGE_CHARS)


def html_text(text: object, limit: int = MAX_CHARS) -> str:
    """User text for plotly, which reads a few HTML tags (``<b>``, ``<a href>``) in labels."""
    return html.escape(shown(text, limit))


def number_text(value: object) -> str:
    """A number as ``%g`` (``8.0`` -> "8", ``0.5`` -> "0.5"); anything else as typed."""
    try:
        return f"{float(value):g}"  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return shown(value)
