"""Figures and tables of stages 12 and 13: the Fast R-CNN head's outputs and the four losses."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import torch

from explorer.figures import LOSS_COLOURS
from explorer.text import plain, shown
from frcnn_core.head import FastRCNNHead, HeadOutput
from frcnn_core.i18n import _
from frcnn_core.proposal_targets import ProposalTargetResult

LOSS_NAMES = ("rpn_cls", "rpn_loc", "roi_cls", "roi_loc", "total")
DELTAS = ("dx", "dy", "dw", "dh")


def class_names_with_background(class_names: tuple[str, ...], width: int) -> tuple[str, ...]:
    """``("background", *class_names)`` padded to ``width`` outputs: with no boxes the head still
    has one (nameless) object class."""
    names = (_("background"), *class_names)
    return names + tuple(_("class {i}").format(i=i) for i in range(len(names), width))


def class_columns(names: tuple[str, ...]) -> list[str]:
    """``P(0: background)``, ``P(1: zebra)``, …: the id keeps the columns distinct whatever the
    user named a class."""
    return [f"P({i}: {name})" for i, name in enumerate(names)]


def architecture_table(
    head: FastRCNNHead, pooled_shape: tuple[int, ...], relu: bool = True
) -> pd.DataFrame:
    """One row per layer of the head: its output shape and its number of weights.

    Args:
        pooled_shape: the pooled RoIs' shape [S, C, P, P].
        relu: False with bug B11 (no ReLU after fc6 and fc7).
    """
    c1 = head.num_classes + 1
    n_rois = pooled_shape[0]
    flat = head.fc6.in_features
    shape = ", ".join(str(v) for v in pooled_shape)
    act = " + ReLU" if relu else _(" (no ReLU: B11)")
    rows = [
        (_("RoI features (flattened)"), f"[{shape}] → [{n_rois}, {flat}]", 0),
        ("fc6" + act, f"[{n_rois}, {head.fc6.out_features}]", _count(head.fc6)),
        ("fc7" + act, f"[{n_rois}, {head.fc7.out_features}]", _count(head.fc7)),
        (_("class scores (C + 1 = {n})").format(n=c1), f"[{n_rois}, {c1}]", _count(head.score)),
        (
            _("class-specific deltas ((C + 1) × 4 = {n})").format(n=c1 * 4),
            f"[{n_rois}, {c1 * 4}] → [{n_rois}, {c1}, 4]",
            _count(head.loc),
        ),
    ]
    return pd.DataFrame(rows, columns=["layer", "output shape", "weights"])


def _count(layer: torch.nn.Module) -> int:
    return sum(p.numel() for p in layer.parameters())


def roi_table(
    targets: ProposalTargetResult, output: HeadOutput, class_names: tuple[str, ...]
) -> pd.DataFrame:
    """One row per sampled RoI: true class, best IoU, softmax probabilities, predicted class,
    and the predicted deltas of the true class next to their targets (positives only)."""
    labels = targets.labels.detach().cpu()
    probs = output.probs.detach().float().cpu().numpy()
    names = class_names_with_background(class_names, probs.shape[1])
    n = labels.numel()
    picked = output.deltas.detach().float().cpu()[torch.arange(n), labels].numpy()  # [S, 4]
    goal = targets.targets.detach().float().cpu().numpy()
    positive = (labels > 0).numpy()
    table = pd.DataFrame(
        {
            _("RoI"): np.arange(n),
            _("true class"): [names[int(v)] for v in labels],
            _("best IoU"): targets.max_iou.detach().cpu()[targets.sample_index.cpu()].numpy(),
        }
    )
    for j, column in enumerate(class_columns(names)):
        table[column] = probs[:, j]
    table[_("predicted")] = [names[int(v)] for v in probs.argmax(axis=1)] if n else []
    for j, d in enumerate(DELTAS):
        table[d] = picked[:, j]
        table[_("target {d}").format(d=d)] = np.where(positive, goal[:, j], np.nan)
    return table


def losses_figure(losses: dict[str, float], height: int = 320) -> go.Figure:
    """The four loss terms and their total as bars, each labelled with its value."""
    names = [n for n in LOSS_NAMES if n in losses]
    values = [losses[n] for n in names]
    fig = go.Figure(
        go.Bar(
            x=names,
            y=values,
            marker_color=[LOSS_COLOURS[n] for n in names],
            text=[f"{v:.4f}" for v in values],
            textposition="outside",
            cliponaxis=False,
            hovertemplate="%{x}: %{y:.4f}<extra></extra>",
        )
    )
    top = max(values, default=1.0)
    fig.update_yaxes(range=[0, top * 1.18 if top > 0 else 1.0], title=_("loss"))
    fig.update_layout(
        height=height,
        margin=dict(l=0, r=0, t=30, b=0),
        title=dict(text="total = rpn_cls + rpn_loc + roi_cls + roi_loc", x=0.01, font_size=13),
    )
    return fig


def delta_rows(
    targets: ProposalTargetResult,
    output: HeadOutput,
    index: int,
    class_names: tuple[str, ...],
) -> list[dict[str, object]]:
    """Sampled RoI ``index``'s predicted deltas for every class (one row each), then its
    target deltas when it is positive. Only the true class's row enters the box loss."""
    label = int(targets.labels[index])
    deltas = output.deltas.detach().float().cpu()[index].tolist()  # [C+1][4]
    names = class_names_with_background(class_names, len(deltas))
    rows: list[dict[str, object]] = []
    for c, values in enumerate(deltas):
        text = (
            _("predicted for {c}: {name} (true class: in the loss)")
            if c == label and label > 0
            else _("predicted for {c}: {name}")
        )
        rows.append(
            {"": text.format(c=c, name=shown(names[c]))}
            | {d: round(v, 4) for d, v in zip(DELTAS, values, strict=True)}
        )
    if label > 0:
        goal = targets.targets.detach().float().cpu()[index].tolist()
        rows.append(
            {"": _("target (to its GT box, class {label})").format(label=label)}
            | {d: round(v, 4) for d, v in zip(DELTAS, goal, strict=True)}
        )
    return rows


