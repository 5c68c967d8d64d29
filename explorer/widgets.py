"""Widgets every page uses: parameter sliders bound to session state, the page guard, notes."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator, Sequence
from typing import Any

import streamlit as st

from explorer import state
from explorer.compute import OUT_OF_MEMORY, Stages
from frcnn_core.image import ImageError

log = logging.getLogger("frcnn_explorer")


def param_slider(
    path: str,
    label: str,
    min_value: float,
    max_value: float,
    step: float,
    help: str | None = None,
    fmt: str | None = None,
) -> Any:
    """A slider bound to the session's parameter ``path`` ("stage.field").

    The parameter (not the widget) is the source of truth, so the value survives page switches
    and "reset to tutorial defaults" rebuilds the widget from it. The widget writes the
    parameter in its ``on_change`` callback, which runs before the script: every stage computed
    in that run, wherever the page builds its ``Stages``, sees the new value.
    """
    current = state.get_param(path)
    cast = int if isinstance(current, int) and isinstance(step, int) else float
    key = f"{state.WIDGET_PREFIX}{path}"
    _bind(key, min(max(cast(current), cast(min_value)), cast(max_value)))
    return st.slider(
        label,
        min_value=cast(min_value),
        max_value=cast(max_value),
        step=cast(step),
        key=key,
        help=help,
        format=fmt,
        on_change=_sync,
        args=(path, key, cast),
    )


def _bind(key: str, current: Any) -> None:
    """Show the parameter's value in the widget ``key``.

    A widget keeps its browser-side value across reruns even when its key is deleted, so a
    parameter changed elsewhere (reset to defaults, another page) is pushed into the widget's
    state whenever it differs from what the widget last showed (the ``#seen`` shadow key).
    """
    seen = f"{key}#seen"
    if key not in st.session_state or st.session_state.get(seen) != current:
        st.session_state[key] = current
    st.session_state[seen] = current


def _sync(path: str, key: str, cast: Any = None) -> None:
    """Widget callback: copy the widget's new value into the session's parameters."""
    value = st.session_state[key]
    state.set_param(path, cast(value) if cast is not None else value)
    # The widget already shows this value: do not push it back (it would undo a newer press).
    st.session_state[f"{key}#seen"] = state.get_param(path)


def param_select(
    path: str,
    label: str,
    options: Sequence[Any],
    format_func=str,
    help: str | None = None,
    horizontal: bool = True,
) -> Any:
    """A radio bound to the session's parameter ``path``.

    ``format_func`` is applied here, once per option: Streamlit keeps a widget's format_func
    for the whole session, and a lambda defined in a page would keep that page run's namespace
    (its Stages, features, image) alive; a dict's lookup holds only the option texts.
    """
    current = state.get_param(path)
    key = f"{state.WIDGET_PREFIX}{path}"
    _bind(key, current)
    texts = {option: str(format_func(option)) for option in options}
    return st.radio(
        label,
        options=list(options),
        key=key,
        format_func=texts.__getitem__,
        help=help,
        horizontal=horizontal,
        on_change=_sync,
        args=(path, key),
    )


def param_toggle(path: str, label: str, help: str | None = None) -> bool:
    """A toggle bound to the session's boolean parameter ``path``."""
    current = bool(state.get_param(path))
    key = f"{state.WIDGET_PREFIX}{path}"
    _bind(key, current)
    return st.toggle(label, key=key, help=help, on_change=_sync, args=(path, key, bool))


def require_router() -> None:
    """Route a first request through ``app.py``.

    On a fresh server, the first request for ``/some_page`` runs that page file alone: Streamlit
    keeps its legacy ``pages/`` directory mode until ``st.navigation`` has run once. A rerun
    after leaving that mode goes through the router (sidebar, session set-up) as every later
    request does.
    """
    try:
        from streamlit.runtime.pages_manager import PagesManager
    except ImportError:  # a Streamlit without the legacy mode
        return
    # The router's state.init() has not run in this session: the page was run on its own.
    if PagesManager.uses_pages_directory and state.IMAGE not in st.session_state:
        PagesManager.uses_pages_directory = False
        st.rerun()


def intro(title: str, text: str, shapes: str | None = None) -> None:
    """The page title, a plain-language explanation, and the stage's shapes."""
    require_router()
    st.title(title)
    st.markdown(text)
    if shapes:
        st.caption(f"Shapes: {shapes}")


def no_boxes_notice(stages: Stages) -> None:
    if stages.gt_boxes.shape[0] == 0:
        st.info(
            "No ground-truth boxes yet: every anchor is background. Draw boxes on the "
            "**Image & ground truth** page to see positives."
        )


@contextlib.contextmanager
def page_guard() -> Iterator[None]:
    """Turn any failure into a clear message on the page; the user's data stays untouched."""
    try:
        yield
    except ImageError as exc:
        st.error(f"The current image cannot be used: {exc} Choose another on the Image page.")
    except OUT_OF_MEMORY as exc:  # a step out of GPU memory was retried on the CPU already
        log.warning("page ran out of memory: %s", exc)
        st.error(
            "The server ran out of memory for this page. Your image, boxes and settings are "
            "kept; try a smaller input frame or fewer RoIs, or try again in a moment."
        )
    except Exception as exc:
        log.exception("page failed")
        st.error(
            f"Something went wrong on this page ({type(exc).__name__}: {exc}). "
            "Your image, boxes and settings are kept; try another setting or reset to defaults."
        )


def stages_or_stop() -> Stages:
    """The session's pipeline; stops the page with a message when there is no usable image."""
    if state.image() is None:
        st.warning("No image yet: choose a sample or upload one on the Image page.")
        st.stop()
    return Stages()


def timing_caption(stages: Stages, names: Sequence[str]) -> None:
    parts = [f"{n}: {stages.timings[n] * 1000:.0f} ms" for n in names if n in stages.timings]
    if parts:
        st.caption("Server compute: " + ", ".join(parts))
