"""The tutorial's pipeline and the production detector on the same image and boxes, stage by
stage: every number computed on the current image by each pipeline."""

from __future__ import annotations

import streamlit as st

from explorer.production import (
    BACKBONE_LABELS,
    MODEL_LABELS,
    detector_picker,
    production_guard,
    run_or_stop,
    weights_notice,
)
from explorer.text import plain
from explorer.views.production import comparison_rows, side_by_side_frames
from explorer.widgets import intro, param_widget, timing_caption
from explorer.widgets import run_or_stop as tutorial_run_or_stop
from frcnn_core.i18n import _

HEAD_LOSS = "production_compare_head_loss"

intro(
    _("Tutorial vs production"),
    _(
        "The tutorial's network and torchvision's production detector, on the same image and "
        "the same boxes, row by row. Both are Faster R-CNN: a backbone, anchors, a region "
        "proposal network, RoI pooling and a head. The production model changes many details, "
        "each for a reason given in the last column. Every number is computed now, by each "
        "pipeline, on your image."
    ),
)

with production_guard():
    with st.sidebar:
        option = detector_picker()
        st.subheader(_("Production input size"))
        param_widget("production_input.shorter_side")  # i18n: keep (a setting's path)
        param_widget("production_input.longer_side")  # i18n: keep (a setting's path)
        st.subheader(_("Production detections"))
        param_widget("production.box_score_thresh")  # i18n: keep (a setting's path)
    production = run_or_stop(option)
    weights_notice(production.detector)
    tutorial = tutorial_run_or_stop()
    cached = production.forward()
    truth = production["labelled_boxes"]
    targets = production["production_targets"]
    found = production["production_detections"]
    with st.sidebar:
        st.subheader(_("Losses"))
        head_loss_on = st.toggle(
            _("Compute the production head's loss"),
            key=HEAD_LOSS,
            help=_(
                "The production side keeps no full feature map in memory, so its head's loss "
                "needs one more forward pass of the detector."
            ),
        )
    if head_loss_on:
        with st.spinner(_("A second forward pass for the production head's loss…")):
            head_loss = production["production_head_loss"]
    else:
        head_loss = None

    gt = tutorial.ground_truth
    left, right = side_by_side_frames(tutorial.image.pixels, gt.boxes, gt.labels, cached, truth)
    col_t, col_p = st.columns(2)
    with col_t:
        st.markdown(_("**Tutorial**: the input frame and your boxes"))
        st.plotly_chart(left, width="stretch", key="compare_tutorial_frame")
    with col_p:
        st.markdown(_("**Production**: the input frame (padding grey) and your boxes"))
        st.plotly_chart(right, width="stretch", key="compare_production_frame")
    if truth.unknown:
        st.caption(
            _(
                "The production rows on matching, sampling and losses use the boxes labelled "
                "with its class names: {n} of {total} (not {labels})."
            ).format(
                n=len(truth.labels),
                total=len(truth.all_labels),
                labels=", ".join(plain(x) for x in truth.unknown),
            )
        )

    name = production.detector.name
    model_label = MODEL_LABELS.get(name, name)
    rows = comparison_rows(
        tutorial,
        cached,
        found,
        targets,
        head_loss,
        production.detector.model,
        BACKBONE_LABELS.get(name, name),
    )
    head = st.columns([2, 5, 5, 5])
    titles = (
        _("Step"),
        _("Tutorial (VGG16)"),
        _("Production ({model})").format(model=model_label),
        _("Why production differs"),
    )
    for col, title in zip(head, titles, strict=True):
        col.markdown(f"**{title}**")
    for row in rows:
        with st.container(border=True):
            cols = st.columns([2, 5, 5, 5])
            cols[0].markdown(f"**{row['step']}**")
            cols[1].markdown(row["tutorial"])
            cols[2].markdown(row["production"])
            cols[3].caption(row["why"])
    st.caption(production.forward_caption(cached))
    timing_caption(tutorial, ["backbone", "rpn", "test_head", "head"])
    timing_caption(production, ["staged_run", "production_targets", "production_head_loss"])