def roi_verdict(
    targets: ProposalTargetResult, output: HeadOutput, index: int, class_names: tuple[str, ...]
) -> list[str]:
    """Markdown lines on sampled RoI ``index``: its true and predicted class, and its share of
    the classification loss."""
    probs = output.probs.detach().float().cpu()[index]
    names = class_names_with_background(class_names, probs.numel())
    label = int(targets.labels[index])
    guess = int(probs.argmax())
    p_true = float(probs[label])
    first = (
        _("**True class**: {label} ({name}), a positive RoI; best IoU with a GT box {iou:.3f}.")
        if label > 0
        else _(
            "**True class**: {label} ({name}), a background (negative) RoI; best IoU with a GT "
            "box {iou:.3f}."
        )
    )
    second = (
        _(
            "**Predicted**: {guess} ({name}) at {p:.3f}: right. p(true class) = {p_true:.3f}, "
            "so its cross-entropy is −log {p_true:.3f} = **{ce:.3f}** (the class loss averages "
            "this over the {n} RoIs)."
        )
        if guess == label
        else _(
            "**Predicted**: {guess} ({name}) at {p:.3f}: wrong. p(true class) = {p_true:.3f}, "
            "so its cross-entropy is −log {p_true:.3f} = **{ce:.3f}** (the class loss averages "
            "this over the {n} RoIs)."
        )
    )
    return [
        first.format(
            label=label,
            name=plain(names[label]),
            iou=float(targets.max_iou[targets.sample_index[index]]),
        ),
        second.format(
            guess=guess,
            name=plain(names[guess]),
            p=float(probs[guess]),
            p_true=p_true,
            ce=-math.log(max(p_true, 1e-12)),
            n=targets.labels.numel(),
        ),
    ]
