"""Figures of stage 9, the proposal layer: a funnel of box counts and before / after views of
each step (decode, clip, min size, pre-NMS top-N, NMS, post-NMS top-N).

Shape letters: N anchors, M boxes after the size filter, P pre-NMS, Q after NMS, R kept.
"""

from __future__ import annotations

import math
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
from explorer.views.inspect import PARTNER_COLOUR, PICKED_COLOUR, centre_markers, clickable
from frcnn_core.anchors import AnchorParams, anchor_position
from frcnn_core.i18n import N_, _
from frcnn_core.proposals import BoxFate, ProposalParams, ProposalResult

# The steps' ids (BoxFate.removed_at, the page's radio values): shown as _(step).
STEPS = (
    N_("decode"),
    N_("clip"),
    N_("min size"),
    N_("pre-NMS top-N"),
    N_("NMS"),
    N_("post-NMS top-N"),
)
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
    """Box counts through the pipeline, anchors to sampled RoIs (labels and notes in the
    session's language).

    The inside-the-image count is a side branch (it feeds the RPN loss only), marked so."""
    c = result.counts()
    pre_n, post_n = result.pre_nms_n, result.post_nms_n
    stages = [
        FunnelStage(_("anchors"), total_anchors, FUNNEL_MAIN, _("every anchor of the grid")),
        FunnelStage(
            _("inside the image (RPN loss only)"),
            inside_anchors,
            FUNNEL_SIDE,
            _("labelled for the RPN loss; the proposal layer uses all anchors"),
        ),
        FunnelStage(
            _("decoded + clipped"),
            c["decoded"],
            FUNNEL_MAIN,
            _("all anchors, moved and clipped"),
        ),
        FunnelStage(
            _("at least {size:g} px").format(size=params.min_size),
            c["after_min_size"],
            FUNNEL_MAIN,
            _("boxes narrower or shorter than min size dropped"),
        ),
        FunnelStage(
            _("pre-NMS top {n:,}").format(n=pre_n),
            c["pre_nms"],
            FUNNEL_MAIN,
            _("highest object probability"),
        ),
        FunnelStage(
            _("after NMS (IoU {iou:g})").format(iou=params.nms_iou),
            c["after_nms"],
            FUNNEL_MAIN,
            _("overlaps removed"),
        ),
        FunnelStage(
            _("post-NMS top {n:,}").format(n=post_n),
            c["kept"],
            FUNNEL_MAIN,
            _("the proposals (RoIs)"),
        ),
    ]
    if sampled_rois is not None:
        stages.append(
            FunnelStage(
                _("sampled RoIs (training)"),
                sampled_rois,
                FUNNEL_ROI,
                _("RoIs the head is trained on"),
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
        title=dict(text=_("Boxes left after each step"), x=0.01, font=dict(size=14)),
    )
    return fig


@dataclass(frozen=True)
class StepView:
    """One step of the proposal layer as a before / after pair.

    Attributes:
        step: which of :data:`STEPS`.
        before_index, after_index (Tensor[*]): anchor indices of the boxes to draw, best score
            first (already cut to the number to draw).
        removed_index (Tensor[*]): anchor indices of boxes this step removed, drawn in red on
            the "before" side.
        before_source, after_source (Tensor[N, 4]): every anchor's box as each side draws it
            (anchors, decoded or clipped boxes).
        scores (Tensor[N]): every box's ranking score.
        n_before, n_after, n_removed: the full counts (before cutting to the number to draw).
        before_title, after_title, removed_name: labels.
        explanation: what the step does, one sentence.
        frame: extend the axes to show boxes outside the image (the decoded boxes).
    """

    step: str
    before_index: torch.Tensor
    after_index: torch.Tensor
    removed_index: torch.Tensor
    before_source: torch.Tensor
    after_source: torch.Tensor
    scores: torch.Tensor
    n_before: int
    n_after: int
    n_removed: int
    before_title: str
    after_title: str
    removed_name: str
    explanation: str
    frame: bool = False

    @property
    def before(self) -> torch.Tensor:
        """Tensor[*, 4]: the "before" boxes to draw."""
        return self.before_source[self.before_index]

    @property
    def after(self) -> torch.Tensor:
        """Tensor[*, 4]: the "after" boxes to draw."""
        return self.after_source[self.after_index]

    @property
    def removed(self) -> torch.Tensor:
        """Tensor[*, 4]: the removed boxes to draw (as the "before" side shows them)."""
        return self.before_source[self.removed_index]

    def shows(self, fate: BoxFate, side: str) -> bool:
        """Whether the box of ``fate`` is among this step's "before" or "after" boxes (drawn
        or not): it reached the step, and for "after" also survived it."""
        gone = STEPS.index(fate.removed_at) if fate.removed_at else len(STEPS)
        here = STEPS.index(self.step)
        return gone >= here if side == "before" else gone > here


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
    """The boxes before and after ``step`` (one of :data:`STEPS`), at most ``n_draw`` each;
    titles and explanation in the session's language."""
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
    none = torch.zeros(0, dtype=torch.int64)
    common = dict(step=step, scores=scores)
    if step in ("decode", "clip", "min size"):
        everyone = torch.argsort(scores, descending=True, stable=True)
    if step == "decode":
        top = everyone[:n_draw]
        return StepView(
            **common,
            before_index=top,
            after_index=top,
            removed_index=none,
            before_source=anchors,
            after_source=decoded,
            n_before=n_all,
            n_after=n_all,
            n_removed=0,
            before_title=_("anchors"),
            after_title=_("decoded boxes"),
            removed_name="",
            explanation=_(
                "Every anchor is moved by its predicted deltas (dx, dy, dw, dh); dw and dh are "
                "clamped at log(1000/16) so exp() cannot explode. Nothing is removed."
            ),
            frame=True,
        )
    if step == "clip":
        top = everyone[:n_draw]
        return StepView(
            **common,
            before_index=top,
            after_index=top,
            removed_index=none,
            before_source=decoded,
            after_source=clipped,
            n_before=n_all,
            n_after=n_all,
            n_removed=0,
            before_title=_("decoded boxes"),
            after_title=_("clipped to the image"),
            removed_name="",
            explanation=_(
                "Edges that stick out of the image are moved onto its border. Nothing is removed."
            ),
            frame=True,
        )
    if step == "min size":
        dropped = torch.ones(n_all, dtype=torch.bool)
        dropped[size_keep] = False
        removed = _by_score(torch.nonzero(dropped).squeeze(1), scores)
        return StepView(
            **common,
            before_index=everyone[:n_draw],
            after_index=_by_score(size_keep, scores)[:n_draw],
            removed_index=removed[:n_draw],
            before_source=clipped,
            after_source=clipped,
            n_before=n_all,
            n_after=size_keep.numel(),
            n_removed=removed.numel(),
            before_title=_("clipped boxes"),
            after_title=_("at least {size:g} px wide and tall").format(size=params.min_size),
            removed_name=_("under {size:g} px").format(size=params.min_size),
            explanation=_(
                "Boxes narrower or shorter than {size:g} px (mostly anchors squeezed by "
                "clipping at the border) are dropped."
            ).format(size=params.min_size),
        )
    if step == "pre-NMS top-N":
        ranked = _by_score(size_keep, scores)
        removed = ranked[pre.numel() :]
        return StepView(
            **common,
            before_index=ranked[:n_draw],
            after_index=pre[:n_draw],
            removed_index=removed[:n_draw],
            before_source=clipped,
            after_source=clipped,
            n_before=ranked.numel(),
            n_after=pre.numel(),
            n_removed=removed.numel(),
            before_title=_("after min size"),
            after_title=_("top {n:,} by score").format(n=pre_n),
            removed_name=_("lowest scores, cut"),
            explanation=_(
                "Boxes are ranked by object probability and only the best {n:,} go on to NMS, "
                "the slow step."
            ).format(n=pre_n),
        )
    if step == "NMS":
        survived = torch.zeros(pre.numel(), dtype=torch.bool)
        survived[result.nms_keep.cpu()] = True
        removed = pre[~survived]  # still best score first
        return StepView(
            **common,
            before_index=pre[:n_draw],
            after_index=after_nms[:n_draw],
            removed_index=removed[:n_draw],
            before_source=clipped,
            after_source=clipped,
            n_before=pre.numel(),
            n_after=after_nms.numel(),
            n_removed=removed.numel(),
            before_title=_("before NMS"),
            after_title=_("after NMS"),
            removed_name=_("suppressed"),
            explanation=_(
                "Visiting boxes best first, NMS keeps a box and deletes every later box that "
                "overlaps it with IoU > {iou:g}: near-duplicates vanish and the survivors spread "
                "over the image."
            ).format(iou=params.nms_iou),
        )
    if step == "post-NMS top-N":
        removed = after_nms[kept.numel() :]
        return StepView(
            **common,
            before_index=after_nms[:n_draw],
            after_index=kept[:n_draw],
            removed_index=removed[:n_draw],
            before_source=clipped,
            after_source=clipped,
            n_before=after_nms.numel(),
            n_after=kept.numel(),
            n_removed=removed.numel(),
            before_title=_("after NMS"),
            after_title=_("top {n:,}: the proposals").format(n=post_n),
            removed_name=_("lowest scores, cut"),
            explanation=_(
                "The best {n:,} survivors of NMS are the proposals (RoIs), passed on to RoI "
                "sampling (training) or to the detection head (test)."
            ).format(n=post_n),
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


def _marker_text(view: StepView, index: torch.Tensor, removed: list[bool]) -> list[str]:
    scores = view.scores[index].tolist()
    kept = _("anchor #{i} · score {score:.4f}")
    gone = _("anchor #{i} · score {score:.4f} · removed: {reason}")
    return [
        (gone if r else kept).format(i=i, score=v, reason=view.removed_name)
        for i, v, r in zip(index.tolist(), scores, removed, strict=True)
    ]


def step_figures(
    pixels: np.ndarray,
    view: StepView,
    gt_boxes: torch.Tensor,
    gt_labels: tuple[str, ...],
    height: int = 460,
    picked: BoxFate | None = None,
    suppressor: BoxFate | None = None,
) -> tuple[go.Figure, go.Figure]:
    """The "before" and "after" images of one step, each box set one SVG trace, with a
    clickable marker at each drawn box's centre (``customdata``: its anchor index).

    ``picked`` (dashed white) and the box that suppressed it in NMS (``suppressor``, orange)
    are outlined on each side that holds them."""
    size = pixels.shape[:2]
    figs = []
    for side in ("before", "after"):
        boxes = view.before if side == "before" else view.after
        index = view.before_index if side == "before" else view.after_index
        source = view.before_source if side == "before" else view.after_source
        total = view.n_before if side == "before" else view.n_after
        title = view.before_title if side == "before" else view.after_title
        fig = image_figure(
            pixels,
            height=height,
            dim=0.55,
            title=_("{title}: {n:,} boxes").format(title=title, n=total),
        )
        drawn = boxes.shape[0]
        shown = (_("best {n:,} drawn") if drawn < total else _("{n:,} drawn")).format(n=drawn)
        add_boxes(fig, boxes, PROPOSAL_COLOUR, shown, 1.0, 0.6, _hover(drawn))
        if drawn:
            best = min(drawn, 10)
            name = _("best {n}").format(n=best)
            add_boxes(fig, boxes[:best], ACCENT_COLOUR, name, 2.5, 1.0, _hover(best))
        colours = [PROPOSAL_COLOUR] * drawn
        if side == "before" and view.removed_index.numel():
            n = view.removed_index.numel()
            name = (
                _("{reason}: {n:,} ({drawn:,} drawn)") if n < view.n_removed else "{reason}: {n:,}"
            ).format(reason=view.removed_name, n=view.n_removed, drawn=n)
            add_boxes(fig, view.removed, NEGATIVE_COLOUR, name, 1.0, 0.8)
            # The removed boxes' markers too (red), each box once.
            extra = view.removed_index[~torch.isin(view.removed_index, index)]
            in_removed = torch.isin(index, view.removed_index).tolist()
            colours = [NEGATIVE_COLOUR if r else PROPOSAL_COLOUR for r in in_removed]
            colours += [NEGATIVE_COLOUR] * extra.numel()
            index = torch.cat((index, extra))
        add_gt(fig, gt_boxes, gt_labels)
        for fate, colour, label in (
            (suppressor, PARTNER_COLOUR, _("suppressed it: anchor #{n}")),
            (picked, PICKED_COLOUR, _("picked box: anchor #{n}")),
        ):
            if fate is not None and view.shows(fate, side):
                box = source[fate.anchor : fate.anchor + 1]
                name = label.format(n=fate.anchor)
                add_boxes(fig, box, colour, name, 3, 1.0, dash="dash" if fate is picked else None)
        if index.numel():
            fig.add_trace(
                centre_markers(
                    source[index],
                    index,
                    _marker_text(view, index, [c == NEGATIVE_COLOUR for c in colours]),
                    colours,
                    _("box centres (click one to inspect it)"),
                    size=6,
                    escape=False,  # numbers only
                )
            )
        # The legend below the picture: above it, its rows (more with a picked box) would run
        # into the title.
        fig.update_layout(
            margin=dict(t=36, b=8),
            title=dict(y=0.99, yanchor="top"),
            legend=dict(orientation="h", yanchor="top", y=-0.06, xanchor="left", x=0),
        )
        if view.frame:
            _framed(fig, [view.before, view.after], size)
            h, w = size
            border = torch.tensor([[0.0, 0.0, w, h]])
            add_boxes(fig, border, IGNORED_COLOUR, _("image border"), 1)
        figs.append(clickable(fig))
    return figs[0], figs[1]


def step_caption(view: StepView) -> str:
    """What the colours of :func:`step_figures` mean (red only where this step removed boxes)."""
    if view.removed_index.numel():
        return _(
            "Cyan: the boxes drawn; purple: the 10 best-scored of each view; red (left): boxes "
            "this step removed ({reason}); yellow: ground truth. Click a box's centre dot to "
            "inspect it: dashed white is the picked box, orange the box that suppressed it in "
            "NMS."
        ).format(reason=view.removed_name)
    return _(
        "Cyan: the boxes drawn; purple: the 10 best-scored of each view; yellow: ground truth. "
        "Click a box's centre dot to inspect it: dashed white is the picked box, orange the box "
        "that suppressed it in NMS."
    )


def anchor_line(
    index: int, feature_size: tuple[int, int], params: AnchorParams, stride: int
) -> str:
    """``Anchor #9513: cell (iy 21, ix 7), shape a = 4 (ratio 1, scale 16: 256 × 256 px)``."""
    iy, ix, a = anchor_position(index, feature_size, params)
    ri, si = divmod(a, len(params.scales))
    ratio, scale = params.ratios[ri], params.scales[si]
    # The base anchor of ratio h/w and scale s: w = stride * s / sqrt(r), h = stride * s * sqrt(r).
    w, h = stride * scale / math.sqrt(ratio), stride * scale * math.sqrt(ratio)
    return _(
        "**Anchor #{index}**: cell (iy {iy}, ix {ix}), shape a = {a} (ratio {ratio:g}, scale "
        "{scale:g}: {w:.0f} × {h:.0f} px)"
    ).format(index=index, iy=iy, ix=ix, a=a, ratio=ratio, scale=scale, w=w, h=h)


def _box_text(box: torch.Tensor) -> str:
    x1, y1, x2, y2 = box.tolist()
    return f"({x1:.1f}, {y1:.1f}, {x2:.1f}, {y2:.1f})"


def fate_lines(
    fate: BoxFate,
    result: ProposalResult,
    params: ProposalParams,
    anchors: torch.Tensor,
) -> list[str]:
    """Markdown lines in the session's language: the box's score, what each step did with it,
    and its boxes.

    Args:
        fate: :func:`frcnn_core.proposals.box_fate` of the box.
        anchors (Tensor[N, 4]): every anchor.
    """
    n = fate.anchor
    entering = fate.pre_nms_rank >= 0
    if params.bug_b7_logit_rank:
        score = (
            _(
                "Score: object logit {score:.4f} (bug B7), rank {rank:,} of the {n:,} boxes "
                "entering NMS."
            )
            if entering
            else _("Score: object logit {score:.4f} (bug B7).")
        )
    else:
        score = (
            _("Score: p(object) = {score:.4f}, rank {rank:,} of the {n:,} boxes entering NMS.")
            if entering
            else _("Score: p(object) = {score:.4f}.")
        )
    lines = [
        score.format(score=fate.score, rank=fate.pre_nms_rank + 1, n=result.pre_nms_index.numel())
    ]
    if fate.removed_at == "":
        lines.append(
            _("**Kept**: proposal {i} of {n:,}; it survives every step.").format(
                i=fate.proposal, n=result.keep_index.numel()
            )
        )
    elif fate.removed_at == "min size":
        x1, y1, x2, y2 = result.clipped[n].tolist()
        lines.append(
            _(
                "**Removed at min size**: clipped, it is {w:.1f} × {h:.1f} px, under {size:g} px."
            ).format(w=x2 - x1, h=y2 - y1, size=params.min_size)
        )
    elif fate.removed_at == "pre-NMS top-N":
        lines.append(
            _(
                "**Cut before NMS**: not among the {n:,} best-scored boxes that go on to NMS."
            ).format(n=result.pre_nms_n)
        )
    elif fate.removed_at == "NMS":
        if fate.suppressor >= 0:
            message = (
                _(
                    "**Suppressed by NMS**: the box of anchor #{other} (score {score:.4f}), "
                    "kept before it (NMS visits boxes by anchor index (bug B8)), overlaps it at "
                    "IoU **{iou:.3f}** > {threshold:g}. It is outlined in orange."
                )
                if params.bug_b8_index_order
                else _(
                    "**Suppressed by NMS**: the box of anchor #{other} (score {score:.4f}), "
                    "kept before it (NMS visits boxes best score first), overlaps it at IoU "
                    "**{iou:.3f}** > {threshold:g}. It is outlined in orange."
                )
            )
            lines.append(
                message.format(
                    other=fate.suppressor,
                    score=float(result.rank_scores[fate.suppressor]),
                    iou=fate.suppressor_iou,
                    threshold=params.nms_iou,
                )
            )
        else:
            lines.append(
                _(
                    "**Suppressed by NMS**: a kept box overlaps it at IoU {threshold:g}, equal "
                    "to the threshold within rounding."
                ).format(threshold=params.nms_iou)
            )
    else:
        lines.append(
            _(
                "**Cut after NMS**: it survives NMS, but only the {n:,} best survivors are kept."
            ).format(n=result.post_nms_n)
        )
    lines.append(
        _("Anchor {anchor} → decoded {decoded} → clipped {clipped}.").format(
            anchor=_box_text(anchors[n].float().cpu()),
            decoded=_box_text(result.decoded[n].cpu()),
            clipped=_box_text(result.clipped[n].cpu()),
        )
    )
    return lines
