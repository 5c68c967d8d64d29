"""Stage 1: choose or upload an image, draw and edit its ground-truth boxes, see the input frame.

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
"""

from __future__ import annotations

import time

import streamlit as st
from streamlit_drawable_canvas import CanvasResult, boxes_to_drawing, st_canvas

from explorer import compute, state
from explorer.figures import GT_COLOUR
from explorer.samples import samples
from explorer.text import plain
from explorer.views.image import (
    COORDS,
    CanvasFrame,
    apply_edits,
    background_uri,
    boxes_to_canvas,
    boxes_to_rows,
    canvas_frame,
    canvas_to_boxes,
    check_upload,
    drawable,
    input_frame_figure,
    input_frame_rows,
    input_frame_text,
    merge_drawn,
    rows_table,
    signature,
    split_rows,
)
from explorer.widgets import (
    intro,
    page_guard,
    param_slider,
    param_toggle,
    stages_or_stop,
    timing_caption,
)
from frcnn_core.ground_truth import DEFAULT_LABEL, MAX_LABEL_CHARS, clean_label

P = "image_page:"
VERSION = P + "canvas_version"  # bumped when the boxes change other than by the canvas
SHOWN = P + "shown"  # {"key", "sig", "drawing"}: what the mounted canvas displays
TABLE = P + "table"  # {"digest", "key", "base", "synced", "pending"}: the mounted table
TABLE_VERSION = P + "table_version"
LABEL = P + "label"  # label for the next drawn box (survives page switches)
LABEL_WIDGET = P + "label_widget"
SAMPLE_WIDGET = P + "sample"
UPLOAD_WIDGET = P + "upload"
UPLOAD_SEEN = P + "upload_seen"  # file id of the last upload handled
UPLOAD_ERROR = P + "upload_error"  # (file id, message) of a rejected upload
UPLOAD_TYPES = ["jpg", "jpeg", "png", "webp", "bmp", "gif", "tif", "tiff"]


def canvas_key(digest: str) -> str:
    return f"{P}canvas:{digest[:12]}:{st.session_state.get(VERSION, 0)}"


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


def on_clear() -> None:
    state.set_boxes([])
    forget_table()


def take_canvas_report(key: str, frame: CanvasFrame) -> None:
    """The user drew, moved, resized, relabelled or deleted on the canvas: adopt its boxes."""
    shown = st.session_state.get(SHOWN) or {}
    if key not in st.session_state or shown.get("key") != key:
        return
    raw = (st.session_state[key].get("drawing") or {}).get("raw")
    drawn = canvas_to_boxes(CanvasResult(raw, None, False).boxes, frame)
    if signature(drawn) == shown["sig"]:
        return
    current = state.boxes()
    undrawable = [b for b in current if not drawable(b)]
    state.set_boxes(merge_drawn(current, drawn) + undrawable)
    shown["sig"] = signature(drawn)


def take_table_report(digest: str) -> None:
    """The user edited the table: rows with four numbers become the boxes, in table order;
    incomplete rows stay in the table (the editor keeps them) until they are filled in."""
    table = table_state(digest)
    key = table["key"]
    if key is None or key not in st.session_state:
        return
    result = split_rows(apply_edits(table["base"], st.session_state[key]), next_label())
    table["pending"] = result.pending
    if result.boxes != table["synced"]:
        state.set_boxes(result.boxes)
        table["synced"] = state.boxes()


def take_upload() -> None:
    """A new upload becomes the image (with no boxes) if it decodes; else a message is kept
    and the image and boxes stay as they were."""
    uploaded = st.session_state.get(UPLOAD_WIDGET)
    if uploaded is None or uploaded.file_id == st.session_state.get(UPLOAD_SEEN):
        return
    st.session_state[UPLOAD_SEEN] = uploaded.file_id
    data = uploaded.getvalue()
    digest = state.digest_of(data)
    result = check_upload(uploaded.name, data, lambda d: compute.decode(digest, d))
    if result.error:
        st.session_state[UPLOAD_ERROR] = (uploaded.file_id, result.error)
        return
    st.session_state.pop(UPLOAD_ERROR, None)
    state.set_image(state.ImageChoice(uploaded.name, data, digest, False), [])
    forget_table()


