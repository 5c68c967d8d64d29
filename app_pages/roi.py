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
from frcnn_core.i18n import N_, _
from frcnn_core.params import parameter

PICK = "roi:pick"
CLICKED = "roi:clicked"
FIGURE = "roi:figure"
# The "Feature shown" radio's values (kept in English: the code compares them), shown as _(v).
MEAN, ONE = N_("mean of all channels"), N_("one channel")

intro(
    _("RoI sampling & pooling"),
    _(
        "The RPN's proposals become **regions of interest** (RoIs) for the second stage. In "
        "training, a small batch of them is **sampled**: a proposal whose best IoU with a "
        "ground-truth box reaches the positive threshold is a **positive** (it takes that "
        "box's class), one in the negative IoU range is **background**, and at most a quarter "
        "of the batch is positive so objects are not drowned out. Then every RoI, whatever its "
        "size, is cut out of the feature map and **pooled** to a fixed 7 × 7 grid, so the fully "
        "connected head can take it. **RoI Pool** rounds the RoI to whole feature cells and "
        "takes the max of each bin; **RoI Align** keeps the exact position and averages "
        "bilinear samples."
    ),
    _(
        "proposals [R, 4] → sampled RoIs [S ≤ 128, 4] → feature map [1, 512, 50, 50] → "
        "pooled [S, 512, 7, 7]"
    ),
)

