"""Figures and tables of the production detector's pages: its detections, each of its stages,
and the tutorial's pipeline beside it. Each function takes results and returns a figure, an
RGB picture or table rows; the pages place them.

Pictures of many cells (FPN channels, objectness maps) are RGB arrays (``st.image``), a few KB
of PNG each; a plotly heatmap of a 200 x 304 map would send 60 000 numbers per tile.
"""

from __future__ import annotations

import math
from typing import Any

import cv2
import numpy as np
import plotly.graph_objects as go
import torch

from explorer.figures import (
    NEGATIVE_COLOUR,
    POSITIVE_COLOUR,
    PROPOSAL_COLOUR,
    add_boxes,
    add_gt,
    image_figure,
)
from explorer.text import html_text, shown
from frcnn_core.detect import Match
from frcnn_core.i18n import N_, _, ngettext
from frcnn_core.production import DISPLAY_SCORE_THRESHOLD, Detections, top_rois
from frcnn_core.production_graph import (
    CachedRun,
    LabelledBoxes,
    LevelTiles,
    ProductionHeadLoss,
    ProductionTargets,
    ThresholdedDetections,
)
from frcnn_core.render_production import LEVEL_COLOURS

MISS_COLOUR = "#F97316"
# Detections of one class share a colour (the classes present, in order of first appearance).
CLASS_COLOURS = (
    "#22D3EE",
    "#F472B6",
    "#A3E635",
    "#FBBF24",
    "#818CF8",
    "#FB7185",
    "#34D399",
    "#C084FC",
    "#F97316",
    "#60A5FA",
)
MAX_CENTRES = 4000  # anchor centres drawn on a level (every k-th row and column beyond that)
TILE_HEIGHT = 150


def level_colour(i: int) -> str:
    r, g, b = LEVEL_COLOURS[i % len(LEVEL_COLOURS)]
    return f"#{r:02X}{g:02X}{b:02X}"


def class_name(class_names: tuple[str, ...], label: int) -> str:
    return class_names[label] if 0 <= label < len(class_names) else f"class {label}"


def fmt_hw(size: tuple[int, ...]) -> str:
    return " × ".join(f"{int(v):,}" for v in size)


def fmt_stride(stride: tuple[int, int]) -> str:
    """``(sy, sx)`` as one number when equal. torchvision's anchor generator divides the padded
    size by the map's size, so a level whose map was rounded (``pool``) can get two."""
    sy, sx = stride
    return f"{sy}" if sy == sx else f"{sy} × {sx}"


# -- detections ------------------------------------------------------------------------------------


def present_classes(found: Detections, class_names: tuple[str, ...]) -> list[str]:
    """The class names among the detections, most detections first."""
    names = [class_name(class_names, int(c)) for c in found.labels.tolist()]
    return sorted(set(names), key=lambda n: (-names.count(n), n))


def shown_index(found: Detections, class_names: tuple[str, ...], classes: list[str]) -> list[int]:
    """Indices of the detections whose class is in ``classes``."""
    wanted = set(classes)
    return [i for i, c in enumerate(found.labels.tolist()) if class_name(class_names, c) in wanted]


def detection_rows(
    found: Detections,
    class_names: tuple[str, ...],
    index: list[int],
    match: Match | None,
) -> list[dict[str, Any]]:
    """One row per shown detection, best first; boxes in original-image pixels."""
    rows = []
    for i in index:
        x1, y1, x2, y2 = (round(float(v), 1) for v in found.boxes_original[i].tolist())
        row: dict[str, Any] = {
            "#": i + 1,
            _("class"): shown(class_name(class_names, int(found.labels[i]))),
            _("score"): round(float(found.scores[i]), 4),
            "x1": x1,
            "y1": y1,
            "x2": x2,
            "y2": y2,
        }
        if match is not None:
            row[_("best IoU")] = round(float(match.best_iou[i]), 3)
            row[_("result")] = "TP" if bool(match.true_positive[i]) else "FP"
        rows.append(row)
    return rows


def _label_trace(boxes: torch.Tensor, text: list[str], colour: str) -> go.Scatter:
    b = boxes.detach().cpu().numpy().reshape(-1, 4)
    return go.Scatter(
        x=b[:, 0],
        y=b[:, 1],
        mode="text",
        text=text,
        textposition="top right",
        textfont=dict(color=colour, size=12),
        hoverinfo="skip",
        showlegend=False,
    )


