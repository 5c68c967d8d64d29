"""The tutorial-bugs page's figures (the numbers they show come from
:mod:`explorer.bugs.effects`), their text in the session's language. A title passed in is
already translated by the page."""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
import torch

from explorer.bugs.effects import Crops, PairingEffect
from explorer.figures import (
    ACCENT_COLOUR,
    IGNORED_COLOUR,
    NEGATIVE_COLOUR,
    POSITIVE_COLOUR,
    PROPOSAL_COLOUR,
    add_boxes,
    add_gt,
    heatmap,
    image_figure,
)
from frcnn_core.i18n import _


def pairing_figure(
    pixels: np.ndarray,
    effect: PairingEffect,
    gt_boxes: torch.Tensor,
    gt_labels: tuple[str, ...],
    height: int = 440,
) -> go.Figure:
    """Anchors (green) joined by a red line to the cell whose prediction they are trained with.

    The joining lines are an SVG ``Scatter``: at most a few hundred segments, and WebGL lines
    are drawn flat on the image's reversed y axis (plotly.js issue #2904)."""
    fig = image_figure(pixels, height=height, dim=0.55)
    name = (
        _("positive anchor: where it is") if effect.positives else _("anchor (sample): where it is")
    )
    add_boxes(fig, effect.anchor_boxes, POSITIVE_COLOUR, name, 1, 0.6)
    a = effect.anchor_centres.numpy()
    c = effect.cell_centres.numpy()
    xs = np.stack((a[:, 0], c[:, 0], np.full(len(a), np.nan)), axis=1).reshape(-1)
    ys = np.stack((a[:, 1], c[:, 1], np.full(len(a), np.nan)), axis=1).reshape(-1)
    fig.add_trace(
        go.Scatter(
            x=xs,
            y=ys,
            mode="lines",
            line=dict(color=NEGATIVE_COLOUR, width=1.5),
            name=_("paired with"),
            hoverinfo="skip",
        )
    )
    fig.add_trace(
        go.Scattergl(
            x=c[:, 0],
            y=c[:, 1],
            mode="markers",
            marker=dict(color=NEGATIVE_COLOUR, size=9, symbol="x"),
            name=_("cell whose prediction it gets"),
            hoverinfo="skip",
        )
    )
    add_gt(fig, gt_boxes, gt_labels)
    return fig


def logit_vs_probability_figure(
    scores: torch.Tensor,
    fixed_keep: torch.Tensor,
    buggy_keep: torch.Tensor,
    max_points: int = 4000,
    height: int = 420,
) -> go.Figure:
    """Every anchor's object logit s1 against its object probability sigmoid(s1 - s0): the two
    rankings disagree wherever the cloud is not a single increasing curve."""
    s = scores.detach().cpu().float()
    logit = s[:, 1]
    prob = torch.softmax(s, dim=1)[:, 1]
    n = s.shape[0]
    sample = torch.randperm(n, generator=torch.Generator().manual_seed(0))[:max_points]
    fixed_only = fixed_keep.cpu()[~torch.isin(fixed_keep.cpu(), buggy_keep.cpu())]
    buggy_only = buggy_keep.cpu()[~torch.isin(buggy_keep.cpu(), fixed_keep.cpu())]
    fig = go.Figure()
    anchors = (
        _("anchors ({shown} of {n} drawn)").format(shown=sample.numel(), n=n)
        if sample.numel() < n
        else _("anchors")
    )
    for index, colour, name, size in (
        (sample, IGNORED_COLOUR, anchors, 3),
        (
            fixed_only,
            PROPOSAL_COLOUR,
            _("kept only by probability: {n}").format(n=fixed_only.numel()),
            5,
        ),
        (buggy_only, ACCENT_COLOUR, _("kept only by logit: {n}").format(n=buggy_only.numel()), 5),
    ):
        fig.add_trace(
            go.Scattergl(
                x=logit[index].numpy(),
                y=prob[index].numpy(),
                mode="markers",
                marker=dict(color=colour, size=size, opacity=0.7),
                name=name,
                hovertemplate=_("logit s1 %{x:.4f}<br>probability %{y:.4f}<extra></extra>"),
            )
        )
    fig.update_layout(
        height=height,
        margin=dict(l=0, r=0, t=30, b=0),
        xaxis_title=_("object logit s1 (tutorial's ranking)"),
        yaxis_title=_("object probability (correct ranking)"),
        legend=dict(orientation="h", yanchor="bottom", y=1.0, xanchor="left", x=0),
    )
    return fig


def kept_figure(
    pixels: np.ndarray,
    rois: torch.Tensor,
    keep: torch.Tensor,
    other_keep: torch.Tensor,
    gt_boxes: torch.Tensor,
    gt_labels: tuple[str, ...],
    colour: str = PROPOSAL_COLOUR,
    height: int = 440,
) -> go.Figure:
    """Kept proposals: those the other variant also kept (grey) and those only this one kept.

    Args:
        rois (Tensor[N, 4]): every anchor's clipped decoded box (``ProposalResult.clipped``).
        keep, other_keep (Tensor[R]): anchor numbers kept by this and by the other variant.
    """
    keep = keep.cpu()
    both = torch.isin(keep, other_keep.cpu())
    fig = image_figure(pixels, height=height, dim=0.55)
    boxes = rois.cpu()
    both_name = _("kept by both: {n}").format(n=int(both.sum()))
    here_name = _("kept only here: {n}").format(n=int((~both).sum()))
    add_boxes(fig, boxes[keep[both]], IGNORED_COLOUR, both_name, 1, 0.35)
    add_boxes(fig, boxes[keep[~both]], colour, here_name, 1, 0.7)
    add_gt(fig, gt_boxes, gt_labels)
    return fig


def crops_figure(
    pixels: np.ndarray,
    box: torch.Tensor,
    crops: Crops,
    gt_boxes: torch.Tensor,
    gt_labels: tuple[str, ...],
    stride: int,
    height: int = 440,
) -> go.Figure:
    """Where the two slices of B9 lie on the image (``stride``: pixels per feature cell)."""
    fig = image_figure(pixels, height=height, dim=0.55)
    add_gt(fig, gt_boxes, gt_labels)
    x1, y1, x2, y2 = crops.cells
    s = stride
    pooled = torch.tensor([[x1 * s, y1 * s, (x2 + 1) * s, (y2 + 1) * s]], dtype=torch.float32)
    add_boxes(fig, pooled, POSITIVE_COLOUR, _("pooling slice (rows = y)"), 3)
    if crops.swapped.numel():
        swapped = torch.tensor([crops.swapped_box], dtype=torch.float32)
        name = _("tutorial's picture slice (rows = x)")
        add_boxes(fig, swapped, NEGATIVE_COLOUR, name, 3)
    return fig


def crop_heatmap(values: torch.Tensor, title: str, zmin: float, zmax: float) -> go.Figure:
    return heatmap(values.numpy(), title, zmin=zmin, zmax=zmax, height=280)


def mean_map_figure(features: torch.Tensor, title: str) -> go.Figure:
    """The channel mean of a feature map [1, C, Hf, Wf]."""
    return heatmap(features[0].float().mean(dim=0).cpu().numpy(), title, height=320)