with page_guard():
    with st.sidebar:
        st.subheader(_("RoI sampling"))
        batch = param_widget("proposal_targets.roi_batch_size")  # i18n: keep (a setting's path)
        fraction = param_widget("proposal_targets.roi_pos_fraction")  # i18n: keep (a path)
        pos_iou = param_widget("proposal_targets.roi_pos_iou")  # i18n: keep (a setting's path)
        neg_hi = param_widget("proposal_targets.roi_neg_iou_hi")  # i18n: keep (a setting's path)
        neg_lo = param_widget("proposal_targets.roi_neg_iou_lo")  # i18n: keep (a setting's path)
        resample_button("proposal_targets.seed")
        st.subheader(_("Pooling"))
        method = param_widget("roi_pool.method")  # i18n: keep (a setting's path)
        param_widget("roi_pool.output_size")  # i18n: keep (a setting's path)
        if method == "align":
            param_widget("roi_pool.sampling_ratio")  # i18n: keep (a setting's path)

    # After the sidebar: the widgets above write this run's settings, which the run reads.
    run = run_or_stop()
    if run.ground_truth.boxes.shape[0] == 0:
        st.info(
            _(
                "No ground-truth boxes yet: every RoI is background and there is no box loss. "
                "Draw boxes on the **Image & ground truth** page to see positives."
            )
        )
    if neg_lo >= neg_hi:
        st.warning(
            _(
                "The negative range [{lo:.2f}, {hi:.2f}) is empty: no RoI can be background. "
                "Lower “{lower}” or raise “{upper}”."
            ).format(
                lo=neg_lo,
                hi=neg_hi,
                lower=_(parameter("proposal_targets.roi_neg_iou_lo").label),
                upper=_(parameter("proposal_targets.roi_neg_iou_hi").label),
            )
        )
    elif neg_hi > pos_iou:
        st.info(
            _(
                "The background range reaches {hi:.2f}, above the positive threshold "
                "{pos:.2f}: a proposal with IoU in [{pos:.2f}, {hi:.2f}) counts as an object "
                "(a RoI is never both)."
            ).format(hi=neg_hi, pos=pos_iou)
        )

    props = run.proposals
    targets = run.proposal_targets
    counts = targets.counts()
    n_pos, n_neg = counts["positive"], counts["negative"]
    cap = int(batch * fraction)
    cols = st.columns(6)
    cols[0].metric(_("Proposals"), f"{props.rois.shape[0]:,}", help=_("The RPN's kept proposals"))
    cols[1].metric(_("Positive candidates"), f"{counts['positive_candidates']:,}")
    cols[2].metric(_("Negative candidates"), f"{counts['negative_candidates']:,}")
    cols[3].metric(
        _("Sampled positive"),
        n_pos,
        help=_("at most int({batch} × {fraction:.2f}) = {cap}").format(
            batch=batch, fraction=fraction, cap=cap
        ),
    )
    cols[4].metric(
        _("Sampled negative"),
        n_neg,
        help=_("at most {batch} − {pos} = {rest}").format(
            batch=batch, pos=n_pos, rest=batch - n_pos
        ),
    )
    cols[5].metric(
        _("Sampled RoIs"), n_pos + n_neg, help=_("batch size {batch}").format(batch=batch)
    )
    st.markdown(
        _(
            "Positives: min({pos_candidates:,} candidates, int({batch} × {fraction:.2f}) = "
            "{cap}) = **{pos}**. Negatives fill the rest: min({neg_candidates:,} candidates, "
            "{batch} − {pos}) = **{neg}**."
        ).format(
            pos_candidates=counts["positive_candidates"],
            neg_candidates=counts["negative_candidates"],
            batch=batch,
            fraction=fraction,
            cap=cap,
            pos=n_pos,
            neg=n_neg,
        )
    )
    if run.ground_truth.boxes.shape[0] and n_pos == 0:
        st.warning(
            _(
                "No proposal reaches IoU {iou:.2f} with a ground-truth box, so no RoI is "
                "positive and the head learns only background. Lower the positive IoU "
                "threshold (the RPN's proposals from untrained weights rarely fit the objects "
                "well)."
            ).format(iou=pos_iou)
        )
    if n_pos + n_neg < batch:
        st.info(
            _(
                "Only {n} RoIs could be sampled of the {batch} asked for: there are not enough "
                "candidates in the IoU ranges."
            ).format(n=n_pos + n_neg, batch=batch)
        )

    total = n_pos + n_neg
    if total == 0:
        st.warning(_("No RoI was sampled, so there is nothing to pool. Widen the IoU ranges."))
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
            _("RoI to inspect (or click a centre marker on the image)"),
            list(range(total)),
            format_func=descriptions.__getitem__,
            key=PICK,
        )
        roi = targets.rois[pick].detach().cpu()
        x1, y1, x2, y2 = roi.tolist()
        stride = run.spec.stride
        q = quantise_roi(roi, run.params.roi_pool, run.anchors.feature_size, stride)
        label = roi_class(targets, pick, run.classes.class_names)
        # Line breaks are Markdown's "  \n"; the label is the user's (plain).
        st.markdown(
            _(
                "**{label}**, best IoU {iou:.3f}  \n"
                "Input pixels: ({x1:.1f}, {y1:.1f}) – ({x2:.1f}, {y2:.1f}), {w:.0f} × {h:.0f}  \n"
                "÷ {stride}: ({fx1:.2f}, {fy1:.2f}) – ({fx2:.2f}, {fy2:.2f})  \n"
                "RoI Pool rounds to cells x {xs}–{xe}, y {ys}–{ye} ({nx} × {ny} cells)"
            ).format(
                label=plain(label),
                iou=roi_iou(targets, pick),
                x1=x1,
                y1=y1,
                x2=x2,
                y2=y2,
                w=x2 - x1,
                h=y2 - y1,
                stride=stride,
                fx1=x1 / stride,
                fy1=y1 / stride,
                fx2=x2 / stride,
                fy2=y2 / stride,
                xs=q.x_start,
                xe=q.x_end,
                ys=q.y_start,
                ye=q.y_end,
                nx=q.x_end - q.x_start + 1,
                ny=q.y_end - q.y_start + 1,
            )
        )
        if q.clamped:
            rx1, ry1, rx2, ry2 = q.rounded
            hf, wf = run.anchors.feature_size
            st.caption(
                _(
                    "Rounded, the RoI spans cells x {x1}–{x2}, y {y1}–{y2}: past the edge of "
                    "the {hf} × {wf} map, whose cells run 0–{last_x} across and 0–{last_y} "
                    "down. RoI Pool splits the rounded span into bins and stops each bin at "
                    "the map's edge, so only the cells above are pooled."
                ).format(x1=rx1, x2=rx2, y1=ry1, y2=ry2, hf=hf, wf=wf, last_x=wf - 1, last_y=hf - 1)
            )
        if pick < n_pos:
            dx, dy, dw, dh = targets.targets[pick].tolist()
            st.markdown(
                _(
                    "Regression target (dx, dy, dw, dh) to its GT box: ({dx:.3f}, {dy:.3f}, "
                    "{dw:.3f}, {dh:.3f})"
                ).format(dx=dx, dy=dy, dw=dw, dh=dh)
            )
        else:
            st.caption(_("A background RoI: no regression target."))
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

    st.subheader(_("RoI {i} pooled to 7 × 7").format(i=pick))
    channels = run.backbone.features.shape[1]
    show = st.radio(
        _("Feature shown"),
        [MEAN, ONE],
        # Labels bound now: a format_func that calls _() later may run outside the session.
        format_func={v: _(v) for v in (MEAN, ONE)}.__getitem__,
        horizontal=True,
        key="roi:show",
        help=_("The pooled output has one 7 × 7 plane per channel; the mean summarises them"),
    )
    channel = None
    if show == ONE:
        channel = int(st.number_input(_("Channel"), 0, channels - 1, 0, step=1, key="roi:channel"))
    plane = feature_plane(run.backbone.features, channel)
    both = pool_both(run.backbone.features, roi, run.params.roi_pool, stride)
    outputs = {m: (v.mean(axis=0) if channel is None else v[channel]) for m, v in both.items()}
    crop_lo, crop_hi = float(plane.min()), float(plane.max())
    out_lo = min(float(o.min()) for o in outputs.values())
    out_hi = max(float(o.max()) for o in outputs.values())
    size = run.params.roi_pool.output_size
    # Stage 11 on all S RoIs is left to the Head page: here only the picked RoI is pooled.
    st.caption(
        _(
            "The pipeline pools all {n} RoIs with **{method}** into a tensor [{n}, {channels}, "
            "{size}, {size}], the head's input. Both methods are shown here for the picked RoI, "
            "with shared colour scales; the dashed outline is the exact RoI ÷ {stride}."
        ).format(n=total, method=METHOD_NAMES[method], channels=channels, size=size, stride=stride)
    )
    for col, m in zip(st.columns(2), ("pool", "align"), strict=True):
        with col:
            name = _("**{method}** (used by the pipeline)") if m == method else "**{method}**"
            st.markdown(name.format(method=METHOD_NAMES[m]))
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
        _(
            "Mean |RoI Pool − RoI Align| over the 512 × 7 × 7 outputs of this RoI: "
            "**{diff:.4f}**. RoI Pool takes each bin's maximum, RoI Align the average of its "
            "bilinear samples, so Pool's values run higher. RoI Pool's rounding also moves the "
            "RoI by up to half a cell (8 input pixels) on each side and gives bins of unequal, "
            "overlapping whole-cell sizes; RoI Align samples the exact box, which matters most "
            "for small RoIs."
        ).format(diff=diff)
    )
    with st.expander(_("Tutorial bugs B9 and B10 (fixed here)")):
        st.markdown(
            _(
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
        )
    timing_caption(run, ["proposals", "proposal_targets"])
