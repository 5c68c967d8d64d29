"""Stage 5 and 6: which anchors are objects, which are background, and which 256 are trained on."""

from __future__ import annotations

import streamlit as st

from explorer import figure_cache
from explorer.text import plain, shown
from explorer.views.inspect import take_click
from explorer.views.labelling import (
    anchor_names,
    drawn_anchors,
    iou_heatmaps,
    iou_maps,
    iou_rows,
    label_explanation,
    labels_figure,
)
from explorer.widgets import (
    intro,
    no_boxes_notice,
    page_guard,
    param_widget,
    resample_button,
    run_or_stop,
    timing_caption,
)
from frcnn_core.anchor_targets import label_reason
from frcnn_core.anchors import anchor_position
from frcnn_core.i18n import _, number

ANCHOR = "labelling:anchor"  # the picked inside anchor (a shared link can set it)
FIGURE = "labels_fig"
BEST = -1  # the "IoU with" picker's value for the best over all boxes (else a box's index)

intro(
    _("Anchor labelling"),
    _(
        "Each anchor inside the image gets a label from its **IoU** (intersection over union) "
        "with the ground-truth boxes: **1** (object) when its best IoU reaches the positive "
        "threshold, **0** (background) under the negative threshold, **−1** (ignored) in "
        "between. Every GT box also claims the anchors that overlap it best, even under the "
        "threshold, so no object goes without a positive. Then 256 labelled anchors are "
        "**sampled** for the loss, at most half positive."
    ),
    _("IoU [K inside anchors, G boxes] → labels [K] ∈ {1, 0, −1} → 256 sampled"),
)

