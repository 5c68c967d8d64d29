"""The Image & ground truth page's widgets and their callbacks (``pages/1_image.py`` lays them out).

The session's boxes (``state.boxes()``, original pixels) are the one source of truth. The canvas
and the table are two views of them:

- A canvas remounts (new key) only when the boxes change from elsewhere (table, sample, clear,
  another page); the user's own strokes update the session without remounting it, so a drag
  is never interrupted. ``SHOWN`` records what the mounted canvas displays.
- The table likewise keeps its own edits while the user types, so a new row can be filled in
  cell by cell (incomplete rows stay in it, unused); it restarts (new key) from the session's
  boxes when they change elsewhere.
- Both report through callbacks, which run before app.py draws the sidebar; the same handlers
  run again at the top of the page (AppTest runs no callback for seeded widget state). Both
  are idempotent.

Why these live in a module and not in the page: Streamlit keeps every widget's metadata (its
``on_change`` callback, arguments and ``format_func``) for the whole session, and the canvas
and the table get a new key whenever the boxes change. A function defined in a page script
holds that run's page namespace (``__globals__``), with its run and decoded image, so
each box change would keep one more run alive. Callbacks here are module functions given small
arguments (keys, a digest, a :class:`CanvasFrame`), never closures over a run's objects.
"""

from __future__ import annotations

import functools

import streamlit as st
from streamlit_drawable_canvas import CanvasResult, boxes_to_drawing, st_canvas

from explorer import caches, display, state
from explorer.figures import GT_COLOUR
from explorer.samples import samples
from explorer.text import plain, plain_message, shown
from explorer.uploads import LIMITS_MB, too_large
from explorer.views.image import (
    COORDS,
    UNUSABLE_UPLOAD,
    CanvasFrame,
    apply_edits,
    background_uri,
    boxes_to_canvas,
    boxes_to_rows,
    canvas_to_boxes,
    check_upload,
    drawable,
    merge_drawn,
    rows_table,
    signature,
    split_rows,
)
from frcnn_core.ground_truth import DEFAULT_LABEL, MAX_LABEL_CHARS, clean_label
from frcnn_core.i18n import N_, _

P = "image_page:"
VERSION = P + "canvas_version"  # bumped when the boxes change other than by the canvas
SHOWN = P + "shown"  # {"key", "sig", "drawing", "frame"}: what the mounted canvas displays
TABLE = P + "table"  # {"digest", "key", "base", "synced", "pending"}: the mounted table
TABLE_VERSION = P + "table_version"
LABEL = P + "label"  # label for the next drawn box (survives page switches)
LABEL_WIDGET = P + "label_widget"
LABEL_IMAGE = P + "label_image"  # the image the label was chosen on (another image resets it)
SAMPLE_WIDGET = P + "sample"
SAMPLE_SHOWN = P + "sample_shown"  # what image_pickers last put in the sample selector
UPLOAD_WIDGET = P + "upload"
UPLOAD_SEEN = P + "upload_seen"  # file id of the last upload handled
# (file id, message, its fields) of a rejected upload: the message in English, translated where
# it is shown (the language may change while the file stays in the uploader).
UPLOAD_ERROR = P + "upload_error"
TOO_LARGE_UPLOAD = N_("{name} was not used: {reason}.")
UPLOAD_TYPES = ["jpg", "jpeg", "png", "webp", "bmp", "gif", "tif", "tiff"]
# The probe's width is reported again only after a change of 32 px: a scroll bar (up to 16 px)
# may have come since; and the canvas's element has a border.
CANVAS_ROOM_SPARE_PX = 24


def canvas_key(digest: str, frame: CanvasFrame) -> str:
    """A new key (a remounted canvas) for another image, another canvas size, another version."""
    size = f"{frame.width}x{frame.height}"
    return f"{P}canvas:{digest[:12]}:{size}:{st.session_state.get(VERSION, 0)}"


