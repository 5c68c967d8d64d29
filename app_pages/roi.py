"""Stages 10 and 11: sample 128 RoIs from the proposals, then pool each one to 7 x 7 features."""

from __future__ import annotations

import numpy as np
import streamlit as st

from explorer.text import plain
from explorer.views.roi import (
    METHOD_NAMES,
    clicked_rois,
    crop_figure,
    feature_plane,
    iou_histogram,
    pool_both,
    pooled_figure,
    quantise_roi,
    roi_class,
    roi_descriptions,
    roi_iou,
    rois_figure,
)
from explorer.widgets import (
    intro,
    page_guard,
    param_widget,
    resample_button,
    run_or_stop,
    timing_caption,
)

PICK = "roi:pick"
CLICKED = "roi:clicked"
FIGURE = "roi:figure"

intro(
    "RoI sampling & pooling",
    "The RPN's proposals become **regions of interest** (RoIs) for the second stage. In "
    "training, a small batch of them is **sampled**: a proposal whose best IoU with a "
    "ground-truth box reaches the positive threshold is a **positive** (it takes that box's "
    "class), one in the negative IoU range is **background**, and at most a quarter of the "
    "batch is positive so objects are not drowned out. Then every RoI, whatever its size, is "
    "cut out of the feature map and **pooled** to a fixed 7 × 7 grid, so the fully connected "
    "head can take it. **RoI Pool** rounds the RoI to whole feature cells and takes the max of "
    "each bin; **RoI Align** keeps the exact position and averages bilinear samples.",
    "proposals [R, 4] → sampled RoIs [S ≤ 128, 4] → feature map [1, 512, 50, 50] → "
    "pooled [S, 512, 7, 7]",
)

