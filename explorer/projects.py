"""A student's work as one project, kept on the server per browser, in a file, or in a link.

A project is the image, the boxes with their labels, every setting that differs from the
tutorial's, the page, and the session's own trained heads. It is kept three ways:

- **saved on the server for this browser**: the browser gets a random id in a cookie on its
  first visit; every change is saved under that id in the store (:mod:`explorer.store`), so a
  reload, a new tab of the same browser or a restart of the server brings it back. The id is a
  secret that only this browser holds: no one else can name another's project.
- **a file** (download / open): a zip of ``project.json``, the image (unless it is a shipped
  sample) and the heads file; it works on another machine.
- **a link** (share): the page, the settings that differ, the picked anchor, cell or RoI in the
  URL query, and the image, boxes and heads as a snapshot the server keeps under a view id (a
  shipped sample with its own boxes needs none: ``?sample=zebras``).

Everything read back (a file, the store, a link) is validated before anything changes: a
corrupt, truncated, foreign or future-version project is refused with one line and the
session stays as it was.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import secrets
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

import streamlit as st

from explorer import caches, i18n, models, state, training
from explorer.samples import samples
from explorer.store import Store, StoreError, open_store
from explorer.text import shown
from frcnn_core.backbone import WeightsError
from frcnn_core.ground_truth import MAX_BOXES, clean_label
from frcnn_core.i18n import N_, _, normalise, using
from frcnn_core.image import ImageError
from frcnn_core.params import ParamsError, PipelineParams, parameter, validate
from frcnn_core.safe_io import InputError, parse_json

log = logging.getLogger("frcnn_explorer")

FORMAT = "frcnn-explorer-project"
VERSION = 1
COOKIE = "frcnn_browser"
OWNER = "project:owner"  # session key: this browser's id
SAVED = "project:saved"  # session key: the fingerprint of what was last saved
STARTED = "project:started"  # session key: the session's start (restore or link) is done
NOTES = "project:notes"  # session key: what the start said, shown once
FILE_DOWNLOAD = "project:download"  # session key: (fingerprint, maker, name) of the project file
HEADS_DIGEST = "project:heads_digest"  # session key: (model token, sha256 of its heads file)
SNAPSHOT = "project:snapshot"  # session key: (content fingerprint, view id) of the last snapshot
MAX_FILE_BYTES = 100 * 2**20
MAX_JSON_BYTES = 2 * 2**20
IMAGE_MEMBER = "image"
HEADS_MEMBER = "heads.pt"
META_MEMBER = "project.json"
# What a link may pick, and the widget it sets (the pages read these keys).
PICKS = {
    "anchor": "labelling:anchor",
    "roi": "roi:pick",
    "bug": "bug",
    "cell": ("anchors_iy", "anchors_ix"),
    "box": "proposals:pick",  # an anchor index: its box through the proposal layer
    "head_roi": "head:pick",
    "detection": "detect:pick",
}
# "class": see explorer.classroom; "lang": the language, see explorer.i18n.
LINK_KEYS = ("view", "sample", "class", "lang", *PICKS)


class ProjectError(ValueError):
    """A project that cannot be used; one line for the user."""


@dataclass(frozen=True)
class Contents:
    """A project read and checked, ready to apply.

    Attributes:
        meta: the validated ``project.json``.
        image: the image's bytes (None for a shipped sample).
        heads: the heads file's bytes, or None.
        notes: settings or picks that were left out, one line each.
    """

    meta: dict[str, Any]
    image: bytes | None
    heads: bytes | None
    notes: tuple[str, ...] = field(default=())


# -- what a project holds -----------------------------------------------------------------


def _store() -> Store | None:
    """The server's store (None, with one log line, when it cannot be opened: the app runs on,
    without saving)."""
    return _cached_store()


@st.cache_resource(show_spinner=False)
def _cached_store() -> Store | None:
    try:
        return open_store()
    except StoreError as exc:
        log.error("%s; projects are not saved", exc)
        return None


def current_meta(page: str) -> dict[str, Any]:
    """This session's project, without its large parts (image and heads are referred to by
    digest)."""
    choice = state.image()
    own = models.session_model()
    heads = None
    if own is not None:
        heads = {
            "digest": _heads_digest(own),
            "source": own.source,
            "history": own.history[-500:],
        }
    image = None
    if choice is not None:
        image = {
            "name": choice.name,
            "digest": choice.digest,
            "sample": choice.name if choice.sample else None,
        }
    return {
        "format": FORMAT,
        "version": VERSION,
        "image": image,
        "boxes": [{"box": list(b["box"]), "label": b["label"]} for b in state.boxes()],
        "params": {
            k: list(v) if isinstance(v, tuple) else v for k, v in state.params().changed().items()
        },
        "page": page,
        "heads": heads,
        "lang": i18n.current(),
    }


def _heads_digest(own: models.SessionModel) -> str:
    """The sha256 of the session model's heads file, computed once per model."""
    known = st.session_state.get(HEADS_DIGEST)
    if known is None or known[0] != own.token:
        known = (own.token, hashlib.sha256(training.download_bytes() or b"").hexdigest())
        st.session_state[HEADS_DIGEST] = known
    return known[1]


