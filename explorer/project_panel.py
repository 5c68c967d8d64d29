"""The sidebar's "Project" panel: saved for this browser, download / open a project file, share
this view as a link; and the Image page's "Boxes in and out" (import and export a box list).

Callbacks are module functions (a function defined in a page would keep that run alive).
"""

from __future__ import annotations

from collections.abc import Callable
from urllib.parse import urlparse

import streamlit as st

from explorer import caches, projects, state
from explorer.text import plain_message, shown
from explorer.uploads import LIMITS_MB, too_large
from frcnn_core.boxes_io import FORMAT_NAMES, FORMATS, read_boxes, write_boxes
from frcnn_core.ground_truth import BoxesError
from frcnn_core.i18n import _, ngettext

OPENED = "project:opened"  # file_id of the last project file acted on
MESSAGE = "project:message:"  # + where: (kind, text) of the last open or import there
LINK = "project:link"  # the last share link made
BOXES_SEEN = "boxes_io:seen"
# What each page may pick, and where the page keeps it (see projects.PICKS).
PAGE_PICKS = {
    "labelling": ("anchor",),
    "roi": ("roi",),
    "bugs": ("bug",),
    "anchors": ("cell",),
    "proposals": ("box",),
    "head": ("head_roi",),
    "detect": ("detection",),
}


def _say(kind: str, text: str, where: str = "project") -> None:
    st.session_state[MESSAGE + where] = (kind, text)


def show_message(where: str = "project") -> None:
    kind, text = st.session_state.pop(MESSAGE + where, (None, None))
    if kind == "error":
        st.error(plain_message(text))
    elif kind == "success":
        st.success(plain_message(text))


def base_url() -> str:
    """The app's address as the browser sees it (behind a proxy, its outside address)."""
    url = urlparse(st.context.url or "http://localhost:8501/")
    prefix = (st.get_option("server.baseUrlPath") or "").strip("/")
    return f"{url.scheme}://{url.netloc}" + (f"/{prefix}" if prefix else "")


def picks(page: str) -> dict[str, str]:
    out = {}
    for name in PAGE_PICKS.get(page, ()):
        key = projects.PICKS[name]
        if isinstance(key, tuple):
            values = [st.session_state.get(k) for k in key]
            if all(isinstance(v, int) for v in values):
                out[name] = ",".join(str(v) for v in values)
        elif st.session_state.get(key) is not None:
            out[name] = str(st.session_state[key])
    return out


def _share(page: str) -> None:
    try:
        st.session_state[LINK] = projects.share_link(base_url(), page, picks(page))
    except projects.ProjectError as exc:
        _say("error", str(exc))


def _open_file() -> None:
    upload = st.session_state.get("project:file")
    if upload is None or upload.file_id == st.session_state.get(OPENED):
        return
    st.session_state[OPENED] = upload.file_id
    name = shown(upload.name)
    reason = too_large(upload, "project")
    if reason:
        _say("error", _("{name} was not opened: {reason}.").format(name=name, reason=reason))
        return
    try:
        contents = projects.read_file(upload.getvalue(), name)
    except projects.ProjectError as exc:
        _say("error", _("Nothing was changed: {reason}.").format(reason=exc))
        return
    notes = projects.apply(contents)
    _say("success", _("Opened {name}.").format(name=name) + _notes(notes))


def _notes(notes: list[str] | tuple[str, ...]) -> str:
    """Each note as a sentence of its own, after a message."""
    return "".join(_(" Note: {note}.").format(note=n) for n in notes)