def detections_figure(
    pixels: np.ndarray,
    found: Detections,
    class_names: tuple[str, ...],
    index: list[int],
    truth: LabelledBoxes,
    match: Match | None,
    height: int = 620,
) -> go.Figure:
    """The shown detections on the original image with "class score" labels, and the user's
    boxes. Graded (``match`` given): true positives green, false positives red, missed boxes
    orange and dashed; otherwise one colour per class."""
    fig = image_figure(pixels, height=height, dim=0.8)
    add_gt(fig, truth.all_boxes, truth.all_labels)
    names = [class_name(class_names, int(c)) for c in found.labels.tolist()]
    text = [f"{html_text(names[i])} {float(found.scores[i]):.2f}" for i in range(len(found))]
    # (detections, colour, legend name with "{n}" for their count)
    if match is not None:
        tp = match.true_positive.tolist()
        groups = [
            ([i for i in index if not tp[i]], NEGATIVE_COLOUR, _("false positive: {n}")),
            ([i for i in index if tp[i]], POSITIVE_COLOUR, _("true positive: {n}")),
        ]
    else:
        order = list(dict.fromkeys(names[i] for i in index))
        groups = [
            (
                [i for i in index if names[i] == name],
                CLASS_COLOURS[k % len(CLASS_COLOURS)],
                html_text(name).replace("{", "{{").replace("}", "}}") + ": {n}",
            )
            for k, name in enumerate(order)
        ]
    for idx, colour, legend in groups:
        if not idx:
            continue
        boxes = found.boxes_original[idx]
        name = legend.format(n=len(idx))
        add_boxes(fig, boxes, colour, name, 2.5, hover=[text[i] for i in idx])
        fig.add_trace(_label_trace(boxes, [text[i] for i in idx], colour))
    if match is not None and truth.graded:
        missed = torch.nonzero(~match.gt_found).squeeze(1).tolist()
        if missed:
            add_boxes(
                fig,
                truth.boxes[missed],
                MISS_COLOUR,
                _("missed: {n}").format(n=len(missed)),
                3,
                hover=[html_text(truth.labels[j]) for j in missed],
                dash="dash",
            )
    return fig


def grading_counts(match: Match, truth: LabelledBoxes, index: list[int]) -> dict[str, int]:
    """True and false positives among the shown detections, and the boxes none found."""
    tp = match.true_positive.tolist()
    return {
        "true_positive": sum(1 for i in index if tp[i]),
        "false_positive": sum(1 for i in index if not tp[i]),
        "missed": int((~match.gt_found).sum()),
        "boxes": len(truth.labels),
    }


# -- the stages ------------------------------------------------------------------------------------


def padded_frame(cached: CachedRun) -> np.ndarray:
    """The resized image inside its zero-padded tensor (padding drawn grey)."""
    hp, wp = cached.run.input.padded_size
    hi, wi = cached.run.input.input_size
    canvas = np.full((hp, wp, 3), 90, dtype=np.uint8)
    canvas[:hi, :wi] = cached.frame
    return canvas


def _heat(values: torch.Tensor, size: tuple[int, int]) -> np.ndarray:
    """A map min-max scaled to viridis RGB at ``size`` (w, h)."""
    v = values.detach().float().cpu()
    v = ((v - v.min()) / (v.max() - v.min() + 1e-12) * 255).to(torch.uint8).numpy()
    tile = cv2.applyColorMap(cv2.resize(v, size, interpolation=cv2.INTER_NEAREST), 16)
    return cv2.cvtColor(tile, cv2.COLOR_BGR2RGB)


def channel_tiles(level: LevelTiles, count: int, columns: int = 4) -> np.ndarray:
    """The level's ``count`` most active channels as viridis tiles in a grid (each scaled to
    its own range), row by row in the order of ``level.channels``."""
    h, w = level.shape[1:]
    tile_w = max(1, round(TILE_HEIGHT * w / max(h, 1)))
    tiles = [
        cv2.copyMakeBorder(
            _heat(level.tiles[k], (tile_w, TILE_HEIGHT)), 3, 3, 3, 3, cv2.BORDER_CONSTANT
        )
        for k in range(min(count, level.tiles.shape[0]))
    ]
    rows = []
    for start in range(0, len(tiles), columns):
        row = tiles[start : start + columns]
        row += [np.zeros_like(tiles[0])] * (columns - len(row))
        rows.append(np.hstack(row))
    return np.vstack(rows)


def mean_tile(level: LevelTiles, width: int = 480) -> np.ndarray:
    h, w = level.shape[1:]
    return _heat(level.mean, (width, max(1, round(width * h / max(w, 1)))))


