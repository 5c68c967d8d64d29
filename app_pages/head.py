"""Stages 12 and 13: the Fast R-CNN head's class scores and deltas, and every loss term."""

from __future__ import annotations

import math

import streamlit as st

from explorer.text import plain
from explorer.views.head import (
    architecture_table,
    class_columns,
    class_names_with_background,
    delta_rows,
    losses_figure,
    roi_table,
    roi_verdict,
)
from explorer.views.inspect import class_probs_figure, take_click
from explorer.views.roi import roi_descriptions, rois_figure
from explorer.widgets import (
    intro,
    no_boxes_notice,
    page_guard,
    param_widget,
    run_or_stop,
    timing_caption,
)
from frcnn_core.head import UnreducedLossError
from frcnn_core.i18n import _, ngettext

PICK = "head:pick"  # the inspected sampled RoI (a shared link can set it)
FIGURE = "head:rois"

intro(
    _("Head & losses"),
    _(
        "Each sampled RoI's 7 × 7 × 512 features go through two fully connected layers (the "
        "**Fast R-CNN head**), which give **C + 1 class scores** (background and the C object "
        "classes) and **4 box deltas per class**. Training compares them with the RoI's "
        "targets: a cross-entropy for the class, a smooth-L1 loss for the deltas of the *true* "
        "class of the positive RoIs. Add the RPN's two terms (RPN outputs page) and you have "
        "the number that training makes smaller."
    ),
    _(
        "pooled [S, 512, 7, 7] → [S, 25088] → fc6 [S, 4096] → fc7 [S, 4096] → "
        "scores [S, C+1], deltas [S, (C+1)·4]"
    ),
)


