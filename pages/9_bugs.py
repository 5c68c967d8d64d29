"""Page 9: the tutorial's thirteen bugs (SPEC section 4), each with the original code, the fix,
why it is wrong and, where frcnn_core can run the buggy variant, its effect on the current image.

The buggy variants are built with ``dataclasses.replace`` on the session's parameters
(``views.bugs.with_bug``); the session's own parameters are never switched to a bug.
"""

from __future__ import annotations

import dataclasses
import time

import streamlit as st
import torch

from explorer.compute import Stages
from explorer.figures import ACCENT_COLOUR, PROPOSAL_COLOUR
from explorer.views import bugs as views
from explorer.widgets import intro, page_guard, param_slider, stages_or_stop, timing_caption
from frcnn_core.anchor_targets import anchor_targets
from frcnn_core.pipeline import PipelineParams
from frcnn_core.roi_pool import pool_rois

BUG_KEY = "bug"
FIG_HEIGHT = 440

intro(
    "Tutorial bugs",
    "The tutorial this explorer follows has **13 bugs**. Most do not crash: the notebook runs, "
    "prints plausible numbers, and trains something else than Faster R-CNN. Every other page "
    "runs the **fixed** pipeline. Here each bug gets the original code, the fix, why it is "
    "wrong, and, where the library can still run the tutorial's version, the two side by side "
    "on **your current image and boxes** (your settings are not changed).",
)


@st.cache_data(max_entries=16, show_spinner=False)
def rpn_linearity(
    digest: str, params: PipelineParams, heads_token: str, _stages: Stages
) -> views.Linearity:
    """B6 for one image, feature setting and RPN head (the merged-weight check takes ~0.3 s)."""
    return views.rpn_linearity(_stages.heads.heads.rpn, _stages.features, params.rpn)


@st.cache_data(max_entries=16, show_spinner=False)
def unreduced_effect(
    digest: str, boxes: tuple, params: PipelineParams, heads_token: str, _stages: Stages
) -> views.UnreducedEffect:
    """B12 for one image, boxes, settings and heads: runs the 4096-wide head (~0.6 s)."""
    targets = _stages.proposal_targets
    output = _stages.head
    return views.unreduced_effect(
        output, targets.labels.to(output.scores.device), targets.targets, _stages.params.head
    )


def variant(stages: Stages, bug_id: str, on: bool) -> Stages:
    """The session's pipeline with one bug on (the tutorial) or off (the fix); cached stages
    are shared with the other pages whenever the parameters are the same."""
    params = views.with_bug(stages.params, bug_id, on)
    return stages if params == stages.params else Stages(params)


def side_by_side() -> tuple:
    left, right = st.columns(2)
    left.markdown("##### Fixed (this explorer)")
    right.markdown("##### Tutorial's version")
    return left, right


def labelling_sliders() -> None:
    param_slider(
        "anchor_targets.pos_iou",
        "Positive IoU ≥",
        0.05,
        1.0,
        0.05,
        help="An anchor whose best IoU reaches this is an object (tutorial: 0.7)",
    )
    param_slider(
        "anchor_targets.neg_iou",
        "Negative IoU <",
        0.0,
        0.95,
        0.05,
        help="An anchor whose best IoU is under this is background (tutorial: 0.3)",
    )


def no_positives_note(stages: Stages) -> bool:
    if stages.gt_boxes.shape[0] == 0:
        st.info(
            "No ground-truth boxes on this image, so no anchor is positive. Draw boxes on the "
            "**Image & ground truth** page to see this bug's effect on your own boxes."
        )
        return True
    return False


