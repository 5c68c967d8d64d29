"""Widgets every page uses: a setting's widget built from the registry, the page guard, notes.

Every setting has one definition (:data:`frcnn_core.params.PARAMETERS`: label, range, step,
help); :func:`param_widget` builds its slider, toggle, radio or multiselect from it, on any
page. The pipeline's settings (not the widgets) are the source of truth, so a value survives
page switches and "reset to tutorial defaults" rebuilds every widget from them.

A page that shows a what-if (the tutorial-bugs page) passes a ``scope``: its widgets then
hold values of that page's own, and the user's pipeline settings are never touched.
"""

from __future__ import annotations

import contextlib
import functools
import logging
from collections.abc import Iterator, Sequence
from typing import Any

import streamlit as st

from explorer import state
from explorer.runner import PageRun
from explorer.runtime import OUT_OF_MEMORY
from explorer.text import number_text, plain_message
from frcnn_core.i18n import _, ngettext
from frcnn_core.image import ImageError
from frcnn_core.params import Parameter, ParamsError, parameter

log = logging.getLogger("frcnn_explorer")


def _key(path: str, scope: str | None) -> str:
    return f"{state.WIDGET_PREFIX}{scope + ':' if scope else ''}{path}"


def param_widget(path: str, scope: str | None = None, label: str | None = None) -> Any:
    """The widget of setting ``path`` (``"group.field"``), bound to the session's pipeline
    settings, or to the what-if values of ``scope``; returns its value.

    The widget writes the setting in its ``on_change`` callback, which runs before the script:
    every stage computed in that run sees the new value. A value the pipeline cannot run (see
    :func:`frcnn_core.params.validate`) is not applied: the widget goes back to the setting's
    value and the reason is shown under it.
    """
    entry = parameter(path)
    key = _key(path, scope)
    shown = _shown(entry, state.get_param(path, scope))
    _bind(key, shown)
    # The setting is also each widget's default: a browser that lost a widget's state while a
    # first, slow run was replaced by the next (a fresh session on a busy server) mounts it from
    # its default and sends that back as the user's choice. With the minimum as the default,
    # that reset the input frame to 160 x 160 and "truncate" to off.
    common = {
        "key": key,
        "help": _(entry.help),  # the registry's English, in the session's language
        "on_change": _sync,
        "args": (path, key, scope),
    }
    text = label or _(entry.label)
    if entry.kind in ("float", "int"):
        cast = int if entry.kind == "int" else float
        st.slider(
            text,
            min_value=cast(entry.low),
            max_value=cast(entry.high),
            step=cast(entry.step),
            format=entry.fmt,
            value=shown,
            **common,
        )
    elif entry.kind == "bool":
        st.toggle(text, value=shown, **common)
    elif entry.kind == "choice":
        st.radio(
            text,
            options=list(entry.options),
            index=list(entry.options).index(shown),
            format_func=functools.partial(_choice_label, entry),
            horizontal=True,
            **common,
        )
    elif entry.kind == "numbers":
        st.multiselect(
            text,
            sorted(set(entry.suggestions) | set(shown)),
            format_func=number_text,
            accept_new_options=True,
            max_selections=entry.most,
            default=shown,
            **common,
        )
    else:
        raise ValueError(f"{path} has no widget ({entry.kind})")
    error = st.session_state.pop(f"{key}#error", None)  # said once, right after the attempt
    if error:
        st.error(plain_message(error), icon=":material/block:")
    return state.get_param(path, scope)


def _choice_label(entry: Parameter, option: Any) -> str:
    """What a choice's option is called, in the session's language."""
    return _(dict(zip(entry.options, entry.choice_labels, strict=True))[option])


def _shown(entry: Parameter, value: Any) -> Any:
    """The setting as its widget holds it."""
    if entry.kind == "numbers":
        return list(value)
    if entry.kind == "int":
        return int(value)
    if entry.kind == "float":
        return min(max(float(value), float(entry.low)), float(entry.high))  # type: ignore[arg-type]
    return value


def _bind(key: str, current: Any) -> None:
    """Show the setting's value in the widget ``key``.

    A widget keeps its browser-side value across reruns even when its key is deleted, so a
    setting changed elsewhere (reset to defaults, another page, a shared link) is pushed into
    the widget's state whenever it differs from what the widget last showed (``#seen``).
    """
    seen = f"{key}#seen"
    if key not in st.session_state or st.session_state.get(seen) != current:
        st.session_state[key] = current
    st.session_state[seen] = current


