"""Inside the production detector: one view per stage of torchvision's Faster R-CNN, each with its
shapes, its formula and a link to the tutorial's page for the same step."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from explorer.production import detector_picker, production_guard, run_or_stop, weights_notice
from explorer.views.production import (
    anchors_figure,
    channel_tiles,
    fmt_hw,
    fmt_stride,
    funnel_figure,
    funnel_rows,
    level_rows,
    mean_tile,
    objectness_pictures,
    padded_frame,
    pooled_tiles,
    probabilities_figure,
    proposals_figure,
    roi_level_rows,
    roi_levels_figure,
    top_roi_rows,
    top_rois_figure,
)
from explorer.widgets import intro, param_widget, timing_caption
from frcnn_core.i18n import N_, _

intro(
    _("Inside the production detector"),
    _(
        "torchvision's Faster R-CNN runs the same stages as the tutorial's network: a backbone, "
        "anchors, a region proposal network, proposals and NMS, RoI pooling, a head and a "
        "post-process. Each is shown below as the model computed it on your image, one module "
        "at a time (nothing is re-implemented), with a link to the tutorial's page for the same "
        "step. Its backbone gives a **pyramid** of feature maps instead of one, so most stages "
        "work level by level."
    ),
    _(
        "image → transform [3, Hp, Wp] → FPN levels [256, H_l, W_l] → anchors and objectness "
        "per level → P proposals → RoIs pooled to [P, 256, 7, 7] → scores [P, K] and deltas "
        "[P, 4K] → detections"
    ),
)


def tutorial_link(page: str, title: str, icon: str) -> None:
    """A link to the tutorial's page for the same step; ``title`` is marked with ``N_``."""
    st.page_link(
        f"app_pages/{page}.py",
        label=_("The same step in the tutorial: {page}").format(page=_(title)),
        icon=icon,
    )


