"""The tutorial's thirteen bugs, each with the original code, the fix, why it is wrong and, where
the library can run the buggy variant, its effect on the current image.

The what-if sliders here are this page's own (scope ``"bugs"``): the user's pipeline settings
on the other pages are never changed by this page.
"""

from __future__ import annotations

import time

import streamlit as st

from explorer import figure_cache, models, state
from explorer.bugs import effects
from explorer.bugs.catalogue import BUG_FLAGS, BUGS, BUGS_BY_ID, TRANSCRIPT, summary_rows, with_bug
from explorer.figures import ACCENT_COLOUR, PROPOSAL_COLOUR
from explorer.runner import PageRun
from explorer.text import plain
from explorer.views import bugs as views
from explorer.widgets import intro, page_guard, param_widget, run_or_stop, timing_caption
from frcnn_core.i18n import _

BUG_KEY = "bug"
SCOPE = "bugs"  # this page's own what-if values
FIG_HEIGHT = 440

intro(
    _("Tutorial bugs"),
    _(
        "The tutorial this explorer follows has **13 bugs**. Most do not crash: the notebook "
        "runs, prints plausible numbers, and trains something else than Faster R-CNN. Every "
        "other page runs the **fixed** pipeline. Here each bug gets the original code, the fix, "
        "why it is wrong, and, where the library can still run the tutorial's version, the two "
        "side by side on **your current image and boxes**. This page's sliders are its own: "
        "your settings on the other pages do not change."
    ),
)


def variant(run: PageRun, bug_id: str, on: bool) -> PageRun:
    """The pipeline with one bug on (the tutorial) or off (the fix); every stage that the bug
    does not change is shared with the other pages' runs."""
    params = with_bug(run.params, bug_id, on)
    return run if params == run.params else run_or_stop(params)


def side_by_side() -> tuple:
    left, right = st.columns(2)
    left.markdown("##### " + _("Fixed (this explorer)"))
    right.markdown("##### " + _("Tutorial's version"))
    return left, right


def no_positives_note(run: PageRun) -> bool:
    if run.ground_truth.boxes.shape[0] == 0:
        st.info(
            _(
                "No ground-truth boxes on this image, so no anchor is positive. Draw boxes on "
                "the **Image & ground truth** page to see this bug's effect on your own boxes."
            )
        )
        return True
    return False


def headers(rows: list[dict]) -> list[dict]:
    """A table's rows with their column names (English, as the code reads them) translated."""
    return [{_(k): v for k, v in row.items()} for row in rows]


def show_b1(run: PageRun) -> None:
    fixed, buggy = variant(run, "B1", False), variant(run, "B1", True)
    effects_ = effects.pairing_effects(fixed, buggy)
    for col, e, name in zip(side_by_side(), effects_, ("fixed", "tutorial"), strict=True):
        with col:
            a, b = st.columns(2)
            a.metric(
                _("Cells paired with their own prediction"),
                f"{e.self_paired:,} / {e.cells:,}",
                help=_("Anchors of a cell trained with the RPN output computed at that cell"),
            )
            if e.positives:
                b.metric(
                    _("Positives trained from inside their box"),
                    f"{e.inside_gt} / {e.positives}",
                    help=_(
                        "Positive anchors whose paired prediction is computed at a cell inside "
                        "their GT box"
                    ),
                )
            st.caption(_("Each anchor → the cell whose prediction it is trained with"))
            st.plotly_chart(
                views.pairing_figure(
                    run.image.pixels,
                    e,
                    run.ground_truth.boxes,
                    run.ground_truth.labels,
                    FIG_HEIGHT,
                ),
                width="stretch",
                key=f"b1_{name}",
            )
    if not effects_[0].positives:
        st.caption(_("No positive anchors on this image: the lines join a sample of 40 cells."))
    st.markdown(
        _(
            "In the fixed pipeline every line has zero length: an anchor is trained with the "
            "prediction of its own cell. In the tutorial only the cells on the diagonal (row = "
            "column) are paired with themselves; every other anchor's loss trains the cell at "
            "the end of its red line."
        )
    )