with page_guard():
    with st.sidebar:
        st.subheader(_("Loss weights"))
        rpn_lambda = param_widget("rpn_loss.loss_lambda")
        roi_lambda = param_widget("head_loss.loss_lambda")
        st.subheader(_("Tutorial bugs"))
        b11 = param_widget("head.bug_b11_no_relu")
        param_widget("head_loss.bug_b12_unreduced")

    # After the sidebar: the widgets above write this run's settings, which the run reads.
    run = run_or_stop()
    no_boxes_notice(run, _("every RoI is background and there is no box loss"))
    targets = run.proposal_targets
    n_rois = int(targets.labels.numel())
    if n_rois == 0:
        st.warning(
            _(
                "No RoI was sampled (see the **RoI sampling & pooling** page: the IoU ranges "
                "hold no proposal), so the head has nothing to classify."
            )
        )
        st.stop()
    head = run.heads.head
    c = head.num_classes
    names = class_names_with_background(run.classes.class_names, c + 1)
    fc_weights = sum(p.numel() for layer in (head.fc6, head.fc7) for p in layer.parameters())

    st.subheader(_("The head"))
    left, right = st.columns([3, 2])
    with left:
        st.dataframe(
            architecture_table(head, tuple(run.roi_pool.pooled.shape), relu=not b11),
            hide_index=True,
            width="stretch",
            column_config={
                "layer": st.column_config.TextColumn(_("layer")),
                "output shape": st.column_config.TextColumn(_("output shape")),
                "weights": st.column_config.NumberColumn(_("weights"), format="localized"),
            },
        )
    with right:
        st.markdown(
            ngettext(
                "**C = {c}** object class ({names}) plus background: **{scores} scores** and "
                "**{deltas} deltas** per RoI, for **S = {s}** sampled RoIs.",
                "**C = {c}** object classes ({names}) plus background: **{scores} scores** and "
                "**{deltas} deltas** per RoI, for **S = {s}** sampled RoIs.",
                c,
            ).format(
                c=c,
                names=", ".join(plain(name) for name in names[1:]),
                scores=c + 1,
                deltas=(c + 1) * 4,
                s=n_rois,
            )
        )
        if b11:
            st.warning(
                _(
                    "B11 is on: fc6 and fc7 run without ReLU, so fc7(fc6(x)) = (W₇W₆)x + (W₇b₆ + "
                    "b₇), a single linear map: {millions:.0f} million weights doing the work of "
                    "one layer."
                ).format(millions=fc_weights / 1e6)
            )
        if not run.trained:
            st.caption(
                _(
                    "The head is freshly initialised (score-layer weights ~ N(0, 0.01)), so "
                    "every RoI's class probabilities are close to 1 / (C + 1) = {p:.3f} and the "
                    "classification loss close to log(C + 1) = {loss:.3f}."
                ).format(p=1 / (c + 1), loss=math.log(c + 1))
            )

    st.subheader(_("Losses"))
    rpn = run.rpn_loss
    error: UnreducedLossError | None = None
    try:
        losses = run.losses.floats()
        roi = run.head_loss
    except UnreducedLossError as exc:
        # The tutorial's loss cannot be reduced: show the terms that can, from the fixed loss
        # (every stage before it is shared with this run).
        error = exc
        roi = run_or_stop(run.params.replace("head_loss.bug_b12_unreduced", False)).head_loss
        losses = {"rpn_cls": float(rpn.cls), "rpn_loc": float(rpn.loc), "roi_cls": float(roi.cls)}
    cols = st.columns(5)
    for col, name in zip(cols, ("rpn_cls", "rpn_loc", "roi_cls", "roi_loc", "total"), strict=True):
        if name in losses:
            col.metric(name, f"{losses[name]:.4f}")
        else:
            col.metric(name, _("matrix"), help=_("B12: not reduced to a number"))
    if error is not None:
        st.error(_("The tutorial's failure (B12): {error}.").format(error=error))
        st.markdown(
            _(
                "The tutorial computes `roi_loc_loss` element by element and never sums it, so "
                "`roi_loss = roi_cls_loss + roi_lambda * roi_loc_loss` is a P × 4 matrix (one "
                "row per positive RoI) and so is `total_loss = rpn_loss + roi_loss`. Printing "
                "works; training does not, because `backward()` needs one number. The fix: "
                "`roi_loc_loss.sum() / N_pos`. Turn B12 off in the sidebar to see the total."
            )
        )
    loc_sum = float(roi.loc_sum)
    n_pos_rpn, n_pos_roi = rpn.n_pos, roi.n_pos
    left, right = st.columns([2, 3])
    with left:
        st.plotly_chart(losses_figure(losses), width="stretch", key="head:losses")
    with right:
        st.latex(
            r"L^{rpn}_{cls} = \frac{1}{N_{cls}} \sum_i \mathrm{CE}(p_i, p_i^*)"
            rf" \quad N_{{cls}} = {rpn.n_sampled} \;\Rightarrow\; {float(rpn.cls):.4f}"
        )
        st.latex(
            r"L^{rpn}_{loc} = \frac{\lambda}{N_{pos}} \sum_{p_i^* = 1} "
            r"\mathrm{smoothL1}(t_i - t_i^*) = "
            rf"\frac{{{rpn_lambda:g}}}{{{max(n_pos_rpn, 1)}}} \times {float(rpn.loc_sum):.4f}"
            rf" = {float(rpn.loc):.4f}"
        )
        st.latex(
            r"L^{roi}_{cls} = \frac{1}{S} \sum_i \mathrm{CE}(p_i, u_i)"
            rf" \quad S = {n_rois} \;\Rightarrow\; {float(roi.cls):.4f}"
        )
        if error is None:
            st.latex(
                r"L^{roi}_{loc} = \frac{\lambda}{N_{pos}} \sum_{u_i \geq 1} "
                r"\mathrm{smoothL1}(t_i^{u_i} - v_i) = "
                rf"\frac{{{roi_lambda:g}}}{{{max(n_pos_roi, 1)}}} \times {loc_sum:.4f} = "
                rf"{float(roi.loc):.4f}"
            )
        else:
            st.latex(
                r"L^{roi}_{loc} = \lambda\, \mathrm{smoothL1}(t_i^{u_i} - v_i)"
                r"\ \text{" + _("per positive and delta: a") + "} "
                rf"{n_pos_roi} \times 4 \text{{" + _("matrix (B12: never summed)") + "}"
            )
        matrix = r"\text{" + _("a matrix (B12)") + "}"
        total = f"{losses['total']:.4f}" if "total" in losses else matrix
        st.latex(r"L = L^{rpn}_{cls} + L^{rpn}_{loc} + L^{roi}_{cls} + L^{roi}_{loc} = " + total)
        beta = run.params.head_loss.smooth_l1_beta
        st.caption(
            _(
                "smoothL1(x) = 0.5 x² / β when |x| < β, else |x| − 0.5 β (β = {beta:g}), summed "
                "over the 4 deltas. N_pos counts positives (at least 1, so no positive gives a "
                "box loss of 0): {anchors} anchors, {rois} RoIs. p* and u are the true labels "
                "(u = 0 is background); t* and v the target deltas."
            ).format(beta=beta, anchors=n_pos_rpn, rois=n_pos_roi)
        )
    if n_pos_roi == 0:
        st.info(
            _(
                "No sampled RoI is positive, so the head's box loss is 0 and the classifier "
                "only sees background. Lower the positive IoU on the RoI sampling page."
            )
        )

    st.subheader(_("Sampled RoIs"))
    st.caption(
        _(
            "Positives first. The deltas are the head's predictions for the RoI's true class "
            "(the only ones the loss uses); targets are blank for background RoIs, which have "
            "no box loss."
        )
    )
    table = roi_table(targets, run.head, run.classes.class_names)
    config = {
        col: st.column_config.ProgressColumn(col, format="%.3f", min_value=0.0, max_value=1.0)
        for col in class_columns(names)
    }
    for col in table.columns:
        if col not in config and col not in (_("RoI"), _("true class"), _("predicted")):
            config[col] = st.column_config.NumberColumn(col, format="%.3f")
    st.dataframe(table, hide_index=True, width="stretch", height=360, column_config=config)

    st.subheader(_("Inspect a sampled RoI"))
    descriptions = roi_descriptions(targets, run.classes.class_names)
    # A click on a RoI's centre marker picks it once; the selectbox may change it afterwards.
    take_click(st.session_state, (FIGURE,), PICK)
    if st.session_state.get(PICK) not in range(n_rois):
        st.session_state[PICK] = 0  # first visit, or a shared link's pick that is not here
    left, right = st.columns([3, 2])
    with right:
        pick = st.selectbox(
            _("RoI (or click its centre dot on the image)"),
            list(range(n_rois)),
            format_func=descriptions.__getitem__,
            key=PICK,
        )
        for line in roi_verdict(targets, run.head, pick, run.classes.class_names):
            st.markdown(line)
        label = int(targets.labels[pick])
        st.plotly_chart(
            class_probs_figure(
                run.head.probs[pick].float().cpu().tolist(),
                names,
                label,
                title=_(
                    "RoI {pick}: softmax over the C + 1 classes (green: its true class)"
                ).format(pick=pick),
            ),
            width="stretch",
            key="head:probs",
        )
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
    st.markdown(
        (
            _(
                "**RoI {pick}'s box deltas**: the head predicts (dx, dy, dw, dh) for every "
                "class; the loss compares only its true class's row with the target."
            )
            if label > 0
            else _(
                "**RoI {pick}'s box deltas**: the head predicts (dx, dy, dw, dh) for every "
                "class; a background RoI has no box to move onto, so none of them is in the loss."
            )
        ).format(pick=pick)
    )
    st.dataframe(
        delta_rows(targets, run.head, pick, run.classes.class_names),
        hide_index=True,
        width="stretch",
    )

    with st.expander(_("Tutorial bugs B11 and B12 (fixed here; toggle them in the sidebar)")):
        st.markdown(
            _(
                "**B11: no ReLU in the head.** The tutorial builds `nn.Sequential(nn.Linear(25088, "
                "4096), nn.Linear(4096, 4096))`. Without a non-linearity between them, two linear "
                "layers are one linear layer (their product), so the head is no deeper than a "
                "single layer. VGG16's classifier, which Fast R-CNN reuses, has a ReLU after "
                "each.\n\n"
                "**B12: the box loss is never reduced.** `roi_loc_loss` is computed per element "
                "and added to the scalar class loss as a matrix; the tutorial prints that matrix "
                "as `total_loss`. `total_loss.backward()` then raises “grad can be implicitly "
                "created only for scalar outputs”. The fix sums over the positives and divides "
                "by N_pos, as the RPN loss does."
            )
        )
    timing_caption(run, ["proposals", "proposal_targets", "roi_pool", "head", "head_loss"])