with production_guard():
    with st.sidebar:
        option = detector_picker()
        st.subheader(_("Input size"))
        param_widget("production_input.shorter_side")  # i18n: keep (a setting's path)
        param_widget("production_input.longer_side")  # i18n: keep (a setting's path)
        st.subheader(_("Detections"))
        param_widget("production.box_score_thresh")  # i18n: keep (a setting's path)
    run = run_or_stop(option)
    detector = run.detector
    weights_notice(detector)
    cached = run.forward()
    staged = cached.run
    names = detector.class_names
    levels = list(cached.levels)

    st.header(_("1. Transform: resize, normalise, pad"))
    inp = staged.input
    (h, w), (hi, wi), (hp, wp) = inp.original_size, inp.input_size, inp.padded_size
    st.markdown(
        _(
            "The image is scaled by one factor **s** along both axes (its shape is kept), so "
            "that its shorter side becomes {shorter} pixels unless its longer side would then "
            "pass {longer}. Each colour channel is normalised with ImageNet's mean and standard "
            "deviation, and the image is padded with zeros at the right and bottom to a multiple "
            "of {multiple}, so that every level of the pyramid has whole cells."
        ).format(shorter=inp.min_size, longer=inp.max_size, multiple=inp.size_divisible)
    )
    st.latex(
        rf"s = \min\left(\frac{{{inp.min_size}}}{{\min(H, W)}},\ "
        rf"\frac{{{inp.max_size}}}{{\max(H, W)}}\right) = {inp.scale:.4f},\qquad "
        r"x' = \frac{x - \mu}{\sigma}"
    )
    m = st.columns(4)
    m[0].metric(_("Original (H × W)"), fmt_hw((h, w)))
    m[1].metric(_("Resized"), fmt_hw((hi, wi)), help="⌊H·s⌋ × ⌊W·s⌋")
    m[2].metric(
        _("Padded"),
        fmt_hw((hp, wp)),
        help=_("multiples of {multiple}").format(multiple=inp.size_divisible),
    )
    m[3].metric(_("Scale s"), f"{inp.scale:.4f}")
    mean = ", ".join(f"{v:.3f}" for v in inp.image_mean)
    std = ", ".join(f"{v:.3f}" for v in inp.image_std)
    st.image(
        padded_frame(cached),
        caption=_(
            "The input tensor [3, {hp}, {wp}]: the resized image and its padding (grey). "
            "Normalisation: mean ({mean}), std ({std})."
        ).format(hp=hp, wp=wp, mean=mean, std=std),
        width=720,
    )
    tutorial_link("image", N_("Image & ground truth (a stretch to a square)"), ":material/image:")

    st.header(_("2. Backbone and feature pyramid"))
    finest, coarsest = cached.levels[levels[0]], cached.levels[levels[-1]]
    st.markdown(
        _(
            "The backbone's stages halve the resolution again and again; the **feature pyramid "
            "network** (FPN) takes the maps of its last stages, adds each coarser map "
            "(upsampled) to the finer one, and gives every level {channels} channels. Level "
            "{finest} is the finest (stride {finest_stride}) and sees small objects; level "
            "{coarsest} the coarsest (stride {coarsest_stride}). Pick a level to see its most "
            "active channels (each scaled to its own range)."
        ).format(
            channels=finest.shape[0],
            finest=levels[0],
            finest_stride=fmt_stride(finest.stride),
            coarsest=levels[-1],
            coarsest_stride=fmt_stride(coarsest.stride),
        )
    )
    st.dataframe(pd.DataFrame(level_rows(cached)), hide_index=True, width="stretch")
    level = st.radio(_("Level"), levels, horizontal=True, key="production_level")
    tiles = cached.levels[level]
    count = st.select_slider(_("Channels shown"), [4, 8, 12, 16], value=8, key="production_tiles")
    left, right = st.columns([3, 2])
    with left:
        st.image(
            channel_tiles(tiles, count),
            caption=_(
                "Level {level}: channels {channels} of {total} (the most active first), each {size}"
            ).format(
                level=level,
                channels=", ".join(map(str, tiles.channels[:count])),
                total=tiles.shape[0],
                size=fmt_hw(tiles.shape[1:]),
            ),
            width="stretch",
        )
    with right:
        st.image(
            mean_tile(tiles),
            caption=_("Level {level}: the mean of all {total} channels").format(
                level=level, total=tiles.shape[0]
            ),
            width="stretch",
        )
    st.caption(
        _(
            "Shapes: level {level} is [1, {shape}], stride {stride} (the padded input's size "
            "divided by the map's, as the anchor generator computes it)."
        ).format(level=level, shape=fmt_hw(tiles.shape), stride=fmt_stride(tiles.stride))
    )
    tutorial_link("backbone", N_("Backbone (one VGG16 map, stride 16)"), ":material/layers:")

    st.header(_("3. Anchors per level"))
    counts = staged.anchors.counts()
    ratios = ", ".join(f"{r:g}" for r in staged.anchors.aspect_ratios[levels[0]])
    per_level = " + ".join(
        _("{n:,} (level {level})").format(n=n, level=name) for name, n in counts.items()
    )
    st.markdown(
        _(
            "Each level has its anchor sizes (in the table above) in the ratios {ratios} "
            "(height / width), centred on every cell at multiples of the level's stride. No "
            "anchor is left out for crossing the border. In all **{total:,}** anchors: "
            "{per_level}."
        ).format(ratios=ratios, total=staged.anchors.total, per_level=per_level)
    )
    st.latex(
        r"N_l = H_l \cdot W_l \cdot A_l,\qquad h = s_l\sqrt{r},\quad w = s_l / \sqrt{r},\qquad "
        r"\text{centre} = \text{stride}_l \cdot (i, j)"
    )
    st.plotly_chart(anchors_figure(cached, level), width="stretch", key="production_anchors")
    st.caption(
        _(
            "Dots: the centres of level {level} (the level picked above). Boxes: the anchors of "
            "the middle cell of every level, solid for the picked level."
        ).format(level=level)
    )
    tutorial_link("anchors", N_("Anchors (9 per cell on one map)"), ":material/anchor:")

    st.header(_("4. RPN objectness per level"))
    st.markdown(
        _(
            "One small head, shared by every level, predicts for each anchor one **objectness "
            "logit** (an object, not background: a sigmoid, where the tutorial uses a two-way "
            "softmax) and four box deltas. Each map shows, per cell, the highest objectness of "
            "its anchors."
        )
    )
    st.latex(r"p = \sigma(\text{logit}) = \frac{1}{1 + e^{-\text{logit}}}")
    pictures = objectness_pictures(cached)
    cols = st.columns(len(pictures))
    for col, (name, picture, best) in zip(cols, pictures, strict=True):
        shape = fmt_hw(tuple(staged.rpn.objectness[name].shape))
        col.image(
            picture,
            caption=_("level {level}: [{shape}], max {best:.2f}").format(
                level=name, shape=shape, best=best
            ),
            width="stretch",
        )
    tutorial_link("rpn", N_("RPN outputs"), ":material/target:")

    st.header(_("5. The proposal funnel per level"))
    p = staged.proposals
    st.markdown(
        _(
            "Every anchor is moved by its deltas. Then, **per level**: the {top_n:,} "
            "highest-objectness boxes are kept, clipped to the image, boxes under {min_size:g} "
            "px and scores under {score:g} removed, and NMS at IoU {nms:g} runs within each "
            "level (a large box on a coarse level never removes a small one on a fine level). "
            "The best {post_nms_top_n:,} of all levels are the proposals: **{post_nms:,}** here."
        ).format(
            top_n=p.pre_nms_top_n,
            min_size=p.min_size,
            score=p.score_thresh,
            nms=p.nms_thresh,
            post_nms_top_n=p.post_nms_top_n,
            post_nms=p.post_nms,
        )
    )
    st.dataframe(pd.DataFrame(funnel_rows(cached)), hide_index=True, width="stretch")
    left, right = st.columns(2)
    with left:
        st.plotly_chart(funnel_figure(cached), width="stretch", key="production_funnel")
    with right:
        show = st.slider(
            _("Proposals drawn"),
            10,
            max(10, p.post_nms),
            min(100, max(10, p.post_nms)),
            key="production_proposals_drawn",
        )
        st.plotly_chart(proposals_figure(cached, show), width="stretch", key="production_props")
    tutorial_link("proposals", N_("Proposals & NMS"), ":material/filter_alt:")

    st.header(_("6. RoIs pooled from their level"))
    roi = staged.roi
    st.markdown(
        _(
            "MultiScaleRoIAlign pools each proposal (now a **RoI**) to {h} × {w} cells from "
            "**one** level, chosen by its size: a {s0} × {s0} RoI goes to level k = {k0}, one "
            "twice as large to the next coarser level. RoI Align samples the exact box "
            "({ratio} × {ratio} bilinear samples per cell) where the tutorial's RoI Pool rounds "
            "it to whole cells."
        ).format(
            h=roi.output_size[0],
            w=roi.output_size[1],
            s0=roi.canonical_scale,
            k0=roi.canonical_level,
            ratio=roi.sampling_ratio,
        )
    )
    st.latex(
        rf"k = \left\lfloor {roi.canonical_level} + \log_2\frac{{\sqrt{{wh}}}}"
        rf"{{{roi.canonical_scale}}} \right\rfloor,\qquad {roi.k_min} \le k \le {roi.k_max}"
    )
    if roi.k_min == roi.k_max:
        st.info(
            _(
                "Here every RoI pools from level {level}: the pooled maps of this backbone all "
                "have the same stride, so the rule has one level (k = {k})."
            ).format(level=roi.level_names[0], k=roi.k_min)
        )
    left, right = st.columns([2, 3])
    with left:
        st.dataframe(pd.DataFrame(roi_level_rows(cached)), hide_index=True, width="stretch")
        st.image(
            pooled_tiles(cached),
            caption=_(
                "The {h} × {w} pooled features of the first {n} RoIs (mean over {channels} "
                "channels)"
            ).format(
                h=roi.output_size[0],
                w=roi.output_size[1],
                n=min(8, roi.pooled.shape[0]),
                channels=roi.pooled.shape[1],
            ),
        )
    with right:
        st.plotly_chart(roi_levels_figure(cached, show), width="stretch", key="production_rois")
    tutorial_link("roi", N_("RoI sampling & pooling"), ":material/crop_free:")

    st.header(_("7. The head: class probabilities of the top RoIs"))
    k_classes = staged.head.class_logits.shape[1]
    st.markdown(
        _(
            "The box head turns each pooled RoI into {k} class scores (softmax: the background "
            "and {ids} class ids) and {k} boxes' deltas. These are the RoIs whose best class "
            "(not the background) is the most confident."
        ).format(k=k_classes, ids=k_classes - 1)
    )
    top_k = st.slider(_("RoIs"), 1, 20, 10, key="production_top_k")
    index, probs, rows = top_roi_rows(cached, names, top_k)
    st.dataframe(pd.DataFrame(rows), hide_index=True, width="stretch")
    if index:
        left, right = st.columns(2)
        with left:
            st.plotly_chart(top_rois_figure(cached, index), width="stretch", key="production_top")
        with right:
            rank = st.selectbox(_("RoI"), list(range(1, len(index) + 1)), key="production_rank")
            st.plotly_chart(
                probabilities_figure(probs[rank - 1], names),
                width="stretch",
                key="production_probs",
            )
    tutorial_link("head", N_("Head & losses"), ":material/functions:")

    st.header(_("8. Post-process: per-class boxes, threshold, NMS"))
    found = run["production_detections"]
    c = found.counts
    wx, wy, ww, wh = staged.head.bbox_weights
    clip = detector.model.roi_heads.box_coder.bbox_xform_clip
    st.markdown(
        _(
            "Every RoI gets one box per class, decoded with the box coder's weights ({wx:g}, "
            "{wy:g}, {ww:g}, {wh:g}), and clipped to the image. The (RoI, class) pairs whose "
            "probability is above the threshold ({threshold:g}) go through NMS **per class** at "
            "IoU {nms:g}, and the best {top} are the detections, scaled back to the original "
            "image."
        ).format(
            wx=wx,
            wy=wy,
            ww=ww,
            wh=wh,
            threshold=found.detections.threshold,
            nms=staged.nms_thresh,
            top=staged.detections_per_img,
        )
    )
    st.latex(
        rf"x = x_a + \frac{{d_x}}{{{wx:g}}} w_a,\quad y = y_a + \frac{{d_y}}{{{wy:g}}} h_a,"
        rf"\quad w = w_a\, e^{{\min(d_w / {ww:g},\ {clip:.3f})}},"
        rf"\quad h = h_a\, e^{{\min(d_h / {wh:g},\ {clip:.3f})}}"
    )
    m = st.columns(5)
    m[0].metric(_("(RoI, class) pairs"), f"{c['candidates']:,}")
    m[1].metric(_("Above threshold"), f"{c['above']:,}")
    m[2].metric(_("Not tiny"), f"{c['after_small']:,}", help=_("at least 0.01 px wide and tall"))
    m[3].metric(_("After per-class NMS"), f"{c['after_nms']:,}")
    m[4].metric(
        _("Detections"),
        c["kept"],
        help=_("the best {top}").format(top=staged.detections_per_img),
    )
    tutorial_link("detect", N_("Detect"), ":material/select_all:")
    st.caption(run.forward_caption(cached))
    timing_caption(run, ["staged_run", "class_candidates", "production_detections"])