def canvas_room() -> int | None:
    """The width (CSS px) the canvas may take: the main column's, as the browser reports it
    (:func:`explorer.display.main_width`), less room for a scroll bar and the canvas's border;
    None until the browser has reported it (then the canvas takes its largest size)."""
    width = display.main_width()
    return None if width is None else width - CANVAS_ROOM_SPARE_PX


def table_state(digest: str) -> dict:
    """What the mounted table was given (``base``), the boxes it stands for (``synced``) and
    its rows still missing a number (``pending``); started afresh for a new image."""
    table = st.session_state.get(TABLE)
    if not table or table["digest"] != digest:
        table = {"digest": digest, "key": None, "base": [], "synced": None, "pending": []}
        st.session_state[TABLE] = table
    return table


def forget_table() -> None:
    """Drop the table's incomplete rows; it is rebuilt from the session's boxes."""
    st.session_state.pop(TABLE, None)


def on_sample() -> None:
    name = st.session_state.get(SAMPLE_WIDGET)
    if name is not None and name in samples():
        state.choose_sample(name)
        forget_table()
        st.session_state[SAMPLE_SHOWN] = name  # done (see take_sample): last


def on_clear() -> None:
    state.set_boxes([])
    forget_table()


def take_canvas_report(key: str, frame: CanvasFrame) -> None:
    """The user drew, moved, resized, relabelled or deleted on the canvas: adopt its boxes."""
    shown = st.session_state.get(SHOWN) or {}
    if key not in st.session_state or shown.get("key") != key:
        return
    if shown.get("sig") != signature(state.boxes()):
        return  # the boxes changed elsewhere since it was drawn: it is redrawn on this run
    raw = (st.session_state[key].get("drawing") or {}).get("raw")
    drawn = canvas_to_boxes(CanvasResult(raw, None, False).boxes, frame)
    if signature(drawn) == shown["sig"]:
        return
    current = state.boxes()
    undrawable = [b for b in current if not drawable(b)]
    state.set_boxes(merge_drawn(current, drawn, frame.clip) + undrawable)
    shown["sig"] = signature(drawn)


def take_shown_canvas_report(digest: str) -> None:
    """:func:`take_canvas_report` for the canvas on screen (its key and size as mounted), if it
    shows the image ``digest`` (a canvas of the previous image never reports onto this one)."""
    shown = st.session_state.get(SHOWN) or {}
    if "frame" in shown and str(shown.get("key", "")).startswith(f"{P}canvas:{digest[:12]}:"):
        take_canvas_report(shown["key"], shown["frame"])


def take_table_report(digest: str) -> None:
    """The user edited the table: rows with four numbers become the boxes, in table order;
    incomplete rows stay in the table (the editor keeps them) until they are filled in."""
    table = table_state(digest)
    key = table["key"]
    if key is None or key not in st.session_state:
        return
    if table["synced"] != state.boxes():
        # The boxes changed elsewhere (imported, another page) since this table was built: its
        # rows are out of date, not an edit, and it is rebuilt from the boxes on this run.
        return
    result = split_rows(apply_edits(table["base"], st.session_state[key]), next_label())
    table["pending"] = result.pending
    if result.boxes != table["synced"]:
        state.set_boxes(result.boxes)
        table["synced"] = state.boxes()