def fingerprint(meta: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(meta, sort_keys=True, default=str).encode()).hexdigest()


def check_meta(meta: object, where: str) -> tuple[dict[str, Any], tuple[str, ...]]:
    """``meta`` if it is a project this version can use; settings it cannot use are left out
    with a note.

    Raises:
        ProjectError: not a project, from a newer version, or malformed.
    """
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise ProjectError(_("{where} is not a Faster R-CNN Explorer project").format(where=where))
    version = meta.get("version")
    if not isinstance(version, int) or version < 1:
        raise ProjectError(_("{where} has no valid version").format(where=where))
    if version > VERSION:
        raise ProjectError(
            _(
                "{where} was saved by a newer version of the explorer (project version "
                "{version}; this one reads up to {supported})"
            ).format(where=where, version=version, supported=VERSION)
        )
    image = meta.get("image")
    if image is not None:
        if not isinstance(image, dict) or not isinstance(image.get("digest"), str):
            raise ProjectError(_("{where}: its image entry is malformed").format(where=where))
        if image.get("sample") is not None and image["sample"] not in samples():
            raise ProjectError(
                _("{where}: the sample {sample} does not exist here").format(
                    where=where, sample=shown(image["sample"])
                )
            )
    boxes = meta.get("boxes")
    if not isinstance(boxes, list) or len(boxes) > MAX_BOXES:
        raise ProjectError(_("{where}: its boxes are malformed").format(where=where))
    for i, b in enumerate(boxes):
        if not isinstance(b, dict) or not isinstance(b.get("box"), list) or len(b["box"]) != 4:
            raise ProjectError(_("{where}: box {i} is malformed").format(where=where, i=i + 1))
    settings, notes = check_settings(meta.get("params", {}), where)
    page = meta.get("page", "")
    if not isinstance(page, str):
        raise ProjectError(_("{where}: its page is malformed").format(where=where))
    heads = meta.get("heads")
    if heads is not None and (not isinstance(heads, dict) or "digest" not in heads):
        raise ProjectError(_("{where}: its heads entry is malformed").format(where=where))
    clean = dict(meta, params=settings)
    return clean, notes


# The note on one setting that was left out (``left_out`` of :func:`check_settings`).
SETTING_LEFT_OUT = N_("setting left out: {reason}")


def check_settings(
    raw: object, where: str, left_out: str = SETTING_LEFT_OUT
) -> tuple[dict[str, Any], tuple[str, ...]]:
    """Settings by path, each checked against the registry; unusable ones are left out with a
    note (``left_out``, a message with a ``{reason}``), and the whole must be a combination the
    pipeline can run."""
    if not isinstance(raw, dict):
        raise ProjectError(_("{where}: its settings are malformed").format(where=where))
    good: dict[str, Any] = {}
    notes = []
    params = PipelineParams()
    for path, value in raw.items():
        try:
            entry = parameter(str(path))
            checked = entry.parse(value) if isinstance(value, str) else entry.check(value)
            params = params.replace(entry.path, checked)
            good[entry.path] = checked
        except ParamsError as exc:
            notes.append(_(left_out).format(reason=exc))
    try:
        validate(params)
    except ParamsError as exc:
        note = _("settings left out (they cannot run together: {reason})").format(reason=exc)
        return {}, (*notes, note)
    return good, tuple(notes)


