"""Stages 7 and 8: what the region proposal network says about every anchor, and its loss."""

from __future__ import annotations

import math

import streamlit as st

from explorer.views.rpn import (
    RPN_LOSS_FORMULA,
    head_layers,
    largest_shift,
    loss_numbers_latex,
    objectness_heatmaps,
    objectness_histogram,
    objectness_maps,
    reshape_code,
    top_boxes,
    top_boxes_figure,
    top_boxes_table,
    zero_delta_loc_sum,
)
from explorer.widgets import (
    intro,
    no_boxes_notice,
    page_guard,
    param_widget,
    run_or_stop,
    timing_caption,
)
from frcnn_core.i18n import _, ngettext

intro(
    _("RPN outputs"),
    _(
        "The **region proposal network** (RPN) is a small head on top of the backbone's feature "
        "map. At every cell it looks at a 3×3 window of features and, for each of the A anchor "
        "shapes centred there, predicts two things: an **objectness** score (is this anchor on an "
        "object or on background?) and four **box deltas** that move and resize the anchor "
        "towards the object. Its loss compares these predictions with the labels and target "
        "deltas of the **Anchor labelling** page."
    ),
    _(
        "features [1, 512, Hf, Wf] → deltas [Hf·Wf·A, 4] and logits [Hf·Wf·A, 2] → "
        "objectness [Hf·Wf·A]"
    ),
)

