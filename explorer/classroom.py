"""Follow the instructor: a class that sees the instructor's page, image and settings live.

An instructor starts a class from the sidebar and gets a short code (``K7M-3QX``) and a link
(``?class=K7M3QX``); no accounts. When ``FRCNN_INSTRUCTOR_PASSPHRASE`` is set, starting a class
asks for it. Students join with the code or the link.

How it works:

- **The class** is one record in the store (namespace ``class``, key the code): the instructor's
  page and view as a link's query (:func:`explorer.projects.view_query`: the settings that
  differ, the picks, and the image, boxes and heads by sample name or snapshot id), a
  fingerprint of both, and the sha256 of the instructor's secret token.
- **Driving**: at the end of each of the instructor's runs the view is published when it
  changed (:func:`publish`). Only a session that holds the token can publish; a student's
  session never has it, so nothing a student does reaches the class.
- **Following**: one watcher thread per server process reads the record of each class that has
  members on this process every :data:`POLL_S` seconds; when the fingerprint changes it asks each
  following session for a rerun (the server side of Streamlit's own "rerun on save"), and
  :func:`follow` applies the view before the page runs (the image and heads are loaded only
  when they changed) and switches to the instructor's page. An idle class costs one store read
  per class per tick, not a run per student. Were that rerun hook missing (another Streamlit
  version), a following student's sidebar polls with a small fragment instead.
- **Stepping away**: a student who changes the view (a page, a setting, a pick, the image or
  boxes) explores on their own until "Follow the instructor" brings them back; so does the
  sidebar's "Explore on my own". While in a class a student's own saved project is left as it
  was (the class's view is not saved over it) and comes back when they leave.
- **Counting**: the watcher marks its connected members present in the store every few
  seconds (:meth:`Store.mark`), following or exploring; the instructor's panel shows both
  counts, over every replica.

With several replicas behind a proxy, the record and the marks live in the shared store
(Redis), so an instructor on one replica drives students on another.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import logging
import os
import secrets
import threading
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import streamlit as st
from streamlit.runtime.scriptrunner import get_script_run_ctx

from explorer import projects, state
from explorer.store import Store
from explorer.text import shown
from frcnn_core.i18n import _

log = logging.getLogger("frcnn_explorer")

PASSPHRASE_ENV = "FRCNN_INSTRUCTOR_PASSPHRASE"
POLL_ENV = "FRCNN_FOLLOW_POLL_S"
# How often the watcher looks for the instructor's next move.
POLL_S = float(os.environ.get(POLL_ENV, "") or 0.2)
# The fallback when the server cannot push reruns: each following page polls this often.
FRAGMENT_POLL_S = 0.5
# How often a member says it is there, and how long that lasts.
HEARTBEAT_S = 2.0
PRESENT_S = 3 * HEARTBEAT_S
# A class ends this long after the instructor's last move (or at "End class").
CLASS_TTL_S = 12 * 3600.0
# Codes: no 0/O, 1/I/L, easy to read off a projector.
ALPHABET = "ABCDEFGHJKMNPQRSTUVWXYZ23456789"
CODE_LENGTH = 6

ROLE = "class:role"  # session key: Role
SEEN = "class:seen"  # session key: the view key at the end of the last run (None: don't check)
SAID = "class:said"  # session key: (kind, text) to show once in the panel


class ClassError(ValueError):
    """A class cannot be started, joined or used; the message is for the user."""


@dataclass
class Role:
    """This session's part in a class."""

    code: str
    instructor_token: str | None = None  # only the instructor's session has it
    following: bool = True  # students: following (True) or exploring on their own
    applied: str | None = None  # students: the fingerprint of the class view last applied
    view: str | None = None  # students: projects.view_token of the image, boxes, heads shown

    @property
    def instructor(self) -> bool:
        return self.instructor_token is not None


# -- the store ------------------------------------------------------------------------------


def _store() -> Store:
    store = projects._store()
    if store is None:
        raise ClassError(_("this server cannot run classes: its store cannot be opened"))
    return store


