"""The session's language: English or Korean, per session, never another's.

Where it comes from, first match wins: the URL (``?lang=ko``), the choice already made in this
session (the sidebar's switch, a restored project), the browser's language on the first visit
(``st.context.locale``), English. The URL keeps it, so a reload or a shared link opens in the
same language; the saved project keeps it too (``explorer.projects``).

:func:`frcnn_core.i18n._` finds the session's choice through the resolver installed here, so
the core's messages, the figures and the widget callbacks (which run before the page) all
speak it. Figures cached for every session are keyed on the language
(``explorer.figure_cache``).
"""

from __future__ import annotations

import streamlit as st
from streamlit.runtime.scriptrunner import get_script_run_ctx

from frcnn_core import i18n as core
from frcnn_core.i18n import LANGUAGES, _, normalise

KEY = "lang"  # session state: "en" or "ko"
QUERY = "lang"  # ?lang=ko
SWITCH = "i18n:switch"


def _session_language() -> str | None:
    ctx = get_script_run_ctx(suppress_warning=True)
    if ctx is None:
        return None
    try:
        state = ctx.session_state  # SafeSessionState: no .get()
        return state[KEY] if KEY in state else None  # noqa: SIM401
    except Exception:  # a session being torn down
        return None


core.set_resolver(_session_language)


def current() -> str:
    return core.language()


def browser_language() -> str | None:
    """The browser's language, if we have it (``st.context.locale``: e.g. ``"ko-KR"``)."""
    try:
        return normalise(st.context.locale)
    except Exception:  # no browser: AppTest, a bare script run
        return None


FROM_URL = "i18n:from_url"  # the session's first URL named its language


def named_in_url() -> bool:
    """The link that opened this session named its language (a saved project's does not
    override it)."""
    return bool(st.session_state.get(FROM_URL))


def init() -> str:
    """Settle this run's language (see the module docstring) and keep it in the URL."""
    wanted = normalise(st.query_params.get(QUERY))
    if FROM_URL not in st.session_state:
        st.session_state[FROM_URL] = wanted is not None
    if wanted is not None:
        st.session_state[KEY] = wanted
    elif KEY not in st.session_state:
        st.session_state[KEY] = browser_language() or core.DEFAULT
    lang = st.session_state[KEY]
    if st.query_params.get(QUERY) != lang:
        st.query_params[QUERY] = lang
    st.session_state[SWITCH] = lang
    return lang


def set_language(lang: str) -> None:
    """This session speaks ``lang`` from the next run on (a restored project's language)."""
    code = normalise(lang)
    if code is not None:
        st.session_state[KEY] = code
        st.query_params[QUERY] = code


def _switched() -> None:
    set_language(st.session_state[SWITCH])


def switch() -> None:
    """The sidebar's language switch: both names in their own language, so either reader finds
    theirs."""
    st.segmented_control(
        "Language · 언어",  # i18n: keep (both languages at once)
        options=list(LANGUAGES),
        format_func=LANGUAGES.__getitem__,
        key=SWITCH,
        on_change=_switched,
        required=True,
        help=_("This session's language; the link and your saved work keep it"),
    )