def show_b2(run: PageRun) -> None:
    demo = effects.small_box_demo()
    st.markdown(
        _(
            "**The tutorial's failing case.** One {w:.0f} × {h:.0f} box at {where} in an "
            "800 × 800 frame, tutorial anchors and thresholds. Its best anchor overlaps it with "
            "IoU {iou:.3f}, under the 0.3 negative threshold."
        ).format(
            w=demo.box[2] - demo.box[0],
            h=demo.box[3] - demo.box[1],
            where=tuple(int(v) for v in demo.box),
            iou=demo.best_iou,
        )
    )
    left, right = side_by_side()
    left.metric(_("Positive anchors of the 40 × 30 box"), demo.fixed_positives)
    right.metric(_("Positive anchors of the 40 × 30 box"), demo.tutorial_positives)
    st.markdown(_("**Your boxes.** Positive anchors each GT box produced:"))
    if no_positives_note(run):
        return
    rows = effects.positives_rows(variant(run, "B2", False), variant(run, "B2", True))
    st.dataframe(headers(rows), hide_index=True, width="stretch")
    lost = [r["box"] for r in rows if r["positives (tutorial)"] == 0 and r["positives (fixed)"]]
    if lost:
        st.warning(
            _("With the tutorial's order these boxes get **no positive anchor**: {boxes}").format(
                boxes=", ".join(plain(str(b)) for b in lost)
            )
        )
    else:
        st.caption(
            _(
                "No box loses its positives here: every best IoU is at least the negative "
                "threshold ({t:.2f}). Raise the negative IoU in the sidebar above a box's best "
                "IoU, or draw a small box, to see it happen."
            ).format(t=run.params.anchor_targets.neg_iou)
        )


def show_b3(run: PageRun) -> None:
    if no_positives_note(run):
        return
    effects_ = [effects.sampling_effect(variant(run, "B3", on)) for on in (False, True)]
    for col, e in zip(side_by_side(), effects_, strict=True):
        a, b, c = col.columns(3)
        a.metric(_("Sampled positives"), f"{e.sampled_positive:,}")
        b.metric(_("Sampled negatives"), f"{e.sampled_negative:,}")
        c.metric(_("Negatives per positive"), f"{e.negatives_per_positive:.1f}")
        col.metric(
            _("RPN classification loss"),
            f"{e.cls_loss:.4f}",
            help=_("Cross-entropy over the sampled anchors, with the current RPN weights"),
        )
    fixed, buggy = effects_
    batch = run.params.anchor_targets.batch_size
    st.markdown(
        _(
            "The tutorial asks for {batch} × {pos} = {asked:,} negatives, so it keeps all "
            "**{kept:,}** instead of **{fixed:,}**. With untrained weights the loss value barely "
            "moves (every anchor scores about 50 %); the harm is in training, where background "
            "outnumbers objects {ratio:.0f} to 1."
        ).format(
            batch=batch,
            pos=buggy.sampled_positive,
            asked=batch * buggy.sampled_positive,
            kept=buggy.sampled_negative,
            fixed=fixed.sampled_negative,
            ratio=buggy.negatives_per_positive,
        )
    )


def show_b4(run: PageRun) -> None:
    e = effects.float_count_on(variant(run, "B4", False), variant(run, "B4", True))
    st.markdown(
        _("**This image.** {n} positive anchors; the limit is {limit:g}.").format(
            n=e.positives, limit=e.limit
        )
    )
    if e.error:
        st.error(_("The tutorial's sampling fails here:\n\n`{error}`").format(error=e.error))
    else:
        st.info(
            _(
                "Not triggered on this image: only {n} positives (the error needs more than "
                "{limit:g}). Lower the positive IoU in the sidebar to trigger it."
            ).format(n=e.positives, limit=e.limit)
        )
    demo = effects.float_count_demo()
    st.markdown(
        _(
            "**A fixed demonstration.** The tutorial's four zebra boxes with a positive IoU of "
            "0.5 instead of 0.7 give {n} positives:"
        ).format(n=demo.positives)
    )
    st.code(demo.error or _("(not triggered)"), language=None)