# -- files ----------------------------------------------------------------------------------


def file_maker(page: str) -> tuple[Callable[[], bytes], str]:
    """This session's project as a function that makes the file (a zip), and a name for it.

    The function holds references to what the session has now (its meta, image bytes and
    model), not a copy, and needs no session: a download button calls it when clicked.
    """
    meta = current_meta(page)
    choice = state.image()
    image = choice.data if choice is not None and not choice.sample else None
    own = models.session_model()

    def make() -> bytes:
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as archive:
            archive.writestr(META_MEMBER, json.dumps(meta, indent=1))
            if image is not None:
                archive.writestr(IMAGE_MEMBER, image, compress_type=zipfile.ZIP_STORED)
            if own is not None:
                heads = training.model_bytes(own)
                archive.writestr(HEADS_MEMBER, heads, compress_type=zipfile.ZIP_STORED)
        return buf.getvalue()

    stem = (choice.name.rsplit(".", 1)[0] if choice else "project") or "project"
    return make, f"{stem}.frcnn-project.zip"


def to_file(page: str) -> tuple[bytes, str]:
    """This session's project as one file (a zip) and a file name for it."""
    make, name = file_maker(page)
    return make(), name


def read_file(data: bytes, name: str) -> Contents:
    """A project file checked from end to end (nothing is applied here).

    Raises:
        ProjectError: too large, not a zip, truncated, foreign, from a newer version, or with a
            part that cannot be used (an image that does not decode, a heads file that does not
            load).
    """
    where = shown(name)
    if len(data) > MAX_FILE_BYTES:
        raise ProjectError(
            _("{where} is larger than {mb} MB").format(where=where, mb=MAX_FILE_BYTES // 2**20)
        )
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            members = set(archive.namelist())
            if META_MEMBER not in members:
                message = _("{where} is not a Faster R-CNN Explorer project")
                raise ProjectError(message.format(where=where))
            sizes = {i.filename: i.file_size for i in archive.infolist()}
            if sizes[META_MEMBER] > MAX_JSON_BYTES or sum(sizes.values()) > MAX_FILE_BYTES:
                message = _("{where} unpacks to more than a project can hold")
                raise ProjectError(message.format(where=where))
            meta_bytes = archive.read(META_MEMBER)
            image = archive.read(IMAGE_MEMBER) if IMAGE_MEMBER in members else None
            heads = archive.read(HEADS_MEMBER) if HEADS_MEMBER in members else None
    except zipfile.BadZipFile:
        message = _("{where} is not a project file (not a zip, or truncated)")
        raise ProjectError(message.format(where=where)) from None
    except (zipfile.LargeZipFile, OSError, EOFError, ValueError) as exc:
        message = _("{where} is damaged ({error})").format(where=where, error=type(exc).__name__)
        raise ProjectError(message) from None
    try:
        meta = parse_json(
            meta_bytes, _("{where}'s {member}").format(where=where, member=META_MEMBER)
        )
    except InputError as exc:
        raise ProjectError(str(exc)) from None
    return check_parts(meta, image, heads, where)


def check_parts(meta: object, image: bytes | None, heads: bytes | None, where: str) -> Contents:
    """The parts of a project checked together: the image decodes and is the one ``meta``
    names, the heads file loads."""
    meta, notes = check_meta(meta, where)
    info = meta.get("image")
    if info is not None and info.get("sample") is None:
        if image is None:
            message = _("{where} names an uploaded image but does not hold it")
            raise ProjectError(message.format(where=where))
        if state.digest_of(image) != info["digest"]:
            message = _("{where}: its image is not the one it names (damaged?)")
            raise ProjectError(message.format(where=where))
        try:
            caches.decode(info["digest"], image)
        except ImageError as exc:
            message = _("{where}: its image cannot be used: {reason}")
            raise ProjectError(message.format(where=where, reason=exc)) from None
    if meta.get("heads") is not None:
        if heads is None:
            message = _("{where} names trained heads but does not hold them")
            raise ProjectError(message.format(where=where))
        try:
            from frcnn_core.train import heads_from_bytes

            heads_from_bytes(heads)
        except WeightsError as exc:
            message = _("{where}: its heads cannot be used: {reason}")
            raise ProjectError(message.format(where=where, reason=exc)) from None
    return Contents(meta, image, heads, notes)


def apply(contents: Contents) -> list[str]:
    """Make a checked project this session's. Returns notes for the user."""
    meta = contents.meta
    notes = list(contents.notes)
    info = meta.get("image")
    boxes = [{"box": list(b["box"]), "label": clean_label(b.get("label"))} for b in meta["boxes"]]
    if info is not None:
        if info.get("sample") is not None:
            state.choose_sample(info["sample"])
            state.set_boxes(boxes)
        else:
            data = contents.image or b""
            name = shown(info.get("name") or "image")
            state.set_image(state.ImageChoice(name, data, info["digest"], False), boxes)
    params = PipelineParams()
    for path, value in meta["params"].items():
        params = params.replace(path, tuple(value) if isinstance(value, list) else value)
    state.reset_params()
    state.set_params(params)
    if contents.heads is not None:
        try:
            training.load_upload(contents.heads, (meta.get("heads") or {}).get("source", "project"))
            own = models.session_model()
            if own is not None:
                own.history = list((meta.get("heads") or {}).get("history", []))
                own.source = (meta.get("heads") or {}).get("source", own.source)
        except WeightsError as exc:
            notes.append(_("the trained heads were not loaded: {reason}").format(reason=exc))
    else:
        training.reset()
    if not i18n.named_in_url():  # the saved language, unless the link names one
        i18n.set_language(meta.get("lang") or i18n.current())
    return notes


# -- this browser's project on the server ---------------------------------------------------


def owner() -> str:
    """This browser's id: from its cookie, or a new one that the browser is asked to keep."""
    if OWNER not in st.session_state:
        known = st.context.cookies.get(COOKIE)
        valid = isinstance(known, str) and 20 <= len(known) <= 64 and known.isascii()
        st.session_state[OWNER] = known if valid else secrets.token_urlsafe(24)
        if not valid:
            _keep_cookie(st.session_state[OWNER])
    return st.session_state[OWNER]


def _keep_cookie(value: str) -> None:
    """Ask the browser to keep ``value`` (the page's own origin, a year, not sent elsewhere).
    ``value`` is ours (URL-safe base64), never user text."""
    st.html(
        "<script>document.cookie = "
        f"'{COOKIE}={value}; path=/; max-age=31536000; SameSite=Strict';</script>",
        unsafe_allow_javascript=True,
    )


def autosave(page: str) -> None:
    """Save this session's project for this browser when it changed since the last save."""
    store = _store()
    if store is None or state.image() is None:
        return
    meta = current_meta(page)
    mark = fingerprint(meta)
    if st.session_state.get(SAVED) == mark:
        return
    try:
        _put(store, meta)
        store.put("project", owner(), json.dumps(meta).encode())
        st.session_state[SAVED] = mark
    except Exception:  # a full disk or a lost store must not break the page
        log.exception("saving the project failed")


def _put(store: Store, meta: dict[str, Any]) -> None:
    """The large parts, once each (the key is their digest)."""
    choice = state.image()
    info = meta.get("image")
    uploaded = info is not None and info.get("sample") is None and choice is not None
    if uploaded and not store.exists("blob", info["digest"]):
        store.put("blob", info["digest"], choice.data)  # type: ignore[union-attr]
    heads = meta.get("heads")
    if heads is not None and not store.exists("blob", heads["digest"]):
        store.put("blob", heads["digest"], training.download_bytes() or b"")


def _load(store: Store, meta_bytes: bytes, where: str) -> Contents:
    try:
        meta = parse_json(meta_bytes, where)
    except InputError as exc:
        raise ProjectError(str(exc)) from None
    info = meta.get("image") if isinstance(meta, dict) else None
    image = None
    if (
        isinstance(info, dict)
        and info.get("sample") is None
        and isinstance(info.get("digest"), str)
    ):
        image = store.get("blob", info["digest"])
    heads_info = meta.get("heads") if isinstance(meta, dict) else None
    heads = None
    if isinstance(heads_info, dict) and isinstance(heads_info.get("digest"), str):
        heads = store.get("blob", heads_info["digest"])
    return check_parts(meta, image, heads, where)


# -- the start of a session: a link, or this browser's saved project ---------------------------


def start(current_page: str) -> str | None:
    """Once per session: bring back this browser's saved project, then apply a link's query on
    top of it. Returns the page to go to (the restored project's, when no link names one), or
    None to stay."""
    if st.session_state.get(STARTED):
        return None
    st.session_state[STARTED] = True
    said: list[str] = []
    kind = "restored"
    go_to = None
    try:
        page, said = restore()
        go_to = page if page is not None and page != current_page else None
    except ProjectError as exc:
        kind = "error"
        said = [_("your saved project could not be restored: {reason}").format(reason=exc)]
    query = {k: st.query_params.get_all(k)[-1] for k in st.query_params if k != i18n.QUERY}
    if query:
        said += open_link(query)
        go_to = None  # a link names its page by its path
        kind = "link" if kind != "error" else kind
    if said:
        st.session_state[NOTES] = (kind, said)
    return go_to


def restore() -> tuple[str | None, list[str]]:
    """Bring back this browser's saved project, if there is one: returns its page and notes
    (``(None, [])`` when nothing is saved).

    Raises:
        ProjectError: the saved project cannot be used; the session is unchanged.
    """
    store = _store()
    saved = store.get("project", owner()) if store is not None else None
    if saved is None:
        return None, []
    # Its notes in the language the session speaks once it is applied (the project's own):
    # the router then draws the page again in that language, notes included.
    lang = _language_after(saved)
    try:
        with using(lang):
            contents = _load(store, saved, _("your saved project"))  # type: ignore[arg-type]
    except ProjectError:
        if lang == i18n.current():
            raise
        # Not applied, so the session keeps its language: the same refusal, said in it.
        contents = _load(store, saved, _("your saved project"))  # type: ignore[arg-type]
    with using(lang):
        said = apply(contents)
    st.session_state[SAVED] = fingerprint(current_meta(contents.meta.get("page", "")))
    return contents.meta.get("page") or "", said


def _language_after(meta_bytes: bytes) -> str:
    """The language this session speaks once the saved project ``meta_bytes`` is applied (see
    :func:`apply`): the project's, unless the link named one."""
    if i18n.named_in_url():
        return i18n.current()
    try:
        meta = json.loads(meta_bytes)
    except ValueError:
        return i18n.current()
    lang = normalise(meta.get("lang")) if isinstance(meta, dict) else None
    return lang or i18n.current()


def notes() -> tuple[str, list[str]] | None:
    """What the start of this session said (once)."""
    return st.session_state.pop(NOTES, None)


# -- links ----------------------------------------------------------------------------------


def view_query(page: str, picks: dict[str, str]) -> dict[str, str]:
    """The query of a link that reproduces this view: the settings that differ from the
    tutorial's, ``picks`` (e.g. ``{"roi": "3"}``), and the image, boxes and heads (a sample
    with its own boxes by name, anything else as a snapshot the server keeps, made once per
    image, boxes and heads)."""
    query: dict[str, str] = {}
    choice = state.image()
    own = models.session_model()
    sample = samples().get(choice.name) if choice is not None and choice.sample else None
    if sample is not None and own is None and state.boxes() == sample.box_dicts():
        query["sample"] = sample.name
    else:
        query["view"] = _snapshot(page)
    for path, value in state.params().changed().items():
        query[path] = ",".join(f"{v:g}" for v in value) if isinstance(value, tuple) else str(value)
    query.update(picks)
    return query


def _snapshot(page: str) -> str:
    """A view id for this session's image, boxes and heads, the same while they are."""
    store = _store()
    if store is None:
        raise ProjectError(_("this server keeps no snapshots (its store cannot be opened)"))
    meta = current_meta(page)
    content = fingerprint({k: meta[k] for k in ("image", "boxes", "heads")})
    known = st.session_state.get(SNAPSHOT)
    if known is not None and known[0] == content and store.exists("share", known[1]):
        return known[1]
    _put(store, meta)
    view = secrets.token_urlsafe(12)
    store.put("share", view, json.dumps(meta).encode())
    st.session_state[SNAPSHOT] = (content, view)
    return view


def share_link(base_url: str, page: str, picks: dict[str, str]) -> str:
    """A link to ``page`` that reproduces this view (see :func:`view_query`)."""
    url = f"{base_url.rstrip('/')}/{page}"
    query = {**view_query(page, picks), i18n.QUERY: i18n.current()}  # in the sharer's language
    return f"{url}?{urlencode(query)}"


def view_token(query: dict[str, str]) -> str | None:
    """What a link's query names as its image, boxes and heads: a view id or a sample."""
    if "view" in query:
        return query["view"]
    return f"sample:{query['sample']}" if "sample" in query else None


def open_link(query: dict[str, str], known_view: str | None = None) -> list[str]:
    """Apply a link's query to this session; returns notes (what was ignored and why).
    ``known_view``: the :func:`view_token` of what this session already shows (its image,
    boxes and heads are not loaded again)."""
    notes: list[str] = []
    contents = None
    if known_view is not None and view_token(query) == known_view:
        pass
    elif "view" in query:
        store = _store()
        saved = store.get("share", query["view"]) if store is not None else None
        if saved is None:
            notes.append(
                _("the shared view was not found (it may have expired); showing the zebras")
            )
        else:
            try:
                contents = _load(store, saved, _("the shared view"))  # type: ignore[arg-type]
            except ProjectError as exc:
                notes.append(_("the shared view cannot be used: {reason}").format(reason=exc))
    elif "sample" in query:
        if query["sample"] in samples():
            state.choose_sample(query["sample"])
        else:
            notes.append(
                _("no sample called {name}; showing the zebras").format(name=shown(query["sample"]))
            )
    if contents is not None:
        notes += apply(contents)
    settings = {k: v for k, v in query.items() if k not in LINK_KEYS}
    good, said = check_settings(
        settings, _("the link"), N_("ignored a setting of the link: {reason}")
    )
    notes += said
    # A link that names its image names its settings too (the rest are the tutorial's);
    # one with picks only changes nothing else.
    names_a_view = "view" in query or "sample" in query
    params = PipelineParams() if names_a_view else state.params()
    for path, value in good.items():
        params = params.replace(path, value)
    try:
        state.set_params(params)
    except ParamsError as exc:
        notes.append(_("ignored the link's settings: {reason}").format(reason=exc))
    notes += _apply_picks(query)
    return notes


def _apply_picks(query: dict[str, str]) -> list[str]:
    notes = []
    for name, key in PICKS.items():
        if name not in query:
            continue
        value = query[name]
        if name == "bug":
            st.session_state[key] = value  # the bugs page checks the id itself
            continue
        try:
            numbers = [int(v) for v in value.split(",")]
        except ValueError:
            message = _("ignored {name}={value}: not a whole number")
            notes.append(message.format(name=name, value=shown(value)))
            continue
        if name == "cell":
            if len(numbers) != 2 or min(numbers) < 0:
                message = _("ignored cell={value}: expected row,column")
                notes.append(message.format(value=shown(value)))
                continue
            st.session_state[key[0]], st.session_state[key[1]] = numbers
        elif numbers[0] < 0:
            message = _("ignored {name}={value}: not a valid index")
            notes.append(message.format(name=name, value=shown(value)))
        else:
            st.session_state[key] = numbers[0]  # type: ignore[index]
    return notes
