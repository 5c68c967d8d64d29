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

from explorer import caches, models, state, training
from explorer.samples import samples
from explorer.store import Store, StoreError, open_store
from explorer.text import shown
from frcnn_core.backbone import WeightsError
from frcnn_core.ground_truth import MAX_BOXES, clean_label
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
LINK_KEYS = ("view", "sample", "class", *PICKS)  # "class": see explorer.classroom


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
        raise ProjectError(f"{where} is not a Faster R-CNN Explorer project")
    version = meta.get("version")
    if not isinstance(version, int) or version < 1:
        raise ProjectError(f"{where} has no valid version")
    if version > VERSION:
        raise ProjectError(
            f"{where} was saved by a newer version of the explorer (project version {version}; "
            f"this one reads up to {VERSION})"
        )
    image = meta.get("image")
    if image is not None:
        if not isinstance(image, dict) or not isinstance(image.get("digest"), str):
            raise ProjectError(f"{where}: its image entry is malformed")
        if image.get("sample") is not None and image["sample"] not in samples():
            raise ProjectError(f"{where}: the sample {shown(image['sample'])} does not exist here")
    boxes = meta.get("boxes")
    if not isinstance(boxes, list) or len(boxes) > MAX_BOXES:
        raise ProjectError(f"{where}: its boxes are malformed")
    for i, b in enumerate(boxes):
        if not isinstance(b, dict) or not isinstance(b.get("box"), list) or len(b["box"]) != 4:
            raise ProjectError(f"{where}: box {i + 1} is malformed")
    settings, notes = check_settings(meta.get("params", {}), where)
    page = meta.get("page", "")
    if not isinstance(page, str):
        raise ProjectError(f"{where}: its page is malformed")
    heads = meta.get("heads")
    if heads is not None and (not isinstance(heads, dict) or "digest" not in heads):
        raise ProjectError(f"{where}: its heads entry is malformed")
    clean = dict(meta, params=settings)
    return clean, notes


def check_settings(raw: object, where: str) -> tuple[dict[str, Any], tuple[str, ...]]:
    """Settings by path, each checked against the registry; unusable ones are left out with a
    note, and the whole must be a combination the pipeline can run."""
    if not isinstance(raw, dict):
        raise ProjectError(f"{where}: its settings are malformed")
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
            notes.append(f"setting left out: {exc}")
    try:
        validate(params)
    except ParamsError as exc:
        return {}, (*notes, f"settings left out (they cannot run together: {exc})")
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
        raise ProjectError(f"{where} is larger than {MAX_FILE_BYTES // 2**20} MB")
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            members = set(archive.namelist())
            if META_MEMBER not in members:
                raise ProjectError(f"{where} is not a Faster R-CNN Explorer project")
            sizes = {i.filename: i.file_size for i in archive.infolist()}
            if sizes[META_MEMBER] > MAX_JSON_BYTES or sum(sizes.values()) > MAX_FILE_BYTES:
                raise ProjectError(f"{where} unpacks to more than a project can hold")
            meta_bytes = archive.read(META_MEMBER)
            image = archive.read(IMAGE_MEMBER) if IMAGE_MEMBER in members else None
            heads = archive.read(HEADS_MEMBER) if HEADS_MEMBER in members else None
    except zipfile.BadZipFile:
        raise ProjectError(f"{where} is not a project file (not a zip, or truncated)") from None
    except (zipfile.LargeZipFile, OSError, EOFError, ValueError) as exc:
        raise ProjectError(f"{where} is damaged ({type(exc).__name__})") from None
    try:
        meta = parse_json(meta_bytes, f"{where}'s {META_MEMBER}")
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
            raise ProjectError(f"{where} names an uploaded image but does not hold it")
        if state.digest_of(image) != info["digest"]:
            raise ProjectError(f"{where}: its image is not the one it names (damaged?)")
        try:
            caches.decode(info["digest"], image)
        except ImageError as exc:
            raise ProjectError(f"{where}: its image cannot be used: {exc}") from None
    if meta.get("heads") is not None:
        if heads is None:
            raise ProjectError(f"{where} names trained heads but does not hold them")
        try:
            from frcnn_core.train import heads_from_bytes

            heads_from_bytes(heads)
        except WeightsError as exc:
            raise ProjectError(f"{where}: its heads cannot be used: {exc}") from None
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
            notes.append(f"the trained heads were not loaded: {exc}")
    else:
        training.reset()
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
        said = [f"your saved project could not be restored: {exc}"]
    query = {k: st.query_params.get_all(k)[-1] for k in st.query_params}
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
    contents = _load(store, saved, "your saved project")  # type: ignore[arg-type]
    said = apply(contents)
    st.session_state[SAVED] = fingerprint(current_meta(contents.meta.get("page", "")))
    return contents.meta.get("page") or "", said


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
        raise ProjectError("this server keeps no snapshots (its store cannot be opened)")
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
    query = view_query(page, picks)
    return f"{url}?{urlencode(query)}" if query else url


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
            notes.append("the shared view was not found (it may have expired); showing the zebras")
        else:
            try:
                contents = _load(store, saved, "the shared view")  # type: ignore[arg-type]
            except ProjectError as exc:
                notes.append(f"the shared view cannot be used: {exc}")
    elif "sample" in query:
        if query["sample"] in samples():
            state.choose_sample(query["sample"])
        else:
            notes.append(f"no sample called {shown(query['sample'])}; showing the zebras")
    if contents is not None:
        notes += apply(contents)
    settings = {k: v for k, v in query.items() if k not in LINK_KEYS}
    good, said = check_settings(settings, "the link")
    notes += [n.replace("setting left out", "ignored a setting of the link") for n in said]
    # A link that names its image names its settings too (the rest are the tutorial's);
    # one with picks only changes nothing else.
    names_a_view = "view" in query or "sample" in query
    params = PipelineParams() if names_a_view else state.params()
    for path, value in good.items():
        params = params.replace(path, value)
    try:
        state.set_params(params)
    except ParamsError as exc:
        notes.append(f"ignored the link's settings: {exc}")
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
            notes.append(f"ignored {name}={shown(value)}: not a whole number")
            continue
        if name == "cell":
            if len(numbers) != 2 or min(numbers) < 0:
                notes.append(f"ignored cell={shown(value)}: expected row,column")
                continue
            st.session_state[key[0]], st.session_state[key[1]] = numbers
        elif numbers[0] < 0:
            notes.append(f"ignored {name}={shown(value)}: not a valid index")
        else:
            st.session_state[key] = numbers[0]  # type: ignore[index]
    return notes