def show_b5(run: PageRun) -> None:
    if no_positives_note(run):
        return
    runs = [variant(run, "B5", on) for on in (False, True)]
    effects_ = [effects.target_effect(v) for v in runs]
    for col, e in zip(side_by_side(), effects_, strict=True):
        a, b = col.columns(2)
        a.metric(
            _("smoothL1 sum, zero predictions"),
            f"{e.zero_prediction_sum:.3f}",
            help=_(
                "Sum over the {n} sampled positives' four targets when the RPN predicts all-zero "
                "deltas (on the tutorial's zebras: 5.199 fixed, 16.17 tutorial)"
            ).format(n=e.positives),
        )
        b.metric(
            _("RPN loc loss, current predictions"),
            f"{e.rpn_loc_loss:.3f}",
            help=_("λ · Σ smoothL1 / N_pos with the RPN's current outputs"),
        )
    st.markdown(_("The first positive anchors and their x targets:"))
    st.dataframe(
        headers(
            effects.targets_table(
                run.anchors, runs[0].anchor_targets, effects_[0].targets, effects_[1].targets
            )
        ),
        hide_index=True,
        width="stretch",
        column_config={
            _(k): st.column_config.NumberColumn(format="%.3f")
            for k in ("dx fixed", "dx tutorial", "dw fixed", "dw tutorial")
        }
        | {
            _(k): st.column_config.NumberColumn(format="%.1f")
            for k in ("width", "tutorial width (= x1)")
        },
    )
    st.caption(_("dy and dh are unaffected: the height line has a minus."))


def show_linearity(result: effects.Linearity, merged_note: str | None) -> None:
    for col, value, name in zip(
        side_by_side(), (result.with_relu, result.without_relu), ("fixed", "tutorial"), strict=True
    ):
        col.metric(
            _("Non-linearity |f(a+b) − f(a) − f(b) + f(0)|"),
            f"{value:.2e}",
            help=_(
                "Relative to |f(a+b) − f(0)|. Zero (up to float32 rounding, ~1e-7) means the "
                "layers are one affine map."
            ),
        )
        col.caption(
            _("clearly non-zero: a non-linear map")
            if name == "fixed"
            else _("float32 rounding only: the layers are one affine map")
        )
    if merged_note:
        st.markdown(merged_note)


def show_b6(run: PageRun) -> None:
    # The check merges the head's weights (about 0.3 s): kept for this feature map and head.
    result = figure_cache.figure(
        "b6_linearity", run.key("rpn"), lambda: effects.rpn_linearity_on(run)
    )
    st.markdown(
        _(
            "Take two 8 × 8 windows **a** and **b** of this image's feature map and run the RPN "
            "head's layers (3 × 3 conv → 1 × 1 convs) on a, b, a + b and zeros:"
        )
    )
    show_linearity(
        result,
        _(
            "Without the ReLU, one 3 × 3 conv with the product of the weights gives the same "
            "outputs (max relative difference **{error:.1e}**) with **{merged:,}** parameters "
            "instead of **{stacked:,}**."
        ).format(
            error=result.merged_error, merged=result.params_merged, stacked=result.params_stacked
        ),
    )


def show_b11(run: PageRun) -> None:
    result, from_gt, second_gt = effects.head_linearity_on(run)
    size = run.params.roi_pool.output_size
    width = run.heads.head.fc6.in_features
    hidden = run.heads.head.fc7.out_features
    a = _("GT box 1") if from_gt else _("the centre of the image")
    b = _("GT box 2") if second_gt else _("the whole image")
    st.markdown(
        _(
            "Pool two RoIs of this image (a: {a}, b: {b}) to {size} × {size} and run the head "
            "(fc6 → fc7 → scores and deltas) on a, b, a + b and zeros:"
        ).format(a=a, b=b, size=size)
    )
    show_linearity(
        result,
        _(
            "Without the ReLUs fc6 and fc7 hold **{stacked:,}** parameters that can only learn "
            "what one {width} → {hidden} layer (**{merged:,}**) could."
        ).format(
            stacked=result.params_stacked,
            width=width,
            hidden=hidden,
            merged=result.params_merged,
        ),
    )


