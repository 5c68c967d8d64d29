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

intro(
    "Inside the production detector",
    "torchvision's Faster R-CNN runs the same stages as the tutorial's network: a backbone, "
    "anchors, a region proposal network, proposals and NMS, RoI pooling, a head and a "
    "post-process. Each is shown below as the model computed it on your image, one module at "
    "a time (nothing is re-implemented), with a link to the tutorial's page for the same step. "
    "Its backbone gives a **pyramid** of feature maps instead of one, so most stages work "
    "level by level.",
    "image → transform [3, Hp, Wp] → FPN levels [256, H_l, W_l] → anchors and objectness per "
    "level → P proposals → RoIs pooled to [P, 256, 7, 7] → scores [P, K] and deltas [P, 4K] → "
    "detections",
)


def tutorial_link(page: str, title: str, icon: str) -> None:
    st.page_link(f"app_pages/{page}.py", label=f"The same step in the tutorial: {title}", icon=icon)


with production_guard():
    with st.sidebar:
        option = detector_picker()
        st.subheader("Input size")
        param_widget("production_input.shorter_side")
        param_widget("production_input.longer_side")
        st.subheader("Detections")
        param_widget("production.box_score_thresh")
    run = run_or_stop(option)
    detector = run.detector
    weights_notice(detector)
    cached = run.forward()
    staged = cached.run
    names = detector.class_names
    levels = list(cached.levels)

    st.header("1. Transform: resize, normalise, pad")
    inp = staged.input
    (h, w), (hi, wi), (hp, wp) = inp.original_size, inp.input_size, inp.padded_size
    st.markdown(
        "The image is scaled by one factor **s** along both axes (its shape is kept), so that "
        f"its shorter side becomes {inp.min_size} pixels unless its longer side would then pass "
        f"{inp.max_size}. Each colour channel is normalised with ImageNet's mean and standard "
        f"deviation, and the image is padded with zeros at the right and bottom to a multiple "
        f"of {inp.size_divisible}, so that every level of the pyramid has whole cells."
    )
    st.latex(
        rf"s = \min\left(\frac{{{inp.min_size}}}{{\min(H, W)}},\ "
        rf"\frac{{{inp.max_size}}}{{\max(H, W)}}\right) = {inp.scale:.4f},\qquad "
        r"x' = \frac{x - \mu}{\sigma}"
    )
    m = st.columns(4)
    m[0].metric("Original (H × W)", fmt_hw((h, w)))
    m[1].metric("Resized", fmt_hw((hi, wi)), help="⌊H·s⌋ × ⌊W·s⌋")
    m[2].metric("Padded", fmt_hw((hp, wp)), help=f"multiples of {inp.size_divisible}")
    m[3].metric("Scale s", f"{inp.scale:.4f}")
    mean = ", ".join(f"{v:.3f}" for v in inp.image_mean)
    std = ", ".join(f"{v:.3f}" for v in inp.image_std)
    st.image(
        padded_frame(cached),
        caption=f"The input tensor [3, {hp}, {wp}]: the resized image and its padding (grey). "
        f"Normalisation: mean ({mean}), std ({std}).",
        width=720,
    )
    tutorial_link("image", "Image & ground truth (a stretch to a square)", ":material/image:")

    st.header("2. Backbone and feature pyramid")
    finest, coarsest = cached.levels[levels[0]], cached.levels[levels[-1]]
    st.markdown(
        "The backbone's stages halve the resolution again and again; the **feature pyramid "
        "network** (FPN) takes the maps of its last stages, adds each coarser map (upsampled) "
        f"to the finer one, and gives every level {finest.shape[0]} channels. Level "
        f"{levels[0]} is the finest (stride {fmt_stride(finest.stride)}) and sees small "
        f"objects; level {levels[-1]} the coarsest (stride {fmt_stride(coarsest.stride)}). Pick "
        "a level to see its most "
        "active channels (each scaled to its own range)."
    )
    st.dataframe(pd.DataFrame(level_rows(cached)), hide_index=True, width="stretch")
    level = st.radio("Level", levels, horizontal=True, key="production_level")
    tiles = cached.levels[level]
    count = st.select_slider("Channels shown", [4, 8, 12, 16], value=8, key="production_tiles")
    left, right = st.columns([3, 2])
    with left:
        st.image(
            channel_tiles(tiles, count),
            caption=f"Level {level}: channels {', '.join(map(str, tiles.channels[:count]))} of "
            f"{tiles.shape[0]} (the most active first), each {fmt_hw(tiles.shape[1:])}",
            width="stretch",
        )
    with right:
        st.image(
            mean_tile(tiles),
            caption=f"Level {level}: the mean of all {tiles.shape[0]} channels",
            width="stretch",
        )
    st.caption(
        f"Shapes: level {level} is [1, {fmt_hw(tiles.shape)}], stride {fmt_stride(tiles.stride)} "
        "(the padded input's size divided by the map's, as the anchor generator computes it)."
    )
    tutorial_link("backbone", "Backbone (one VGG16 map, stride 16)", ":material/layers:")

    st.header("3. Anchors per level")
    counts = staged.anchors.counts()
    ratios = ", ".join(f"{r:g}" for r in staged.anchors.aspect_ratios[levels[0]])
    st.markdown(
        f"Each level has its anchor sizes (in the table above) in the ratios {ratios} (height / "
        "width), centred on every cell at multiples of the level's stride. No anchor is left "
        f"out for crossing the border. In all **{staged.anchors.total:,}** anchors: "
        + " + ".join(f"{n:,} (level {name})" for name, n in counts.items())
        + "."
    )
    st.latex(
        r"N_l = H_l \cdot W_l \cdot A_l,\qquad h = s_l\sqrt{r},\quad w = s_l / \sqrt{r},\qquad "
        r"\text{centre} = \text{stride}_l \cdot (i, j)"
    )
    st.plotly_chart(anchors_figure(cached, level), width="stretch", key="production_anchors")
    st.caption(
        f"Dots: the centres of level {level} (the level picked above). Boxes: the anchors of the "
        "middle cell of every level, solid for the picked level."
    )
    tutorial_link("anchors", "Anchors (9 per cell on one map)", ":material/anchor:")

    st.header("4. RPN objectness per level")
    st.markdown(
        "One small head, shared by every level, predicts for each anchor one **objectness "
        "logit** (an object, not background: a sigmoid, where the tutorial uses a two-way "
        "softmax) and four box deltas. Each map shows, per cell, the highest objectness of its "
        "anchors."
    )
    st.latex(r"p = \sigma(\text{logit}) = \frac{1}{1 + e^{-\text{logit}}}")
    pictures = objectness_pictures(cached)
    cols = st.columns(len(pictures))
    for col, (name, picture, best) in zip(cols, pictures, strict=True):
        shape = fmt_hw(tuple(staged.rpn.objectness[name].shape))
        col.image(picture, caption=f"level {name}: [{shape}], max {best:.2f}", width="stretch")
    tutorial_link("rpn", "RPN outputs", ":material/target:")

    st.header("5. The proposal funnel per level")
    p = staged.proposals
    st.markdown(
        f"Every anchor is moved by its deltas. Then, **per level**: the {p.pre_nms_top_n:,} "
        "highest-objectness boxes are kept, clipped to the image, boxes under "
        f"{p.min_size:g} px and scores under {p.score_thresh:g} removed, and NMS at IoU "
        f"{p.nms_thresh:g} runs within each level (a large box on a coarse level never removes a "
        f"small one on a fine level). The best {p.post_nms_top_n:,} of all levels are the "
        f"proposals: **{p.post_nms:,}** here."
    )
    st.dataframe(pd.DataFrame(funnel_rows(cached)), hide_index=True, width="stretch")
    left, right = st.columns(2)
    with left:
        st.plotly_chart(funnel_figure(cached), width="stretch", key="production_funnel")
    with right:
        show = st.slider("Proposals drawn", 10, max(10, p.post_nms), min(100, max(10, p.post_nms)))
        st.plotly_chart(proposals_figure(cached, show), width="stretch", key="production_props")
    tutorial_link("proposals", "Proposals & NMS", ":material/filter_alt:")

    st.header("6. RoIs pooled from their level")
    roi = staged.roi
    st.markdown(
        "MultiScaleRoIAlign pools each proposal (now a **RoI**) to "
        f"{roi.output_size[0]} × {roi.output_size[1]} cells from **one** level, chosen by its "
        f"size: a {roi.canonical_scale} × {roi.canonical_scale} RoI goes to level k = "
        f"{roi.canonical_level}, one twice as large to the next coarser level. RoI Align samples "
        f"the exact box ({roi.sampling_ratio} × {roi.sampling_ratio} bilinear samples per cell) "
        "where the tutorial's RoI Pool rounds it to whole cells."
    )
    st.latex(
        rf"k = \left\lfloor {roi.canonical_level} + \log_2\frac{{\sqrt{{wh}}}}"
        rf"{{{roi.canonical_scale}}} \right\rfloor,\quad \text{{clamped to }} "
        rf"{roi.k_min} \ldots {roi.k_max}"
    )
    if roi.k_min == roi.k_max:
        st.info(
            f"Here every RoI pools from level {roi.level_names[0]}: the pooled maps of this "
            f"backbone all have the same stride, so the rule has one level (k = {roi.k_min})."
        )
    left, right = st.columns([2, 3])
    with left:
        st.dataframe(pd.DataFrame(roi_level_rows(cached)), hide_index=True, width="stretch")
        st.image(
            pooled_tiles(cached),
            caption=f"The {roi.output_size[0]} × {roi.output_size[1]} pooled features of the "
            f"first {min(8, roi.pooled.shape[0])} RoIs (mean over {roi.pooled.shape[1]} channels)",
        )
    with right:
        st.plotly_chart(roi_levels_figure(cached, show), width="stretch", key="production_rois")
    tutorial_link("roi", "RoI sampling & pooling", ":material/crop_free:")

    st.header("7. The head: class probabilities of the top RoIs")
    k_classes = staged.head.class_logits.shape[1]
    st.markdown(
        f"The box head turns each pooled RoI into {k_classes} class scores (softmax: the "
        f"background and {k_classes - 1} class ids) and {k_classes} boxes' deltas. These are the "
        "RoIs whose best class (not the background) is the most confident."
    )
    top_k = st.slider("RoIs", 1, 20, 10, key="production_top_k")
    index, probs, rows = top_roi_rows(cached, names, top_k)
    st.dataframe(pd.DataFrame(rows), hide_index=True, width="stretch")
    if index:
        left, right = st.columns(2)
        with left:
            st.plotly_chart(top_rois_figure(cached, index), width="stretch", key="production_top")
        with right:
            rank = st.selectbox("RoI", list(range(1, len(index) + 1)), key="production_rank")
            st.plotly_chart(
                probabilities_figure(probs[rank - 1], names),
                width="stretch",
                key="production_probs",
            )
    tutorial_link("head", "Head & losses", ":material/functions:")

    st.header("8. Post-process: per-class boxes, threshold, NMS")
    found = run["production_detections"]
    c = found.counts
    wx, wy, ww, wh = staged.head.bbox_weights
    clip = detector.model.roi_heads.box_coder.bbox_xform_clip
    st.markdown(
        f"Every RoI gets one box per class, decoded with the box coder's weights ({wx:g}, "
        f"{wy:g}, {ww:g}, {wh:g}), and clipped to the image. The (RoI, class) pairs whose "
        f"probability is above the threshold ({found.detections.threshold:g}) go through NMS "
        f"**per class** at IoU {staged.nms_thresh:g}, and the best "
        f"{staged.detections_per_img} are the detections, scaled back to the original image."
    )
    st.latex(
        rf"x = x_a + \frac{{d_x}}{{{wx:g}}} w_a,\quad y = y_a + \frac{{d_y}}{{{wy:g}}} h_a,"
        rf"\quad w = w_a\, e^{{\min(d_w / {ww:g},\ {clip:.3f})}},"
        rf"\quad h = h_a\, e^{{\min(d_h / {wh:g},\ {clip:.3f})}}"
    )
    m = st.columns(5)
    m[0].metric("(RoI, class) pairs", f"{c['candidates']:,}")
    m[1].metric("Above threshold", f"{c['above']:,}")
    m[2].metric("Not tiny", f"{c['after_small']:,}", help="at least 0.01 px wide and tall")
    m[3].metric("After per-class NMS", f"{c['after_nms']:,}")
    m[4].metric("Detections", c["kept"], help=f"the best {staged.detections_per_img}")
    tutorial_link("detect", "Detect", ":material/select_all:")
    st.caption(run.forward_caption(cached))
    timing_caption(run, ["staged_run", "class_candidates", "production_detections"])