def _sync(path: str, key: str, scope: str | None) -> None:
    """Widget callback: check the widget's new value and copy it into the settings."""
    entry = parameter(path)
    error_key = f"{key}#error"
    try:
        value = st.session_state[key]
        if entry.kind == "float" and isinstance(value, float):
            value = entry.on_step(value)  # equal settings, equal cache keys (and warm-up's)
        state.set_param(path, entry.check(value), scope)
    except ParamsError as exc:
        st.session_state[error_key] = _("Not applied: {reason}").format(reason=exc)
        st.session_state[key] = _shown(entry, state.get_param(path, scope))
    else:
        st.session_state.pop(error_key, None)
    # The widget already shows this value: do not push it back (it would undo a newer press).
    st.session_state[f"{key}#seen"] = _shown(entry, state.get_param(path, scope))


def resample_button(path: str, scope: str | None = None) -> None:
    """A "Resample" button for seed setting ``path``, and which seed is in use."""
    entry = parameter(path)
    if st.button(_("Resample"), help=_(entry.help), key=_key(path, scope) + "#resample"):
        state.set_param(path, int(state.get_param(path, scope)) + 1, scope)
        st.rerun()
    st.caption(
        _("{setting}: {value}").format(setting=_(entry.label), value=state.get_param(path, scope))
    )


def intro(title: str, text: str, shapes: str | None = None) -> None:
    """The page title, a plain-language explanation, and the stage's shapes."""
    st.title(title)
    st.markdown(text)
    if shapes:
        st.caption(_("Shapes: {shapes}").format(shapes=shapes))


def no_boxes_notice(run: PageRun, what: str | None = None) -> bool:
    """A note when the image has no ground-truth boxes; True when it has none.

    ``what``: what that means on this page, already in the session's language (default: every
    anchor is background).
    """
    if run.ground_truth.boxes.shape[0]:
        return False
    what = what or _("every anchor is background")
    st.info(
        _(
            "No ground-truth boxes yet: {what}. Draw boxes on the **Image & ground truth** page."
        ).format(what=what)
    )
    return True


@contextlib.contextmanager
def page_guard() -> Iterator[None]:
    """Turn any failure into a clear message on the page; the user's data stays untouched."""
    try:
        yield
    except ImageError as exc:
        reason = plain_message(str(exc))
        st.error(
            _(
                "The current image cannot be used: {reason} Choose another on the Image page."
            ).format(reason=reason)
        )
    except ParamsError as exc:
        st.error(
            _("These settings cannot run: {reason}. Reset to the tutorial defaults.").format(
                reason=plain_message(str(exc))
            )
        )
    except OUT_OF_MEMORY as exc:  # a step out of GPU memory was retried on the CPU already
        log.warning("page ran out of memory: %s", exc)
        st.error(
            _(
                "The server ran out of memory for this page. Your image, boxes and settings are "
                "kept; try a smaller input frame or fewer RoIs, or try again in a moment."
            )
        )
    except Exception as exc:
        log.exception("page failed")
        st.error(
            _(
                "Something went wrong on this page ({error}). Your image, boxes and settings are "
                "kept; try another setting or reset to defaults."
            ).format(error=type(exc).__name__)
        )


def run_or_stop(params: Any = None) -> PageRun:
    """The session's pipeline; stops the page with a message when there is no image."""
    if state.image() is None:
        st.warning(_("No image yet: choose a sample or upload one on the Image page."))
        st.stop()
    return PageRun(params)


def timing_caption(run: PageRun, names: Sequence[str]) -> None:
    """How long this run's server-side steps took (only those computed in this run)."""
    parts = [
        _("{step}: {ms:.0f} ms").format(
            step=_(run.graph[n].title if n in run.graph else n), ms=run.timings[n] * 1000
        )
        for n in names
        if n in run.timings
    ]
    if parts:
        st.caption(_("Server compute: {steps}").format(steps=", ".join(parts)))


def queue_notice(ahead: int) -> None:
    """A training waiting for the server: how many run or wait before it (Train and
    Fine-tune: train pages)."""
    st.info(
        ngettext(
            "Waiting for the server: {n} training ahead of yours. Yours starts as soon "
            "as one ends.",
            "Waiting for the server: {n} trainings ahead of yours. Yours starts as soon "
            "as one ends.",
            ahead,
        ).format(n=ahead),
        icon=":material/hourglass_top:",
    )
