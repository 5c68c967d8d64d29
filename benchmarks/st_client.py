"""A Streamlit client without a browser: one session speaking the app's own websocket protocol.

:class:`StreamlitSession` does what the browser's JavaScript does for a user, with the protobuf
messages that the installed ``streamlit`` package ships (``BackMsg``, ``ForwardMsg``,
``WidgetStates``), and nothing else: no HTML, no JavaScript, no rendering. Many sessions fit in
one process, so a load test measures the server and not the browsers (see
:mod:`benchmarks.class_load`), and a test can drive several users at once (two students, an
instructor and a class, two replicas behind a proxy).

Usage (inside ``async`` code; every call has a timeout and raises :class:`ActionTimeout`)::

    from benchmarks.st_client import LocalApp, StreamlitSession

    with LocalApp() as app:                                    # streamlit run app.py, free port
        async with StreamlitSession(app.url) as s:             # connect + first run
            print(s.page, s.metric("Input frame (W x H)"))     # "" (default page), "800 x 800"
            await s.navigate("labelling")                      # url path, "" = default page
            r = await s.set_value("w:anchor_targets.pos_iou", 0.5)   # user key or label
            print(r.latency_s, s.metric("Positive"))           # request sent -> script_finished
            await s.navigate("")
            await s.upload("image_page:upload", "cat.jpg", jpeg_bytes)
            await s.edit_table("image_page:table:*", added_rows=[
                {"label": "cat", "x1": 10, "y1": 10, "x2": 90, "y2": 80}])
            print(s.texts("caption", container="sidebar"))

How the browser talks to the server (what this module reproduces):

- **Connect.** ``GET /_stcore/health`` and ``/_stcore/host-config`` (the health answer sets the
  ``_streamlit_xsrf`` cookie), then a websocket to ``/_stcore/stream`` with the subprotocols
  ``streamlit, <xsrf token>``. The server runs nothing until the client sends a ``rerun_script``
  ``BackMsg``; its ``ClientState`` carries the url path (``page_name``) and query string of the
  address the user opened.
- **A run.** The server answers a ``rerun_script`` with ``new_session`` (session id, the page's
  ``page_script_hash``, a run id), then one ``delta`` per element or container, addressed by a
  ``delta_path`` (``[root, i, j, ...]``; root 0 = main, 1 = sidebar, 2 = event, 3 = bottom), and
  ends with ``script_finished``. Elements of the previous run that the new run did not write are
  dropped when it finishes. ``navigation`` lists the pages (url path, title, script hash).
- **Widgets.** A widget's id is its element's ``id`` (``$$ID-<hash>-<user key or None>``, made
  by the server). The browser keeps one ``WidgetState`` per widget on the page: the value the
  server sent (``set_value``) or the user set, else the element's default, and sends *all* of
  them in every ``rerun_script``, with the changed one changed (a button sends
  ``trigger_value=True`` once). Wire types: slider ``double_array_value``, select-slider and
  multiselect ``string_array_value`` (the options' display strings), selectbox and radio
  ``string_value`` (the option's display string), checkbox and toggle ``bool_value``, text input
  ``string_value``, number input ``double_value``, data editor ``string_value`` holding JSON edits
  ``{"edited_rows": {"0": {"label": "x"}}, "added_rows": [{"label": ..., "x1": ...}],
  "deleted_rows": [1]}`` relative to the table the server sent. A widget drawn inside a fragment
  (its delta's ``fragment_id``) reruns only that fragment. A new page is a ``rerun_script`` with
  that page's ``page_script_hash``.
- **Uploads.** ``file_urls_request`` (a request id and the file names) -> ``file_urls_response``
  (a file id, upload and delete url per file) -> HTTP ``PUT`` of the file as multipart form data
  to the upload url (with the ``X-Xsrftoken`` header and cookie) -> the uploader's widget state
  becomes ``file_uploader_state_value`` with ``{file_id, name, size, file_urls}``, and a rerun.
- **Message cache.** Large elements are marked ``cacheable``; the client lists the hashes it
  holds in every rerun and the server then sends a short ``ref_hash`` instead of an unchanged
  element. Entries older than ``max_cached_message_age`` runs are dropped, as the browser does.
- **Timers.** ``auto_rerun`` (a fragment's ``run_every``) makes the client rerun that fragment
  every ``interval`` seconds until ``stop_auto_rerun`` or the next full run.

What the browser does that this client does not: fetch media files and static assets, run custom
components' JavaScript (the drawing canvas reports its strokes, and asks for one more run when
its background image has loaded), send heartbeats, or reconnect after a dropped websocket.

Only local servers are spoken to (127.0.0.1, localhost, ::1): this is a test and benchmark tool.
"""

from __future__ import annotations

import asyncio
import contextlib
import fnmatch
import io
import json
import mimetypes
import os
import re
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from streamlit.proto.BackMsg_pb2 import BackMsg
from streamlit.proto.ClientState_pb2 import ClientState
from streamlit.proto.Common_pb2 import FileURLs
from streamlit.proto.ForwardMsg_pb2 import ForwardMsg
from streamlit.proto.WidgetStates_pb2 import WidgetState
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_TIMEOUT_S = 60.0
LOCAL_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
XSRF_COOKIE = "_streamlit_xsrf"
ROOTS = {0: "main", 1: "sidebar", 2: "event", 3: "bottom"}
TIMER_GRACE_S = 2.0  # how long an action waits for a fragment timer's run to end

# script_finished statuses that end a run (FINISHED_EARLY_FOR_RERUN is followed by another run).
_ENDED = {
    ForwardMsg.FINISHED_SUCCESSFULLY: "finished",
    ForwardMsg.FINISHED_WITH_COMPILE_ERROR: "compile_error",
    ForwardMsg.FINISHED_FRAGMENT_RUN_SUCCESSFULLY: "fragment",
}
_MARKDOWN_KINDS = {2: "caption", 3: "code", 4: "latex", 5: "divider"}
_ALERT_KINDS = {1: "error", 2: "warning", 3: "info", 4: "success"}
_WIDGETS = frozenset(
    {
        "slider",
        "select_slider",
        "selectbox",
        "radio",
        "multiselect",
        "checkbox",
        "toggle",
        "text_input",
        "text_area",
        "number_input",
        "button",
        "file_uploader",
        "data_editor",
    }
)