def normalise(code: str) -> str:
    """A code as typed (any case, spaces or dashes) in its stored form."""
    return "".join(c for c in str(code).upper() if c.isalnum())


def display(code: str) -> str:
    return f"{code[:3]}-{code[3:]}"


def read(code: str) -> dict[str, Any] | None:
    """The class record, or None when no such class runs."""
    raw = _store().get("class", code)
    if raw is None:
        return None
    try:
        record = json.loads(raw)
    except ValueError:
        return None
    return record if isinstance(record, dict) else None


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _role() -> Role | None:
    return st.session_state.get(ROLE)


def _session_id() -> str:
    """Streamlit's id of this session (what the watcher asks for reruns)."""
    ctx = get_script_run_ctx()
    return ctx.session_id if ctx is not None else ""


def _say(kind: str, text: str) -> None:
    st.session_state[SAID] = (kind, text)


# -- starting, joining, leaving ---------------------------------------------------------------


def passphrase_required() -> bool:
    return bool(os.environ.get(PASSPHRASE_ENV))


def start_class(passphrase: str = "") -> str:
    """Start a class with this session as its instructor; returns the code.

    Raises:
        ClassError: a wrong passphrase, or no store.
    """
    expected = os.environ.get(PASSPHRASE_ENV, "")
    if expected and not hmac.compare_digest(passphrase.encode(), expected.encode()):
        time.sleep(1.0)  # a guesser gets one try a second per session
        raise ClassError(_("that is not the instructor passphrase"))
    store = _store()
    for _attempt in range(20):
        code = "".join(secrets.choice(ALPHABET) for _letter in range(CODE_LENGTH))
        if not store.exists("class", code):
            break
    else:  # pragma: no cover - 887 million codes
        raise ClassError(_("no free class code; try again"))
    token = secrets.token_urlsafe(24)
    record = {"instructor": _token_hash(token), "started": time.time(), "fingerprint": None}
    store.put("class", code, json.dumps(record).encode(), ttl_s=CLASS_TTL_S)
    store.put("class-role", projects.owner(), _role_bytes(code, token), ttl_s=CLASS_TTL_S)
    st.session_state[ROLE] = Role(code, instructor_token=token)
    return code


def _role_bytes(code: str, token: str | None) -> bytes:
    return json.dumps({"code": code, "token": token}).encode()


def join(code: str) -> str:
    """Join class ``code`` as a student, following; returns the code in its stored form.

    Raises:
        ClassError: no such class.
    """
    code = normalise(code)
    if len(code) != CODE_LENGTH or read(code) is None:
        raise ClassError(
            _("no class {code} is running: check the code on the instructor's screen").format(
                code=shown(code) or _("(empty)")
            )
        )
    role = _role()
    if role is not None and role.instructor and role.code != code:
        raise ClassError(_("you are teaching a class: end it before joining another"))
    st.session_state[ROLE] = Role(code)
    st.session_state[SEEN] = None
    _store().put("class-role", projects.owner(), _role_bytes(code, None), ttl_s=CLASS_TTL_S)
    return code


def leave(ended: bool = False) -> None:
    """Leave the class (a student) or end it (the instructor). A student's own saved project
    comes back."""
    role = _role()
    if role is None:
        return
    store = _store()
    store.delete("class-role", projects.owner())
    WATCHER.drop(_session_id())
    st.session_state.pop(ROLE, None)
    st.session_state.pop(SEEN, None)
    if role.instructor:
        record = read(role.code)
        if record is not None and record.get("instructor") == _token_hash(role.instructor_token):
            store.delete("class", role.code)
        _say("info", _("Class {code} has ended.").format(code=display(role.code)))
        return
    try:
        page, notes = projects.restore()
        if page is None:
            back = _("You keep this view as your own.")
        elif notes:
            back = _("Your own project is back; {notes}.").format(notes="; ".join(notes))
        else:
            back = _("Your own project is back.")
    except projects.ProjectError as exc:
        back = _("Your saved project could not be restored: {reason}.").format(reason=exc)
    if ended:
        why = _("The instructor ended the class {code}.").format(code=display(role.code))
    else:
        why = _("You left the class {code}.").format(code=display(role.code))
    _say("info", f"{why} {back}")