@st.cache_data(max_entries=16, show_spinner=False)
def canvas_background(digest: str, _data: bytes, frame: CanvasFrame) -> str:
    return background_uri(compute.decode(digest, _data).pixels, frame)


def image_pickers() -> None:
    """Sample selector and uploader; a rejected upload leaves image and boxes as they were."""
    catalogue = samples()
    choice = state.image()
    st.session_state[SAMPLE_WIDGET] = choice.name if choice and choice.sample else None
    left, right = st.columns(2)
    with left:
        st.selectbox(
            "Sample image",
            options=list(catalogue),
            format_func=lambda n: catalogue[n].title,
            key=SAMPLE_WIDGET,
            on_change=on_sample,
            placeholder=f"Your upload: {choice.name}" if choice else "Choose a sample",
            help="Each sample comes with example boxes; choosing one replaces your boxes.",
        )
        if choice is not None and choice.sample and choice.name in catalogue:
            sample = catalogue[choice.name]
            st.caption(f"Source: {sample.source}  \nLicence: {sample.licence}")
        elif choice is not None:
            st.caption(f"Your upload: {plain(choice.name)} (kept in this browser session only)")
    with right:
        uploaded = st.file_uploader(
            "…or upload an image (JPEG, PNG, WebP, BMP, GIF, TIFF)",
            type=UPLOAD_TYPES,
            key=UPLOAD_WIDGET,
            on_change=take_upload,
            help="A new image starts with no boxes: draw them on it below.",
        )
    if uploaded is None:
        return
    error = st.session_state.get(UPLOAD_ERROR)
    if error and error[0] == uploaded.file_id:
        st.warning(plain(error[1]), icon=":material/image_not_supported:")


def next_label() -> str:
    return st.session_state.get(LABEL, DEFAULT_LABEL)


def label_input() -> str:
    if LABEL not in st.session_state:
        last = state.boxes()[-1]["label"] if state.boxes() else DEFAULT_LABEL
        st.session_state[LABEL] = clean_label(last)
    if LABEL_WIDGET not in st.session_state:
        st.session_state[LABEL_WIDGET] = st.session_state[LABEL]
    text = st.text_input(
        "Label for the next box",
        key=LABEL_WIDGET,
        max_chars=MAX_LABEL_CHARS,
        help="Boxes you draw get this class label; edit a box's label in the table.",
    )
    st.session_state[LABEL] = clean_label(text)
    return st.session_state[LABEL]


def drawing_canvas(choice: state.ImageChoice, frame: CanvasFrame, label: str) -> None:
    """The canvas, remounted with the session's boxes whenever they changed elsewhere."""
    key = canvas_key(choice.digest)
    shown = st.session_state.get(SHOWN) or {}
    wanted = signature(state.boxes())
    live = key in st.session_state and shown.get("key") == key
    if not live or shown.get("sig") != wanted:
        if live:
            st.session_state[VERSION] = st.session_state.get(VERSION, 0) + 1
            key = canvas_key(choice.digest)
        drawing = boxes_to_drawing(
            boxes_to_canvas(state.boxes(), frame),
            stroke_color=GT_COLOUR,
            stroke_width=3,
            fill_color="rgba(255, 212, 0, 0.12)",
        )
        shown = {"key": key, "sig": wanted, "drawing": drawing}
        st.session_state[SHOWN] = shown
    st_canvas(
        drawing_mode="labeled_rect",
        label=label,
        stroke_color=GT_COLOUR,
        stroke_width=3,
        fill_color="rgba(255, 212, 0, 0.12)",
        background_image=canvas_background(choice.digest, choice.data, frame),
        background_image_fit="stretch",
        width=frame.width,
        height=frame.height,
        initial_drawing=shown["drawing"],
        font_size=14,
        key=key,
        on_change=lambda: take_canvas_report(key, frame),
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
            "label": st.column_config.TextColumn("label", max_chars=MAX_LABEL_CHARS),
            **{c: number(c, format="%.1f", step=0.1) for c in COORDS},
        },
    )
    current = apply_edits(table["base"], st.session_state.get(table["key"]))
    for message in split_rows(current, next_label()).messages:
        st.warning(plain(message))


