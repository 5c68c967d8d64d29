"""Figures of stages 5 and 6: anchor labels on the image and IoU heatmaps per anchor shape."""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
import torch
from plotly.subplots import make_subplots

from explorer.figures import (
    NEGATIVE_COLOUR,
    POSITIVE_COLOUR,
    add_boxes,
    add_gt,
    image_figure,
)
from explorer.views.anchors import shape_names
from frcnn_core.anchor_targets import AnchorOverlaps, AnchorTargetResult
from frcnn_core.anchors import AnchorParams, AnchorResult


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
    """Positive and negative anchors (sampled, or all labelled) over the dimmed image."""
    labels = targets.labels if sampled else targets.labels_unsampled
    inside = grid.inside_anchors
    fig = image_figure(pixels, dim=0.6)
    neg = torch.nonzero(labels == 0).squeeze(1)
    if neg.numel() > max_negatives:
        # Thousands of red outlines hide the picture; a seeded subset shows the idea.
        pick = torch.randperm(neg.numel(), generator=torch.Generator().manual_seed(0))
        neg = neg[pick[:max_negatives]]
    n_neg = int((labels == 0).sum())
    shown = f" ({neg.numel()} drawn)" if neg.numel() < n_neg else ""
    add_boxes(fig, inside[neg], NEGATIVE_COLOUR, f"negative: {n_neg}{shown}", 1, 0.5)
    pos = torch.nonzero(labels == 1).squeeze(1)
    iou = targets.max_iou[pos].tolist()
    hover = [
        f"anchor {int(grid.inside_index[i])}: IoU {v:.3f}"
        for i, v in zip(pos.tolist(), iou, strict=True)
    ]
    add_boxes(fig, inside[pos], POSITIVE_COLOUR, f"positive: {pos.numel()}", 2, 1.0, hover)
    add_gt(fig, gt_boxes, gt_labels)
    if highlight is not None:
        add_boxes(
            fig,
            inside[highlight : highlight + 1],
            "#FFFFFF",
            "selected anchor",
            3,
            1.0,
            dash="dash",
        )
    return fig


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
    """One heatmap per anchor shape (rows: ratio, columns: scale), shared colour scale 0..1."""
    n_r, n_s = len(params.ratios), len(params.scales)
    names = shape_names(params, stride)
    fig = make_subplots(
        rows=n_r, cols=n_s, subplot_titles=names, horizontal_spacing=0.03, vertical_spacing=0.08
    )
    for k in range(maps.shape[0]):
        r, c = divmod(k, n_s)
        fig.add_trace(
            go.Heatmap(
                z=maps[k],
                zmin=0,
                zmax=1,
                colorscale="Viridis",
                showscale=k == 0,
                hovertemplate="x %{x}, y %{y}: IoU %{z:.3f}<extra></extra>",
            ),
            row=r + 1,
            col=c + 1,
        )
    hf, wf = maps.shape[1:]
    # Fixed ranges: every shape's map covers the whole grid; NaN (outside) cells stay blank.
    fig.update_yaxes(range=[hf - 0.5, -0.5], showticklabels=False, showgrid=False, zeroline=False)
    fig.update_xaxes(range=[-0.5, wf - 0.5], showticklabels=False, showgrid=False, zeroline=False)
    fig.update_layout(plot_bgcolor="#E5E7EB")
    fig.update_annotations(font_size=11)
    fig.update_layout(
        height=260 * n_r, margin=dict(l=0, r=0, t=60, b=0), title=dict(text=title, x=0.01)
    )
    return fig