def show_proposals(run: PageRun, bug_id: str) -> None:
    fixed, buggy = variant(run, bug_id, False), variant(run, bug_id, True)
    fp, bp = fixed.proposals, buggy.proposals
    overlap = effects.proposal_overlap(fp, bp, run.rpn.objectness)
    left, right = side_by_side()
    for col, kept, prob in (
        (left, overlap.fixed_kept, overlap.fixed_mean_prob),
        (right, overlap.tutorial_kept, overlap.tutorial_mean_prob),
    ):
        a, b = col.columns(2)
        a.metric(_("Proposals kept"), f"{kept:,}")
        b.metric(
            _("Mean object probability of the kept"),
            f"{prob:.4f}",
            help=_("The softmax object probability, averaged over the kept proposals"),
        )
    st.metric(
        _("Tutorial's proposals also kept by the fixed pipeline"),
        f"{overlap.common:,} / {overlap.tutorial_kept:,}",
        help=_("The same anchor's box in both final sets"),
    )
    if bug_id == "B7":
        st.markdown(
            _(
                "Before NMS, {common:,} of the top {top:,} anchors are the same under both "
                "rankings; after NMS **{differ:,}** of the tutorial's {kept:,} proposals are not "
                "among the fixed pipeline's."
            ).format(
                common=overlap.pre_nms_common,
                top=overlap.pre_nms,
                differ=overlap.tutorial_kept - overlap.common,
                kept=overlap.tutorial_kept,
            )
        )
        st.plotly_chart(
            views.logit_vs_probability_figure(run.rpn.scores, fp.keep_index, bp.keep_index),
            width="stretch",
            key="b7_scatter",
        )
        return
    st.markdown(
        _(
            "Only **{common:,}** of the tutorial's {kept:,} proposals match a correct NMS (about "
            "600 of 2000 on the tutorial's zebras)."
        ).format(common=overlap.common, kept=overlap.tutorial_kept)
    )
    for col, mine, other, name, colour in zip(
        st.columns(2),
        (fp, bp),
        (bp, fp),
        ("fixed", "tutorial"),
        (PROPOSAL_COLOUR, ACCENT_COLOUR),
        strict=True,
    ):
        title = (
            _("NMS visits the boxes best score first")
            if name == "fixed"
            else _("NMS visits the boxes by descending anchor number")
        )
        with col:
            st.caption(title)
            st.plotly_chart(
                views.kept_figure(
                    run.image.pixels,
                    mine.clipped,
                    mine.keep_index,
                    other.keep_index,
                    run.ground_truth.boxes,
                    run.ground_truth.labels,
                    colour,
                    FIG_HEIGHT,
                ),
                width="stretch",
                key=f"b8_{name}",
            )


def show_b9(run: PageRun) -> None:
    box, from_gt = effects.demo_box(run.ground_truth.boxes, run.image.size)
    stride = run.spec.stride
    crops = effects.roi_crops(run.backbone.features, box, stride)
    x1, y1, x2, y2 = crops.cells
    st.markdown(
        (
            _(
                "GT box 1 covers feature cells x {x1}…{x2}, y {y1}…{y2}. The pooling slices rows "
                "{y1}…{y2}, columns {x1}…{x2}; the tutorial's pictures slice rows {x1}…{x2}, "
                "columns {y1}…{y2}. Channel mean of each slice:"
            )
            if from_gt
            else _(
                "The centre of the image (no GT box) covers feature cells x {x1}…{x2}, "
                "y {y1}…{y2}. The pooling slices rows {y1}…{y2}, columns {x1}…{x2}; the "
                "tutorial's pictures slice rows {x1}…{x2}, columns {y1}…{y2}. Channel mean of "
                "each slice:"
            )
        ).format(x1=x1, y1=y1, x2=x2, y2=y2)
    )
    values = [c for c in (crops.correct, crops.swapped) if c.numel()]
    lo = min(float(c.min()) for c in values)
    hi = max(float(c.max()) for c in values)
    left, right = side_by_side()
    left.plotly_chart(
        views.crop_heatmap(crops.correct, _("rows = y (what is pooled)"), lo, hi),
        width="stretch",
        key="b9_correct",
    )
    if crops.swapped.numel():
        right.plotly_chart(
            views.crop_heatmap(crops.swapped, _("rows = x (the tutorial's picture)"), lo, hi),
            width="stretch",
            key="b9_swapped",
        )
    else:
        right.info(_("The swapped slice falls outside the feature map: the picture is empty."))
    st.caption(_("Where each slice lies on the image"))
    gt = run.ground_truth
    st.plotly_chart(
        views.crops_figure(run.image.pixels, box, crops, gt.boxes, gt.labels, stride, 480),
        width="stretch",
        key="b9_where",
    )