def resume(query_code: str | None) -> None:
    """At a session's start: a ``?class=`` link joins that class; otherwise this browser's
    part in a running class (instructor or student) comes back after a reload."""
    try:
        if query_code:
            join(query_code)
            return
        raw = _store().get("class-role", projects.owner())
        if raw is None:
            return
        known = json.loads(raw)
        code, token = known.get("code"), known.get("token")
        record = read(code) if isinstance(code, str) else None
        if record is None:
            return
        if token and record.get("instructor") == _token_hash(token):
            st.session_state[ROLE] = Role(code, instructor_token=token)
        elif not token:
            st.session_state[ROLE] = Role(code)
            st.session_state[SEEN] = None
    except ClassError as exc:
        _say("error", str(exc))
    except ValueError:  # a damaged role entry: start without a class
        log.warning("ignored a damaged class-role entry")


def member() -> bool:
    """This session is in a class (teaching or attending)."""
    return _role() is not None


def saves_own_project() -> bool:
    """Whether this session's work is saved as the browser's project: not while attending a
    class (the instructor's view must not overwrite the student's own project)."""
    role = _role()
    return role is None or role.instructor


# -- driving and following ---------------------------------------------------------------------


def _picks(page: str) -> dict[str, str]:
    from explorer.project_panel import picks

    return picks(page)


def _view_key(page: str) -> str:
    """What a student sees, for noticing that they changed it themselves."""
    choice = state.image()
    seen = {
        "page": page,
        "params": {k: str(v) for k, v in state.params().changed().items()},
        "picks": _picks(page),
        "image": None if choice is None else choice.digest,
        "boxes": state.boxes(),
    }
    return projects.fingerprint(seen)


def publish(page: str) -> None:
    """The instructor's session, after each run: publish the view when it changed."""
    role = _role()
    if role is None or not role.instructor:
        return
    try:
        query = projects.view_query(page, _picks(page))
        mark = projects.fingerprint({"page": page, "query": query})
        if st.session_state.get("class:published") == (role.code, mark):
            return
        store = _store()
        record = read(role.code)
        if record is None or record.get("instructor") != _token_hash(role.instructor_token):
            st.session_state.pop(ROLE, None)
            _say("error", _("Class {code} is no longer running.").format(code=display(role.code)))
            return
        record.update(page=page, query=query, fingerprint=mark, updated=time.time())
        store.put("class", role.code, json.dumps(record).encode(), ttl_s=CLASS_TTL_S)
        st.session_state["class:published"] = (role.code, mark)
    except (projects.ProjectError, ClassError) as exc:
        _say("error", _("The class does not see this view: {reason}").format(reason=exc))
    except Exception:  # a lost store must not break the instructor's page
        log.exception("publishing the class view failed")


def follow(page: str) -> str | None:
    """A student's session, before the page runs: step away if the student changed the view
    since the last run; when following, apply the instructor's view if it is new. Returns the
    page to switch to, or None."""
    role = _role()
    if role is None or role.instructor:
        return None
    seen = st.session_state.get(SEEN)
    if role.following and seen is not None and seen != _view_key(page):
        role.following = False
        _say("info", _("You changed the view, so you are exploring on your own."))
        return None
    try:
        record = read(role.code)
    except ClassError:
        return None
    if record is None:
        leave(ended=True)
        return None
    if not role.following:
        return None
    if record.get("fingerprint") in (None, role.applied):
        return None
    query = dict(record.get("query") or {})
    notes = projects.open_link(query, known_view=role.view)
    if notes:
        log.info("class %s: %s", role.code, "; ".join(notes))
    role.applied = record["fingerprint"]
    role.view = projects.view_token(query)
    st.session_state[SEEN] = None  # this run's changes are the instructor's
    target = record.get("page")
    return target if isinstance(target, str) and target != page else None


def finish(page: str) -> None:
    """After each run: the instructor publishes; a student notes what they saw."""
    role = _role()
    if role is None:
        return
    if role.instructor:
        publish(page)
        return
    st.session_state[SEEN] = _view_key(page) if role.following else None
    with contextlib.suppress(ClassError):  # no store: no class either
        WATCHER.keep(_session_id(), role, _store())