def show_b1(stages: Stages) -> None:
    fixed, buggy = variant(stages, "B1", False), variant(stages, "B1", True)
    row_major = fixed.anchors
    effects = []
    for v in (fixed, buggy):
        targets = anchor_targets(
            v.anchors.anchors, v.anchors.inside_index, v.gt_boxes, v.params.anchor_targets
        )
        effects.append(views.pairing_effect(v.anchors, targets, row_major, stages.gt_boxes))
    prep = stages.prepared
    for col, e, name in zip(side_by_side(), effects, ("fixed", "tutorial"), strict=True):
        with col:
            a, b = st.columns(2)
            a.metric(
                "Cells paired with their own prediction",
                f"{e.self_paired:,} / {e.cells:,}",
                help="Anchors of a cell trained with the RPN output computed at that cell",
            )
            if e.positives:
                b.metric(
                    "Positives trained from inside their box",
                    f"{e.inside_gt} / {e.positives}",
                    help="Positive anchors whose paired prediction is computed at a cell "
                    "inside their GT box",
                )
            st.caption("Each anchor → the cell whose prediction it is trained with")
            st.plotly_chart(
                views.pairing_figure(
                    prep.image.pixels,
                    e,
                    stages.gt_boxes,
                    prep.labels,
                    FIG_HEIGHT,
                ),
                width="stretch",
                key=f"b1_{name}",
            )
    if not effects[0].positives:
        st.caption("No positive anchors on this image: the lines join a sample of 40 cells.")
    st.markdown(
        "In the fixed pipeline every line has zero length: an anchor is trained with the "
        "prediction of its own cell. In the tutorial only the cells on the diagonal (row = "
        "column) are paired with themselves; every other anchor's loss trains the cell at the "
        "end of its red line."
    )


def show_b2(stages: Stages) -> None:
    demo = views.small_box_demo()
    st.markdown(
        f"**SPEC's example.** One {demo.box[2] - demo.box[0]:.0f} × "
        f"{demo.box[3] - demo.box[1]:.0f} box at {tuple(int(v) for v in demo.box)} in an "
        f"800 × 800 frame, tutorial anchors and thresholds. Its best anchor overlaps it with IoU "
        f"{demo.best_iou:.3f}, under the 0.3 negative threshold."
    )
    left, right = side_by_side()
    left.metric("Positive anchors of the 40 × 30 box", demo.fixed_positives)
    right.metric("Positive anchors of the 40 × 30 box", demo.tutorial_positives)
    st.markdown("**Your boxes.** Positive anchors each GT box produced:")
    if no_positives_note(stages):
        return
    params = stages.params.anchor_targets
    grid = stages.anchors
    results = [
        anchor_targets(
            grid.anchors,
            grid.inside_index,
            stages.gt_boxes,
            views.with_bug(stages.params, "B2", on).anchor_targets,
        )
        for on in (False, True)
    ]
    fixed, buggy = (views.positives_per_box(t, params.pos_iou) for t in results)
    rows = [
        {
            "box": f"{i + 1}: {label}",
            "best IoU": float(results[0].gt_best_iou[i]),
            "positives (fixed)": fixed[i],
            "positives (tutorial)": buggy[i],
        }
        for i, label in enumerate(stages.prepared.labels)
    ]
    st.dataframe(rows, hide_index=True, width="stretch")
    lost = [r["box"] for r in rows if r["positives (tutorial)"] == 0 and r["positives (fixed)"]]
    if lost:
        st.warning(
            "With the tutorial's order these boxes get **no positive anchor**: " + ", ".join(lost)
        )
    else:
        st.caption(
            f"No box loses its positives here: every best IoU is at least the negative "
            f"threshold ({params.neg_iou:.2f}). Raise the negative IoU in the sidebar above a "
            "box's best IoU, or draw a small box, to see it happen."
        )


def show_b3(stages: Stages) -> None:
    if no_positives_note(stages):
        return
    grid = stages.anchors
    rpn = stages.rpn
    effects = []
    for on in (False, True):
        p = views.with_bug(stages.params, "B3", on)
        t = anchor_targets(grid.anchors, grid.inside_index, stages.gt_boxes, p.anchor_targets)
        effects.append(views.sampling_effect(rpn, t, p.rpn))
    for col, e in zip(side_by_side(), effects, strict=True):
        a, b, c = col.columns(3)
        a.metric("Sampled positives", f"{e.sampled_positive:,}")
        b.metric("Sampled negatives", f"{e.sampled_negative:,}")
        c.metric("Negatives per positive", f"{e.negatives_per_positive:.1f}")
        col.metric(
            "RPN classification loss",
            f"{e.cls_loss:.4f}",
            help="Cross-entropy over the sampled anchors, with the current RPN weights",
        )
    fixed, buggy = effects
    st.markdown(
        f"The tutorial asks for {stages.params.anchor_targets.batch_size} × "
        f"{buggy.sampled_positive} = "
        f"{stages.params.anchor_targets.batch_size * buggy.sampled_positive:,} negatives, so it "
        f"keeps all **{buggy.sampled_negative:,}** instead of **{fixed.sampled_negative:,}**. "
        "With untrained weights the loss value barely moves (every anchor scores about 50 %); "
        "the harm is in training, where background outnumbers objects "
        f"{buggy.negatives_per_positive:.0f} to 1."
    )


