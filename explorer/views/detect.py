"""Figures of the Detect page: detections with class and score, coloured by their match."""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
import torch

from explorer.figures import NEGATIVE_COLOUR, POSITIVE_COLOUR, add_boxes, add_gt, image_figure
from explorer.text import html_text
from frcnn_core.detect import Detections, Match


def _name(class_names: tuple[str, ...], label: object) -> str:
    """Class name of a 1-based class id; heads built without any labelled box say "object"."""
    i = int(label) - 1  # type: ignore[call-overload]
    return class_names[i] if i < len(class_names) else f"class {i + 1}"


def detection_rows(
    dets: Detections, match: Match, class_names: tuple[str, ...], gt_labels: tuple[str, ...]
) -> list[dict]:
    """One row per detection for a table."""
    rows = []
    for i in range(dets.boxes.shape[0]):
        best = int(match.best_gt[i])
        x1, y1, x2, y2 = (round(v, 1) for v in dets.boxes[i].tolist())
        rows.append(
            {
                "#": i + 1,
                "class": _name(class_names, dets.labels[i]),
                "score": round(float(dets.scores[i]), 4),
                "x1": x1,
                "y1": y1,
                "x2": x2,
                "y2": y2,
                "best IoU": round(float(match.best_iou[i]), 3),
                "best GT": f"{best + 1}: {gt_labels[best]}" if best >= 0 else "",
                "result": "TP" if bool(match.true_positive[i]) else "FP",
            }
        )
    return rows


def detections_figure(
    pixels: np.ndarray,
    dets: Detections,
    match: Match,
    class_names: tuple[str, ...],
    gt_boxes: torch.Tensor,
    gt_labels: tuple[str, ...],
) -> go.Figure:
    """True positives green, false positives red, each with "class score" text."""
    fig = image_figure(pixels, dim=0.75)
    add_gt(fig, gt_boxes, gt_labels)
    tp = match.true_positive
    text = [
        f"{html_text(_name(class_names, c))} {float(s):.2f} · IoU {float(iou):.2f}"
        for c, s, iou in zip(dets.labels, dets.scores, match.best_iou, strict=True)
    ]
    for keep, colour, name in (
        (~tp, NEGATIVE_COLOUR, "false positive"),
        (tp, POSITIVE_COLOUR, "true positive"),
    ):
        idx = torch.nonzero(keep).squeeze(1).tolist()
        if not idx:
            continue
        add_boxes(
            fig, dets.boxes[idx], colour, f"{name}: {len(idx)}", 2.5, hover=[text[i] for i in idx]
        )
        b = dets.boxes[idx].cpu().numpy()
        fig.add_trace(
            go.Scatter(
                x=b[:, 0],
                y=b[:, 3],
                mode="text",
                text=[text[i] for i in idx],
                textposition="bottom right",
                textfont=dict(color=colour, size=12),
                hoverinfo="skip",
                showlegend=False,
            )
        )
    return fig