def take_upload() -> bool:
    """A new upload becomes the image (with no boxes) if it decodes; else a message is kept
    and the image and boxes stay as they were. True when it handled a file on this call.

    The uploader's callback and the top of the page both call this, and the page's call is
    the one that counts: Streamlit (``runner.fastReruns``, its default) answers a rerun request
    that arrives while a run is going, e.g. the drawing canvas reporting its background once
    loaded on the page's first run in a session, by stopping that run at its next
    ``st.session_state`` access and starting a new one at once. The new run sees the uploader's
    value unchanged and calls no callback, so a callback stopped half-way is never called
    again. So the file is marked as handled (``UPLOAD_SEEN``) last, after the image or the
    message: marked first (as it was), a stopped callback left the file in the uploader,
    marked as handled, while the app kept the previous image.
    """
    uploaded = st.session_state.get(UPLOAD_WIDGET)
    if uploaded is None or uploaded.file_id == st.session_state.get(UPLOAD_SEEN):
        return False
    name = shown(uploaded.name)  # another person's file name: one bounded, visible line
    reason = too_large(uploaded, "image")
    if reason:
        refuse(uploaded.file_id, TOO_LARGE_UPLOAD, name=name, reason=reason)
        return True
    data = uploaded.getvalue()
    digest = state.digest_of(data)
    result = check_upload(name, data, functools.partial(caches.decode, digest))
    if result.error:
        refuse(uploaded.file_id, UNUSABLE_UPLOAD, name=name, reason=result.reason)
        return True
    state.set_image(state.ImageChoice(name, data, digest, False), [])
    forget_table()
    st.session_state.pop(UPLOAD_ERROR, None)
    st.session_state[UPLOAD_SEEN] = uploaded.file_id
    return True


def refuse(file_id: str, message: str, **fields: str | None) -> None:
    """Keep ``message`` (English, marked ``N_``) and its ``fields`` for the upload ``file_id``
    (shown under the uploader, translated then), then mark it."""
    st.session_state[UPLOAD_ERROR] = (file_id, message, fields)
    st.session_state[UPLOAD_SEEN] = file_id


def take_sample() -> bool:
    """The sample the student picked, if its callback was stopped before it had applied it
    (see :func:`take_upload`): applied now. True when it was.

    The selector shows the session's image: :func:`image_pickers` sets it on each run, and it
    and :func:`on_sample` (last, once the sample is applied) keep what it shows in
    ``SAMPLE_SHOWN``. A value that differs from that is a pick not yet applied.
    """
    if SAMPLE_SHOWN not in st.session_state:
        return False
    picked = st.session_state.get(SAMPLE_WIDGET)
    if picked is None or picked == st.session_state[SAMPLE_SHOWN] or picked not in samples():
        return False
    on_sample()
    return True


@st.cache_data(max_entries=16, show_spinner=False)
def canvas_background(digest: str, _data: bytes, frame: CanvasFrame) -> str:
    return background_uri(caches.decode(digest, _data).pixels, frame)


def image_pickers() -> None:
    """Sample selector and uploader; a rejected upload leaves image and boxes as they were."""
    catalogue = samples()
    titles = {name: sample.shown_title for name, sample in catalogue.items()}
    choice = state.image()
    st.session_state[SAMPLE_WIDGET] = choice.name if choice and choice.sample else None
    st.session_state[SAMPLE_SHOWN] = st.session_state[SAMPLE_WIDGET]
    left, right = st.columns(2)
    with left:
        if choice:
            placeholder = _("Your upload: {name}").format(name=choice.name)
        else:
            placeholder = _("Choose a sample")
        st.selectbox(
            _("Sample image"),
            options=list(catalogue),
            format_func=titles.__getitem__,
            key=SAMPLE_WIDGET,
            on_change=on_sample,
            placeholder=placeholder,
            help=_("Each sample comes with example boxes; choosing one replaces your boxes."),
        )
        if choice is not None and choice.sample and choice.name in catalogue:
            sample = catalogue[choice.name]
            st.caption(
                _("Source: {source}  \nLicence: {licence}").format(
                    source=sample.source, licence=sample.licence
                )
            )
        elif choice is not None:
            st.caption(
                _("Your upload: {name} (kept in this browser session only)").format(
                    name=plain(choice.name)
                )
            )
    with right:
        uploaded = st.file_uploader(
            _("…or upload an image (JPEG, PNG, WebP, BMP, GIF, TIFF)"),
            type=UPLOAD_TYPES,
            key=UPLOAD_WIDGET,
            on_change=take_upload,
            max_upload_size=LIMITS_MB["image"],
            help=_("A new image starts with no boxes: draw them on it below."),
        )
    if uploaded is None:
        return
    error = st.session_state.get(UPLOAD_ERROR)
    if error and error[0] == uploaded.file_id:
        _file_id, message, fields = error
        st.warning(
            plain_message(_(message).format(**fields)), icon=":material/image_not_supported:"
        )


