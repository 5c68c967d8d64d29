"""Figures of stage 9, the proposal layer: a funnel of box counts and before / after views of
each step (decode, clip, min size, pre-NMS top-N, NMS, post-NMS top-N).

Shape letters: N anchors, M boxes after the size filter, P pre-NMS, Q after NMS, R kept.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import plotly.graph_objects as go
import torch

from explorer.figures import (
    ACCENT_COLOUR,
    IGNORED_COLOUR,
    NEGATIVE_COLOUR,
    PROPOSAL_COLOUR,
    add_boxes,
    add_gt,
    image_figure,
)
from frcnn_core.proposals import ProposalParams, ProposalResult

STEPS = ("decode", "clip", "min size", "pre-NMS top-N", "NMS", "post-NMS top-N")
FUNNEL_MAIN = "#0891B2"
FUNNEL_SIDE = "#CBD5E1"
FUNNEL_ROI = "#F97316"


@dataclass(frozen=True)
class FunnelStage:
    label: str
    count: int
    colour: str
    note: str


def funnel_stages(
    result: ProposalResult,
    total_anchors: int,
    inside_anchors: int,
    params: ProposalParams,
    sampled_rois: int | None,
) -> list[FunnelStage]:
    """Box counts through the pipeline, anchors to sampled RoIs.

    The inside-the-image count is a side branch (it feeds the RPN loss only), marked so."""
    c = result.counts()
    pre_n, post_n = result.pre_nms_n, result.post_nms_n
    stages = [
        FunnelStage("anchors", total_anchors, FUNNEL_MAIN, "every anchor of the grid"),
        FunnelStage(
            "inside the image (RPN loss only)",
            inside_anchors,
            FUNNEL_SIDE,
            "labelled for the RPN loss; the proposal layer uses all anchors",
        ),
        FunnelStage(
            "decoded + clipped", c["decoded"], FUNNEL_MAIN, "all anchors, moved and clipped"
        ),
        FunnelStage(
            f"at least {params.min_size:g} px",
            c["after_min_size"],
            FUNNEL_MAIN,
            "boxes narrower or shorter than min size dropped",
        ),
        FunnelStage(
            f"pre-NMS top {pre_n:,}", c["pre_nms"], FUNNEL_MAIN, "highest object probability"
        ),
        FunnelStage(
            f"after NMS (IoU {params.nms_iou:g})", c["after_nms"], FUNNEL_MAIN, "overlaps removed"
        ),
        FunnelStage(f"post-NMS top {post_n:,}", c["kept"], FUNNEL_MAIN, "the proposals (RoIs)"),
    ]
    if sampled_rois is not None:
        stages.append(
            FunnelStage(
                "sampled RoIs (training)", sampled_rois, FUNNEL_ROI, "RoIs the head is trained on"
            )
        )
    return stages


def funnel_figure(stages: list[FunnelStage]) -> go.Figure:
    fig = go.Figure(
        go.Funnel(
            y=[f"{s.label}: {s.count:,}" for s in stages],
            x=[s.count for s in stages],
            marker=dict(color=[s.colour for s in stages]),
            textinfo="none",
            customdata=[s.note for s in stages],
            hovertemplate="%{y}<br>%{customdata}<extra></extra>",
            connector=dict(line=dict(color="#94A3B8", width=1)),
        )
    )
    fig.update_layout(
        height=60 + 44 * len(stages),
        margin=dict(l=0, r=0, t=30, b=0),
        title=dict(text="Boxes left after each step", x=0.01, font=dict(size=14)),
    )
    return fig


@dataclass(frozen=True)
class StepView:
    """One step of the proposal layer as a before / after pair.

    Attributes:
        before, after (Tensor[*, 4]): boxes to draw, best score first (already cut to the
            number to draw).
        removed (Tensor[*, 4]): boxes this step removed, drawn in red on the "before" side.
        n_before, n_after, n_removed: the full counts (before cutting to the number to draw).
        before_title, after_title, removed_name: labels.
        explanation: what the step does, one sentence.
        frame: extend the axes to show boxes outside the image (the decoded boxes).
    """

    before: torch.Tensor
    after: torch.Tensor
    removed: torch.Tensor
    n_before: int
    n_after: int
    n_removed: int
    before_title: str
    after_title: str
    removed_name: str
    explanation: str
    frame: bool = False


def _by_score(index: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
    """``index`` reordered best score first."""
    if index.numel() == 0:
        return index
    return index[torch.argsort(scores[index], descending=True, stable=True)]


def step_view(
    result: ProposalResult,
    anchors: torch.Tensor,
    params: ProposalParams,
    step: str,
    n_draw: int,
) -> StepView:
    """The boxes before and after ``step`` (one of :data:`STEPS`), at most ``n_draw`` each."""
    scores = result.rank_scores.cpu()
    n_all = scores.numel()
    pre_n, post_n = result.pre_nms_n, result.post_nms_n
    anchors = anchors.cpu().float()
    decoded = result.decoded.cpu()
    clipped = result.clipped.cpu()
    size_keep = result.size_keep.cpu()
    pre = result.pre_nms_index.cpu()
    after_nms = pre[result.nms_keep.cpu()]
    kept = result.keep_index.cpu()
    empty = anchors.new_zeros((0, 4))
    if step in ("decode", "clip", "min size"):
        everyone = torch.argsort(scores, descending=True, stable=True)
    if step == "decode":
        top = everyone[:n_draw]
        return StepView(
            before=anchors[top],
            after=decoded[top],
            removed=empty,
            n_before=n_all,
            n_after=n_all,
            n_removed=0,
            before_title="anchors",
            after_title="decoded boxes",
            removed_name="",
            explanation="Every anchor is moved by its predicted deltas (dx, dy, dw, dh); dw and "
            "dh are clamped at log(1000/16) so exp() cannot explode. Nothing is removed.",
            frame=True,
        )
    if step == "clip":
        top = everyone[:n_draw]
        return StepView(
            before=decoded[top],
            after=clipped[top],
            removed=empty,
            n_before=n_all,
            n_after=n_all,
            n_removed=0,
            before_title="decoded boxes",
            after_title="clipped to the image",
            removed_name="",
            explanation="Edges that stick out of the image are moved onto its border. Nothing "
            "is removed.",
            frame=True,
        )
    if step == "min size":
        dropped = torch.ones(n_all, dtype=torch.bool)
        dropped[size_keep] = False
        removed = _by_score(torch.nonzero(dropped).squeeze(1), scores)
        return StepView(
            before=clipped[everyone[:n_draw]],
            after=clipped[_by_score(size_keep, scores)[:n_draw]],
            removed=clipped[removed[:n_draw]],
            n_before=n_all,
            n_after=size_keep.numel(),
            n_removed=removed.numel(),
            before_title="clipped boxes",
            after_title=f"at least {params.min_size:g} px wide and tall",
            removed_name=f"under {params.min_size:g} px",
            explanation=f"Boxes narrower or shorter than {params.min_size:g} px (mostly anchors "
            "squeezed by clipping at the border) are dropped.",
        )
    if step == "pre-NMS top-N":
        ranked = _by_score(size_keep, scores)
        removed = ranked[pre.numel() :]
        return StepView(
            before=clipped[ranked[:n_draw]],
            after=clipped[pre[:n_draw]],
            removed=clipped[removed[:n_draw]],
            n_before=ranked.numel(),
            n_after=pre.numel(),
            n_removed=removed.numel(),
            before_title="after min size",
            after_title=f"top {pre_n:,} by score",
            removed_name="lowest scores, cut",
            explanation=f"Boxes are ranked by object probability and only the best {pre_n:,} "
            "go on to NMS, the slow step.",
        )
    if step == "NMS":
        return StepView(
            before=clipped[pre[:n_draw]],
            after=clipped[after_nms[:n_draw]],
            removed=empty,
            n_before=pre.numel(),
            n_after=after_nms.numel(),
            n_removed=pre.numel() - after_nms.numel(),
            before_title="before NMS",
            after_title="after NMS",
            removed_name="suppressed",
            explanation="Visiting boxes best first, NMS keeps a box and deletes every later box "
            f"that overlaps it with IoU > {params.nms_iou:g}: near-duplicates vanish and the "
            "survivors spread over the image.",
        )
    if step == "post-NMS top-N":
        removed = after_nms[kept.numel() :]
        return StepView(
            before=clipped[after_nms[:n_draw]],
            after=clipped[kept[:n_draw]],
            removed=clipped[removed[:n_draw]],
            n_before=after_nms.numel(),
            n_after=kept.numel(),
            n_removed=removed.numel(),
            before_title="after NMS",
            after_title=f"top {post_n:,}: the proposals",
            removed_name="lowest scores, cut",
            explanation=f"The best {post_n:,} survivors of NMS are the proposals (RoIs), passed "
            "on to RoI sampling (training) or to the detection head (test).",
        )
    raise ValueError(f"unknown step {step!r}")


def _framed(fig: go.Figure, boxes: list[torch.Tensor], size: tuple[int, int]) -> None:
    """Widen the axes so boxes that stick out of the image stay visible."""
    h, w = size
    stacked = torch.cat([b.reshape(-1, 4) for b in boxes]) if boxes else torch.zeros((0, 4))
    if stacked.numel() == 0:
        return
    x0 = min(0.0, float(stacked[:, 0].min()))
    x1 = max(float(w), float(stacked[:, 2].max()))
    y0 = min(0.0, float(stacked[:, 1].min()))
    y1 = max(float(h), float(stacked[:, 3].max()))
    fig.update_xaxes(range=[x0 - 5, x1 + 5])
    fig.update_yaxes(range=[y1 + 5, y0 - 5])


def _hover(n: int, start: int = 1) -> list[str]:
    return [f"#{i}" for i in range(start, start + n)]


def step_figures(
    pixels: np.ndarray,
    view: StepView,
    gt_boxes: torch.Tensor,
    gt_labels: tuple[str, ...],
    height: int = 460,
) -> tuple[go.Figure, go.Figure]:
    """The "before" and "after" images of one step; each box set is one WebGL trace."""
    size = pixels.shape[:2]
    figs = []
    for side in ("before", "after"):
        boxes = view.before if side == "before" else view.after
        total = view.n_before if side == "before" else view.n_after
        title = view.before_title if side == "before" else view.after_title
        fig = image_figure(pixels, height=height, dim=0.55, title=f"{title}: {total:,} boxes")
        drawn = boxes.shape[0]
        shown = f"best {drawn:,} drawn" if drawn < total else f"{drawn:,} drawn"
        add_boxes(fig, boxes, PROPOSAL_COLOUR, shown, 1.0, 0.6, _hover(drawn))
        if drawn:
            best = min(drawn, 10)
            add_boxes(fig, boxes[:best], ACCENT_COLOUR, f"best {best}", 2.5, 1.0, _hover(best))
        if side == "before" and view.removed.shape[0]:
            n = view.removed.shape[0]
            name = f"{view.removed_name}: {view.n_removed:,}"
            if n < view.n_removed:
                name += f" ({n:,} drawn)"
            add_boxes(fig, view.removed, NEGATIVE_COLOUR, name, 1.0, 0.8)
        add_gt(fig, gt_boxes, gt_labels)
        # Room for the title above the legend (image_figure puts both at the top).
        fig.update_layout(margin=dict(t=64), title=dict(y=0.99, yanchor="top"))
        if view.frame:
            _framed(fig, [view.before, view.after], size)
            h, w = size
            add_boxes(fig, torch.tensor([[0.0, 0.0, w, h]]), IGNORED_COLOUR, "image border", 1)
        figs.append(fig)
    return figs[0], figs[1]