intro(
    "Image & ground truth",
    "Faster R-CNN learns from **ground-truth boxes**: a rectangle `(x1, y1, x2, y2)` around each "
    "object, with its class label. Pick a sample or upload a photo, then **drag on the image** "
    "to draw a box; switch on the ✏️ edit toggle in the canvas toolbar to move, resize or delete "
    "boxes (click a selected box to rename it), or type exact pixel coordinates in the table. "
    "Before the network sees it, the image is **resized** to a fixed input frame (800 x 800 in "
    "the tutorial) and every box is scaled with it.",
    "original H x W x 3 (uint8) → input 800 x 800 x 3; boxes [G, 4] as (x1, y1, x2, y2)",
)

with page_guard():
    take_upload()
    image_pickers()  # before anything decodes, so another image can always be chosen
    if (choice := state.image()) is not None:
        frame = canvas_frame(compute.decode(choice.digest, choice.data).size)
        take_canvas_report(canvas_key(choice.digest), frame)
        take_table_report(choice.digest)

    with st.sidebar:
        st.subheader("Input frame")
        param_slider("resize.width", "Input width", 320, 1024, 32, help="Tutorial: 800")
        param_slider("resize.height", "Input height", 320, 1024, 32, help="Tutorial: 800")
        param_toggle(
            "resize.truncate_boxes",
            "Truncate boxes to whole pixels",
            help="The tutorial truncates the scaled boxes (int); off keeps them as floats",
        )

    stages = stages_or_stop()  # after every change above: it reads the boxes and parameters
    choice = stages.choice
    frame = canvas_frame(stages.loaded.size)

    h, w = stages.loaded.size
    st.subheader("Draw boxes")
    label_col, clear_col, _ = st.columns([2, 1, 2], vertical_alignment="bottom")
    with label_col:
        label = label_input()
    with clear_col:
        st.button(
            "Clear all boxes",
            on_click=on_clear,
            disabled=not state.boxes() and not table_state(choice.digest)["pending"],
            help="Remove every box of this image (the table's incomplete rows too)",
        )
    drawing_canvas(choice, frame, label)
    st.caption(
        "**Draw**: drag on the image. **Edit**: turn on *Edit* in the canvas toolbar (top "
        "right of the canvas), then drag a box to move it, drag its handles to resize it, click "
        "a selected box to rename it, or remove it with *Delete selected*. "
        f"The canvas is {frame.width} x {frame.height} px for the {w} x {h} original (one "
        f"canvas pixel = {frame.fx:.3g} original pixels); the table is in original pixels."
    )
    table_col, notes_col = st.columns([3, 2], gap="medium")
    with table_col:
        st.subheader("Boxes (original pixels)")
        box_table(choice.digest)
        if not state.boxes():
            st.info("No boxes yet: drag on the image to draw one, or add a row to the table.")

    started = time.perf_counter()
    prep = stages.prepared
    stages.timings["prepare"] = time.perf_counter() - started
    with notes_col:
        if prep.notes:
            st.subheader("Notes")
        for note in prep.notes:
            st.info(plain(note), icon=":material/info:")

    st.subheader("Input frame")
    ih, iw = prep.image.size
    cols = st.columns(4)
    cols[0].metric("Original (W x H)", f"{w} x {h}")
    cols[1].metric("Input frame (W x H)", f"{iw} x {ih}")
    cols[2].metric("Boxes used", len(prep.labels), help=f"of {len(state.boxes())} in the table")
    cols[3].metric("Classes", len(prep.class_names), help="distinct labels; 0 is background")
    truncate = stages.params.resize.truncate_boxes
    st.markdown(f"**{input_frame_text(prep, truncate)}**")
    fig_col, table_col = st.columns([3, 2], gap="medium")
    with fig_col:
        st.plotly_chart(input_frame_figure(prep), width="stretch", key="input_frame_fig")
    with table_col:
        st.caption("Boxes as the network sees them (input-frame pixels)")
        st.dataframe(input_frame_rows(prep), width="stretch", hide_index=True)
        st.caption(
            "x is scaled by sx = input width / original width, y by sy = input height / "
            "original height; a different sx and sy stretch the picture, as the tutorial does."
        )
    timing_caption(stages, ["prepare"])