def show_b4(stages: Stages) -> None:
    grid = stages.anchors
    e = views.float_count_effect(
        grid.anchors, grid.inside_index, stages.gt_boxes, stages.params.anchor_targets
    )
    st.markdown(f"**This image.** {e.positives} positive anchors; the limit is {e.limit:g}.")
    if e.error:
        st.error(f"The tutorial's sampling fails here:\n\n`{e.error}`")
    else:
        st.info(
            f"Not triggered on this image: only {e.positives} positives (the error needs more "
            f"than {e.limit:g}). Lower the positive IoU in the sidebar to trigger it."
        )
    demo = views.float_count_demo()
    st.markdown(
        "**A fixed demonstration.** The tutorial's four zebra boxes with a positive IoU of 0.5 "
        f"instead of 0.7 give {demo.positives} positives:"
    )
    st.code(demo.error or "(not triggered)", language=None)


def show_b5(stages: Stages) -> None:
    if no_positives_note(stages):
        return
    grid = stages.anchors
    rpn = stages.rpn
    effects, results = [], []
    for on in (False, True):
        p = views.with_bug(stages.params, "B5", on)
        t = anchor_targets(grid.anchors, grid.inside_index, stages.gt_boxes, p.anchor_targets)
        results.append(t)
        effects.append(views.target_effect(rpn, t, p.rpn))
    for col, e in zip(side_by_side(), effects, strict=True):
        a, b = col.columns(2)
        a.metric(
            "smoothL1 sum, zero predictions",
            f"{e.zero_prediction_sum:.3f}",
            help=f"Sum over the {e.positives} sampled positives' four targets when the RPN "
            "predicts all-zero deltas (SPEC: 5.199 fixed, 16.17 tutorial on the zebras)",
        )
        b.metric(
            "RPN loc loss, current predictions",
            f"{e.rpn_loc_loss:.3f}",
            help="λ · Σ smoothL1 / N_pos with the RPN's current outputs",
        )
    st.markdown("The first positive anchors and their x targets:")
    st.dataframe(
        views.targets_table(grid, results[0], effects[0].targets, effects[1].targets),
        hide_index=True,
        width="stretch",
        column_config={
            k: st.column_config.NumberColumn(format="%.3f")
            for k in ("dx fixed", "dx tutorial", "dw fixed", "dw tutorial")
        }
        | {
            k: st.column_config.NumberColumn(format="%.1f")
            for k in ("width", "tutorial width (= x1)")
        },
    )
    st.caption("dy and dh are unaffected: the height line has a minus.")


def show_linearity(result: views.Linearity, what: str, merged_note: str | None) -> None:
    for col, value, name in zip(
        side_by_side(), (result.with_relu, result.without_relu), ("fixed", "tutorial"), strict=True
    ):
        col.metric(
            "Non-linearity |f(a+b) − f(a) − f(b) + f(0)|",
            f"{value:.2e}",
            help="Relative to |f(a+b) − f(0)|. Zero (up to float32 rounding, ~1e-7) means "
            f"the {what} is an affine map.",
        )
        col.caption(
            "clearly non-zero: a non-linear map"
            if name == "fixed"
            else "float32 rounding only: the layers are one affine map"
        )
    if merged_note:
        st.markdown(merged_note)


def show_b6(stages: Stages) -> None:
    p = stages.params
    key = dataclasses.replace(PipelineParams(), resize=p.resize, backbone=p.backbone, rpn=p.rpn)
    result = rpn_linearity(stages.choice.digest, key, stages.heads.token, stages)
    st.markdown(
        "Take two 8 × 8 windows **a** and **b** of this image's feature map and run the RPN "
        "head's layers (3 × 3 conv → 1 × 1 convs) on a, b, a + b and zeros:"
    )
    show_linearity(
        result,
        "RPN head",
        f"Without the ReLU, one 3 × 3 conv with the product of the weights gives the same "
        f"outputs (max relative difference **{result.merged_error:.1e}**) with "
        f"**{result.params_merged:,}** parameters instead of **{result.params_stacked:,}**.",
    )


