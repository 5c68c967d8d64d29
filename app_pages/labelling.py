"""Stage 5 and 6: which anchors are objects, which are background, and which 256 are trained on."""

from __future__ import annotations

import streamlit as st

from explorer import figure_cache
from explorer.text import plain
from explorer.views.labelling import iou_heatmaps, iou_maps, labels_figure
from explorer.widgets import (
    intro,
    no_boxes_notice,
    page_guard,
    param_widget,
    resample_button,
    run_or_stop,
    timing_caption,
)

ANCHOR = "labelling:anchor"  # the picked anchor (a shared link can set it)

intro(
    "Anchor labelling",
    "Each anchor inside the image gets a label from its **IoU** (intersection over union) with "
    "the ground-truth boxes: **1** (object) when its best IoU reaches the positive threshold, "
    "**0** (background) under the negative threshold, **−1** (ignored) in between. Every GT box "
    "also claims the anchors that overlap it best, even under the threshold, so no object goes "
    "without a positive. Then 256 labelled anchors are **sampled** for the loss, at most half "
    "positive.",
    "IoU [K inside anchors, G boxes] → labels [K] ∈ {1, 0, −1} → 256 sampled",
)

with page_guard():
    run = run_or_stop()
    no_boxes_notice(run)
    with st.sidebar:
        st.subheader("Labelling")
        pos = param_widget("anchor_targets.pos_iou")
        neg = param_widget("anchor_targets.neg_iou")
        st.subheader("Sampling")
        param_widget("anchor_targets.batch_size")
        param_widget("anchor_targets.pos_fraction")
        resample_button("anchor_targets.seed")
    if neg > pos:
        st.warning(
            f"The negative threshold ({neg:.2f}) is above the positive one ({pos:.2f}): anchors "
            "between them are labelled negative first, then positive. Usually neg ≤ pos."
        )

    grid = run.anchors
    targets = run.anchor_targets
    counts = targets.counts()
    cols = st.columns(6)
    cols[0].metric("Inside anchors", f"{grid.inside:,}", help=f"of {grid.total:,} anchors")
    cols[1].metric("Positive", counts["positive"])
    cols[2].metric("Negative", f"{counts['negative']:,}")
    cols[3].metric("Ignored", f"{counts['ignored']:,}")
    cols[4].metric("Sampled positive", counts["sampled_positive"])
    cols[5].metric("Sampled negative", counts["sampled_negative"])
    if run.ground_truth.boxes.shape[0] and counts["positive"] == 0:
        st.warning("No anchor is positive: lower the positive IoU threshold.")

    st.markdown(
        f"**{counts['positive_from_threshold']}** anchors reach IoU ≥ {pos:.2f}; "
        f"**{counts['ties']}** are a GT box's best anchor (ties included)."
    )
    with st.expander("Why ties are fragile (45 positives on the tutorial's zebras)"):
        st.markdown(
            "A GT box's best anchors are found by **exact equality** with its best IoU. Several "
            "anchors of the same shape often overlap a box equally well, and whether their IoUs "
            "compare equal depends on floating-point rounding. Computed in float64 and stored "
            "as float32 (as the tutorial did), the zebra boxes give 45 positives; pure float32 "
            "gives 30 and pure float64 24. Production code (torchvision's `Matcher`) has the "
            "same rule and the same fragility."
        )
    sampled = st.toggle("Show only the sampled anchors", value=True)
    positives = targets.labels.eq(1) if sampled else targets.labels_unsampled.eq(1)
    pos_index = positives.nonzero().squeeze(1).tolist()
    left, right = st.columns([3, 2])
    with right:
        st.subheader("Target deltas of an anchor")
        highlight = None
        if pos_index:
            # A dict lookup, not a lambda: Streamlit keeps a widget's format_func for the whole
            # session, and a lambda would keep this run (and its feature map) alive with it.
            names = {
                i: f"anchor #{int(grid.inside_index[i])} · IoU {float(targets.max_iou[i]):.3f}"
                for i in pos_index
            }
            if st.session_state.get(ANCHOR) not in pos_index:
                st.session_state.pop(ANCHOR, None)  # a shared link's pick may not be positive here
            pick = st.selectbox(
                "Positive anchor", pos_index, format_func=names.__getitem__, key=ANCHOR
            )
            highlight = pick
            box = grid.inside_anchors[pick].tolist()
            gt = int(targets.argmax_gt[pick])
            dx, dy, dw, dh = targets.targets[pick].tolist()
            st.markdown(
                f"Anchor `({box[0]:.1f}, {box[1]:.1f}, {box[2]:.1f}, {box[3]:.1f})` → GT box "
                f"{gt + 1} ({plain(run.ground_truth.labels[gt])})"
            )
            st.latex(
                r"\begin{aligned}"
                rf"d_x &= \tfrac{{g_x - a_x}}{{a_w}} = {dx:.3f} & "
                rf"d_y &= \tfrac{{g_y - a_y}}{{a_h}} = {dy:.3f} \\"
                rf"d_w &= \log\tfrac{{g_w}}{{a_w}} = {dw:.3f} & "
                rf"d_h &= \log\tfrac{{g_h}}{{a_h}} = {dh:.3f}"
                r"\end{aligned}"
            )
        else:
            st.caption("No positive anchor to inspect.")
    with left:
        st.plotly_chart(
            labels_figure(
                run.image.pixels,
                grid,
                targets,
                run.ground_truth.boxes,
                run.ground_truth.labels,
                sampled,
                highlight=highlight,
            ),
            width="stretch",
            key="labels_fig",
        )
    st.subheader("IoU per anchor shape")
    options = ["best over all boxes"] + [
        f"box {i + 1}: {name}" for i, name in enumerate(run.ground_truth.labels)
    ]
    which = st.selectbox("IoU with", options)
    gt_index = None if which == options[0] else options.index(which) - 1
    # The IoU maps depend on the anchors' overlaps with the boxes, not on this page's sliders.
    overlaps = run.anchor_overlaps
    heatmaps = figure_cache.figure(
        "iou_maps",
        (run.key("anchor_overlaps"), gt_index),
        lambda: iou_heatmaps(
            iou_maps(grid, overlaps, run.params.anchors, gt_index),
            run.params.anchors,
            grid.stride,
            "IoU of the anchor at each cell (blank: outside the image)",
        ),
    )
    st.plotly_chart(heatmaps, width="stretch", key="iou_maps")
    timing_caption(run, ["anchor_targets"])