class StreamlitClientError(RuntimeError):
    """The server refused or closed the connection, or the page has no such widget or page."""


class ActionTimeout(StreamlitClientError, TimeoutError):
    """An action's run (or its upload) did not finish within its timeout."""


class ConnectionLost(StreamlitClientError):
    """The websocket is closed (or was never opened): the session cannot act any more."""


# -- the element tree -----------------------------------------------------------------------


@dataclass(frozen=True)
class Element:
    """One element of the page, as the last runs drew it.

    Attributes:
        path: its ``delta_path``: ``(root, i, j, ...)``, root 0 main, 1 sidebar, 2 event, 3 bottom.
        type: the ``Element`` proto's field, e.g. ``"markdown"``, ``"metric"``, ``"slider"``.
        kind: what the app called: ``type`` refined, e.g. ``"caption"`` (a markdown of caption
            type), ``"error"`` (an alert), ``"toggle"``, ``"select_slider"``, ``"data_editor"``.
        proto: the element's own message (``element.slider``, ``element.metric``, ...).
        fragment_id: the fragment that drew it, "" outside fragments.
    """

    path: tuple[int, ...]
    type: str
    kind: str
    proto: Any
    fragment_id: str = ""

    @property
    def container(self) -> str:
        """``"main"``, ``"sidebar"``, ``"event"`` or ``"bottom"``."""
        return ROOTS.get(self.path[0], str(self.path[0]))

    @property
    def id(self) -> str:
        """The widget id ("" for elements that are not widgets)."""
        return getattr(self.proto, "id", "") if self.kind in _WIDGETS else ""

    @property
    def key(self) -> str | None:
        """The ``key=`` the app gave the widget, None when it gave none."""
        if not self.id.startswith("$$ID-"):
            return None
        user_key = self.id.split("-", maxsplit=2)[-1]
        return None if user_key == "None" else user_key

    @property
    def label(self) -> str:
        return str(getattr(self.proto, "label", ""))

    @property
    def text(self) -> str:
        """The text a user reads: a markdown's or alert's body, ``"label: value"`` of a metric,
        a widget's label, an exception's ``"Type: message"``."""
        if self.type == "metric":
            return f"{self.proto.label}: {self.proto.body}"
        if self.type == "exception":
            return f"{self.proto.type}: {self.proto.message}"
        if self.type == "code":
            return str(self.proto.code_text)
        body = getattr(self.proto, "body", None)
        return str(body) if body is not None else self.label

    def table(self) -> Any:
        """A dataframe or data editor's data as a ``pandas.DataFrame`` (as the server sent it,
        without the editor's edits)."""
        import pyarrow as pa

        if self.type != "dataframe":
            raise TypeError(f"{self.kind} is not a table")
        data = self.proto.arrow_data.data
        return pa.ipc.open_stream(io.BytesIO(data)).read_all().to_pandas()


def _kind(element_type: str, proto: Any) -> str:
    if element_type == "markdown":
        return _MARKDOWN_KINDS.get(int(proto.element_type), "markdown")
    if element_type == "alert":
        return _ALERT_KINDS.get(int(proto.format), "alert")
    if element_type == "checkbox":
        return "toggle" if int(proto.type) == 1 else "checkbox"
    if element_type == "slider":
        return "select_slider" if int(proto.type) == 2 else "slider"
    if element_type == "dataframe":
        return "data_editor" if int(proto.editing_mode) != 0 else "dataframe"
    return element_type


@dataclass
class _Node:
    element: Element | None  # None for a container (block)
    run_id: str  # the run that drew it


@dataclass(frozen=True)
class Widget:
    """A widget on the page and the value the client holds for it (what a rerun sends).

    Attributes:
        element: its element.
        value: the current value in Python terms: float or tuple of floats (slider; int for an
            integer slider), str (selectbox, radio, text input; None when empty), list of str
            (multiselect, select-slider range), bool (checkbox, toggle), dict of edits (data
            editor), list of uploaded file names (file uploader), None (button).
    """

    element: Element
    value: Any

    @property
    def kind(self) -> str:
        return self.element.kind

    @property
    def id(self) -> str:
        return self.element.id

    @property
    def key(self) -> str | None:
        return self.element.key

    @property
    def label(self) -> str:
        return self.element.label

    @property
    def options(self) -> list[str]:
        """The options' display strings (selectbox, radio, multiselect, select-slider)."""
        return list(getattr(self.element.proto, "options", []))

    @property
    def disabled(self) -> bool:
        return bool(getattr(self.element.proto, "disabled", False))

    @property
    def bounds(self) -> tuple[float, float, float]:
        """A slider's or number input's ``(min, max, step)``."""
        p = self.element.proto
        return float(p.min), float(p.max), float(p.step)


@dataclass(frozen=True)
class RunResult:
    """What one action cost and what its run did.

    Attributes:
        action: what was done, e.g. ``"set w:proposals.nms_iou = 0.5"``.
        status: ``"finished"``, ``"fragment"`` (a fragment's run) or ``"compile_error"``.
        latency_s: from sending the ``rerun_script`` to receiving its ``script_finished``.
        start_s: from sending it to the run's ``new_session`` (queueing before the script ran).
        before_s: time spent before the rerun was sent (an upload's url request and PUT).
        page: url path of the page that ran ("" for the default page).
        messages, bytes: forward messages and websocket bytes the run sent.
        page_not_found: the server did not know the page asked for (it ran the default page).
        errors: error alerts and exceptions on the page after the run.
    """

    action: str
    status: str
    latency_s: float
    start_s: float
    before_s: float
    page: str
    messages: int
    bytes: int
    page_not_found: bool
    errors: tuple[str, ...]


@dataclass(frozen=True)
class Page:
    """A page of the app's navigation: its url path ("" for the default page), title, hash."""

    url_path: str
    title: str
    script_hash: str
    is_default: bool


# -- widget values ----------------------------------------------------------------------------