def sidebar(page: str) -> None:
    """The Project panel (in the sidebar, on every page)."""
    with st.expander(_("Project"), icon=":material/folder_open:"):
        st.caption(
            _(
                "Your image, boxes, settings and trained heads are saved for this browser as you "
                "work: a reload or a new tab brings them back."
            )
        )
        st.button(
            _("Share this view"),
            key="project:share",
            on_click=_share,
            args=(page,),
            width="stretch",
            help=_("A link to this page with this image, boxes and settings"),
        )
        link = st.session_state.get(LINK)
        if link:
            st.code(link, language=None, wrap_lines=True)
            st.caption(_("Copy it with the icon at its top right."))
        data, name = _project_file(page)
        st.download_button(
            _("Download project"),
            data,
            file_name=name,
            mime="application/zip",
            key="project:download_button",
            width="stretch",
            help=_("One file with the image, boxes, settings and trained heads"),
        )
        st.file_uploader(
            _("Open a project file"),
            type=["zip"],
            key="project:file",
            on_change=_open_file,
            max_upload_size=LIMITS_MB["project"],
        )
        show_message()


def _project_file(page: str) -> tuple[Callable[[], bytes], str]:
    """What makes the project file when the button is clicked (one per version of the
    project: the button keeps its identity while nothing changes)."""
    mark = projects.fingerprint(projects.current_meta(page))
    cached = st.session_state.get(projects.FILE_DOWNLOAD)
    if cached is None or cached[0] != mark:
        cached = (mark, *projects.file_maker(page))
        st.session_state[projects.FILE_DOWNLOAD] = cached
    return cached[1], cached[2]


# -- boxes in and out (the Image page) --------------------------------------------------------


def _import_boxes() -> None:
    files = st.session_state.get("boxes_io:files") or []
    ids = tuple(f.file_id for f in files)
    if not files or ids == st.session_state.get(BOXES_SEEN):
        return
    st.session_state[BOXES_SEEN] = ids
    choice = state.image()
    if choice is None:
        return
    names = [shown(f.name) for f in files]
    for f in files:
        reason = too_large(f, "boxes")
        if reason:
            said = _("{name} was not read: {reason}.").format(name=shown(f.name), reason=reason)
            _say("error", said, "boxes")
            return
    labels = [f for f in files if f.name.lower() not in ("classes.txt", "obj.names")]
    classes = [f for f in files if f.name.lower() in ("classes.txt", "obj.names")]
    if len(labels) != 1:
        _say("error", _("Choose one boxes file (and, for YOLO, its classes.txt)."), "boxes")
        return
    size = caches.decode(choice.digest, choice.data).size
    try:
        imported = read_boxes(
            labels[0].getvalue(),
            shown(labels[0].name),
            size,
            choice.name,
            classes[0].getvalue() if classes else None,
        )
    except BoxesError as exc:
        _say("error", _("No box was changed: {reason}.").format(reason=exc), "boxes")
        return
    state.set_boxes(imported.boxes)
    n = len(imported.boxes)
    read = ngettext("{n} box read from {files}.", "{n} boxes read from {files}.", n)
    _say("success", read.format(n=n, files=", ".join(names)) + _notes(imported.notes), "boxes")


def boxes_in_out() -> None:
    """Import a box list (replacing the image's boxes) or export them, in every format."""
    choice = state.image()
    if choice is None:
        return
    with st.expander(_("Boxes in and out (BOXES.json, COCO, Pascal VOC, YOLO)")):
        st.file_uploader(
            _("Import boxes (they replace this image's boxes)"),
            type=["json", "xml", "txt", "names", "zip"],
            accept_multiple_files=True,
            key="boxes_io:files",
            on_change=_import_boxes,
            max_upload_size=LIMITS_MB["boxes"],
            help=_(
                "A COCO file with several images gives the boxes of the one named like this "
                "image; YOLO needs the image's labels .txt and its classes.txt."
            ),
        )
        show_message("boxes")
        kind = st.selectbox(
            _("Export as"), FORMATS, format_func=FORMAT_NAMES.__getitem__, key="boxes_io:kind"
        )
        size = caches.decode(choice.digest, choice.data).size
        data, name = write_boxes(kind, state.boxes(), choice.name, size)
        st.download_button(
            _("Download {name}").format(name=name),
            data,
            file_name=name,
            key="boxes_io:download",
            width="stretch",
        )
