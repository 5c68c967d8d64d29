"""Stage 9: from every scored anchor to a few thousand region proposals."""

from __future__ import annotations

import streamlit as st

from explorer.views.inspect import take_click
from explorer.views.proposals import (
    STEPS,
    anchor_line,
    fate_lines,
    funnel_figure,
    funnel_stages,
    step_caption,
    step_figures,
    step_view,
)
from explorer.widgets import intro, page_guard, param_widget, run_or_stop, timing_caption
from frcnn_core.i18n import N_, _
from frcnn_core.proposals import box_fate

MODES = {True: N_("training"), False: N_("test time")}
PICK = "proposals:pick"  # the inspected box's anchor index (a shared link can set it)
BEFORE, AFTER = "proposals_before", "proposals_after"

intro(
    _("Proposals & NMS"),
    _(
        "The **proposal layer** turns the RPN's outputs for *all* anchors into a short list of "
        "candidate boxes, the **proposals** (RoIs): move every anchor by its predicted deltas "
        "(**decode**), **clip** to the image, drop tiny boxes (**min size**), keep the "
        "best-scored ones (**pre-NMS top-N**), remove near-duplicates with **non-maximum "
        "suppression**, and keep the best survivors (**post-NMS top-N**). Training keeps more "
        "proposals than testing."
    ),
    _("anchors [N, 4] + deltas [N, 4] + logits [N, 2] → proposals [R, 4], R ≤ post-NMS N"),
)