def _initial_state(element: Element) -> WidgetState | None:
    """The state the browser commits when a widget mounts: the value the server pushed
    (``set_value``), else the element's default; None for widgets that hold no value until the
    user acts (button, uploader, data editor)."""
    p, kind = element.proto, element.kind
    state = WidgetState(id=element.id)
    pushed = bool(getattr(p, "set_value", False))
    if kind == "slider":
        state.double_array_value.data.extend(p.value if pushed else p.default)
    elif kind == "select_slider":
        values = list(p.raw_value) if pushed else [p.options[int(i)] for i in p.default if i >= 0]
        state.string_array_value.data.extend(values)
    elif kind in ("selectbox", "radio"):
        if pushed:
            if p.HasField("raw_value"):
                state.string_value = p.raw_value
        elif p.HasField("default") and 0 <= p.default < len(p.options):
            state.string_value = p.options[p.default]
    elif kind == "multiselect":
        values = list(p.raw_values) if pushed else [p.options[i] for i in p.default]
        state.string_array_value.data.extend(values)
    elif kind in ("checkbox", "toggle"):
        state.bool_value = bool(p.value if pushed else p.default)
    elif kind in ("text_input", "text_area"):
        field_name = "value" if pushed else "default"
        if p.HasField(field_name):
            state.string_value = getattr(p, field_name)
    elif kind == "number_input":
        if pushed:
            if p.HasField("value"):
                state.double_value = p.value
        elif p.HasField("default"):
            state.double_value = p.default
    else:
        return None
    return state


def _decode(element: Element, state: WidgetState | None) -> Any:
    """A widget state as a Python value (see :class:`Widget`)."""
    kind = element.kind
    if state is None:
        return None
    which = state.WhichOneof("value")
    if which is None:
        return None
    if which == "double_array_value":
        values = list(state.double_array_value.data)
        if kind == "slider" and int(element.proto.data_type) == 0:  # INT
            values = [round(v) for v in values]
        return values[0] if len(values) == 1 else tuple(values)
    if which == "string_array_value":
        values = list(state.string_array_value.data)
        if kind == "select_slider" and len(values) == 1:
            return values[0]
        return values
    if which == "string_value":
        return json.loads(state.string_value) if kind == "data_editor" else state.string_value
    if which == "file_uploader_state_value":
        return [f.name for f in state.file_uploader_state_value.uploaded_file_info]
    return getattr(state, which)


def _encode(widget: Widget, value: Any) -> WidgetState:
    """The state a browser sends when the user gives ``widget`` the value ``value``.

    Raises:
        ValueError: a value the widget cannot hold (out of range, not an option, wrong type).
    """
    p, kind = widget.element.proto, widget.kind
    state = WidgetState(id=widget.id)
    if kind == "slider":
        values = list(value) if isinstance(value, (list, tuple)) else [value]
        numbers = [float(v) for v in values]
        low, high, _ = widget.bounds
        if any(not low <= v <= high for v in numbers) or len(numbers) != len(p.default):
            raise ValueError(
                f"{widget.label!r} takes {len(p.default)} value(s) in [{low:g}, {high:g}]"
                f", not {value!r}"
            )
        state.double_array_value.data.extend(numbers)
    elif kind in ("select_slider", "multiselect"):
        values = [value] if isinstance(value, str) else list(value)
        allowed = kind == "multiselect" and bool(p.accept_new_options)
        _check_options(widget, values, allowed)
        if kind == "multiselect" and p.max_selections and len(values) > p.max_selections:
            raise ValueError(f"{widget.label!r} takes at most {p.max_selections} values")
        state.string_array_value.data.extend(str(v) for v in values)
    elif kind in ("selectbox", "radio"):
        if value is not None:
            allowed = kind == "selectbox" and bool(p.accept_new_options)
            _check_options(widget, [value], allowed)
            state.string_value = str(value)
    elif kind in ("checkbox", "toggle"):
        if not isinstance(value, bool):
            raise ValueError(f"{widget.label!r} takes True or False, not {value!r}")
        state.bool_value = value
    elif kind in ("text_input", "text_area"):
        if value is not None:
            state.string_value = str(value)
    elif kind == "number_input":
        if value is not None:
            state.double_value = float(value)
    elif kind == "data_editor":
        edits = {"edited_rows": {}, "added_rows": [], "deleted_rows": [], **dict(value)}
        edits["edited_rows"] = {str(k): v for k, v in edits["edited_rows"].items()}
        state.string_value = json.dumps(edits)
    else:
        raise ValueError(f"{widget.kind} {widget.label!r} has no value to set")
    return state


def _check_options(widget: Widget, values: Sequence[Any], free: bool) -> None:
    if free:
        return
    unknown = [v for v in values if v not in widget.options]
    if unknown:
        raise ValueError(
            f"{widget.label!r} has no option {unknown[0]!r}; options: {widget.options[:20]}"
        )


# -- HTTP helpers (blocking; run in a thread) -------------------------------------------------


