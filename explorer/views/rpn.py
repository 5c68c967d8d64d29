"""Figures and tables of stages 7 and 8: the RPN head's outputs and its loss.

Shape letters: A anchors per cell, Hf, Wf feature-map size, N = Hf * Wf * A anchors, in the
anchor order of :mod:`frcnn_core.anchors` (``index = (iy * Wf + ix) * A + a``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import plotly.graph_objects as go
import torch
from torchvision.ops import clip_boxes_to_image

from explorer.figures import IGNORED_COLOUR, PROPOSAL_COLOUR, add_boxes, add_gt, image_figure
from explorer.views.anchors import shape_heatmaps, shape_names
from frcnn_core.anchors import AnchorParams
from frcnn_core.boxes import decode, smooth_l1_sum
from frcnn_core.i18n import _, number
from frcnn_core.rpn import RPNHead, RPNLoss, RPNOutput, RPNParams


def _count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def head_layers(
    head: RPNHead, feature_size: tuple[int, int], params: RPNParams
) -> list[dict[str, str]]:
    """The RPN head layer by layer with the output shape of each step, for a table (headers
    and words in the session's language)."""
    hf, wf = feature_size
    c_in = head.conv.in_channels
    mid = head.conv.out_channels
    n_loc = head.loc.out_channels
    n_score = head.score.out_channels
    a = n_loc // 4
    n = hf * wf * a
    shared = (
        _("3×3 conv {c_in}→{mid}, padding 1, no ReLU (bug B6 on)")
        if params.bug_b6_no_relu
        else _("3×3 conv {c_in}→{mid}, padding 1, + ReLU")
    ).format(c_in=c_in, mid=mid)
    rows = [
        (_("input: VGG16 conv5_3 features"), "", f"(1, {c_in}, {hf}, {wf})", ""),
        (_("shared conv"), shared, f"(1, {mid}, {hf}, {wf})", f"{_count(head.conv):,}"),
        (
            _("box deltas"),
            _("1×1 conv {mid}→A·4 = {n}").format(mid=mid, n=n_loc),
            f"(1, {n_loc}, {hf}, {wf})",
            f"{_count(head.loc):,}",
        ),
        (
            _("objectness logits"),
            _("1×1 conv {mid}→A·2 = {n}").format(mid=mid, n=n_score),
            f"(1, {n_score}, {hf}, {wf})",
            f"{_count(head.score):,}",
        ),
        (_("deltas per anchor"), "permute(0, 2, 3, 1).reshape(-1, 4)", f"({n}, 4)", ""),
        (_("logits per anchor"), "permute(0, 2, 3, 1).reshape(-1, 2)", f"({n}, 2)", ""),
        (
            _("objectness"),
            _("softmax over (background, object), take column 1"),
            f"({n},)",
            "",
        ),
    ]
    header = (_("step"), _("operation"), _("output shape"), _("weights"))
    return [dict(zip(header, row, strict=True)) for row in rows]


def reshape_code(feature_size: tuple[int, int], anchors_per_cell: int) -> str:
    """The permute / reshape with this image's numbers, as Python for ``st.code``."""
    hf, wf = feature_size
    a = anchors_per_cell
    n = hf * wf * a
    return (
        f"locs = loc(x)                         # (1, {a * 4}, {hf}, {wf})\n"
        f"locs = locs.permute(0, 2, 3, 1)       # (1, {hf}, {wf}, {a * 4})\n"
        f"locs = locs.reshape(-1, 4)            # ({n}, 4)\n"
        f"scores = score(x)                     # (1, {a * 2}, {hf}, {wf})\n"
        f"scores = scores.permute(0, 2, 3, 1).reshape(-1, 2)  # ({n}, 2)\n"
        f"objectness = scores.softmax(dim=1)[:, 1]            # ({n},)"
    )


def objectness_maps(
    objectness: torch.Tensor, feature_size: tuple[int, int], per_cell: int
) -> np.ndarray:
    """Object probability of every anchor (Tensor[N], :attr:`RPNOutput.objectness`) as
    [A, Hf, Wf]."""
    hf, wf = feature_size
    p = objectness.float().cpu()
    return p.reshape(hf, wf, per_cell).permute(2, 0, 1).numpy()  # (Hf*Wf*A) -> (A, Hf, Wf)


def objectness_heatmaps(
    maps: np.ndarray, params: AnchorParams, stride: int, stretch: bool = False, title: str = ""
) -> go.Figure:
    """One heatmap per anchor shape (rows: ratio, columns: scale) on one colour scale:
    0..1, or the data's range when ``stretch`` (to see the small variations of a fresh head)."""
    zmin, zmax = (float(np.nanmin(maps)), float(np.nanmax(maps))) if stretch else (0.0, 1.0)
    if zmax <= zmin:
        zmax = zmin + 1e-6
    return shape_heatmaps(
        maps,
        params,
        stride,
        zmin=zmin,
        zmax=zmax,
        # A plotly template, not a format string: %{x} stays for plotly.
        hover=_("cell x %{x}, y %{y}: p(object) %{z:.4f}"),
        colorbar=_("p(object)"),
        title=title,
    )


def objectness_histogram(objectness: torch.Tensor, bins: int = 60) -> go.Figure:
    """How the object probabilities of all N anchors are spread (binned here: 60 bars to send,
    not N values)."""
    p = objectness.float().cpu().numpy()
    counts, edges = np.histogram(p, bins=bins)
    centres = (edges[:-1] + edges[1:]) / 2
    fig = go.Figure(
        go.Bar(
            x=centres,
            y=counts,
            width=float(edges[1] - edges[0]),
            marker_color=PROPOSAL_COLOUR,
            hovertemplate=_("p(object) ≈ %{x:.4f}: %{y} anchors") + "<extra></extra>",
        )
    )
    fig.update_layout(
        height=260,
        margin=dict(l=0, r=0, t=30, b=0),
        title=dict(
            text=_("p(object) of all {n} anchors").format(n=number(p.size)),
            x=0.01,
            font=dict(size=13),
        ),
        xaxis_title=_("p(object)"),
        yaxis_title=_("anchors"),
        bargap=0.0,
    )
    return fig


@dataclass(frozen=True)
class TopBoxes:
    """The ``k`` anchors with the highest object probability and their predicted boxes.

    Attributes:
        index (Tensor[k]): anchor indices, best first.
        scores (Tensor[k]): their object probabilities.
        anchors (Tensor[k, 4]): the anchors, (x1, y1, x2, y2).
        boxes (Tensor[k, 4]): anchors moved by the predicted deltas and clipped to the image.
    """

    index: torch.Tensor
    scores: torch.Tensor
    anchors: torch.Tensor
    boxes: torch.Tensor


def top_boxes(
    anchors: torch.Tensor,
    rpn: RPNOutput,
    objectness: torch.Tensor,
    image_size: tuple[int, int],
    k: int,
    scale_clamp: float,
) -> TopBoxes:
    """Decode and clip the ``k`` anchors of highest ``objectness`` (Tensor[N]); no size
    filter, no NMS: that is the proposal layer's job."""
    scores = objectness.float().cpu()
    k = max(0, min(k, scores.numel()))
    top = torch.topk(scores, k, sorted=True)
    chosen = anchors.cpu().float()[top.indices]
    deltas = rpn.locs.detach().float().cpu()[top.indices]
    boxes = clip_boxes_to_image(decode(chosen, deltas, scale_clamp), image_size)
    return TopBoxes(top.indices, top.values, chosen, boxes)


def largest_shift(top: TopBoxes, image_size: tuple[int, int]) -> float:
    """How far (px) the head moved any edge of the drawn boxes, both clipped to the image."""
    if top.index.numel() == 0:
        return 0.0
    anchors = clip_boxes_to_image(top.anchors, image_size)
    return float((top.boxes - anchors).abs().max())


def top_boxes_figure(
    pixels: np.ndarray,
    top: TopBoxes,
    gt_boxes: torch.Tensor,
    gt_labels: tuple[str, ...],
    show_anchors: bool = True,
) -> go.Figure:
    """The top-scoring predicted boxes (one trace) over the dimmed image, optionally with the
    anchors they were decoded from (dashed) to show how far the head moved them."""
    fig = image_figure(pixels, dim=0.6)
    n = top.index.numel()
    if show_anchors and n:
        add_boxes(fig, top.anchors, IGNORED_COLOUR, _("their anchors"), 1, 0.7, dash="dot")
    line = _("#{rank}: anchor {i}, p(object) {p:.4f}")
    hover = [
        line.format(rank=rank + 1, i=i, p=s)
        for rank, (i, s) in enumerate(zip(top.index.tolist(), top.scores.tolist(), strict=True))
    ]
    name = _("top {n} predicted boxes").format(n=n)
    add_boxes(fig, top.boxes, PROPOSAL_COLOUR, name, 1.5, 0.9, hover)
    add_gt(fig, gt_boxes, gt_labels)
    return fig


def top_boxes_table(
    top: TopBoxes,
    rpn: RPNOutput,
    feature_size: tuple[int, int],
    params: AnchorParams,
    stride: int,
    rows: int,
) -> list[dict[str, object]]:
    """The best ``rows`` anchors: where they sit (cell, shape) and what the head said."""
    wf = feature_size[1]
    a_count = params.per_cell
    names = shape_names(params, stride)
    logits = rpn.scores.detach().float().cpu()
    deltas = rpn.locs.detach().float().cpu()
    header = (
        _("rank"),
        _("anchor"),
        _("cell (iy, ix)"),
        _("shape a"),
        _("logits (bg, obj)"),
        _("p(object)"),
        _("deltas (dx, dy, dw, dh)"),
    )
    out = []
    for rank, (i, p) in enumerate(
        zip(top.index[:rows].tolist(), top.scores.tolist(), strict=False)
    ):
        cell, a = divmod(i, a_count)
        iy, ix = divmod(cell, wf)
        dx, dy, dw, dh = deltas[i].tolist()
        row = (
            rank + 1,
            i,
            f"({iy}, {ix})",
            f"{a}: {names[a]}",
            f"({logits[i, 0]:.3f}, {logits[i, 1]:.3f})",
            round(p, 4),
            f"({dx:.3f}, {dy:.3f}, {dw:.3f}, {dh:.3f})",
        )
        out.append(dict(zip(header, row, strict=True)))
    return out


def zero_delta_loc_sum(labels: torch.Tensor, targets: torch.Tensor, beta: float) -> float:
    """The smooth-L1 sum over the positives if the head predicted all-zero deltas (its anchors
    unchanged): the reference the trained head should beat (SPEC: 5.199 on the zebras)."""
    pos = labels.cpu() == 1
    t = targets.cpu().float()[pos]
    return float(smooth_l1_sum(torch.zeros_like(t), t, beta))


RPN_LOSS_FORMULA = (
    r"L_{\mathrm{RPN}} = \frac{1}{N_{\mathrm{cls}}} \sum_{i \in \mathrm{sampled}}"
    r" \mathrm{CE}\big(s_i, p_i^*\big)"
    r" + \frac{\lambda}{N_{\mathrm{pos}}} \sum_{i:\, p_i^* = 1}"
    r" \mathrm{smoothL1}_{\beta}\big(t_i - t_i^*\big)"
)


def loss_numbers_latex(loss: RPNLoss, loss_lambda: float) -> str:
    """The formula with this image's numbers substituted."""
    cls = float(loss.cls)
    loc = float(loss.loc)
    loc_sum = float(loss.loc_sum)
    n_pos = max(loss.n_pos, 1)
    return (
        rf"L_{{\mathrm{{RPN}}}} = {cls:.4f} + \frac{{{loss_lambda:g}}}{{{n_pos}}}"
        rf" \times {loc_sum:.4f} = {cls:.4f} + {loc:.4f} = {cls + loc:.4f}"
    )