def show_b11(stages: Stages) -> None:
    box, from_gt = views.demo_box(stages.gt_boxes, stages.prepared.image.size)
    h, w = stages.prepared.image.size
    rois = torch.stack((box, torch.tensor([0.0, 0.0, float(w), float(h)])))
    if stages.gt_boxes.shape[0] > 1:
        rois[1] = stages.gt_boxes[1]
    pooled = pool_rois(stages.features, rois.to(stages.features.device), stages.params.roi_pool)
    result = views.head_linearity(stages.heads.heads.head, pooled.pooled, stages.params.head)
    st.markdown(
        "Pool two RoIs of this image (a: "
        + ("GT box 1" if from_gt else "the centre of the image")
        + ", b: "
        + ("GT box 2" if stages.gt_boxes.shape[0] > 1 else "the whole image")
        + ") to 7 × 7 and run the head (fc6 → fc7 → scores and deltas) on a, b, a + b and zeros:"
    )
    show_linearity(
        result,
        "head",
        f"Without the ReLUs fc6 and fc7 hold **{result.params_stacked:,}** parameters that can "
        f"only learn what one 25088 → 4096 layer (**{result.params_merged:,}**) could.",
    )


def show_proposals(stages: Stages, bug_id: str) -> None:
    fixed, buggy = variant(stages, bug_id, False), variant(stages, bug_id, True)
    fp, bp = fixed.proposals, buggy.proposals
    overlap = views.proposal_overlap(fp, bp, stages.rpn.objectness)
    left, right = side_by_side()
    for col, kept, prob in (
        (left, overlap.fixed_kept, overlap.fixed_mean_prob),
        (right, overlap.tutorial_kept, overlap.tutorial_mean_prob),
    ):
        a, b = col.columns(2)
        a.metric("Proposals kept", f"{kept:,}")
        b.metric(
            "Mean object probability of the kept",
            f"{prob:.4f}",
            help="The softmax object probability, averaged over the kept proposals",
        )
    st.metric(
        "Tutorial's proposals also kept by the fixed pipeline",
        f"{overlap.common:,} / {overlap.tutorial_kept:,}",
        help="The same anchor's box in both final sets",
    )
    if bug_id == "B7":
        st.markdown(
            f"Before NMS, {overlap.pre_nms_common:,} of the top {overlap.pre_nms:,} anchors are "
            f"the same under both rankings; after NMS **{overlap.tutorial_kept - overlap.common:,}"
            f"** of the tutorial's {overlap.tutorial_kept:,} proposals are not among the fixed "
            "pipeline's."
        )
        st.plotly_chart(
            views.logit_vs_probability_figure(stages.rpn.scores, fp.keep_index, bp.keep_index),
            width="stretch",
            key="b7_scatter",
        )
        return
    st.markdown(
        f"Only **{overlap.common:,}** of the tutorial's {overlap.tutorial_kept:,} proposals match "
        "a correct NMS (SPEC: about 600 of 2000 on the zebras)."
    )
    prep = stages.prepared
    for col, mine, other, name, colour in zip(
        st.columns(2),
        (fp, bp),
        (bp, fp),
        ("fixed", "tutorial"),
        (PROPOSAL_COLOUR, ACCENT_COLOUR),
        strict=True,
    ):
        title = (
            "NMS visits the boxes best score first"
            if name == "fixed"
            else "NMS visits the boxes by descending anchor number"
        )
        with col:
            st.caption(title)
            st.plotly_chart(
                views.kept_figure(
                    prep.image.pixels,
                    mine.clipped,
                    mine.keep_index,
                    other.keep_index,
                    stages.gt_boxes,
                    prep.labels,
                    colour,
                    FIG_HEIGHT,
                ),
                width="stretch",
                key=f"b8_{name}",
            )