with page_guard():
    # Settings first: the run reads them when it is built.
    with st.sidebar:
        st.subheader(_("Proposal layer"))
        training = st.radio(
            _("Show the proposals of"),
            [True, False],
            # Labels bound now: a format_func that calls _() later may run outside the session.
            format_func={mode: _(name) for mode, name in MODES.items()}.__getitem__,
            horizontal=True,
            key="proposals:mode",
            help=_(
                "Training keeps more proposals than testing; the rest of the layer is the "
                "same. (This only chooses what this page shows.)"
            ),
        )
        counts_group = "train_proposals" if training else "test_proposals"
        nms_iou = param_widget("proposals.nms_iou")  # i18n: keep (a setting's path)
        pre_n = param_widget(f"{counts_group}.pre_nms")  # i18n: keep (a setting's path)
        post_n = param_widget(f"{counts_group}.post_nms")  # i18n: keep (a setting's path)
        min_size = param_widget("proposals.min_size")  # i18n: keep (a setting's path)
        st.subheader(_("Display"))
        n_draw = st.slider(
            _("Boxes to draw per view"),
            10,
            2000,
            50,
            10,
            key="proposals:n_draw",
            help=_("The best-scored boxes of each view; all of them are counted"),
        )
        with st.expander(_("Advanced: tutorial bugs")):
            b7 = param_widget("proposals.bug_b7_logit_rank")  # i18n: keep (a setting's path)
            st.caption(_("B7: ranks by one logit, ignoring the background logit it competes with."))
            b8 = param_widget("proposals.bug_b8_index_order")  # i18n: keep (a setting's path)
            st.caption(_("B8: NMS keeps high-index boxes and deletes better-scored ones."))

    run = run_or_stop()
    params = run.params.proposals
    grid = run.anchors
    result = run.proposals if training else run.test_proposals
    counts = result.counts()
    if b7:
        st.warning(
            _(
                "Bug **B7** is on: boxes are ranked by the raw object logit instead of the "
                "softmax probability p(object) = softmax(bg, obj)[obj]."
            )
        )
    if b8:
        st.warning(
            _(
                "Bug **B8** is on: NMS visits boxes by descending anchor index, not by score, so "
                "it keeps worse boxes and suppresses better ones."
            )
        )

    roi = run.proposal_targets.counts() if training else None
    sampled = roi["positive"] + roi["negative"] if roi else None
    cols = st.columns(6)
    cols[0].metric(
        _("Decoded"), f"{counts['decoded']:,}", help=_("All anchors, decoded and clipped")
    )
    cols[1].metric(_("≥ {size:g} px").format(size=min_size), f"{counts['after_min_size']:,}")
    cols[2].metric(
        _("Pre-NMS"), f"{counts['pre_nms']:,}", help=_("Top {n:,} by score").format(n=pre_n)
    )
    cols[3].metric(
        _("After NMS"),
        f"{counts['after_nms']:,}",
        help=_("NMS at IoU {iou:g}").format(iou=nms_iou),
    )
    cols[4].metric(_("Kept"), f"{counts['kept']:,}", help=_("Post-NMS top {n:,}").format(n=post_n))
    if roi:
        cols[5].metric(
            _("Sampled RoIs"),
            sampled,
            help=_("{pos} positive, {neg} negative (RoI sampling page)").format(
                pos=roi["positive"], neg=roi["negative"]
            ),
        )
    else:
        cols[5].metric(_("Sampled RoIs"), "—", help=_("Test time: no RoI sampling"))

    if counts["after_min_size"] == 0:
        st.warning(
            _(
                "No box is at least {size:g} px wide and tall, so there are no proposals at "
                "all. Lower the min size."
            ).format(size=min_size)
        )
    elif counts["kept"] < min(50, post_n):
        if roi:
            message = _(
                "Only {n} proposal(s) survive. NMS at IoU {iou:g} deletes every box that "
                "overlaps a better one by more than that, so a low threshold leaves only a few "
                "scattered boxes, and RoI sampling gets {sampled} RoIs instead of {batch}."
            )
        else:
            message = _(
                "Only {n} proposal(s) survive. NMS at IoU {iou:g} deletes every box that "
                "overlaps a better one by more than that, so a low threshold leaves only a few "
                "scattered boxes."
            )
        st.info(
            message.format(
                n=counts["kept"],
                iou=nms_iou,
                sampled=sampled,
                batch=run.params.proposal_targets.roi_batch_size,
            )
        )
    elif counts["after_nms"] < post_n:
        st.caption(
            _(
                "NMS left {n:,} boxes, fewer than the post-NMS N of {post:,}, so all of them "
                "are kept."
            ).format(n=counts["after_nms"], post=post_n)
        )

    left, right = st.columns([3, 2])
    with left:
        st.plotly_chart(
            funnel_figure(funnel_stages(result, grid.total, grid.inside, params, sampled)),
            width="stretch",
            key="proposals_funnel",
        )
    with right:
        st.markdown(
            _(
                "**Anchors → inside the image ({inside:,})** is the RPN *loss*'s filter "
                "(Anchor labelling page), not a step of the proposal layer: the proposal layer "
                "starts again from **all {total:,} anchors**, clipping the boxes instead of "
                "discarding those that cross the border."
            ).format(inside=grid.inside, total=grid.total)
        )
        if roi:
            st.markdown(
                _(
                    "**Sampled RoIs**: during training only, RoI sampling picks {sampled} of "
                    "the proposals ({pos} positive, {neg} negative) for the Fast R-CNN head's "
                    "loss."
                ).format(sampled=sampled, pos=roi["positive"], neg=roi["negative"])
            )
        else:
            st.markdown(
                _(
                    "At **test** time there is no RoI sampling: all the kept proposals go to "
                    "the detection head."
                )
            )
        if not run.trained:
            st.caption(
                _(
                    "With untrained heads the scores are all ≈ 0.5, so the ranking is nearly "
                    "arbitrary; the counts and the mechanics are the same as for a trained "
                    "model."
                )
            )

    st.subheader(_("Boxes before and after each step"))
    step = st.radio(
        _("Step"),
        STEPS,
        index=STEPS.index("NMS"),
        format_func={s: _(s) for s in STEPS}.__getitem__,
        horizontal=True,
        key="proposals:step",
    )
    view = step_view(result, grid.anchors, params, step, n_draw)
    st.markdown(view.explanation)
    if view.n_removed:
        st.caption(
            _("This step removes {n:,} of {total:,} boxes.").format(
                n=view.n_removed, total=view.n_before
            )
        )
    elif view.removed_name:
        st.caption(_("With the current settings this step removes no box."))
    if view.n_after == 0:
        st.warning(_("No box is left after this step."))
    # A click on a box's centre dot (either side) picks its anchor once; the number input may
    # change it afterwards.
    take_click(st.session_state, (BEFORE, AFTER), PICK)
    if not (
        isinstance(st.session_state.get(PICK), int) and 0 <= st.session_state[PICK] < grid.total
    ):
        st.session_state.pop(PICK, None)  # a shared link's pick may not exist here
    picked = st.session_state.get(PICK)
    fate = box_fate(result, params, picked) if picked is not None else None
    partner = box_fate(result, params, fate.suppressor) if fate and fate.suppressor >= 0 else None
    before_fig, after_fig = step_figures(
        run.image.pixels,
        view,
        run.ground_truth.boxes,
        run.ground_truth.labels,
        picked=fate,
        suppressor=partner,
    )
    left, right = st.columns(2)
    for column, fig, key in ((left, before_fig, BEFORE), (right, after_fig, AFTER)):
        column.plotly_chart(
            fig, width="stretch", key=key, on_select="rerun", selection_mode="points"
        )
    st.caption(step_caption(view))

    st.subheader(_("Inspect a box"))
    left, right = st.columns([1, 2])
    with left:
        st.number_input(
            _("Anchor index (or click a box's centre dot)"),
            min_value=0,
            max_value=grid.total - 1,
            value=None,
            step=1,
            key=PICK,
            help=_(
                "Every box of the proposal layer is one anchor moved by its deltas, so the "
                "anchor's index names the box through every step."
            ),
        )
    with right:
        if fate is None:
            st.caption(
                _(
                    "Click a box's centre dot on either image to see its anchor, its score, "
                    "what each step did with it and, if NMS removed it, the box that "
                    "suppressed it."
                )
            )
        else:
            st.markdown(
                anchor_line(fate.anchor, grid.feature_size, run.params.anchors, grid.stride)
            )
            for line in fate_lines(fate, result, params, grid.anchors):
                st.markdown(line)
    timing_caption(run, ["rpn", "proposals", "test_proposals", "proposal_targets"])