with page_guard():
    run = run_or_stop()
    no_boxes_notice(run)
    with st.sidebar:
        st.subheader(_("Labelling"))
        pos = param_widget("anchor_targets.pos_iou")  # i18n: keep
        neg = param_widget("anchor_targets.neg_iou")  # i18n: keep
        st.subheader(_("Sampling"))
        param_widget("anchor_targets.batch_size")  # i18n: keep
        param_widget("anchor_targets.pos_fraction")  # i18n: keep
        resample_button("anchor_targets.seed")
    if neg > pos:
        st.warning(
            _(
                "The negative threshold ({neg:.2f}) is above the positive one ({pos:.2f}): "
                "anchors between them are labelled negative first, then positive. Usually "
                "neg ≤ pos."
            ).format(neg=neg, pos=pos)
        )

    grid = run.anchors
    grid_params = run.params.anchors
    targets = run.anchor_targets
    counts = targets.counts()
    cols = st.columns(6)
    cols[0].metric(
        _("Inside anchors"),
        number(grid.inside),
        help=_("of {total} anchors").format(total=number(grid.total)),
    )
    cols[1].metric(_("Positive"), counts["positive"])
    cols[2].metric(_("Negative"), number(counts["negative"]))
    cols[3].metric(_("Ignored"), number(counts["ignored"]))
    cols[4].metric(_("Sampled positive"), counts["sampled_positive"])
    cols[5].metric(_("Sampled negative"), counts["sampled_negative"])
    if run.ground_truth.boxes.shape[0] and counts["positive"] == 0:
        st.warning(_("No anchor is positive: lower the positive IoU threshold."))

    st.markdown(
        _(
            "**{reached}** anchors reach IoU ≥ {pos:.2f}; **{ties}** are a GT box's best anchor "
            "(ties included)."
        ).format(reached=counts["positive_from_threshold"], pos=pos, ties=counts["ties"])
    )
    with st.expander(_("Why ties are fragile (45 positives on the tutorial's zebras)")):
        st.markdown(
            _(
                "A GT box's best anchors are found by **exact equality** with its best IoU. "
                "Several anchors of the same shape often overlap a box equally well, and whether "
                "their IoUs compare equal depends on floating-point rounding. Computed in "
                "float64 and stored as float32 (as the tutorial did), the zebra boxes give 45 "
                "positives; pure float32 gives 30 and pure float64 24. Production code "
                "(torchvision's `Matcher`) has the same rule and the same fragility."
            )
        )
    sampled = st.toggle(
        _("Show only the sampled anchors"), value=True, key="labelling:sampled_only"
    )
    positives, negatives = drawn_anchors(targets, sampled)
    options = positives.tolist() + negatives.tolist()
    # A click on a centre marker picks that anchor once; the selectbox may change it afterwards.
    take_click(st.session_state, (FIGURE,), ANCHOR)
    pick = st.session_state.get(ANCHOR)
    if isinstance(pick, int) and 0 <= pick < grid.inside and pick not in options:
        options.append(pick)  # picked before (or by a shared link) but not drawn now
    elif pick not in options:
        st.session_state.pop(ANCHOR, None)  # a link's pick may not exist here
    left, right = st.columns([3, 2])
    with right:
        st.subheader(_("Inspect an anchor"))
        highlight = None
        if options:
            # A dict lookup, not a lambda: Streamlit keeps a widget's format_func for the whole
            # session, and a lambda would keep this run (and its feature map) alive with it.
            names = anchor_names(grid, targets, options)
            pick = st.selectbox(
                _("Anchor (or click its centre dot on the image)"),
                options,
                format_func=names.__getitem__,
                key=ANCHOR,
                help=_(
                    "Positives first, then negatives. The anchors of one cell share a centre "
                    "dot: pick among them here."
                ),
            )
            highlight = pick
            params = run.params.anchor_targets
            why = label_reason(targets, params, pick)
            for line in label_explanation(targets, why, params, run.ground_truth.labels):
                st.markdown(line)
            box = grid.inside_anchors[pick].tolist()
            iy, ix, a = anchor_position(
                int(grid.inside_index[pick]), grid.feature_size, grid_params
            )
            st.caption(
                _(
                    "Box ({x1:.1f}, {y1:.1f}, {x2:.1f}, {y2:.1f}), cell (iy {iy}, ix {ix}), "
                    "shape a = {a}."
                ).format(x1=box[0], y1=box[1], x2=box[2], y2=box[3], iy=iy, ix=ix, a=a)
            )
            if run.ground_truth.boxes.shape[0]:
                st.dataframe(
                    iou_rows(targets, run.ground_truth.labels, pick),
                    hide_index=True,
                    width="stretch",
                )
            if why.label == 1:
                gt = int(targets.argmax_gt[pick])
                dx, dy, dw, dh = targets.targets[pick].tolist()
                st.markdown(
                    _(
                        "**Target deltas** to GT box {box} ({label}), the one it overlaps most:"
                    ).format(box=gt + 1, label=plain(run.ground_truth.labels[gt]))
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
                st.caption(_("Only positive anchors have target deltas (a box to move onto)."))
        else:
            st.caption(_("No labelled anchor to inspect."))
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
            key=FIGURE,
            on_select="rerun",
            selection_mode="points",
        )
    st.subheader(_("IoU per anchor shape"))
    # Values: BEST or a box's index (language-neutral); a dict lookup shows them, as above.
    box_name = _("box {n}: {label}")
    shown_as = {BEST: _("best over all boxes")} | {
        i: box_name.format(n=i + 1, label=shown(name))
        for i, name in enumerate(run.ground_truth.labels)
    }
    which = st.selectbox(
        _("IoU with"), list(shown_as), format_func=shown_as.__getitem__, key="labelling:iou_with"
    )
    gt_index = None if which == BEST else which
    # The IoU maps depend on the anchors' overlaps with the boxes, not on this page's sliders.
    overlaps = run.anchor_overlaps
    heatmaps = figure_cache.figure(
        "iou_maps",
        (run.key("anchor_overlaps"), gt_index),
        lambda: iou_heatmaps(
            iou_maps(grid, overlaps, run.params.anchors, gt_index),
            run.params.anchors,
            grid.stride,
            _("IoU of the anchor at each cell (blank: outside the image)"),
        ),
    )
    st.plotly_chart(heatmaps, width="stretch", key="iou_maps")
    timing_caption(run, ["anchor_targets"])
