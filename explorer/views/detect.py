"""Figures of the Detect page: detections with class and score, coloured by their match."""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
import torch

from explorer.figures import NEGATIVE_COLOUR, POSITIVE_COLOUR, add_boxes, add_gt, image_figure
from explorer.text import html_text, plain, shown
from explorer.views.inspect import PARTNER_COLOUR, PICKED_COLOUR, centre_markers, clickable
from frcnn_core.anchors import AnchorParams, anchor_position
from frcnn_core.detect import Detections, Match, Verdict
from frcnn_core.i18n import N_, _
from frcnn_core.proposals import ProposalResult


def _name(class_names: tuple[str, ...], label: object) -> str:
    """Class name of a 1-based class id; heads built without any labelled box say "object"."""
    i = int(label) - 1  # type: ignore[call-overload]
    return class_names[i] if i < len(class_names) else _("class {i}").format(i=i + 1)


# The table's columns as the code names them, and as a reader sees them (column_config labels).
ROW_LABELS = {
    "class": N_("class"),
    "score": N_("score"),
    "best IoU": N_("best IoU"),
    "best GT": N_("best GT"),
    "result": N_("result"),
}


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


def detection_names(dets: Detections, match: Match, class_names: tuple[str, ...]) -> dict[int, str]:
    """A line per detection for a picker: ``#1 · zebra 0.83 · true positive``."""
    out = {}
    for i in range(dets.boxes.shape[0]):
        kind = _("true positive") if bool(match.true_positive[i]) else _("false positive")
        name = shown(_name(class_names, dets.labels[i]))
        out[i] = f"#{i + 1} · {name} {float(dets.scores[i]):.3f} · {kind}"
    return out


def verdict_lines(
    verdict: Verdict,
    index: int,
    match: Match,
    gt_labels: tuple[str, ...],
    class_names: tuple[str, ...],
    match_iou: float,
    label: int,
) -> list[str]:
    """Markdown: why detection ``index`` is a true or a false positive.

    Args:
        verdict: :func:`frcnn_core.detect.explain_match` of the detection.
        label: its class id (1-based).
    """
    name = plain(_name(class_names, label))

    def box(j: int) -> str:
        return _("GT box {n} ({label})").format(n=j + 1, label=plain(gt_labels[j]))

    if verdict.kind == "true positive":
        return [
            _(
                "**True positive**: it takes {box} at IoU **{iou:.3f}** ≥ {t:g}, a box of its "
                "class that no better-scored detection took."
            ).format(box=box(verdict.gt), iou=verdict.iou, t=match_iou)
        ]
    if verdict.kind == "no ground truth":
        lines = [_("**False positive**: there is no ground truth to match.")]
    elif verdict.kind == "no box of its class":
        lines = [_("**False positive**: no ground-truth box is a {name}.").format(name=name)]
    elif verdict.kind == "IoU too low" and verdict.gt < 0:
        lines = [_("**False positive**: it does not overlap any {name} box.").format(name=name)]
    elif verdict.kind == "IoU too low":
        lines = [
            _(
                "**False positive**: its best overlap with a {name} box is {box} at IoU "
                "**{iou:.3f}** < {t:g}."
            ).format(name=name, box=box(verdict.gt), iou=verdict.iou, t=match_iou)
        ]
    else:
        taken = (
            _("detection #{n}").format(n=verdict.taken_by + 1)
            if verdict.taken_by >= 0
            else _("another")
        )
        lines = [
            _(
                "**False positive (duplicate)**: it overlaps {box} at IoU **{iou:.3f}**, but "
                "{taken}, scored higher, already took that box: each box counts once."
            ).format(box=box(verdict.gt), iou=verdict.iou, taken=taken)
        ]
    best = int(match.best_gt[index])
    if best >= 0 and best != verdict.gt:
        lines.append(
            _("Its largest overlap with any box is {box}, IoU {iou:.3f}, of another class.").format(
                box=box(best), iou=float(match.best_iou[index])
            )
        )
    return lines