def show_b9(stages: Stages) -> None:
    box, from_gt = views.demo_box(stages.gt_boxes, stages.prepared.image.size)
    crops = views.roi_crops(stages.features, box)
    x1, y1, x2, y2 = crops.cells
    st.markdown(
        f"{'GT box 1' if from_gt else 'The centre of the image (no GT box)'} covers feature "
        f"cells x {x1}…{x2}, y {y1}…{y2}. The pooling slices rows {y1}…{y2}, columns {x1}…{x2}; "
        f"the tutorial's pictures slice rows {x1}…{x2}, columns {y1}…{y2}. Channel mean of "
        "each slice:"
    )
    values = [c for c in (crops.correct, crops.swapped) if c.numel()]
    lo = min(float(c.min()) for c in values)
    hi = max(float(c.max()) for c in values)
    left, right = side_by_side()
    left.plotly_chart(
        views.crop_heatmap(crops.correct, "rows = y (what is pooled)", lo, hi),
        width="stretch",
        key="b9_correct",
    )
    if crops.swapped.numel():
        right.plotly_chart(
            views.crop_heatmap(crops.swapped, "rows = x (the tutorial's picture)", lo, hi),
            width="stretch",
            key="b9_swapped",
        )
    else:
        right.info("The swapped slice falls outside the feature map: the picture is empty.")
    prep = stages.prepared
    st.caption("Where each slice lies on the image")
    st.plotly_chart(
        views.crops_figure(prep.image.pixels, box, crops, stages.gt_boxes, prep.labels, 480),
        width="stretch",
        key="b9_where",
    )


def show_b10(stages: Stages) -> None:
    box, from_gt = views.demo_box(stages.gt_boxes, stages.prepared.image.size)
    demo = views.adaptive_pool_demo(stages.features, box)
    st.markdown(
        f"Run on {'GT box 1' if from_gt else 'the centre of the image'}'s slice of this "
        "image's feature map:"
    )
    left, right = side_by_side()
    left.code(
        "layer = nn.AdaptiveMaxPool2d((7, 7))\n"
        f"tmp = layer(im)   # Tensor {list(demo.values_shape)}\n"
        "output.append(tmp)\n"
        f"tmp[0]            # Tensor {list(demo.fixed_item_shape)}: the RoI axis is gone",
        language="python",
        wrap_lines=True,
    )
    right.code(
        "layer = nn.AdaptiveMaxPool2d(7, 7)\n"
        f"layer.return_indices   # {demo.return_indices!r}\n"
        f"tmp = layer(im)        # a {demo.output_type} of 2\n"
        f"tmp[0]                 # Tensor {list(demo.values_shape)}: the values\n"
        f"tmp[1]                 # Tensor {list(demo.indices_shape)}: the argmax indices",
        language="python",
        wrap_lines=True,
    )
    st.success(
        "The tutorial's `tmp[0]` equals the fixed pooling exactly: right by accident."
        if demo.matches_fixed
        else "The two poolings differ on this RoI."
    )


def show_b12(stages: Stages) -> None:
    fixed = variant(stages, "B12", False)
    effect = unreduced_effect(
        stages.choice.digest, stages.boxes, fixed.params, fixed.heads.token, fixed
    )
    left, right = side_by_side()
    left.metric("RoI loc loss", f"{float(effect.fixed.loc):.4f}", help="A scalar: λ Σ / N_pos")
    left.metric("RoI classification loss", f"{float(effect.fixed.cls):.4f}")
    with right:
        if effect.error:
            st.error(f"UnreducedLossError: {effect.error}")
        st.markdown(
            f"The matrix the tutorial adds to its losses, {list(effect.per_element.shape)}:"
        )
        st.dataframe(
            effect.per_element[:6].numpy(),
            width="stretch",
            column_config={str(i): st.column_config.NumberColumn(format="%.4f") for i in range(4)},
        )
    st.caption(
        f"Computed on this image's {effect.sampled} sampled RoIs "
        f"({effect.fixed.n_pos} positive) with the head's current predictions."
    )