def _follow_again() -> None:
    role = _role()
    if role is not None:
        role.following = True
        role.applied = None  # apply the instructor's current view even if it was seen
        st.session_state[SEEN] = None


def _explore() -> None:
    role = _role()
    if role is not None:
        role.following = False


def counts(code: str) -> tuple[int, int]:
    """(following, exploring) students present now."""
    store = _store()
    return (
        store.count_marked("class-members", f"{code}:following"),
        store.count_marked("class-members", f"{code}:exploring"),
    )


# -- the watcher: one thread per server process -------------------------------------------------


@dataclass
class _Member:
    code: str
    following: bool
    applied: str | None
    pushed: str | None = None  # the fingerprint a rerun was last asked for


class Watcher:
    """Pushes the instructor's moves to the following sessions of this process, and marks this
    process's class members present (see the module docstring)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._members: dict[str, _Member] = {}
        self._store: Store | None = None
        self._thread: threading.Thread | None = None
        self.pushes = _can_push()

    def keep(self, session_id: str, role: Role, store: Store) -> None:
        """Note a member session after its run (what it follows, what it applied)."""
        if not session_id:
            return
        with self._lock:
            self._store = store
            old = self._members.get(session_id)
            pushed = old.pushed if old is not None else None
            self._members[session_id] = _Member(role.code, role.following, role.applied, pushed)
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(
                    target=self._loop, name="class-watcher", daemon=True
                )
                self._thread.start()

    def drop(self, session_id: str) -> None:
        with self._lock:
            self._members.pop(session_id, None)

    def _loop(self) -> None:
        last_beat = 0.0
        while True:
            time.sleep(POLL_S)
            try:
                beat = time.monotonic() - last_beat >= HEARTBEAT_S
                self.tick(beat)
                if beat:
                    last_beat = time.monotonic()
            except Exception:  # a lost store: try again next tick
                log.exception("the class watcher's tick failed")

    def tick(self, beat: bool) -> None:
        with self._lock:
            members = dict(self._members)
            store = self._store
        if store is None or not members:
            return
        records = {}
        for code in {m.code for m in members.values()}:
            raw = store.get("class", code)
            try:
                records[code] = None if raw is None else json.loads(raw)
            except ValueError:
                records[code] = None
        for session_id, member in members.items():
            session = _active_session(session_id)
            if session is None:  # gone, or its browser disconnected
                self.drop(session_id)
                continue
            record = records.get(member.code)
            want = None if record is None else record.get("fingerprint")
            moved = record is None or (member.following and want not in (None, member.applied))
            asked = member.pushed == (want or "ended")
            if moved and not asked and self.pushes and _push_rerun(session):
                member.pushed = want or "ended"
            if beat and record is not None:
                kind = "following" if member.following else "exploring"
                store.mark("class-members", f"{member.code}:{kind}", session_id, PRESENT_S)


def _can_push() -> bool:
    try:
        from streamlit.runtime import Runtime
        from streamlit.runtime.app_session import AppSession

        return hasattr(Runtime, "instance") and hasattr(AppSession, "request_rerun")
    except ImportError:
        return False


def _active_session(session_id: str) -> Any:
    """The AppSession of ``session_id`` if its browser is connected, else None."""
    from streamlit.runtime import Runtime

    try:
        info = Runtime.instance()._session_mgr.get_active_session_info(session_id)
    except (AttributeError, RuntimeError):
        return None
    return None if info is None else info.session


def _push_rerun(session: Any) -> bool:
    """Ask ``session`` to run its page again with the browser's last state, as Streamlit does
    when a source file changes; not while it runs (the student's own action goes first: the
    next tick asks again). Returns whether it was asked."""
    from streamlit.runtime.app_session import AppSessionState

    try:
        if session._state == AppSessionState.APP_IS_RUNNING:
            return False
        session.request_rerun(session._client_state)
        return True
    except AttributeError:  # another Streamlit: the pages poll instead
        WATCHER.pushes = False
        log.warning("this Streamlit cannot push reruns; following pages poll instead")
        return False


WATCHER = Watcher()


# -- the sidebar panel --------------------------------------------------------------------------


def _start_clicked() -> None:
    try:
        start_class(st.session_state.get("class:passphrase", ""))
    except ClassError as exc:
        _say("error", str(exc))
    st.session_state["class:passphrase"] = ""


def _join_clicked() -> None:
    try:
        join(st.session_state.get("class:code", ""))
        _say("success", _("You joined the class: your screen follows the instructor's."))
    except ClassError as exc:
        _say("error", str(exc))


def _end_clicked() -> None:
    try:
        leave()
    except ClassError as exc:
        _say("error", str(exc))


def _show_said() -> None:
    kind, text = st.session_state.pop(SAID, (None, None))
    if text:
        {"error": st.error, "success": st.success}.get(kind, st.info)(text)


def join_link(base_url: str, code: str) -> str:
    return f"{base_url.rstrip('/')}/?{urlencode({'class': code})}"


@st.fragment(run_every=FRAGMENT_POLL_S)
def _following_poll() -> None:
    """The fallback when the watcher cannot push reruns: look for the next move from here."""
    role = _role()
    if role is None or role.instructor or not role.following:
        return
    try:
        record = read(role.code)
    except ClassError:
        return
    if record is None or record.get("fingerprint") not in (None, role.applied):
        st.rerun()  # the whole app: follow() applies the new view (or notices the end)


@st.fragment(run_every=HEARTBEAT_S)
def _instructor_counts(code: str) -> None:
    try:
        following, exploring = counts(code)
    except ClassError:
        return
    st.metric(_("Students following"), following)
    if exploring:
        st.caption(_("{n} exploring on their own").format(n=exploring))


def panel(base_url: str) -> None:
    """The sidebar's Class panel: start or join a class; the code, the link and the counts for
    the instructor; follow / explore for a student."""
    role = _role()
    with st.expander(_("Class"), icon=":material/school:", expanded=role is not None):
        _show_said()
        if role is None:
            st.text_input(
                _("Class code"),
                key="class:code",
                placeholder=_("e.g. {code}").format(code="K7M-3QX"),
            )
            st.button(
                _("Join the class"), key="class:join", on_click=_join_clicked, width="stretch"
            )
            st.divider()
            if passphrase_required():
                st.text_input(_("Instructor passphrase"), key="class:passphrase", type="password")
            st.button(
                _("Start a class (instructor)"),
                key="class:start",
                on_click=_start_clicked,
                width="stretch",
                help=_("Students who join see your page, image and settings as you move"),
            )
        elif role.instructor:
            st.markdown(_("### Class code: `{code}`").format(code=display(role.code)))
            st.caption(_("Students join with this code, or with this link:"))
            st.code(join_link(base_url, role.code), language=None, wrap_lines=True)
            _instructor_counts(role.code)
            st.button(_("End the class"), key="class:end", on_click=_end_clicked, width="stretch")
        else:
            if role.following:
                st.caption(
                    _(":material/sync: Following the instructor · class **{code}**").format(
                        code=display(role.code)
                    )
                )
                if not WATCHER.pushes:
                    _following_poll()
                st.button(
                    _("Explore on my own"),
                    key="class:explore",
                    on_click=_explore,
                    width="stretch",
                    help=_("Stop following; your changes stay yours until you follow again"),
                )
            else:
                st.caption(
                    _(":material/explore: Exploring on your own · class **{code}**").format(
                        code=display(role.code)
                    )
                )
                st.button(
                    _("Follow the instructor"),
                    key="class:follow",
                    on_click=_follow_again,
                    type="primary",
                    width="stretch",
                    help=_("Back to the instructor's page, image and settings"),
                )
            st.caption(
                _(
                    "While you are in the class, your own saved project is kept as it was; it "
                    "comes back when you leave. Download project keeps what you make here."
                )
            )
            st.button(
                _("Leave the class"), key="class:leave", on_click=_end_clicked, width="stretch"
            )