with page_guard():
    # Settings first: the run reads them when it is built.
    with st.sidebar:
        st.subheader(_("RPN loss"))
        loss_lambda = param_widget("rpn_loss.loss_lambda")  # i18n: keep (a setting's path)
        param_widget("rpn_loss.smooth_l1_beta")  # i18n: keep (a setting's path)
        st.subheader(_("Display"))
        n_boxes = st.slider(
            _("Top-scoring boxes to draw"),
            1,
            500,
            20,
            key="rpn:n_boxes",
            help=_("The anchors with the highest object probability, moved by their deltas"),
        )

    run = run_or_stop()
    grid = run.anchors
    params = run.params
    rpn = run.rpn
    feature_size = grid.feature_size
    per_cell = params.anchors.per_cell

    if run.trained:
        st.success(
            _(
                "These are **your trained heads** (from training in this session): the "
                "objectness and the boxes show what the RPN has learnt."
            )
        )
    else:
        st.info(
            _(
                "These heads are **freshly initialised**: every weight is drawn from N(0, 0.01) "
                "and every bias is 0. So both logits of an anchor are almost equal, the object "
                "probability is **≈ 0.5 everywhere**, and the deltas are tiny: the predicted "
                "boxes are **just the anchors**. Training (a later page) is what makes them "
                "meaningful; the shapes and the loss arithmetic are already exactly those of a "
                "trained model."
            ),
            icon="🎲",
        )

    st.subheader(_("1. The RPN head"))
    st.dataframe(
        head_layers(run.heads.rpn, feature_size, params.rpn), hide_index=True, width="stretch"
    )
    left, right = st.columns([3, 2])
    left.code(reshape_code(feature_size, per_cell), language="python")
    right.caption(
        _(
            "The permute puts the A·4 (or A·2) channels of a cell last, so the reshape lists the "
            "cells row by row and, within a cell, its A anchors: the order of the anchors "
            "themselves, row (iy · {wf} + ix) · {a} + a. The tutorial built its anchors "
            "x-outer, which broke this pairing (bug B1)."
        ).format(wf=feature_size[1], a=per_cell)
    )

    st.subheader(_("2. Objectness per location and anchor shape"))
    objectness = rpn.objectness.float().cpu()  # softmax once, shared by the views below
    cols = st.columns(4)
    cols[0].metric(_("Anchors scored"), f"{objectness.numel():,}")
    cols[1].metric(_("Lowest p(object)"), f"{float(objectness.min()):.4f}")
    cols[2].metric(_("Mean p(object)"), f"{float(objectness.mean()):.4f}")
    cols[3].metric(_("Highest p(object)"), f"{float(objectness.max()):.4f}")
    stretch = st.toggle(
        _("Stretch the colour scale to the data's range"),
        value=False,
        key="rpn:stretch",
        help=_("On a fresh head every value is near 0.5; stretching shows the small differences"),
    )
    maps = objectness_maps(objectness, feature_size, per_cell)
    hf, wf = feature_size
    st.plotly_chart(
        objectness_heatmaps(
            maps,
            params.anchors,
            grid.stride,
            stretch,
            _("p(object) at each of the {hf}×{wf} cells, one map per anchor shape").format(
                hf=hf, wf=wf
            ),
        ),
        width="stretch",
        key="rpn_objectness",
    )
    st.plotly_chart(objectness_histogram(objectness), width="stretch", key="rpn_histogram")

    st.subheader(_("3. Top-scoring predicted boxes"))
    st.markdown(
        _(
            "The **{n}** anchors with the highest object probability, each moved by its "
            "predicted deltas and clipped to the image. No size filter and no NMS yet: that is "
            "the **Proposals & NMS** page."
        ).format(n=n_boxes)
    )
    top = top_boxes(
        grid.anchors, rpn, objectness, run.image.size, n_boxes, params.proposals.scale_clamp
    )
    show_anchors = st.toggle(
        _("Also draw the anchors they came from (dotted)"), value=True, key="rpn:show_anchors"
    )
    st.plotly_chart(
        top_boxes_figure(
            run.image.pixels, top, run.ground_truth.boxes, run.ground_truth.labels, show_anchors
        ),
        width="stretch",
        key="rpn_top_boxes",
    )
    st.caption(
        _(
            "Largest move of a drawn box's edge from its anchor (both clipped to the image): "
            "{shift:.1f} px."
        ).format(shift=largest_shift(top, run.image.size))
    )
    st.dataframe(
        top_boxes_table(top, rpn, feature_size, params.anchors, grid.stride, rows=10),
        hide_index=True,
        width="stretch",
    )
    st.caption(
        _("Anchor index = (iy · {wf} + ix) · {a} + a: the row of the reshaped outputs.").format(
            wf=wf, a=per_cell
        )
    )

    st.subheader(_("4. The RPN loss"))
    no_boxes_notice(run)
    targets = run.anchor_targets
    loss = run.rpn_loss
    st.latex(RPN_LOSS_FORMULA)
    # Two bullets, two sentences each: the second's LaTeX braces are doubled for format().
    st.markdown(
        _(
            "- $s_i$: the two logits of anchor $i$; $p_i^*$: its label (1 object, 0 "
            "background); the **cross-entropy** runs over the $N_{\\mathrm{cls}}$ sampled "
            "anchors."
        )
        + "\n"
        + _(
            "- $t_i$: predicted deltas, $t_i^*$: target deltas to the matched GT box; **smooth "
            "L1** (β = {beta:g}) runs over the $N_{{\\mathrm{{pos}}}}$ positive anchors only, "
            "summed over the 4 deltas."
        ).format(beta=params.rpn_loss.smooth_l1_beta)
    )
    st.latex(loss_numbers_latex(loss, loss_lambda))
    cols = st.columns(6)
    cols[0].metric(_("Objectness loss (CE)"), f"{float(loss.cls):.4f}")
    cols[1].metric(
        _("Box loss"),
        f"{float(loss.loc):.4f}",
        help="λ · ΣsmoothL1 / N_pos",  # i18n: keep (a formula)
    )
    cols[2].metric(_("ΣsmoothL1 over positives"), f"{float(loss.loc_sum):.4f}")
    cols[3].metric(_("N_cls (sampled anchors)"), loss.n_sampled)
    cols[4].metric(_("N_pos (positive anchors)"), loss.n_pos)
    cols[5].metric(_("RPN loss"), f"{float(loss.total):.4f}")
    if loss.n_sampled == 0:
        st.warning(_("No anchor was sampled, so the objectness loss is 0."))
    if loss.n_pos == 0:
        st.warning(
            _(
                "No positive anchor: the box term is 0 (nothing to regress). Draw boxes, or "
                "lower the positive IoU threshold on the Anchor labelling page."
            )
        )
    reference = zero_delta_loc_sum(
        targets.labels_all, targets.targets_all, params.rpn_loss.smooth_l1_beta
    )
    notes = [
        _(
            "A coin flip (p = 0.5) costs ln 2 = {ln2:.4f} per anchor: a fresh head's "
            "objectness loss sits right there."
        ).format(ln2=math.log(2)),
    ]
    if loss.n_pos:
        notes.append(
            ngettext(
                "Predicting zero deltas (keeping the anchors) would give ΣsmoothL1 = "
                "{reference:.4f} over this {n} positive.",
                "Predicting zero deltas (keeping the anchors) would give ΣsmoothL1 = "
                "{reference:.4f} over these {n} positives.",
                loss.n_pos,
            ).format(reference=reference, n=loss.n_pos)
        )
    st.caption(" ".join(notes))
    timing_caption(run, ["rpn", "anchor_targets", "rpn_loss"])
