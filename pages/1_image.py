"""Stage 1: choose or upload an image, draw and edit its ground-truth boxes, see the input frame.

The session's boxes (``state.boxes()``, original pixels) are the one source of truth. The canvas
and the table are two views of them:

- A canvas remounts (new key) only when the boxes change from elsewhere (table, sample, clear,
  another page); the user's own strokes update the session without remounting it, so a drag
  is never interrupted. ``SHOWN`` records what the mounted canvas displays.
- The table's key is a hash of its rows, so it restarts from the session after every change.
- Both report through their widget state, read at the top of the run before anything is drawn.
"""

from __future__ import annotations

import time

import streamlit as st
from streamlit_drawable_canvas import CanvasResult, boxes_to_drawing, st_canvas

from explorer import compute, state
from explorer.figures import GT_COLOUR
from explorer.samples import samples
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
    has_edits,
    input_frame_figure,
    input_frame_rows,
    input_frame_text,
    merge_drawn,
    plain,
    rows_table,
    signature,
    split_rows,
    table_key,
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
PENDING = P + "pending"  # table rows still missing a number
TABLE_MESSAGES = P + "table_messages"
DIGEST = P + "digest"  # the image the pending rows belong to
LABEL = P + "label"  # label for the next drawn box (survives page switches)
LABEL_WIDGET = P + "label_widget"
SAMPLE_WIDGET = P + "sample"
UPLOAD_WIDGET = P + "upload"
UPLOAD_SEEN = P + "upload_seen"  # file id of the last upload handled
UPLOAD_ERROR = P + "upload_error"  # (file id, message) of a rejected upload
UPLOAD_TYPES = ["jpg", "jpeg", "png", "webp", "bmp"]


def canvas_key(digest: str) -> str:
    return f"{P}canvas:{digest[:12]}:{st.session_state.get(VERSION, 0)}"


def forget_table() -> None:
    st.session_state[PENDING] = []
    st.session_state[TABLE_MESSAGES] = []


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
    """The user edited the table: valid rows become the boxes, incomplete rows wait."""
    rows = boxes_to_rows(state.boxes()) + st.session_state.get(PENDING, [])
    key = table_key(digest, rows)
    edits = st.session_state.get(key)
    if not has_edits(edits):
        return
    result = split_rows(apply_edits(rows, edits), st.session_state.get(LABEL, DEFAULT_LABEL))
    if signature(result.boxes) != signature(state.boxes()) or len(result.boxes) != len(
        state.boxes()
    ):
        state.set_boxes(result.boxes)
    st.session_state[PENDING] = result.pending
    st.session_state[TABLE_MESSAGES] = result.messages


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
            "…or upload an image (JPEG, PNG, WebP, BMP)",
            type=UPLOAD_TYPES,
            key=UPLOAD_WIDGET,
            help="A new image starts with no boxes: draw them on it below.",
        )
    if uploaded is None:
        return
    error = st.session_state.get(UPLOAD_ERROR)
    if error and error[0] == uploaded.file_id:
        st.warning(plain(error[1]), icon="🚫")


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
    )


def box_table(digest: str) -> None:
    rows = boxes_to_rows(state.boxes()) + st.session_state.get(PENDING, [])
    number = st.column_config.NumberColumn
    st.data_editor(
        rows_table(rows),
        key=table_key(digest, rows),
        num_rows="dynamic",
        width="stretch",
        column_config={
            "label": st.column_config.TextColumn("label", max_chars=MAX_LABEL_CHARS),
            **{c: number(c, format="%.1f", step=0.1) for c in COORDS},
        },
    )
    for message in st.session_state.get(TABLE_MESSAGES, []):
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
    choice = state.image()
    if choice is not None:
        if st.session_state.get(DIGEST) != choice.digest:
            st.session_state[DIGEST] = choice.digest
            forget_table()
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

    image_pickers()
    stages = stages_or_stop()
    choice = stages.choice
    frame = canvas_frame(stages.loaded.size)

    left, right = st.columns([frame.width + 40, 560], gap="medium")
    with left:
        st.subheader("Draw boxes")
        label_col, clear_col = st.columns([3, 1], vertical_alignment="bottom")
        with label_col:
            label = label_input()
        with clear_col:
            st.button(
                "Clear all boxes",
                on_click=on_clear,
                disabled=not state.boxes() and not st.session_state.get(PENDING),
                width="stretch",
            )
        drawing_canvas(choice, frame, label)
        h, w = stages.loaded.size
        st.caption(
            f"Canvas {frame.width} x {frame.height} px shows the {w} x {h} original: one "
            f"canvas pixel = {frame.fx:.3g} original pixels. Coordinates are in original pixels."
        )
    with right:
        st.subheader("Boxes (original pixels)")
        box_table(choice.digest)
        if not state.boxes():
            st.info("No boxes yet: drag on the image to draw one, or add a row to the table.")

    started = time.perf_counter()
    prep = stages.prepared
    stages.timings["prepare"] = time.perf_counter() - started
    for note in prep.notes:
        st.info(plain(note), icon="ℹ️")

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