def level_rows(cached: CachedRun) -> list[dict[str, Any]]:
    """Per FPN level: its map, stride, anchors, and how many RoIs it contributes and pools."""
    run = cached.run
    anchors = run.anchors.counts()
    pooled = run.roi.counts()
    rows = []
    for name, level in cached.levels.items():
        rows.append(
            {
                _("level"): name,
                _("map (C × H × W)"): fmt_hw(level.shape),
                _("stride (px)"): fmt_stride(level.stride),
                _("anchor size (px)"): ", ".join(str(s) for s in run.anchors.sizes[name]),
                _("ratios (h / w)"): ", ".join(f"{r:g}" for r in run.anchors.aspect_ratios[name]),
                _("anchors"): anchors[name],
                _("proposals from it"): run.proposals.funnel[name]["final"],
                _("RoIs pooled from it"): pooled.get(name, 0),
            }
        )
    return rows


def _per_cell(cached: CachedRun, name: str) -> int:
    return len(cached.run.anchors.sizes[name]) * len(cached.run.anchors.aspect_ratios[name])


def anchors_figure(cached: CachedRun, level: str, height: int = 520) -> go.Figure:
    """The chosen level's anchor centres (every k-th row and column beyond
    :data:`MAX_CENTRES`) and, for every level, the anchors of the middle cell."""
    run = cached.run
    fig = image_figure(cached.frame, height=height, dim=0.6)
    names = list(run.anchors.anchors)
    for i, name in enumerate(names):
        boxes = run.anchors.anchors[name]
        per_cell = _per_cell(cached, name)
        hl, wl = run.rpn.objectness[name].shape[1:]
        middle = ((hl // 2) * wl + wl // 2) * per_cell
        sizes = ", ".join(str(s) for s in run.anchors.sizes[name])
        add_boxes(
            fig,
            boxes[middle : middle + per_cell],
            level_colour(i),
            _("level {level}: size {sizes}").format(level=name, sizes=sizes),
            2.5 if name == level else 1.5,
            dash=None if name == level else "dot",
        )
    i = names.index(level)
    per_cell = _per_cell(cached, level)
    hl, wl = run.rpn.objectness[level].shape[1:]
    step = max(1, math.ceil(math.sqrt(hl * wl / MAX_CENTRES)))
    boxes = run.anchors.anchors[level].reshape(hl, wl, per_cell, 4)[::step, ::step, 0]
    centres = ((boxes[..., :2] + boxes[..., 2:]) / 2).reshape(-1, 2).numpy()
    if step > 1:
        label = _("centres of level {level} (one row and column in {step})")
    else:
        label = _("centres of level {level}")
    label = label.format(level=level, step=step)
    fig.add_trace(
        go.Scattergl(
            x=centres[:, 0],
            y=centres[:, 1],
            mode="markers",
            name=label,
            marker=dict(color=level_colour(i), size=3),
            hoverinfo="skip",
        )
    )
    return fig


def objectness_pictures(cached: CachedRun) -> list[tuple[str, np.ndarray, float]]:
    """Per level: the highest anchor objectness (sigmoid) of each cell over the input frame,
    and that map's maximum."""
    hi, wi = cached.run.input.input_size
    hp, wp = cached.run.input.padded_size
    out = []
    for name, logits in cached.run.rpn.objectness.items():
        prob = torch.sigmoid(logits.float()).amax(dim=0)  # [H_l, W_l]
        heat = _heat(prob, (wp, hp))[:hi, :wi]
        out.append((name, cv2.addWeighted(cached.frame, 0.35, heat, 0.65, 0), float(prob.max())))
    return out


# (the funnel's count, its label: translated where shown)
FUNNEL_STEPS = (
    ("anchors", N_("anchors")),
    ("top_n", N_("pre-NMS top-n")),
    ("after_small", N_("clipped, small removed")),
    ("after_score", N_("above score threshold")),
    ("after_nms", N_("after NMS")),
    ("final", N_("post-NMS top-n")),
)


def funnel_rows(cached: CachedRun) -> list[dict[str, Any]]:
    funnel = cached.run.proposals.funnel
    rows = [
        {_("level"): name, **{_(label): c[step] for step, label in FUNNEL_STEPS}}
        for name, c in funnel.items()
    ]
    rows.append(
        {
            _("level"): _("all"),
            **{_(label): sum(c[step] for c in funnel.values()) for step, label in FUNNEL_STEPS},
        }
    )
    return rows


def funnel_figure(cached: CachedRun, height: int = 360) -> go.Figure:
    """Boxes left after each step, one bar group per step, one bar per level (log scale)."""
    fig = go.Figure()
    for i, (name, counts) in enumerate(cached.run.proposals.funnel.items()):
        fig.add_trace(
            go.Bar(
                x=[_(label) for _step, label in FUNNEL_STEPS],
                y=[max(counts[step], 0) for step, _label in FUNNEL_STEPS],
                name=_("level {level}").format(level=name),
                marker_color=level_colour(i),
            )
        )
    fig.update_yaxes(type="log", title=_("boxes"))
    fig.update_layout(
        barmode="group",
        height=height,
        margin=dict(l=0, r=0, t=10, b=0),
        legend=dict(orientation="h", y=1.02, yanchor="bottom", x=0),
    )
    return fig


def proposals_figure(cached: CachedRun, show: int, height: int = 520) -> go.Figure:
    """The best ``show`` final proposals, coloured by the level whose anchor they came from."""
    p = cached.run.proposals
    fig = image_figure(cached.frame, height=height, dim=0.6)
    boxes, levels = p.boxes[:show], p.box_levels[:show]
    for i, name in enumerate(p.levels):
        keep = levels == i
        if bool(keep.any()):
            legend = _("from level {level}: {n}").format(level=name, n=int(keep.sum()))
            add_boxes(fig, boxes[keep], level_colour(i), legend)
    return fig


def roi_level_rows(cached: CachedRun) -> list[dict[str, Any]]:
    """Per pooled level: its scale, the RoI sizes the level rule sends to it, the count."""
    roi = cached.run.roi
    counts = roi.counts()
    rows = []
    for i, name in enumerate(roi.level_names):
        k = roi.k_min + i
        low = roi.canonical_scale * 2.0 ** (k - roi.canonical_level)
        high = low * 2
        if k > roi.k_max:
            sizes = _("none: beyond the rule's levels")
        elif roi.k_min == roi.k_max:
            sizes = _("every size")
        elif k == roi.k_min:
            sizes = f"< {high:g}"
        elif k == roi.k_max:
            sizes = f"≥ {low:g}"
        else:
            sizes = f"{low:g} … {high:g}"
        rows.append(
            {
                _("level"): name,
                "k": k,
                _("scale"): f"1/{round(1 / roi.scales[i])}",
                _("√(w·h) in px"): sizes,
                "RoIs": counts[name],
            }
        )
    return rows


def roi_levels_figure(cached: CachedRun, show: int, height: int = 520) -> go.Figure:
    """The best ``show`` RoIs coloured by the FPN level MultiScaleRoIAlign pools them from."""
    run = cached.run
    roi = run.roi
    fig = image_figure(cached.frame, height=height, dim=0.6)
    boxes, levels = run.proposals.boxes[:show], roi.levels[:show]
    side = ((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])).clamp(min=0).sqrt()
    for i, name in enumerate(roi.level_names):
        keep = torch.nonzero(levels == i).squeeze(1)
        if keep.numel():
            hover = [
                _("√(wh) = {size:.0f} px → level {level}").format(size=float(side[j]), level=name)
                for j in keep.tolist()
            ]
            add_boxes(
                fig,
                boxes[keep],
                level_colour(i),
                _("pooled from {level}: {n}").format(level=name, n=keep.numel()),
                hover=hover,
            )
    return fig


def pooled_tiles(cached: CachedRun, count: int = 8) -> np.ndarray:
    """The channel mean of the first RoIs' 7 x 7 pooled features, side by side."""
    pooled = cached.run.roi.pooled[:count].float().mean(dim=1)  # [n, 7, 7]
    tiles = [
        cv2.copyMakeBorder(_heat(t, (84, 84)), 3, 3, 3, 3, cv2.BORDER_CONSTANT) for t in pooled
    ]
    return np.hstack(tiles) if tiles else np.zeros((90, 90, 3), dtype=np.uint8)


def top_roi_rows(
    cached: CachedRun, class_names: tuple[str, ...], k: int
) -> tuple[list[int], torch.Tensor, list[dict[str, Any]]]:
    """The ``k`` RoIs with the most confident foreground class: their indices, class
    probabilities [k, K], and a row each (best three classes and the background)."""
    index, probs = top_rois(cached.run, k)
    rows = []
    for rank, (i, p) in enumerate(zip(index.tolist(), probs, strict=True), start=1):
        fg = p[1:]
        best = fg.argsort(descending=True)[:3].tolist()
        row: dict[str, Any] = {
            _("rank"): rank,
            "RoI": i + 1,
            _("objectness"): round(float(cached.run.proposals.scores[i]), 3),
        }
        for n, c in enumerate(best, start=1):
            row[_("class {n}").format(n=n)] = shown(class_name(class_names, c + 1))
            row[f"p{n}"] = round(float(fg[c]), 3)
        row[_("background")] = round(float(p[0]), 3)
        rows.append(row)
    return index.tolist(), probs, rows


def top_rois_figure(cached: CachedRun, index: list[int], height: int = 460) -> go.Figure:
    fig = image_figure(cached.frame, height=height, dim=0.6)
    boxes = cached.run.proposals.boxes[index]
    legend = ngettext("top {n} RoI", "top {n} RoIs", len(index)).format(n=len(index))
    add_boxes(fig, boxes, PROPOSAL_COLOUR, legend, 2)
    fig.add_trace(_label_trace(boxes, [f"#{r}" for r in range(1, len(index) + 1)], "#FFFFFF"))
    return fig


def probabilities_figure(
    probs: torch.Tensor, class_names: tuple[str, ...], top: int = 10, height: int = 300
) -> go.Figure:
    """One RoI's highest class probabilities (background included), as bars. The background
    (id 0) is named in the session's language; the classes keep their own names."""
    order = probs.argsort(descending=True)[:top].tolist()
    fig = go.Figure(
        go.Bar(
            x=[float(probs[c]) for c in order],
            y=[_("background") if c == 0 else html_text(class_name(class_names, c)) for c in order],
            orientation="h",
            marker_color=[
                "#94A3B8" if c == 0 else PROPOSAL_COLOUR for c in order
            ],  # background grey
        )
    )
    fig.update_yaxes(autorange="reversed")
    fig.update_xaxes(range=[0, 1], title=_("softmax probability"))
    fig.update_layout(height=height, margin=dict(l=0, r=0, t=10, b=0))
    return fig


# -- tutorial vs production ------------------------------------------------------------------------


def side_by_side_frames(
    tutorial_pixels: np.ndarray,
    tutorial_boxes: torch.Tensor,
    tutorial_labels: tuple[str, ...],
    cached: CachedRun,
    truth: LabelledBoxes,
    height: int = 380,
) -> tuple[go.Figure, go.Figure]:
    """The two input frames with the user's boxes as each pipeline sees them."""
    left = image_figure(tutorial_pixels, height=height)
    add_gt(left, tutorial_boxes, tutorial_labels)
    right = image_figure(padded_frame(cached), height=height)
    scale = cached.run.input.scale
    add_gt(right, truth.all_boxes * scale, truth.all_labels)
    return left, right


def _losses_text(losses: dict[str, float]) -> str:
    return ", ".join(f"{name} {value:.3f}" for name, value in losses.items())


def comparison_rows(
    tutorial: Any,
    cached: CachedRun,
    found: ThresholdedDetections,
    targets: ProductionTargets,
    head_loss: ProductionHeadLoss | None,
    model: torch.nn.Module,
    backbone_label: str,
) -> list[dict[str, str]]:
    """Both pipelines, stage by stage, with every number taken from the two runs on this image.

    Args:
        tutorial: the tutorial pipeline's run (:class:`explorer.runner.PageRun` or an eager
            :class:`frcnn_core.graph.Run`) on the same image and boxes, with its heads.
        cached, found, targets, head_loss: the production run's stages (``head_loss`` None
            when not computed).
        model: the production detector's torchvision model (its settings).
        backbone_label: what its backbone is called ("ResNet-50").

    Returns:
        Rows ``{"step", "tutorial", "production", "why"}`` of plain text, in the session's
        language (the keys are not shown).
    """
    params = tutorial.params
    run = cached.run
    rpn, heads = model.rpn, model.roi_heads
    rows: list[dict[str, str]] = []

    def row(step: str, tut: str, prod: str, why: str) -> None:
        rows.append({"step": step, "tutorial": tut, "production": prod, "why": why})

    image = tutorial.image
    th, tw = image.size
    oh, ow = image.original_size
    inp = run.input
    (ih, iw), (ph, pw) = inp.input_size, inp.padded_size
    row(
        _("Input frame (height × width)"),
        _(
            "{th} × {tw}: the {oh:,} × {ow:,} photo stretched (× {sy:.3f} down, × {sx:.3f} across)"
        ).format(th=th, tw=tw, oh=oh, ow=ow, sy=image.scale[1], sx=image.scale[0]),
        _(
            "{ih} × {iw}: scaled × {scale:.3f} both ways (shorter side {shorter}, longer at most "
            "{longer}), zero-padded to {ph} × {pw}, a multiple of {multiple}"
        ).format(
            ih=ih,
            iw=iw,
            scale=inp.scale,
            shorter=inp.min_size,
            longer=inp.max_size,
            ph=ph,
            pw=pw,
            multiple=inp.size_divisible,
        ),
        _(
            "Keeping the aspect ratio keeps every object's shape; padding to a multiple of 32 "
            "lets images of any size share one batch and keeps every FPN level's cells aligned."
        ),
    )
    mean = ", ".join(f"{v:.3f}" for v in inp.image_mean)
    std = ", ".join(f"{v:.3f}" for v in inp.image_std)
    row(
        _("Normalisation"),
        _("ImageNet mean and std per channel")
        if params.backbone.normalize
        else _("none (the tutorial's bug B13 is on)"),
        _("mean ({mean}), std ({std}), inside the model").format(mean=mean, std=std),
        _("The transform is part of the model, so no caller can forget it (the tutorial did)."),
    )
    features = tutorial.backbone.features
    stride = tutorial.anchors.stride
    levels = "; ".join(
        _("{level}: {size} (stride {stride})").format(
            level=name, size=fmt_hw(level.shape[1:]), stride=fmt_stride(level.stride)
        )
        for name, level in cached.levels.items()
    )
    channels = next(iter(cached.levels.values())).shape[0]
    row(
        _("Backbone and feature maps"),
        _("VGG16 to conv5_3: one map of {size}, stride {stride}").format(
            size=fmt_hw(tuple(features.shape[1:])), stride=stride
        ),
        _("{backbone} + FPN: {n} maps of {channels} channels: {levels}").format(
            backbone=backbone_label, n=len(cached.levels), channels=channels, levels=levels
        ),
        _(
            "Fine maps find small objects and coarse maps large ones; FPN's top-down path gives "
            "the fine maps the coarse maps' meaning."
        ),
    )
    grid = tutorial.anchors
    hf, wf = grid.feature_size
    counts = run.anchors.counts()
    per_level = " + ".join(f"{n:,}" for n in counts.values())
    detail = "; ".join(
        _("{level}: {size} × {per_cell} of size {sizes}").format(
            level=name,
            size=fmt_hw(tuple(run.rpn.objectness[name].shape[1:])),
            per_cell=_per_cell(cached, name),
            sizes=", ".join(map(str, run.anchors.sizes[name])),
        )
        for name in counts
    )
    if all(len(sizes) == 1 for sizes in run.anchors.sizes.values()):
        why = _(
            "One size per level: each level's anchors fit what its stride can resolve; anchors "
            "crossing the border still learn the objects at the border."
        )
    else:
        why = _(
            "Every size on every level (this backbone's maps share one stride); anchors "
            "crossing the border still learn the objects at the border."
        )
    row(
        _("Anchors"),
        _(
            "{total:,} = {hf} × {wf} × {per_cell}; {inside:,} lie inside the image and only "
            "those are trained on"
        ).format(
            total=grid.total, hf=hf, wf=wf, per_cell=params.anchors.per_cell, inside=grid.inside
        ),
        _("{total:,} = {per_level} ({detail}); none left out, boxes are clipped").format(
            total=run.anchors.total, per_level=per_level, detail=detail
        ),
        why,
    )
    tut_targets = tutorial.anchor_targets.counts()
    at = params.anchor_targets
    prod_counts = targets.anchor_counts()
    hi, lo = targets.rpn_thresholds
    if targets.rpn_low_quality:
        matcher = _(
            "Matcher({hi:g}, {lo:g}, best anchors kept): {positive:,} object, {negative:,} "
            "background, {ignored:,} ignored (of every anchor); sampled {sampled_positive} + "
            "{sampled_negative} of {batch}"
        )
    else:
        matcher = _(
            "Matcher({hi:g}, {lo:g}, best anchors not kept): {positive:,} object, {negative:,} "
            "background, {ignored:,} ignored (of every anchor); sampled {sampled_positive} + "
            "{sampled_negative} of {batch}"
        )
    row(
        _("Anchor matching"),
        _(
            "IoU ≥ {pos_iou:g} object, < {neg_iou:g} background, plus each box's best anchors: "
            "{positive:,} object, {negative:,} background, {ignored:,} ignored (of the inside "
            "anchors); sampled {sampled_positive} + {sampled_negative} of {batch}"
        ).format(
            pos_iou=at.pos_iou,
            neg_iou=at.neg_iou,
            positive=tut_targets["positive"],
            negative=tut_targets["negative"],
            ignored=tut_targets["ignored"],
            sampled_positive=tut_targets["sampled_positive"],
            sampled_negative=tut_targets["sampled_negative"],
            batch=at.batch_size,
        ),
        matcher.format(
            hi=hi,
            lo=lo,
            positive=prod_counts["positive"],
            negative=prod_counts["negative"],
            ignored=prod_counts["ignored"],
            sampled_positive=targets.rpn_sampled_positive,
            sampled_negative=targets.rpn_sampled_negative,
            batch=targets.rpn_batch,
        ),
        _(
            "The same rule as the paper; torchvision matches every anchor, border ones too. The "
            "production side counts only your boxes whose label is one of its classes."
        ),
    )
    scores = tuple(tutorial.rpn.scores.shape)
    objectness = sum(int(o.numel()) for o in run.rpn.objectness.values())
    deltas = sum(int(d.numel()) for d in run.rpn.box_deltas.values())
    row(
        _("RPN outputs"),
        _("2 logits (softmax) and 4 deltas per anchor: scores {scores}, deltas {deltas}").format(
            scores=fmt_hw(scores), deltas=fmt_hw(tuple(tutorial.rpn.locs.shape))
        ),
        _(
            "1 logit (sigmoid) and 4 deltas per anchor, per level: {logits:,} logits, "
            "{deltas:,} deltas; one head shared by every level"
        ).format(logits=objectness, deltas=deltas),
        _("One sigmoid logit says what a two-way softmax says with half the outputs."),
    )
    tp = tutorial.test_proposals.counts()
    p = run.proposals
    funnel = p.funnel.values()
    after_nms = sum(c["after_nms"] for c in funnel)
    row(
        _("Proposals before and after NMS (test time)"),
        _(
            "{boxes:,} boxes of at least {min_size:g} px → the best {pre_nms:,} → NMS at IoU "
            "{nms_iou:g} → {after_nms:,} → top {kept:,}"
        ).format(
            boxes=tp["after_min_size"],
            min_size=params.proposals.min_size,
            pre_nms=tp["pre_nms"],
            nms_iou=params.proposals.nms_iou,
            after_nms=tp["after_nms"],
            kept=tp["kept"],
        ),
        _(
            "the best {top_n:,} per level ({top:,}) → clipped, boxes under {min_size:g} px and "
            "scores under {score:g} removed ({pre_nms:,}) → NMS at IoU {nms_iou:g} per level → "
            "{after_nms:,} → top {post_nms_top_n:,}: {post_nms:,}"
        ).format(
            top_n=p.pre_nms_top_n,
            top=sum(c["top_n"] for c in funnel),
            min_size=p.min_size,
            score=p.score_thresh,
            pre_nms=p.pre_nms,
            nms_iou=p.nms_thresh,
            after_nms=after_nms,
            post_nms_top_n=p.post_nms_top_n,
            post_nms=p.post_nms,
        ),
        _(
            "A top-n per level keeps every level represented, and NMS per level never lets a "
            "large box on a coarse level remove a small one on a fine level."
        ),
    )
    pt = tutorial.proposal_targets.counts()
    ptp = params.proposal_targets
    roi = targets.roi_counts()
    fg = targets.roi_thresholds[0]
    row(
        _("RoI sampling (training)"),
        _(
            "{batch} RoIs, at most {fraction:.0%} objects (IoU ≥ {iou:g}): {positive} object + "
            "{negative} background"
        ).format(
            batch=ptp.roi_batch_size,
            fraction=ptp.roi_pos_fraction,
            iou=ptp.roi_pos_iou,
            positive=pt["positive"],
            negative=pt["negative"],
        ),
        _(
            "{batch} RoIs, at most {fraction:.0%} objects (IoU ≥ {iou:g}), drawn from "
            "{candidates:,} proposals and your boxes: {positive} object + {negative} background"
        ).format(
            batch=targets.roi_batch,
            fraction=targets.roi_positive_fraction,
            iou=fg,
            candidates=targets.roi_candidates,
            positive=roi["positive"],
            negative=roi["negative"],
        ),
        _(
            "More RoIs per image, and the ground-truth boxes join the proposals, so the head "
            "sees perfect positives from the first iteration."
        ),
    )
    pooled = tuple(tutorial.roi_pool.pooled.shape)
    r = run.roi
    per_level = ", ".join(f"{name}: {n}" for name, n in r.counts().items())
    method = "RoI Align" if params.roi_pool.method == "align" else "RoI Pool (max)"
    row(
        _("RoI pooling"),
        _("{method} to {h} × {w} at 1/{stride} on the one map: {shape}").format(
            method=method, h=pooled[-2], w=pooled[-1], stride=stride, shape=fmt_hw(pooled)
        ),
        _(
            "MultiScaleRoIAlign to {h} × {w} (sampling ratio {ratio}) from level k = "
            "⌊{k0} + log2(√(wh) / {s0})⌋, clamped to {k_min}…{k_max}: {per_level}"
        ).format(
            h=r.output_size[0],
            w=r.output_size[1],
            ratio=r.sampling_ratio,
            k0=r.canonical_level,
            s0=r.canonical_scale,
            k_min=r.k_min,
            k_max=r.k_max,
            per_level=per_level,
        ),
        _(
            "RoI Align samples the exact box (no rounding to cells); large RoIs pool from coarse "
            "levels, small ones from fine levels."
        ),
    )
    head = tutorial.test_head
    fc = tutorial["heads"].head
    tutorial_params = sum(p.numel() for p in (*fc.fc6.parameters(), *fc.fc7.parameters()))
    production_params = sum(p.numel() for p in heads.box_head.parameters())
    logits = tuple(run.head.class_logits.shape)
    width = heads.box_predictor.cls_score.in_features
    row(
        _("Head"),
        _(
            "fc6 and fc7 of {width:,} ({weights:,} weights) → {classes} class scores and "
            "{deltas} deltas per RoI: scores {shape}"
        ).format(
            width=fc.fc6.out_features,
            weights=tutorial_params,
            classes=head.scores.shape[1],
            deltas=head.scores.shape[1] * 4,
            shape=fmt_hw(tuple(head.scores.shape)),
        ),
        _(
            "{module} of {width:,} ({weights:,} weights) → {classes} class scores and {deltas} "
            "deltas per RoI: scores {shape}"
        ).format(
            module=type(heads.box_head).__name__,
            width=width,
            weights=production_params,
            classes=logits[1],
            deltas=run.head.box_regression.shape[1],
            shape=fmt_hw(logits),
        ),
        _(
            "A narrower head is far smaller than VGG's 4096-wide fc layers, so it trains faster "
            "and overfits less; COCO has 80 classes (91 ids with gaps, plus the background)."
        ),
    )
    weights = ", ".join(f"{w:g}" for w in heads.box_coder.weights)
    rpn_weights = ", ".join(f"{w:g}" for w in rpn.box_coder.weights)
    row(
        _("Box coder"),
        _(
            "(dx, dy, dw, dh) unweighted for the RPN and the head; dw, dh clamped at {clamp:.3f}"
        ).format(clamp=params.proposals.scale_clamp),
        _("RPN weights ({rpn}), head weights ({head}); dw, dh clamped at {clamp:.3f}").format(
            rpn=rpn_weights, head=weights, clamp=heads.box_coder.bbox_xform_clip
        ),
        _(
            "Weights ({weights}) scale the head's small refinements up to about unit size, so "
            "its box loss and its class loss are of similar size."
        ).format(weights=weights),
    )
    dets = tutorial.detections
    n_all, n_scored, n_nms = dets.candidates
    c = found.counts
    row(
        _("Detections (post-process)"),
        _(
            "{pairs:,} (RoI, class) pairs → score ≥ {threshold:g}: {scored:,} → per-class NMS "
            "{nms:g}: {after_nms:,} → top {top}: {kept}"
        ).format(
            pairs=n_all,
            threshold=params.detect.score_threshold,
            scored=n_scored,
            nms=params.detect.class_nms_iou,
            after_nms=n_nms,
            top=params.detect.max_detections,
            kept=int(dets.boxes.shape[0]),
        ),
        _(
            "{pairs:,} (RoI, class) pairs → score > {threshold:g}: {scored:,} → per-class NMS "
            "{nms:g}: {after_nms:,} → top {top}: {kept}"
        ).format(
            pairs=c["candidates"],
            threshold=found.detections.threshold,
            scored=c["above"],
            nms=heads.nms_thresh,
            after_nms=c["after_nms"],
            top=heads.detections_per_img,
            kept=c["kept"],
        ),
        _(
            "The same steps. torchvision's model keeps every score above {kept:g}; the page "
            "shows those above your threshold (the tutorial's MMDetection demo: {demo:g})."
        ).format(kept=heads.score_thresh, demo=DISPLAY_SCORE_THRESHOLD),
    )
    tutorial_losses = tutorial.losses.floats()
    tut = _losses_text(
        {
            _("RPN class"): tutorial_losses["rpn_cls"],
            _("RPN box"): tutorial_losses["rpn_loc"],
            _("head class"): tutorial_losses["roi_cls"],
            _("head box"): tutorial_losses["roi_loc"],
            _("total"): tutorial_losses["total"],
        }
    )
    prod = {_("RPN objectness"): targets.rpn_objectness_loss, _("RPN box"): targets.rpn_box_loss}
    if head_loss is not None:
        prod |= {_("head class"): head_loss.classifier, _("head box"): head_loss.box_reg}
        prod[_("total")] = math.fsum(prod.values())
        prod_text = _losses_text(prod)
    else:
        prod_text = _(
            "{losses}; the head's terms need one more forward pass: turn on “Compute the "
            "production head's loss” in the sidebar"
        ).format(losses=_losses_text(prod))
    row(
        _("Losses"),
        _(
            "cross-entropy, and λ = {lam:g} × smooth L1 with β = {beta:g} divided by the "
            "positives: {losses}"
        ).format(lam=params.rpn_loss.loss_lambda, beta=params.rpn_loss.smooth_l1_beta, losses=tut),
        _(
            "binary cross-entropy for the RPN, cross-entropy for the head, smooth L1 with β = 1/9 "
            "divided by every sampled anchor or RoI: {losses}"
        ).format(losses=prod_text),
        _(
            "A small β makes the box loss linear sooner (robust to outliers); dividing by all "
            "sampled boxes keeps its weight steady whatever the number of positives."
        ),
    )
    return rows