def source_lines(
    dets: Detections,
    index: int,
    proposals: ProposalResult,
    anchor_params: AnchorParams,
    feature_size: tuple[int, int],
) -> list[str]:
    """Markdown: the test-time proposal detection ``index`` was decoded from, and its anchor."""
    if dets.roi_index is None:
        return []
    r = int(dets.roi_index[index])
    n = int(proposals.keep_index[r])
    iy, ix, a = anchor_position(n, feature_size, anchor_params)
    x1, y1, x2, y2 = proposals.rois[r].tolist()
    d = dets.boxes[index].tolist()
    return [
        _(
            "**Source RoI**: test proposal {r} of {total} (dashed white), ({x1:.1f}, {y1:.1f}, "
            "{x2:.1f}, {y2:.1f}), from anchor #{n} (cell iy {iy}, ix {ix}, shape a = {a}), RPN "
            "score {score:.4f}."
        ).format(
            r=r,
            total=proposals.rois.shape[0],
            x1=x1,
            y1=y1,
            x2=x2,
            y2=y2,
            n=n,
            iy=iy,
            ix=ix,
            a=a,
            score=float(proposals.scores[r]),
        ),
        _(
            "Moved by its class's deltas to ({x1:.1f}, {y1:.1f}, {x2:.1f}, {y2:.1f}); class "
            "score **{score:.4f}**."
        ).format(x1=d[0], y1=d[1], x2=d[2], y2=d[3], score=float(dets.scores[index])),
    ]


def detections_figure(
    pixels: np.ndarray,
    dets: Detections,
    match: Match,
    class_names: tuple[str, ...],
    gt_boxes: torch.Tensor,
    gt_labels: tuple[str, ...],
    picked: int | None = None,
    source_roi: torch.Tensor | None = None,
    partner_gt: int = -1,
) -> go.Figure:
    """True positives green, false positives red, each with "class score" text, and a
    clickable marker at each detection's centre (``customdata``: its index).

    ``picked`` is outlined dashed white with its source RoI (``source_roi`` [4]) dotted, and
    GT box ``partner_gt`` (its match, or the box it failed to match) in orange."""
    fig = image_figure(pixels, dim=0.75)
    add_gt(fig, gt_boxes, gt_labels)
    tp = match.true_positive
    text = [
        f"{html_text(_name(class_names, c))} {float(s):.2f} · IoU {float(iou):.2f}"
        for c, s, iou in zip(dets.labels, dets.scores, match.best_iou, strict=True)
    ]
    for keep, colour, name in (
        (~tp, NEGATIVE_COLOUR, _("false positive: {n}")),
        (tp, POSITIVE_COLOUR, _("true positive: {n}")),
    ):
        idx = torch.nonzero(keep).squeeze(1).tolist()
        if not idx:
            continue
        add_boxes(
            fig,
            dets.boxes[idx],
            colour,
            name.format(n=len(idx)),
            2.5,
            hover=[text[i] for i in idx],
        )
        # Each caption sits inside its box, under the top edge (the GT labels sit above it):
        # along the bottom edge, where objects stand, captions ran into each other and off the
        # image.
        b = dets.boxes[idx].cpu().numpy()
        fig.add_trace(
            go.Scatter(
                x=b[:, 0],
                y=b[:, 1],
                mode="text",
                text=[text[i] for i in idx],
                textposition="bottom right",
                textfont=dict(color=colour, size=12),
                hoverinfo="skip",
                showlegend=False,
            )
        )
    if 0 <= partner_gt < gt_boxes.shape[0]:
        add_boxes(fig, gt_boxes[partner_gt : partner_gt + 1], PARTNER_COLOUR, _("its GT box"), 3)
    if picked is not None and 0 <= picked < dets.boxes.shape[0]:
        if source_roi is not None:
            add_boxes(fig, source_roi.reshape(1, 4), PICKED_COLOUR, _("its RoI"), 2, dash="dot")
        box = dets.boxes[picked : picked + 1]
        add_boxes(fig, box, PICKED_COLOUR, _("picked detection"), 3, dash="dash")
    if dets.boxes.shape[0]:
        names = detection_names(dets, match, class_names)
        colours = [POSITIVE_COLOUR if t else NEGATIVE_COLOUR for t in tp.tolist()]
        fig.add_trace(
            centre_markers(
                dets.boxes,
                list(range(len(names))),
                list(names.values()),
                colours,
                _("detection centres (click one to inspect it)"),
                size=8,
            )
        )
    return clickable(fig)
