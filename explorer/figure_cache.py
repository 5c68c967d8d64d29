"""Figures that are slow to build and do not change when a page's own slider moves.

Plotly checks every property it is given, so a figure of nine heatmaps takes tens of
milliseconds to build: a good part of a rerun's budget when a learner drags a slider that the
figure does not even depend on. Such figures are kept here, keyed on exactly what they show.

The cache is shared by every session (``st.cache_resource``): a key must name everything the
figure depends on (image digest, boxes, parameters; trained weights where they matter), and a
figure taken from it must not be modified (``st.plotly_chart`` only serialises it).
"""

from __future__ import annotations

from collections.abc import Callable, Hashable

import plotly.graph_objects as go
import streamlit as st

from frcnn_core.i18n import language

FIGURE_CACHE_ENTRIES = 64
FIGURE_CACHE_TTL_S = 3600


def figure(kind: str, key: Hashable, _build: Callable[[], go.Figure]) -> go.Figure:
    """``_build()``, once per (kind, key) and language: its text is in the caller's (``_build``
    itself is not part of the key)."""
    return _figure(kind, key, language(), _build)


@st.cache_resource(max_entries=FIGURE_CACHE_ENTRIES, ttl=FIGURE_CACHE_TTL_S, show_spinner=False)
def _figure(kind: str, key: Hashable, lang: str, _build: Callable[[], go.Figure]) -> go.Figure:
    return _build()