def check_local(url: str) -> urllib.parse.SplitResult:
    """``url`` split, if it points at this machine; raises ValueError otherwise."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or parts.hostname not in LOCAL_HOSTS:
        raise ValueError(f"only local apps (http://127.0.0.1:PORT) are spoken to, not {url!r}")
    return parts


# Straight to the local server: an http_proxy in the environment must not see (or break) it.
_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def _http_request(
    method: str, url: str, body: bytes | None, headers: Mapping[str, str], timeout: float
) -> tuple[int, dict[str, str], bytes]:
    """One blocking HTTP request: status, headers, body (an HTTP error status is returned)."""
    request = urllib.request.Request(url, data=body, method=method, headers=dict(headers))
    try:
        with _DIRECT.open(request, timeout=timeout) as response:
            return response.status, dict(response.headers.items()), response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers.items()), exc.read()


def _multipart(name: str, data: bytes, mime: str) -> tuple[bytes, str]:
    """One file as ``multipart/form-data`` under the field ``file``, as the browser's
    ``FormData`` sends it; returns the body and its content type."""
    boundary = f"----stclient{uuid.uuid4().hex}"
    quoted = name.replace("\\", "\\\\").replace('"', '\\"')
    head = (
        f"--{boundary}\r\n"
        f'Content-Disposition: form-data; name="file"; filename="{quoted}"\r\n'
        f"Content-Type: {mime}\r\n\r\n"
    ).encode()
    return (
        head + data + f"\r\n--{boundary}--\r\n".encode(),
        f"multipart/form-data; boundary={boundary}",
    )


# -- the session ------------------------------------------------------------------------------


@dataclass
class _Pending:
    """An action waiting for its run: runs started before it was sent are not its run."""

    runs_before: int
    sent_at: float
    started_at: float | None = None
    result: tuple[str, float] | None = None  # (status, finished at)
    messages: int = 0
    bytes: int = 0
    page_not_found: bool = False


@dataclass
class _CacheEntry:
    msg: ForwardMsg
    run: int  # the full run in which it was last sent or referenced


@dataclass
class _Stats:
    messages: int = 0
    bytes: int = 0
    runs: int = 0
    ref_hits: int = 0


class StreamlitSession:
    """One browser tab's session on a running Streamlit app, driven over its websocket.

    Args:
        url: the app's address, e.g. ``"http://127.0.0.1:8501"`` (a local host only; a base path
            such as ``http://127.0.0.1:8080/app`` is kept).
        timeout: seconds each action may take unless the call says otherwise.
        on_message: called with every forward message as it arrives: ``(raw bytes, ForwardMsg)``
            (``ref_hash`` messages come resolved); e.g. to scan what a session was sent.
        auto_rerun: rerun fragments with ``run_every`` as the browser does (no rerun is sent while
            an action waits for its run).
        cookies: cookies the browser holds for the app (sent with every request and the
            websocket: ``st.context.cookies``), e.g. to come back as the same browser.
        name: shown in errors, e.g. ``"student 7"``.

    Use as ``async with StreamlitSession(url) as s:`` (connects and runs the default page) or call
    :meth:`connect` and :meth:`close`. Actions return a :class:`RunResult`; queries
    (:meth:`find`, :meth:`texts`, :meth:`metric`, :meth:`widget`) read the page as the last
    finished run left it. One action at a time per session.
    """

    def __init__(
        self,
        url: str,
        *,
        timeout: float = DEFAULT_TIMEOUT_S,
        on_message: Callable[[bytes, ForwardMsg], None] | None = None,
        auto_rerun: bool = True,
        cookies: Mapping[str, str] | None = None,
        name: str = "",
    ) -> None:
        parts = check_local(url)
        self.url = url.rstrip("/")
        self._ws_url = (
            urllib.parse.urlunsplit(
                (
                    "wss" if parts.scheme == "https" else "ws",
                    parts.netloc,
                    parts.path.rstrip("/"),
                    "",
                    "",
                )
            )
            + "/_stcore/stream"
        )
        self.timeout = timeout
        self.name = name or "session"
        self.session_id = ""
        self.stats = _Stats()
        self._on_message = on_message
        self.cookies = dict(cookies or {})
        self._auto_rerun = auto_rerun
        self._ws: ClientConnection | None = None
        self._reader: asyncio.Task[None] | None = None
        self._closed: BaseException | None = None
        self._tick = asyncio.Event()
        self._xsrf = ""
        self._query = ""
        # The page: nodes by delta path, widget states by id (the browser's WidgetStateManager).
        self._nodes: dict[tuple[int, ...], _Node] = {}
        self._states: dict[str, WidgetState] = {}
        self._pages: list[Page] = []
        self._page_hash = ""
        self._run_id = ""
        self._run_fragments: tuple[str, ...] = ()
        self._runs = 0  # runs started (new_session received)
        self._full_runs = 0
        self._running = False
        self._pending: _Pending | None = None
        self._file_urls: dict[str, ForwardMsg] = {}
        self._cache: dict[str, _CacheEntry] = {}
        self._max_cache_age = 2
        self._timers: dict[str, asyncio.Task[None]] = {}
        self._timer_busy = False  # a timer's fragment rerun is sent and has not ended

    # -- connection --------------------------------------------------------------------------

    async def __aenter__(self) -> StreamlitSession:
        await self.connect()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def connect(
        self, page: str = "", query: str = "", *, timeout: float | None = None
    ) -> RunResult:
        """Open the app at url path ``page`` (``""``: the default page) with query string
        ``query`` and wait for the first run to finish."""
        if self._ws is not None:
            raise StreamlitClientError(f"{self.name} is already connected")
        limit = self._limit(timeout)
        deadline = time.monotonic() + limit
        status, headers, body = await self._http(
            "GET", "/_stcore/health", None, self._cookie_header(), limit
        )
        if status != 200 or body.strip() != b"ok":
            raise StreamlitClientError(f"{self.url} is not healthy: HTTP {status} {body[:80]!r}")
        cookie = re.search(rf"{XSRF_COOKIE}=([^;]+)", headers.get("set-cookie", "") or "")
        self._xsrf = cookie.group(1) if cookie else ""
        await self._http("GET", "/_stcore/host-config", None, {}, limit)
        protocols = ["streamlit", self._xsrf] if self._xsrf else ["streamlit"]
        try:
            self._ws = await asyncio.wait_for(
                connect(
                    self._ws_url,
                    subprotocols=protocols,  # type: ignore[arg-type]
                    additional_headers=self._cookie_header(),
                    max_size=None,  # a page's figures can be megabytes
                    ping_interval=None,  # browsers do not ping; a busy server must not drop us
                    open_timeout=None,
                    proxy=None,  # never through a proxy from the environment
                ),
                max(deadline - time.monotonic(), 0.001),
            )
        except (asyncio.TimeoutError, TimeoutError) as exc:
            raise ActionTimeout(f"{self.name}: websocket not open within {limit:g} s") from exc
        except (OSError, ConnectionClosed) as exc:
            raise ConnectionLost(f"{self.name}: websocket refused: {exc}") from exc
        self._reader = asyncio.create_task(self._read(), name=f"st-reader-{self.name}")
        self._query = query
        msg = self._rerun_msg(page_name=page)
        return await self._send_run(msg, f"open /{page}", deadline - time.monotonic())

    async def close(self) -> None:
        """Close the websocket (the server keeps the session for its ``disconnectedSessionTTL``)."""
        for task in self._timers.values():
            task.cancel()
        self._timers.clear()
        ws, self._ws = self._ws, None
        if ws is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(ws.close(), 5)
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._reader
            self._reader = None

    # -- queries -----------------------------------------------------------------------------

    @property
    def pages(self) -> list[Page]:
        """The app's pages in menu order (from the last ``navigation`` message)."""
        return list(self._pages)

    @property
    def page(self) -> str:
        """Url path of the page shown ("" for the default page)."""
        for p in self._pages:
            if p.script_hash == self._page_hash:
                return p.url_path
        return ""

    @property
    def running(self) -> bool:
        """A run has started and not finished."""
        return self._running

    @property
    def elements(self) -> list[Element]:
        """Every element on the page in document order (sidebar after main)."""
        return [n.element for _, n in sorted(self._nodes.items()) if n.element is not None]

    def find(
        self,
        kind: str | Iterable[str] | None = None,
        *,
        text: str | None = None,
        container: str | None = None,
    ) -> list[Element]:
        """Elements of ``kind`` (e.g. ``"caption"``, ``("error", "exception")``) whose text
        contains ``text``, in ``container`` (``"main"``, ``"sidebar"``)."""
        kinds = {kind} if isinstance(kind, str) else set(kind) if kind is not None else None
        return [
            e
            for e in self.elements
            if (kinds is None or e.kind in kinds)
            and (container is None or e.container == container)
            and (text is None or text in e.text)
        ]

    def texts(
        self, kind: str | Iterable[str] | None = None, container: str | None = None
    ) -> list[str]:
        """The texts of :meth:`find`'s elements."""
        return [e.text for e in self.find(kind, container=container)]

    def metrics(self) -> dict[str, str]:
        """Every metric on the page: label -> shown value (the last one wins for a repeat)."""
        return {e.proto.label: e.proto.body for e in self.find("metric")}

    def metric(self, label: str) -> str | None:
        """The value metric ``label`` shows, None when it is not on the page."""
        return self.metrics().get(label)

    def errors(self) -> list[str]:
        """Error alerts and exceptions on the page."""
        return self.texts(("error", "exception"))

    def widgets(self, container: str | None = None) -> list[Widget]:
        """Every widget on the page with the value a rerun would send for it."""
        return [
            Widget(e, _decode(e, self._states.get(e.id)))
            for e in self.find(_WIDGETS, container=container)
        ]

    def widget(self, target: str) -> Widget:
        """The widget with user key ``target``, else label ``target``, else element id
        ``target``; a ``*`` in ``target`` matches keys by pattern (``"image_page:table:*"``).

        Raises:
            StreamlitClientError: no such widget on the page, or a label that names several.
        """
        widgets = self.widgets()
        for rule in (
            lambda w: w.key == target,
            lambda w: w.label == target,
            lambda w: w.id == target,
            lambda w: "*" in target and w.key is not None and fnmatch.fnmatchcase(w.key, target),
        ):
            found = [w for w in widgets if rule(w)]
            if len(found) == 1:
                return found[0]
            if len(found) > 1:
                raise StreamlitClientError(
                    f"{self.name}: {target!r} names {len(found)} widgets on /{self.page}: "
                    f"{[w.key or w.id for w in found]}"
                )
        names = sorted({w.key or w.label for w in widgets})
        raise StreamlitClientError(
            f"{self.name}: no widget {target!r} on /{self.page}; there are: {names}"
        )

    # -- actions -----------------------------------------------------------------------------

    async def rerun(self, *, timeout: float | None = None) -> RunResult:
        """Run the page again with the current widget values (the "R" key)."""
        return await self._send_run(self._rerun_msg(), "rerun", self._limit(timeout))

    async def navigate(self, url_path: str, *, timeout: float | None = None) -> RunResult:
        """Open the page with url path ``url_path`` (``""`` or ``"/"``: the default page; a page
        title works too), as a click in the sidebar's navigation does.

        Raises:
            StreamlitClientError: the app has no such page.
        """
        wanted = url_path.strip("/")
        page = next((p for p in self._pages if p.url_path == wanted), None)
        page = page or next((p for p in self._pages if p.title == url_path), None)
        if page is None:
            known = [p.url_path for p in self._pages]
            raise StreamlitClientError(f"{self.name}: no page {url_path!r}; pages: {known}")
        msg = self._rerun_msg(page_hash=page.script_hash)
        return await self._send_run(msg, f"open /{page.url_path}", self._limit(timeout))

    async def set_value(
        self, target: str, value: Any, *, timeout: float | None = None
    ) -> RunResult:
        """Give widget ``target`` (see :meth:`widget`) the value ``value`` (see :class:`Widget`
        for each kind's Python value; a data editor takes its whole edit dict) and wait for the
        run it starts."""
        widget = self.widget(target)
        state = _encode(widget, value)
        action = f"set {widget.key or widget.label} = {value!r}"
        msg = self._rerun_msg(changed=state, fragment_id=widget.element.fragment_id)
        return await self._send_run(msg, action, self._limit(timeout))

    async def set_values(
        self, values: Mapping[str, Any], *, timeout: float | None = None
    ) -> RunResult:
        """Several widgets changed in one rerun (as a form's submit sends them)."""
        widgets = [self.widget(t) for t in values]
        states = [_encode(w, v) for w, v in zip(widgets, values.values(), strict=True)]
        fragments = {w.element.fragment_id for w in widgets}  # one fragment's, or a full run
        fragment_id = fragments.pop() if len(fragments) == 1 else ""
        msg = self._rerun_msg(changed=states, fragment_id=fragment_id)
        return await self._send_run(msg, f"set {dict(values)!r}", self._limit(timeout))

    async def click(self, target: str, *, timeout: float | None = None) -> RunResult:
        """Press button ``target``: one rerun with its trigger set."""
        widget = self.widget(target)
        if widget.kind != "button":
            raise StreamlitClientError(f"{self.name}: {target!r} is a {widget.kind}, not a button")
        state = WidgetState(id=widget.id, trigger_value=True)
        fragment_id = widget.element.fragment_id
        msg = self._rerun_msg(changed=state, remember=False, fragment_id=fragment_id)
        return await self._send_run(msg, f"click {widget.label!r}", self._limit(timeout))

    async def edit_table(
        self,
        target: str,
        *,
        added_rows: Sequence[Mapping[str, Any]] = (),
        edited_rows: Mapping[int, Mapping[str, Any]] | None = None,
        deleted_rows: Sequence[int] = (),
        timeout: float | None = None,
    ) -> RunResult:
        """Edit data editor ``target`` as a user typing in it: the new edits join the ones it
        already holds (rows by position in the table the server sent; added rows by column
        name)."""
        widget = self.widget(target)
        if widget.kind != "data_editor":
            raise StreamlitClientError(f"{self.name}: {target!r} is a {widget.kind}, not a table")
        edits = widget.value or {}
        merged_rows = {str(k): dict(v) for k, v in (edits.get("edited_rows") or {}).items()}
        for row, change in (edited_rows or {}).items():
            merged_rows.setdefault(str(row), {}).update(change)
        value = {
            "edited_rows": merged_rows,
            "added_rows": [*(edits.get("added_rows") or []), *map(dict, added_rows)],
            "deleted_rows": sorted({*(edits.get("deleted_rows") or []), *deleted_rows}),
        }
        state = _encode(widget, value)
        action = f"edit {widget.key or widget.label}"
        msg = self._rerun_msg(changed=state, fragment_id=widget.element.fragment_id)
        return await self._send_run(msg, action, self._limit(timeout))

    async def upload(
        self,
        target: str,
        name: str,
        data: bytes,
        *,
        mime: str | None = None,
        timeout: float | None = None,
    ) -> RunResult:
        """Upload ``data`` as file ``name`` to file uploader ``target`` and wait for the run
        that sees it (``RunResult.before_s``: the url request and the PUT)."""
        widget = self.widget(target)
        if widget.kind != "file_uploader":
            raise StreamlitClientError(
                f"{self.name}: {target!r} is a {widget.kind}, not an uploader"
            )
        limit = self._limit(timeout)
        started = time.perf_counter()
        deadline = time.monotonic() + limit
        request_id = uuid.uuid4().hex
        back = BackMsg()
        back.file_urls_request.request_id = request_id
        back.file_urls_request.file_names.append(name)
        back.file_urls_request.session_id = self.session_id
        await self._send(back)
        await self._wait(lambda: request_id in self._file_urls, deadline, "upload urls")
        response = self._file_urls.pop(request_id).file_urls_response
        if response.error_msg or not response.file_urls:
            raise StreamlitClientError(f"{self.name}: no upload url: {response.error_msg!r}")
        urls: FileURLs = response.file_urls[0]
        body, content_type = _multipart(name, data, mime or _mime(name))
        headers = {"Content-Type": content_type, **self._cookie_header()}
        if self._xsrf:
            headers["X-Xsrftoken"] = self._xsrf
        status, _, reply = await self._http(
            "PUT", urls.upload_url, body, headers, max(deadline - time.monotonic(), 0.001)
        )
        if status not in (200, 204):
            raise StreamlitClientError(
                f"{self.name}: upload refused: HTTP {status} {reply[:200]!r}"
            )
        state = WidgetState(id=widget.id)
        previous = self._states.get(widget.id)
        if widget.element.proto.multiple_files and previous is not None:
            state.file_uploader_state_value.CopyFrom(previous.file_uploader_state_value)
        info = state.file_uploader_state_value.uploaded_file_info.add()
        info.file_id, info.name, info.size = urls.file_id, name, len(data)
        info.file_urls.CopyFrom(urls)
        before = time.perf_counter() - started
        return await self._send_run(
            self._rerun_msg(changed=state, fragment_id=widget.element.fragment_id),
            f"upload {name!r}",
            max(deadline - time.monotonic(), 0.001),
            before_s=before,
        )

    # -- sending -----------------------------------------------------------------------------

    def _limit(self, timeout: float | None) -> float:
        return self.timeout if timeout is None else timeout

    def _cookie_header(self) -> dict[str, str]:
        jar = {**self.cookies, **({XSRF_COOKIE: self._xsrf} if self._xsrf else {})}
        return {"Cookie": "; ".join(f"{k}={v}" for k, v in jar.items())} if jar else {}

    async def _http(
        self, method: str, path: str, body: bytes | None, headers: Mapping[str, str], timeout: float
    ) -> tuple[int, dict[str, str], bytes]:
        url = self.url + path if path.startswith("/") else path
        check_local(url)
        headers = {k.lower(): v for k, v in headers.items()}
        try:
            status, reply_headers, reply = await asyncio.wait_for(
                asyncio.to_thread(_http_request, method, url, body, headers, timeout), timeout
            )
        except (asyncio.TimeoutError, TimeoutError) as exc:
            raise ActionTimeout(f"{self.name}: {method} {path} took over {timeout:g} s") from exc
        except OSError as exc:
            raise StreamlitClientError(f"{self.name}: {method} {path} failed: {exc}") from exc
        return status, {k.lower(): v for k, v in reply_headers.items()}, reply

    def _rerun_msg(
        self,
        *,
        page_name: str = "",
        page_hash: str | None = None,
        changed: WidgetState | Sequence[WidgetState] = (),
        remember: bool = True,
        fragment_id: str = "",
        auto: bool = False,
    ) -> BackMsg:
        """A ``rerun_script`` as the browser builds it: every widget's state (``changed`` ones
        replaced; a trigger is sent once, not remembered), the page, the cached hashes."""
        changed = [changed] if isinstance(changed, WidgetState) else list(changed)
        states = dict(self._states)
        for state in changed:
            states[state.id] = state
            if remember:
                self._states[state.id] = state
        msg = BackMsg()
        client: ClientState = msg.rerun_script
        client.query_string = self._query
        client.page_script_hash = self._page_hash if page_hash is None else page_hash
        client.page_name = page_name
        client.fragment_id = fragment_id
        client.is_auto_rerun = auto
        client.widget_states.widgets.extend(states.values())
        client.cached_message_hashes.extend(self._cache)
        info = client.context_info
        info.timezone, info.timezone_offset, info.locale = "UTC", 0, "en-US"
        path = page_name if page_hash is None and page_name else self.page
        info.url, info.is_embedded, info.color_scheme = f"{self.url}/{path}", False, "light"
        return msg

    async def _send(self, msg: BackMsg) -> None:
        if self._closed is not None or self._ws is None:
            raise ConnectionLost(f"{self.name}: not connected ({self._closed})")
        try:
            await self._ws.send(msg.SerializeToString())
        except ConnectionClosed as exc:
            raise ConnectionLost(f"{self.name}: connection closed: {exc}") from exc

    async def _send_run(
        self, msg: BackMsg, action: str, timeout: float, *, before_s: float = 0.0
    ) -> RunResult:
        """Send a rerun and wait for *its* run: the first run that started after the send and
        ended (runs started before it may still end in between)."""
        if self._pending is not None:
            raise StreamlitClientError(f"{self.name}: one action at a time")
        deadline = time.monotonic() + timeout
        if self._timer_busy:
            # A timer's fragment rerun on its way would pass for this action's run: let it end
            # (briefly: the server runs none for a fragment that a full run has removed).
            grace = min(deadline, time.monotonic() + TIMER_GRACE_S)
            with contextlib.suppress(ActionTimeout):
                await self._wait(lambda: not self._timer_busy, grace, "a timer's run")
            self._timer_busy = False
        pending = _Pending(runs_before=self._runs, sent_at=time.perf_counter())
        self._pending = pending
        try:
            await self._send(msg)
            pending.sent_at = time.perf_counter()
            await self._wait(lambda: pending.result is not None, deadline, action)
        finally:
            self._pending = None
        assert pending.result is not None
        status, finished_at = pending.result
        started = pending.started_at if pending.started_at is not None else finished_at
        return RunResult(
            action=action,
            status=status,
            latency_s=finished_at - pending.sent_at,
            start_s=started - pending.sent_at,
            before_s=before_s,
            page=self.page,
            messages=pending.messages,
            bytes=pending.bytes,
            page_not_found=pending.page_not_found,
            errors=tuple(self.errors()),
        )

    async def _wait(self, done: Callable[[], bool], deadline: float, what: str) -> None:
        while not done():
            if self._closed is not None:
                raise ConnectionLost(f"{self.name}: connection lost during {what}: {self._closed}")
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise ActionTimeout(f"{self.name}: {what} did not finish in time")
            tick = self._tick
            with contextlib.suppress(asyncio.TimeoutError, TimeoutError):
                await asyncio.wait_for(tick.wait(), remaining)

    # -- receiving ---------------------------------------------------------------------------

    async def _read(self) -> None:
        assert self._ws is not None
        try:
            async for data in self._ws:
                raw = data if isinstance(data, bytes) else data.encode()
                self._receive(raw)
                self._wake()
            self._closed = StreamlitClientError("the server closed the websocket")
        except ConnectionClosed as exc:
            self._closed = exc
        except Exception as exc:  # a message this client cannot read: fail the waiting action
            self._closed = exc
        finally:
            self._wake()

    def _wake(self) -> None:
        tick, self._tick = self._tick, asyncio.Event()
        tick.set()

    def _receive(self, raw: bytes) -> None:
        msg = ForwardMsg()
        msg.ParseFromString(raw)
        self.stats.messages += 1
        self.stats.bytes += len(raw)
        pending = self._pending
        counting = pending is not None and pending.result is None
        msg = self._resolve(msg)
        if self._on_message is not None:
            self._on_message(raw, msg)
        kind = msg.WhichOneof("type")
        if kind == "new_session":
            self._started(msg)
        elif kind == "delta":
            self._delta(msg)
        elif kind == "navigation":
            nav = msg.navigation
            self._pages = [
                Page(p.url_pathname, p.page_name, p.page_script_hash, p.is_default)
                for p in nav.app_pages
            ]
            self._page_hash = nav.page_script_hash
        elif kind == "script_finished":
            self._finished(msg)
        elif kind == "file_urls_response":
            self._file_urls[msg.file_urls_response.response_id] = msg
        elif kind == "page_not_found" and pending is not None:
            pending.page_not_found = True
        elif kind == "auto_rerun" and self._auto_rerun:
            self._start_timer(msg.auto_rerun.fragment_id, msg.auto_rerun.interval)
        elif kind == "stop_auto_rerun":
            for fragment_id in msg.stop_auto_rerun.fragment_ids:
                self._stop_timer(fragment_id)
        if counting and pending is not None and pending.started_at is not None:
            pending.messages += 1  # its run's messages, new_session and script_finished included
            pending.bytes += len(raw)

    def _resolve(self, msg: ForwardMsg) -> ForwardMsg:
        """A ``ref_hash`` message as the cached message it stands for; caches cacheable ones."""
        if msg.WhichOneof("type") == "ref_hash":
            entry = self._cache.get(msg.ref_hash)
            if entry is None:
                raise StreamlitClientError(
                    f"{self.name}: the server referred to an unknown message"
                )
            resolved = ForwardMsg()
            resolved.CopyFrom(entry.msg)
            resolved.metadata.CopyFrom(msg.metadata)
            entry.run = self._full_runs
            self.stats.ref_hits += 1
            return resolved
        if msg.metadata.cacheable and msg.hash:
            self._cache[msg.hash] = _CacheEntry(msg, self._full_runs)
        return msg

    def _started(self, msg: ForwardMsg) -> None:
        self._runs += 1
        self.stats.runs += 1
        self._running = True
        new = msg.new_session
        if new.HasField("initialize") and new.initialize.session_id:
            self.session_id = new.initialize.session_id
        if new.HasField("config") and new.config.max_cached_message_age:
            self._max_cache_age = int(new.config.max_cached_message_age)
        self._run_id = msg.metadata.run.script_run_id or uuid.uuid4().hex
        self._run_fragments = tuple(msg.metadata.run.fragment_ids)
        if not self._run_fragments:
            self._full_runs += 1
            if not self._pages:  # with st.navigation, the navigation message names the page
                self._page_hash = new.page_script_hash or self._page_hash
            for fragment_id in list(self._timers):  # a full run sets its timers up again
                self._stop_timer(fragment_id)
        pending = self._pending
        if pending is not None and pending.started_at is None and self._runs > pending.runs_before:
            pending.started_at = time.perf_counter()

    def _delta(self, msg: ForwardMsg) -> None:
        path = tuple(msg.metadata.delta_path)
        delta = msg.delta
        which = delta.WhichOneof("type")
        if not path or which not in ("new_element", "add_block"):
            return  # transient elements (spinners) and row additions: not part of the page
        if which == "add_block":
            self._nodes[path] = _Node(None, self._run_id)
            return
        element_type = delta.new_element.WhichOneof("type")
        if element_type is None:
            return
        proto = getattr(delta.new_element, element_type)
        element = Element(path, element_type, _kind(element_type, proto), proto, delta.fragment_id)
        self._nodes[path] = _Node(element, self._run_id)
        if element.kind in _WIDGETS and element.id:
            pushed = bool(getattr(proto, "set_value", False))
            if pushed or element.id not in self._states:
                state = _initial_state(element)
                if state is not None:
                    self._states[element.id] = state

    def _finished(self, msg: ForwardMsg) -> None:
        status = _ENDED.get(msg.script_finished)
        if status is None:
            return  # stopped early for a rerun: the next run follows
        self._running = False
        self._timer_busy = False
        if status == "finished":
            self._drop_stale(lambda node: True)
        elif status == "fragment":
            fragments = set(self._run_fragments)
            self._drop_stale(
                lambda node: node.element is not None and node.element.fragment_id in fragments
            )
        for digest in [
            h for h, e in self._cache.items() if self._full_runs - e.run > self._max_cache_age
        ]:
            del self._cache[digest]
        pending = self._pending
        if pending is not None and pending.result is None and self._runs > pending.runs_before:
            pending.result = (status, time.perf_counter())

    def _drop_stale(self, owned: Callable[[_Node], bool]) -> None:
        """Forget what the finished run did not draw, and the widget states of widgets that left
        the page (the browser's ``removeInactive``)."""
        stale = [p for p, n in self._nodes.items() if n.run_id != self._run_id and owned(n)]
        for path in stale:
            del self._nodes[path]
        live = {n.element.id for n in self._nodes.values() if n.element is not None}
        for widget_id in [w for w in self._states if w not in live]:
            del self._states[widget_id]

    # -- fragment timers ---------------------------------------------------------------------

    def _start_timer(self, fragment_id: str, interval: float) -> None:
        self._stop_timer(fragment_id)
        if interval > 0:
            self._timers[fragment_id] = asyncio.create_task(
                self._tick_fragment(fragment_id, interval)
            )

    def _stop_timer(self, fragment_id: str) -> None:
        task = self._timers.pop(fragment_id, None)
        if task is not None:
            task.cancel()

    async def _tick_fragment(self, fragment_id: str, interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            if self._pending is None and not self._running and self._closed is None:
                self._timer_busy = True
                with contextlib.suppress(StreamlitClientError):
                    await self._send(self._rerun_msg(fragment_id=fragment_id, auto=True))


def _mime(name: str) -> str:
    return mimetypes.guess_type(name)[0] or "application/octet-stream"


# -- a local app server -----------------------------------------------------------------------


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class LocalApp:
    """``streamlit run app.py`` on 127.0.0.1 and a free port (``FRCNN_OFFLINE=1``), its output in a
    log file; a context manager that stops it (the whole process group) on exit.

    Args:
        port: the port; a free one when None.
        log_path: where the server's output goes (a temporary file when None).
        args: more ``streamlit run`` options, e.g. ``["--server.disconnectedSessionTTL", "30"]``.
        env: more environment variables (``FRCNN_OFFLINE=1`` is always set).
        script: the app's entry point, relative to the repository root.
    """

    def __init__(
        self,
        port: int | None = None,
        *,
        log_path: Path | None = None,
        args: Sequence[str] = (),
        env: Mapping[str, str] | None = None,
        script: str = "app.py",
    ) -> None:
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path or Path(f"/tmp/st_app_{self.port}.log")
        self.args = list(args)
        self.env = dict(env or {})
        self.script = script
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int | None:
        return None if self.process is None else self.process.pid

    def start(self, timeout: float = 120.0) -> LocalApp:
        """Start the server and wait until ``/_stcore/health`` answers ``ok``."""
        command = [
            sys.executable,
            "-m",
            "streamlit",
            "run",
            self.script,
            "--server.port",
            str(self.port),
            "--server.address",
            "127.0.0.1",
            "--server.headless",
            "true",
            "--server.fileWatcherType",
            "none",
            "--browser.gatherUsageStats",
            "false",
            *self.args,
        ]
        env = {**os.environ, "FRCNN_OFFLINE": "1", "PYTHONUNBUFFERED": "1", **self.env}
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                command,
                cwd=ROOT,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: stop() ends all of it
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"streamlit exited with status {self.process.returncode}; log:\n"
                    f"{self.log_tail()}"
                )
            if self.healthy():
                return self
            time.sleep(0.25)
        self.stop()
        raise RuntimeError(
            f"streamlit did not answer within {timeout:g} s; log:\n{self.log_tail()}"
        )

    def healthy(self) -> bool:
        try:
            status, _, body = _http_request("GET", f"{self.url}/_stcore/health", None, {}, 2.0)
        except OSError:
            return False
        return status == 200 and body.strip() == b"ok"

    def log_tail(self, chars: int = 4000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return "(no log)"

    def stop(self, timeout: float = 15.0) -> None:
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, 15)
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, 9)
            process.wait(timeout=timeout)

    def __enter__(self) -> LocalApp:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


__all__ = [
    "ActionTimeout",
    "ConnectionLost",
    "Element",
    "LocalApp",
    "Page",
    "RunResult",
    "StreamlitClientError",
    "StreamlitSession",
    "Widget",
    "check_local",
    "free_port",
]