def next_label() -> str:
    return st.session_state.get(LABEL, DEFAULT_LABEL)


def label_input() -> str:
    choice = state.image()
    digest = choice.digest if choice is not None else None
    if LABEL not in st.session_state or st.session_state.get(LABEL_IMAGE) != digest:
        # A new image starts from its own last box's label ("zebra" does not follow a photo).
        last = state.boxes()[-1]["label"] if state.boxes() else DEFAULT_LABEL
        st.session_state[LABEL] = clean_label(last)
        st.session_state[LABEL_WIDGET] = st.session_state[LABEL]
        st.session_state[LABEL_IMAGE] = digest
    if LABEL_WIDGET not in st.session_state:
        st.session_state[LABEL_WIDGET] = st.session_state[LABEL]
    text = st.text_input(
        _("Label for the next box"),
        key=LABEL_WIDGET,
        max_chars=MAX_LABEL_CHARS,
        help=_("Boxes you draw get this class label; edit a box's label in the table."),
    )
    st.session_state[LABEL] = clean_label(text)
    return st.session_state[LABEL]


def drawing_canvas(choice: state.ImageChoice, frame: CanvasFrame, label: str) -> None:
    """The canvas, remounted with the session's boxes whenever they changed elsewhere."""
    key = canvas_key(choice.digest, frame)
    shown = st.session_state.get(SHOWN) or {}
    wanted = signature(state.boxes())
    live = key in st.session_state and shown.get("key") == key
    if not live or shown.get("sig") != wanted:
        if live:
            st.session_state[VERSION] = st.session_state.get(VERSION, 0) + 1
            key = canvas_key(choice.digest, frame)
        drawing = boxes_to_drawing(
            boxes_to_canvas(state.boxes(), frame),
            stroke_color=GT_COLOUR,
            stroke_width=3,
            fill_color="rgba(255, 212, 0, 0.12)",
        )
        shown = {"key": key, "sig": wanted, "drawing": drawing, "frame": frame}
        st.session_state[SHOWN] = shown
    st_canvas(
        drawing_mode="labeled_rect",
        label=label,
        stroke_color=GT_COLOUR,
        stroke_width=3,
        fill_color="rgba(255, 212, 0, 0.12)",
        background_image=canvas_background(choice.digest, choice.data, frame),
        background_image_fit="stretch",
        width=frame.canvas_size[0],
        height=frame.canvas_size[1],
        initial_drawing=shown["drawing"],
        font_size=14,
        key=key,
        # st_canvas takes no callback arguments: a partial binds the key and the frame only.
        on_change=functools.partial(take_canvas_report, key, frame),
    )


def box_table(digest: str) -> None:
    """The editor keeps its own edits while the user types (a new row can be filled in cell by
    cell); it restarts from the session's boxes only when they changed elsewhere."""
    table = table_state(digest)
    live = table["key"] is not None and table["key"] in st.session_state
    if not live or table["synced"] != state.boxes():
        version = st.session_state.get(TABLE_VERSION, 0) + 1
        st.session_state[TABLE_VERSION] = version
        table["key"] = f"{P}table:{digest[:12]}:{version}"
        table["base"] = boxes_to_rows(state.boxes()) + table["pending"]
        table["synced"] = state.boxes()
    number = st.column_config.NumberColumn
    st.data_editor(
        rows_table(table["base"]),
        key=table["key"],
        num_rows="dynamic",
        width="stretch",
        on_change=take_table_report,
        args=(digest,),
        column_config={
            # Only the headers shown are translated: the column ids are read back.
            "label": st.column_config.TextColumn(_("label"), max_chars=MAX_LABEL_CHARS),
            **{c: number(c, format="%.1f", step=0.1) for c in COORDS},
        },
    )
    current = apply_edits(table["base"], st.session_state.get(table["key"]))
    for message in split_rows(current, next_label()).messages:
        st.warning(plain_message(message))
