"""Figures of stages 5 and 6: anchor labels on the image and IoU heatmaps per anchor shape."""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
import torch

from explorer.figures import (
    NEGATIVE_COLOUR,
    POSITIVE_COLOUR,
    add_boxes,
    add_gt,
    image_figure,
)
from explorer.text import plain, shown
from explorer.views.anchors import shape_heatmaps
from explorer.views.inspect import PICKED_COLOUR, centre_markers, clickable
from frcnn_core.anchor_targets import (
    AnchorOverlaps,
    AnchorTargetParams,
    AnchorTargetResult,
    LabelReason,
)
from frcnn_core.anchors import AnchorParams, AnchorResult
from frcnn_core.i18n import N_, _

# Shown through _() (in the session's language).
LABEL_NAMES = {1: N_("positive"), 0: N_("negative"), -1: N_("ignored")}


def drawn_anchors(
    targets: AnchorTargetResult, sampled: bool = True, max_negatives: int = 400
) -> tuple[torch.Tensor, torch.Tensor]:
    """The inside-anchor indices :func:`labels_figure` draws: (positives, negatives).

    Every positive; the negatives too, unless there are more than ``max_negatives`` (thousands
    of red outlines hide the picture): then a seeded subset of that many."""
    labels = (targets.labels if sampled else targets.labels_unsampled).cpu()
    neg = torch.nonzero(labels == 0).squeeze(1)
    if neg.numel() > max_negatives:
        pick = torch.randperm(neg.numel(), generator=torch.Generator().manual_seed(0))
        neg = neg[pick[:max_negatives]]
    return torch.nonzero(labels == 1).squeeze(1), neg


def anchor_names(
    grid: AnchorResult, targets: AnchorTargetResult, index: list[int]
) -> dict[int, str]:
    """A line per inside anchor, for a picker and for hover: ``anchor #9513 · positive ·
    IoU 0.712`` (the label before sampling; the number is the anchor's index in the grid)."""
    if not index:
        return {}
    rows = torch.tensor(index)
    numbers = grid.inside_index.cpu()[rows].tolist()
    labels = targets.labels_unsampled.cpu()[rows].tolist()
    ious = targets.max_iou.cpu()[rows].tolist()
    line = _("anchor #{n} · {label} · IoU {iou:.3f}")
    return {
        i: line.format(n=n, label=_(LABEL_NAMES[lab]), iou=v)
        for i, n, lab, v in zip(index, numbers, labels, ious, strict=True)
    }


def labels_figure(
    pixels: np.ndarray,
    grid: AnchorResult,
    targets: AnchorTargetResult,
    gt_boxes: torch.Tensor,
    gt_labels: tuple[str, ...],
    sampled: bool = True,
    max_negatives: int = 400,
    highlight: int | None = None,
) -> go.Figure:
    """Positive and negative anchors (sampled, or all labelled) over the dimmed image.

    A marker at each drawn anchor's centre carries its inside-anchor index (``customdata``),
    so a click can pick it (:mod:`explorer.views.inspect`)."""
    labels = targets.labels if sampled else targets.labels_unsampled
    inside = grid.inside_anchors.cpu()
    fig = image_figure(pixels, dim=0.6)
    pos, neg = drawn_anchors(targets, sampled, max_negatives)
    n_neg = int((labels == 0).sum())
    if neg.numel() < n_neg:
        negative = _("negative: {n} ({drawn} drawn)").format(n=n_neg, drawn=neg.numel())
    else:
        negative = _("negative: {n}").format(n=n_neg)
    add_boxes(fig, inside[neg], NEGATIVE_COLOUR, negative, 1, 0.5)
    names = anchor_names(grid, targets, pos.tolist() + neg.tolist())
    hover = [names[i] for i in pos.tolist()]
    positive = _("positive: {n}").format(n=pos.numel())
    add_boxes(fig, inside[pos], POSITIVE_COLOUR, positive, 2, 1.0, hover)
    add_gt(fig, gt_boxes, gt_labels)
    if highlight is not None:
        add_boxes(
            fig,
            inside[highlight : highlight + 1],
            PICKED_COLOUR,
            _("selected anchor"),
            3,
            1.0,
            dash="dash",
        )
    order = torch.cat((neg, pos))  # positives on top: drawn last
    if order.numel():
        fig.add_trace(
            centre_markers(
                inside[order],
                order,
                [names[i] for i in order.tolist()],
                [NEGATIVE_COLOUR] * neg.numel() + [POSITIVE_COLOUR] * pos.numel(),
                _("anchor centres (click one to inspect it)"),
                size=6,
            )
        )
    return clickable(fig)


def iou_rows(
    targets: AnchorTargetResult, gt_labels: tuple[str, ...], index: int
) -> list[dict[str, object]]:
    """One row per GT box: inside anchor ``index``'s IoU with it, the box's best IoU over all
    anchors, and how many anchors reach that best (its ties, all positive)."""
    ious = targets.ious[index].cpu().tolist()
    best = targets.gt_best_iou.cpu().tolist()
    box, box_best, at_best = _("GT box"), _("box's best IoU"), _("anchors at it")
    rows = []
    for j, (v, b) in enumerate(zip(ious, best, strict=True)):
        ties = _tie_count(targets, j) if b > 0 else 0
        rows.append(
            {
                box: f"{j + 1}: {shown(gt_labels[j])}",
                "IoU": round(v, 4),
                box_best: round(b, 4),
                at_best: ties,
            }
        )
    return rows


