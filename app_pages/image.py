"""Stage 1: choose or upload an image, draw and edit its ground-truth boxes, see the input frame.

Layout only: the widgets and their callbacks live in :mod:`explorer.image_page` (why: see
there), so no function defined here outlives its run.
"""

from __future__ import annotations

import streamlit as st

from explorer import state
from explorer.image_page import (
    box_table,
    canvas_room,
    drawing_canvas,
    image_pickers,
    label_input,
    on_clear,
    table_state,
    take_sample,
    take_shown_canvas_report,
    take_table_report,
    take_upload,
)
from explorer.project_panel import boxes_in_out
from explorer.text import plain_message
from explorer.views.image import (
    canvas_frame,
    input_frame_figure,
    input_frame_rows,
    input_frame_text,
)
from explorer.widgets import intro, page_guard, param_widget, run_or_stop, timing_caption
from frcnn_core.i18n import _

intro(
    _("Image & ground truth"),
    _(
        "Faster R-CNN learns from **ground-truth boxes**: a rectangle `(x1, y1, x2, y2)` around "
        "each object, with its class label. Pick a sample or upload a photo, then **drag on the "
        "image** to draw a box; switch on the ✏️ edit toggle in the canvas toolbar to move, "
        "resize or delete boxes (click a selected box to rename it), or type exact pixel "
        "coordinates in the table. Before the network sees it, the image is **resized** to a "
        "fixed input frame (800 x 800 in the tutorial) and every box is scaled with it."
    ),
    _("original H x W x 3 (uint8) → input 800 x 800 x 3; boxes [G, 4] as (x1, y1, x2, y2)"),
)

with page_guard():
    if take_upload() or take_sample():
        # Its callback was stopped by a newer rerun (see take_upload): this run drew the
        # sidebar from the previous image, so draw everything again from the new one.
        st.rerun()
    image_pickers()  # before anything decodes, so another image can always be chosen
    if (choice := state.image()) is not None:
        take_shown_canvas_report(choice.digest)
        take_table_report(choice.digest)

    with st.sidebar:
        st.subheader(_("Input frame"))
        param_widget("resize.width")  # i18n: keep (a setting's path)
        param_widget("resize.height")  # i18n: keep (a setting's path)
        param_widget("resize.truncate_boxes")  # i18n: keep (a setting's path)

    run = run_or_stop()  # after every change above: it reads the boxes and parameters
    choice = run.choice

    h, w = run.photo.size
    st.subheader(_("Draw boxes"))
    label_col, clear_col, _spare = st.columns([2, 1, 2], vertical_alignment="bottom")
    with label_col:
        label = label_input()
    with clear_col:
        st.button(
            _("Clear all boxes"),
            key="image_page:clear",
            on_click=on_clear,
            disabled=not state.boxes() and not table_state(choice.digest)["pending"],
            help=_("Remove every box of this image (the table's incomplete rows too)"),
        )
    frame = canvas_frame(run.photo.size, canvas_room())  # fits the column it is drawn in
    drawing_canvas(choice, frame, label)
    st.caption(
        _(
            "**Draw**: drag on the image. **Edit**: turn on *Edit* in the canvas toolbar (top "
            "right of the canvas), then drag a box to move it, drag its handles to resize it, "
            "click a selected box to rename it, or remove it with *Delete selected*. To reach "
            "the image's edge, drag into the grey margin: a box is cut at the edge. The picture "
            "is {cw} x {ch} px on the canvas for the {w} x {h} original (one canvas pixel = "
            "{fx:.3g} original pixels); the table is in original pixels."
        ).format(cw=frame.width, ch=frame.height, w=w, h=h, fx=frame.fx)
    )
    table_col, notes_col = st.columns([3, 2], gap="medium")
    with table_col:
        st.subheader(_("Boxes (original pixels)"))
        box_table(choice.digest)
        if not state.boxes():
            st.info(_("No boxes yet: drag on the image to draw one, or add a row to the table."))
        boxes_in_out()

    notes = run.photo.notes + run.ground_truth.notes
    with notes_col:
        if notes:
            st.subheader(_("Notes"))
        for note in notes:
            st.info(plain_message(note), icon=":material/info:")

    st.subheader(_("Input frame"))
    ih, iw = run.image.size
    cols = st.columns(4)
    cols[0].metric(_("Original (W x H)"), f"{w} x {h}")
    cols[1].metric(_("Input frame (W x H)"), f"{iw} x {ih}")
    cols[2].metric(
        _("Boxes used"),
        len(run.ground_truth.labels),
        help=_("of {n} in the table").format(n=len(state.boxes())),
    )
    cols[3].metric(
        _("Classes"),
        len(run.classes.class_names),
        help=_("distinct labels; 0 is background"),
    )
    truncate = run.params.resize.truncate_boxes
    st.markdown(f"**{input_frame_text(run.image, truncate)}**")
    fig_col, table_col = st.columns([3, 2], gap="medium")
    with fig_col:
        st.plotly_chart(
            input_frame_figure(run.image, run.ground_truth), width="stretch", key="input_frame_fig"
        )
    with table_col:
        st.caption(_("Boxes as the network sees them (input-frame pixels)"))
        st.dataframe(
            input_frame_rows(run.ground_truth),
            width="stretch",
            hide_index=True,
            # The column ids stay (they are read back); only the header shown is translated.
            column_config={"label": st.column_config.TextColumn(_("label"))},
        )
        st.caption(
            _(
                "x is scaled by sx = input width / original width, y by sy = input height / "
                "original height; a different sx and sy stretch the picture, as the tutorial "
                "does."
            )
        )
    timing_caption(run, ["image", "ground_truth"])