def show_b10(run: PageRun) -> None:
    box, from_gt = effects.demo_box(run.ground_truth.boxes, run.image.size)
    demo = effects.adaptive_pool_demo(run.backbone.features, box, run.spec.stride)
    st.markdown(
        _("Run on GT box 1's slice of this image's feature map:")
        if from_gt
        else _("Run on the centre of the image's slice of this image's feature map:")
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
        _("The tutorial's `tmp[0]` equals the fixed pooling exactly: right by accident.")
        if demo.matches_fixed
        else _("The two poolings differ on this RoI.")
    )


def show_b12(run: PageRun) -> None:
    effect = effects.unreduced_effect(variant(run, "B12", False))
    left, right = side_by_side()
    left.metric(
        _("RoI loc loss"), f"{float(effect.fixed.loc):.4f}", help=_("A scalar: λ Σ / N_pos")
    )
    left.metric(_("RoI classification loss"), f"{float(effect.fixed.cls):.4f}")
    with right:
        if effect.error:
            st.error(
                _("The tutorial's loss fails here:\n\n`UnreducedLossError: {error}`").format(
                    error=effect.error
                )
            )
        st.markdown(
            _("The matrix the tutorial adds to its losses, {shape}:").format(
                shape=list(effect.per_element.shape)
            )
        )
        st.dataframe(
            effect.per_element[:6].numpy(),
            width="stretch",
            column_config={str(i): st.column_config.NumberColumn(format="%.4f") for i in range(4)},
        )
    st.caption(
        _(
            "Computed on this image's {n} sampled RoIs ({pos} positive) with the head's current "
            "predictions."
        ).format(n=effect.sampled, pos=effect.fixed.n_pos)
    )


def show_b13(run: PageRun) -> None:
    st.markdown(_("**The backbone's input**, per channel (current image):"))
    st.dataframe(
        headers(effects.input_statistics(run.image.pixels)),
        hide_index=True,
        width="stretch",
        column_config={
            _(k): st.column_config.NumberColumn(format="%.3f")
            for k in ("tutorial mean", "tutorial std", "fixed mean", "fixed std")
        },
    )
    st.caption(
        _(
            "ImageNet's statistics are mean (0.485, 0.456, 0.406) and std (0.229, 0.224, 0.225) "
            "on the 0…1 scale: normalised, an average ImageNet photo has mean 0 and std 1 per "
            "channel."
        )
    )
    if models.backbone().weights == "random":
        st.info(
            _(
                "The backbone has random weights here, so neither feature map is meaningful; "
                "the comparison still shows how much the input scale changes them."
            )
        )
    compare = st.toggle(
        _("Compare the feature maps (one more VGG16 pass: a few seconds the first time)"),
        key="bug_b13_features",
    )
    if not compare:
        return
    fixed, buggy = variant(run, "B13", False), variant(run, "B13", True)
    f_fixed, f_buggy = fixed.backbone.features, buggy.backbone.features
    timing_caption(buggy, ["backbone"])
    change = effects.feature_change(f_fixed, f_buggy)
    a, b, c = st.columns(3)
    a.metric(_("Cosine similarity of the feature maps"), f"{change.cosine:.3f}")
    b.metric(_("Norm, tutorial / fixed"), f"{change.norm_ratio:.2f}")
    c.metric(
        _("Zero activations, fixed → tutorial"),
        f"{change.zero_fraction_fixed:.1%} → {change.zero_fraction_tutorial:.1%}",
    )
    left, right = side_by_side()
    left.plotly_chart(
        views.mean_map_figure(f_fixed, _("channel mean, normalised input")),
        width="stretch",
        key="b13_fixed",
    )
    right.plotly_chart(
        views.mean_map_figure(f_buggy, _("channel mean, ToTensor() only")),
        width="stretch",
        key="b13_tutorial",
    )