def _tie_count(targets: AnchorTargetResult, j: int) -> int:
    """How many inside anchors reach GT box ``j``'s best IoU exactly."""
    return int((targets.ious[:, j] == targets.gt_best_iou[j]).sum())


def label_explanation(
    targets: AnchorTargetResult,
    why: LabelReason,
    params: AnchorTargetParams,
    gt_labels: tuple[str, ...],
) -> list[str]:
    """Markdown lines: the anchor's label, the rule that gave it, and whether it was sampled.

    Each line is one message of the catalogue; the reasons for a positive label (each a whole
    clause) are joined by a translated "; and ".

    Args:
        targets: the labelling the anchor belongs to.
        why: :func:`frcnn_core.anchor_targets.label_reason` of the anchor.
    """
    pos, neg = params.pos_iou, params.neg_iou
    counts = targets.counts()
    claims = []
    if why.reaches_positive:
        claims.append(
            _("its best IoU {iou:.3f} ≥ {pos:.2f} (the positive threshold)").format(
                iou=why.max_iou, pos=pos
            )
        )
    for j in why.best_for:
        n = _tie_count(targets, j)
        best = float(targets.gt_best_iou[j])
        if n == 1:
            claim = _(
                "it is the anchor that overlaps box {box} ({label}) best, at IoU {iou:.3f}: "
                "every box claims its best anchors, even under the threshold"
            )
        else:
            claim = _(
                "it is one of the {n} anchors that overlap box {box} ({label}) best, at IoU "
                "{iou:.3f} (a tie): every box claims its best anchors, even under the threshold"
            )
        claims.append(claim.format(n=n, box=j + 1, label=plain(gt_labels[j]), iou=best))
    if why.label == 1:
        reasons = _("; and ").join(claims)
        lines = [_("**Positive** (label 1): {reasons}.").format(reasons=reasons)]
    elif why.label == 0:
        lines = [
            _("**Negative** (label 0): its best IoU {iou:.3f} < {neg:.2f}.").format(
                iou=why.max_iou, neg=neg
            )
        ]
        if claims:
            lines.append(
                _(
                    "It would be positive ({reasons}), but with bug B2 the negative rule runs "
                    "last and overrides it."
                ).format(reasons="; ".join(claims))
            )
    else:
        lines = [
            _(
                "**Ignored** (label −1): its best IoU {iou:.3f} is in [{neg:.2f}, {pos:.2f}) "
                "and it is no box's best anchor, so it is left out of the loss."
            ).format(iou=why.max_iou, neg=neg, pos=pos)
        ]
    if why.label != -1:
        kind = "positive" if why.label == 1 else "negative"
        n = counts[f"sampled_{kind}"]
        cap = int(params.batch_size * params.pos_fraction)
        if why.sampled and why.label == 1:
            line = _(
                "**Sampled**: one of the {n} positives of the {batch}-anchor batch in the loss."
            )
        elif why.sampled:
            line = _(
                "**Sampled**: one of the {n} negatives of the {batch}-anchor batch in the loss."
            )
        elif why.label == 1:
            line = _(
                "**Not sampled**: the batch takes at most {cap} positives and fills the rest of "
                "{batch} with negatives, chosen at random; this positive was left out, so it is "
                "not in the loss."
            )
        else:
            line = _(
                "**Not sampled**: the batch takes at most {cap} positives and fills the rest of "
                "{batch} with negatives, chosen at random; this negative was left out, so it is "
                "not in the loss."
            )
        lines.append(line.format(n=n, cap=cap, batch=params.batch_size))
    return lines


def iou_maps(
    grid: AnchorResult, targets: AnchorOverlaps, params: AnchorParams, gt_index: int | None
) -> np.ndarray:
    """IoU of every anchor with one GT box (or the best over all GT), as [A, Hf, Wf];
    anchors outside the image are NaN."""
    hf, wf = grid.feature_size
    a = params.per_cell
    values = torch.full((grid.total,), float("nan"))
    if targets.ious.shape[1]:
        inside = targets.ious[:, gt_index] if gt_index is not None else targets.max_iou
        values[grid.inside_index.cpu()] = inside.float().cpu()
    else:
        values[grid.inside_index.cpu()] = 0.0
    return values.reshape(hf, wf, a).permute(2, 0, 1).numpy()  # (Hf*Wf*A) -> (A, Hf, Wf)


def iou_heatmaps(maps: np.ndarray, params: AnchorParams, stride: int, title: str) -> go.Figure:
    """One heatmap per anchor shape (rows: ratio, columns: scale), shared colour scale 0..1;
    every shape's map covers the whole grid, and NaN (outside) cells stay blank."""
    return shape_heatmaps(
        maps,
        params,
        stride,
        zmin=0.0,
        zmax=1.0,
        # A plotly template, not a format string: %{x} stays for plotly.
        hover=_("cell x %{x}, y %{y}: IoU %{z:.3f}"),
        title=title,
        fixed_ranges=True,
        blank_colour="#E5E7EB",
    )