def show_b13(stages: Stages) -> None:
    st.markdown("**The backbone's input**, per channel (current image):")
    st.dataframe(
        views.input_statistics(stages.prepared.image.pixels),
        hide_index=True,
        width="stretch",
        column_config={
            k: st.column_config.NumberColumn(format="%.3f")
            for k in ("tutorial mean", "tutorial std", "fixed mean", "fixed std")
        },
    )
    st.caption(
        "ImageNet's statistics are mean (0.485, 0.456, 0.406) and std (0.229, 0.224, 0.225) "
        "on the 0…1 scale: normalised, an average ImageNet photo has mean 0 and std 1 per channel."
    )
    if stages.backbone.weights == "random":
        st.info(
            "The backbone has random weights here, so neither feature map is meaningful; the "
            "comparison still shows how much the input scale changes them."
        )
    compare = st.toggle(
        "Compare the feature maps (one more VGG16 pass: a few seconds the first time)",
        key="bug_b13_features",
    )
    if not compare:
        return
    fixed, buggy = variant(stages, "B13", False), variant(stages, "B13", True)
    started = time.perf_counter()
    f_fixed, f_buggy = fixed.features, buggy.features
    stages.timings["backbone (both)"] = time.perf_counter() - started
    change = views.feature_change(f_fixed, f_buggy)
    a, b, c = st.columns(3)
    a.metric("Cosine similarity of the feature maps", f"{change.cosine:.3f}")
    b.metric("Norm, tutorial / fixed", f"{change.norm_ratio:.2f}")
    c.metric(
        "Zero activations, fixed → tutorial",
        f"{change.zero_fraction_fixed:.1%} → {change.zero_fraction_tutorial:.1%}",
    )
    left, right = side_by_side()
    left.plotly_chart(
        views.mean_map_figure(f_fixed, "channel mean, normalised input"),
        width="stretch",
        key="b13_fixed",
    )
    right.plotly_chart(
        views.mean_map_figure(f_buggy, "channel mean, ToTensor() only"),
        width="stretch",
        key="b13_tutorial",
    )


SHOW = {
    "B1": show_b1,
    "B2": show_b2,
    "B3": show_b3,
    "B4": show_b4,
    "B5": show_b5,
    "B6": show_b6,
    "B7": lambda s: show_proposals(s, "B7"),
    "B8": lambda s: show_proposals(s, "B8"),
    "B9": show_b9,
    "B10": show_b10,
    "B11": show_b11,
    "B12": show_b12,
    "B13": show_b13,
}

with page_guard():
    st.subheader("All 13 at a glance")
    st.dataframe(
        views.summary_rows(),
        hide_index=True,
        width="stretch",
        height=35 * (len(views.BUGS) + 1) + 3,
        column_config={
            "id": st.column_config.TextColumn(width="small"),
            "run here": st.column_config.TextColumn(
                width="small",
                help="switch: a frcnn_core parameter runs the tutorial's version on your image; "
                "torch: shown with plain torch on your image's features",
            ),
        },
    )

    ids = [b.id for b in views.BUGS]
    wanted = st.query_params.get(BUG_KEY, ids[0])
    if BUG_KEY not in st.session_state:
        st.session_state[BUG_KEY] = wanted if wanted in ids else ids[0]
    # A dict's lookup, not a lambda: Streamlit keeps format_func for the whole session, and a
    # function defined here would keep this run's namespace (its Stages) alive.
    titles = {
        i: f"{i} · {views.BUGS_BY_ID[i].where}: " + views.BUGS_BY_ID[i].bug.replace("`", "")
        for i in ids
    }
    choice = st.selectbox("Look at one bug", ids, key=BUG_KEY, format_func=titles.__getitem__)
    st.query_params[BUG_KEY] = choice
    bug = views.BUGS_BY_ID[choice]

    with st.sidebar:
        st.subheader(f"Settings for {bug.id}")
        if choice in ("B2", "B3", "B4", "B5"):
            labelling_sliders()
        elif choice in ("B7", "B8"):
            param_slider(
                "proposals.nms_iou",
                "NMS IoU threshold",
                0.1,
                0.95,
                0.05,
                help="A box overlapping a kept box more than this is dropped (tutorial: 0.7)",
            )
        else:
            st.caption("This bug has no setting to play with.")

    st.header(f"{bug.id} · {bug.where}")
    st.markdown(f"**Bug:** {bug.bug}. **Effect:** {bug.effect}.")
    st.markdown("**The tutorial's code**")
    st.code(bug.original, language="python", wrap_lines=True)
    st.caption(f"From {bug.source} ({views.TRANSCRIPT}).")
    st.markdown("**The fix**")
    st.code(bug.fix, language="python", wrap_lines=True)
    st.markdown(f"**Why it is wrong.** {bug.why}")

    st.subheader("Effect on this image")
    # After the sidebar's sliders, so the pipeline sees this run's settings.
    stages = stages_or_stop()
    if bug.id in views.BUG_FLAGS:
        st.caption(f"The tutorial's version runs here through `{bug.runnable}`.")
    else:
        st.caption(f"Shown with {bug.runnable}.")
    started = time.perf_counter()
    SHOW[choice](stages)
    stages.timings[f"{choice} effect"] = time.perf_counter() - started
    timing_caption(stages, [f"{choice} effect", "backbone (both)"])