# The settings whose what-if values change a bug's effect.
LABELLING = ("anchor_targets.pos_iou", "anchor_targets.neg_iou")
WHAT_IF = {
    "B2": LABELLING,
    "B3": LABELLING,
    "B4": LABELLING,
    "B5": LABELLING,
    "B7": ("proposals.nms_iou",),
    "B8": ("proposals.nms_iou",),
}

SHOW = {
    "B1": show_b1,
    "B2": show_b2,
    "B3": show_b3,
    "B4": show_b4,
    "B5": show_b5,
    "B6": show_b6,
    "B7": lambda r: show_proposals(r, "B7"),
    "B8": lambda r: show_proposals(r, "B8"),
    "B9": show_b9,
    "B10": show_b10,
    "B11": show_b11,
    "B12": show_b12,
    "B13": show_b13,
}

with page_guard():
    st.subheader(_("All 13 at a glance"))
    st.dataframe(
        summary_rows(),
        hide_index=True,
        width="stretch",
        height=35 * (len(BUGS) + 1) + 3,
        column_config={
            _("id"): st.column_config.TextColumn(width="small"),
            _("run here"): st.column_config.TextColumn(
                width="small",
                help=_(
                    "switch: a setting of the pipeline runs the tutorial's version on your "
                    "image; torch: shown with plain torch on your image's features"
                ),
            ),
        },
    )

    ids = [b.id for b in BUGS]
    wanted = st.query_params.get(BUG_KEY, ids[0])
    if BUG_KEY not in st.session_state:
        st.session_state[BUG_KEY] = wanted if wanted in ids else ids[0]
    # A dict's lookup, not a lambda: Streamlit keeps format_func for the whole session, and a
    # function defined here would keep this run's namespace (its pipeline run) alive.
    # Built each run in the session's language (the widget's identity is its key alone).
    titles = {
        i: f"{i} · {_(BUGS_BY_ID[i].where)}: " + _(BUGS_BY_ID[i].bug).replace("`", "") for i in ids
    }
    choice = st.selectbox(_("Look at one bug"), ids, key=BUG_KEY, format_func=titles.__getitem__)
    st.query_params[BUG_KEY] = choice
    bug = BUGS_BY_ID[choice]

    with st.sidebar:
        st.subheader(_("What-if settings for {bug}").format(bug=bug.id))
        if choice in WHAT_IF:
            for path in WHAT_IF[choice]:
                param_widget(path, scope=SCOPE)
            st.caption(
                _(
                    "These are this page's own: they start from your settings and never change "
                    "them on the other pages."
                )
            )
        else:
            st.caption(_("This bug has no setting to play with."))

    st.header(f"{bug.id} · {_(bug.where)}")
    st.markdown(
        _("**Bug:** {bug}. **Effect:** {effect}.").format(bug=_(bug.bug), effect=_(bug.effect))
    )
    st.markdown(_("**The tutorial's code**"))
    st.code(bug.original, language="python", wrap_lines=True)
    st.caption(
        _("From {source} ({transcript}).").format(source=_(bug.source), transcript=_(TRANSCRIPT))
    )
    st.markdown(_("**The fix**"))
    st.code(bug.fix, language="python", wrap_lines=True)
    st.markdown(_("**Why it is wrong.** {why}").format(why=_(bug.why)))

    st.subheader(_("Effect on this image"))
    # After the sidebar's sliders: the page's what-if values on top of the user's settings.
    run = run_or_stop(state.local_params(SCOPE))
    if bug.id in BUG_FLAGS:
        st.caption(
            _("The tutorial's version runs here through `{setting}`.").format(setting=bug.runnable)
        )
    else:
        st.caption(_("Shown with {what}.").format(what=_(bug.runnable)))
    started = time.perf_counter()
    SHOW[choice](run)
    # The step's name is shown as it is stored: made in the session's language here.
    step = _("{bug} effect").format(bug=choice)
    run.timings[step] = time.perf_counter() - started
    timing_caption(run, [step])