with page_guard():
    with st.sidebar:
        st.subheader("RoI sampling")
        batch = param_widget("proposal_targets.roi_batch_size")
        fraction = param_widget("proposal_targets.roi_pos_fraction")
        pos_iou = param_widget("proposal_targets.roi_pos_iou")
        neg_hi = param_widget("proposal_targets.roi_neg_iou_hi")
        neg_lo = param_widget("proposal_targets.roi_neg_iou_lo")
        resample_button("proposal_targets.seed")
        st.subheader("Pooling")
        method = param_widget("roi_pool.method")
        param_widget("roi_pool.output_size")
        if method == "align":
            param_widget("roi_pool.sampling_ratio")

    # After the sidebar: the widgets above write this run's settings, which the run reads.
    run = run_or_stop()
    if run.ground_truth.boxes.shape[0] == 0:
        st.info(
            "No ground-truth boxes yet: every RoI is background and there is no box loss. Draw "
            "boxes on the **Image & ground truth** page to see positives."
        )
    if neg_lo >= neg_hi:
        st.warning(
            f"The negative range [{neg_lo:.2f}, {neg_hi:.2f}) is empty: no RoI can be "
            "background. Lower “Negative IoU ≥” or raise “Negative IoU <”."
        )
    elif neg_hi > pos_iou:
        st.info(
            f"The background range reaches {neg_hi:.2f}, above the positive threshold "
            f"{pos_iou:.2f}: a proposal with IoU in [{pos_iou:.2f}, {neg_hi:.2f}) counts as an "
            "object (a RoI is never both)."
        )

    props = run.proposals
    targets = run.proposal_targets
    counts = targets.counts()
    n_pos, n_neg = counts["positive"], counts["negative"]
    cap = int(batch * fraction)
    cols = st.columns(6)
    cols[0].metric("Proposals", f"{props.rois.shape[0]:,}", help="The RPN's kept proposals")
    cols[1].metric("Positive candidates", f"{counts['positive_candidates']:,}")
    cols[2].metric("Negative candidates", f"{counts['negative_candidates']:,}")
    cols[3].metric("Sampled positive", n_pos, help=f"at most int({batch} × {fraction:.2f}) = {cap}")
    cols[4].metric("Sampled negative", n_neg, help=f"at most {batch} − {n_pos} = {batch - n_pos}")
    cols[5].metric("Sampled RoIs", n_pos + n_neg, help=f"batch size {batch}")
    st.markdown(
        f"Positives: min({counts['positive_candidates']:,} candidates, int({batch} × "
        f"{fraction:.2f}) = {cap}) = **{n_pos}**. Negatives fill the rest: min("
        f"{counts['negative_candidates']:,} candidates, {batch} − {n_pos}) = **{n_neg}**."
    )
    if run.ground_truth.boxes.shape[0] and n_pos == 0:
        st.warning(
            f"No proposal reaches IoU {pos_iou:.2f} with a ground-truth box, so no RoI is "
            "positive and the head learns only background. Lower the positive IoU threshold "
            "(the RPN's proposals from untrained weights rarely fit the objects well)."
        )
    if n_pos + n_neg < batch:
        st.info(
            f"Only {n_pos + n_neg} RoIs could be sampled of the {batch} asked for: there are not "
            "enough candidates in the IoU ranges."
        )

    total = n_pos + n_neg
    if total == 0:
        st.warning("No RoI was sampled, so there is nothing to pool. Widen the IoU ranges.")
        timing_caption(run, ["proposals", "proposal_targets"])
        st.stop()

    descriptions = roi_descriptions(targets, run.classes.class_names)
    # A click on a centre marker picks that RoI once; the selectbox may change it afterwards.
    clicked = clicked_rois(st.session_state.get(FIGURE))
    if clicked and clicked != st.session_state.get(CLICKED):
        st.session_state[PICK] = clicked[0]
    st.session_state[CLICKED] = clicked
    if st.session_state.get(PICK) not in range(total):
        st.session_state[PICK] = 0

    left, right = st.columns([3, 2])
    with right:
        st.plotly_chart(
            iou_histogram(targets, run.params.proposal_targets),
            width="stretch",
            key="roi:iou_hist",
        )
        pick = st.selectbox(
            "RoI to inspect (or click a centre marker on the image)",
            list(range(total)),
            format_func=descriptions.__getitem__,
            key=PICK,
        )
        roi = targets.rois[pick].detach().cpu()
        x1, y1, x2, y2 = roi.tolist()
        stride = run.spec.stride
        q = quantise_roi(roi, run.params.roi_pool, run.anchors.feature_size, stride)
        label = roi_class(targets, pick, run.classes.class_names)
        st.markdown(
            f"**{plain(label)}**, best IoU {roi_iou(targets, pick):.3f}  \n"
            f"Input pixels: ({x1:.1f}, {y1:.1f}) – ({x2:.1f}, {y2:.1f}), "
            f"{x2 - x1:.0f} × {y2 - y1:.0f}  \n"
            f"÷ {stride}: ({x1 / stride:.2f}, {y1 / stride:.2f}) – ({x2 / stride:.2f}, "
            f"{y2 / stride:.2f})  \n"
            f"RoI Pool rounds to cells x {q.x_start}–{q.x_end}, y {q.y_start}–{q.y_end} "
            f"({q.x_end - q.x_start + 1} × {q.y_end - q.y_start + 1} cells)"
        )
        if q.clamped:
            rx1, ry1, rx2, ry2 = q.rounded
            hf, wf = run.anchors.feature_size
            st.caption(
                f"Rounded, the RoI spans cells x {rx1}–{rx2}, y {ry1}–{ry2}: past the edge "
                f"of the {hf} × {wf} map, whose cells run 0–{wf - 1} across and 0–{hf - 1} "
                "down. RoI Pool splits the rounded span into bins and stops each bin at the "
                "map's edge, so only the cells above are pooled."
            )
        if pick < n_pos:
            dx, dy, dw, dh = targets.targets[pick].tolist()
            st.markdown(
                f"Regression target (dx, dy, dw, dh) to its GT box: "
                f"({dx:.3f}, {dy:.3f}, {dw:.3f}, {dh:.3f})"
            )
        else:
            st.caption("A background RoI: no regression target.")
    with left:
        st.plotly_chart(
            rois_figure(
                run.image.pixels,
                targets,
                run.ground_truth.boxes,
                run.ground_truth.labels,
                run.classes.class_names,
                selected=pick,
            ),
            width="stretch",
            key=FIGURE,
            on_select="rerun",
            selection_mode="points",
        )

    st.subheader(f"RoI {pick} pooled to 7 × 7")
    channels = run.backbone.features.shape[1]
    show = st.radio(
        "Feature shown",
        ["mean of all channels", "one channel"],
        horizontal=True,
        key="roi:show",
        help="The pooled output has one 7 × 7 plane per channel; the mean summarises them",
    )
    channel = None
    if show == "one channel":
        channel = int(st.number_input("Channel", 0, channels - 1, 0, step=1, key="roi:channel"))
    plane = feature_plane(run.backbone.features, channel)
    both = pool_both(run.backbone.features, roi, run.params.roi_pool, stride)
    outputs = {m: (v.mean(axis=0) if channel is None else v[channel]) for m, v in both.items()}
    crop_lo, crop_hi = float(plane.min()), float(plane.max())
    out_lo = min(float(o.min()) for o in outputs.values())
    out_hi = max(float(o.max()) for o in outputs.values())
    size = run.params.roi_pool.output_size
    # Stage 11 on all S RoIs is left to the Head page: here only the picked RoI is pooled.
    st.caption(
        f"The pipeline pools all {total} RoIs with **{METHOD_NAMES[method]}** into a tensor "
        f"[{total}, {channels}, {size}, {size}], the head's input. Both methods are shown here "
        "for the picked RoI, with shared colour scales; the dashed outline is the exact "
        f"RoI ÷ {stride}."
    )
    for col, m in zip(st.columns(2), ("pool", "align"), strict=True):
        with col:
            used = " (used by the pipeline)" if m == method else ""
            st.markdown(f"**{METHOD_NAMES[m]}**{used}")
            st.plotly_chart(
                crop_figure(plane, roi, m, run.params.roi_pool, stride, crop_lo, crop_hi),
                width="stretch",
                key=f"roi:crop_{m}",
            )
            st.plotly_chart(
                pooled_figure(outputs[m], m, out_lo, out_hi),
                width="stretch",
                key=f"roi:pooled_{m}",
            )
    diff = float(np.abs(both["pool"] - both["align"]).mean())
    st.markdown(
        f"Mean |RoI Pool − RoI Align| over the 512 × 7 × 7 outputs of this RoI: **{diff:.4f}**. "
        "RoI Pool takes each bin's maximum, RoI Align the average of its bilinear samples, so "
        "Pool's values run higher. RoI Pool's rounding also moves the RoI by up to half a cell "
        "(8 input pixels) on each side and gives bins of unequal, overlapping whole-cell sizes; "
        "RoI Align samples the exact box, which matters most for small RoIs."
    )
    with st.expander("Tutorial bugs B9 and B10 (fixed here)"):
        st.markdown(
            "**B9: x and y swapped when slicing.** A feature map is indexed `[..., row, "
            "column]` = `[..., y, x]`. The tutorial's pooling loop cuts "
            "`output_map[..., y1:y2+1, x1:x2+1]`, but its picture of the first RoIs cuts "
            "`output_map[..., x1:x2+1, y1:y2+1]`: the region mirrored across the diagonal, so "
            "the pictures show cells the RoI never covered. The crops above slice "
            "`[y1:y2, x1:x2]`.\n\n"
            "**B10: `nn.AdaptiveMaxPool2d(7, 7)`.** The signature is `AdaptiveMaxPool2d("
            "output_size, return_indices=False)`, so the second 7 is read as "
            "`return_indices=7` (true): the layer returns a tuple (values, indices), and the "
            "tutorial only works because it then takes `tmp[0]`. The intended call is "
            "`AdaptiveMaxPool2d((7, 7))`. Here RoI pooling uses `torchvision.ops.roi_pool` (or "
            "`roi_align`), which pools all RoIs in one batched call.\n\n"
            "The tutorial also quantises differently: it truncates (`(rois / 16).long()`, "
            "a floor) where `roi_pool` rounds, so its regions sit up to one cell further up "
            "and left."
        )
    timing_caption(run, ["proposals", "proposal_targets"])
