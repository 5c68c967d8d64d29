"""Slow, obvious references for the vectorised stages of ``frcnn_core``.

Plain Python loops over Python floats (IEEE float64), written straight from SPEC sections 1 and 2,
so that a test can compare a vectorised result with the definition. Nothing here imports
``frcnn_core``: the references must not share code, or a shared mistake would go unseen.

Boxes are ``(x1, y1, x2, y2)`` sequences of floats.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

Box = Sequence[float]


def area(box: Box) -> float:
    return (box[2] - box[0]) * (box[3] - box[1])


def iou(a: Box, b: Box) -> float:
    """IoU without the "+1 pixel" convention; 0 when the boxes do not overlap."""
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    union = area(a) + area(b) - inter
    return inter / union if union > 0 else 0.0


def iou_matrix(boxes1: Sequence[Box], boxes2: Sequence[Box]) -> list[list[float]]:
    return [[iou(a, b) for b in boxes2] for a in boxes1]


def to_float32(x: float) -> float:
    """Round a Python float to the nearest float32, as ``tensor.float()`` does."""
    return float(np.float32(x))


def anchors(
    feature_size: tuple[int, int],
    stride: int = 16,
    scales: Sequence[float] = (8, 16, 32),
    ratios: Sequence[float] = (0.5, 1, 2),
) -> list[list[float]]:
    """Every anchor, row-major: index = (iy * Wf + ix) * A + ratio_index * n_scales + scale_index.

    ``h = stride * s * sqrt(r)``, ``w = stride * s / sqrt(r)``, centred at
    ``stride * i + stride / 2``.
    """
    hf, wf = feature_size
    out = []
    for iy in range(hf):
        for ix in range(wf):
            cx = stride * ix + stride / 2
            cy = stride * iy + stride / 2
            for r in ratios:
                for s in scales:
                    h = stride * s * math.sqrt(r)
                    w = stride * s / math.sqrt(r)
                    out.append([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2])
    return out


def inside(anchor_list: Sequence[Box], image_size: tuple[int, int]) -> list[int]:
    height, width = image_size
    return [
        i
        for i, a in enumerate(anchor_list)
        if a[0] >= 0 and a[1] >= 0 and a[2] <= width and a[3] <= height
    ]


def label_anchors(
    anchor_list: Sequence[Box],
    gt: Sequence[Box],
    pos_iou: float = 0.7,
    neg_iou: float = 0.3,
    negatives_last: bool = False,
) -> tuple[list[int], list[float], list[float]]:
    """Stage 5, the definition. IoU in float64, stored as float32, ties found on the float32
    values (SPEC section 3).

    Returns:
        labels (1 / 0 / -1 per anchor), max IoU per anchor, best IoU per GT box.
    """
    ious = [[to_float32(v) for v in row] for row in iou_matrix(anchor_list, gt)]
    max_iou = [max(row) if row else 0.0 for row in ious]
    best = [max((ious[k][j] for k in range(len(anchor_list))), default=0.0) for j in range(len(gt))]
    is_tie = [
        any(best[j] > 0 and ious[k][j] == best[j] for j in range(len(gt)))
        for k in range(len(anchor_list))
    ]
    labels = [-1] * len(anchor_list)

    def negatives() -> None:
        for k in range(len(anchor_list)):
            if max_iou[k] < neg_iou:
                labels[k] = 0

    def positives() -> None:
        for k in range(len(anchor_list)):
            if max_iou[k] >= pos_iou or is_tie[k]:
                labels[k] = 1

    if negatives_last:
        positives()
        negatives()
    else:
        negatives()
        positives()
    return labels, max_iou, best


def sample_counts(
    n_pos: int, n_neg: int, batch_size: int = 256, pos_fraction: float = 0.5
) -> tuple[int, int]:
    """Stage 6: how many positives and negatives survive sampling."""
    keep_pos = min(n_pos, int(batch_size * pos_fraction))
    keep_neg = min(n_neg, batch_size - keep_pos)
    return keep_pos, keep_neg


def encode(reference: Box, target: Box) -> list[float]:
    aw, ah = reference[2] - reference[0], reference[3] - reference[1]
    ax, ay = reference[0] + aw / 2, reference[1] + ah / 2
    gw, gh = target[2] - target[0], target[3] - target[1]
    gx, gy = target[0] + gw / 2, target[1] + gh / 2
    return [(gx - ax) / aw, (gy - ay) / ah, math.log(gw / aw), math.log(gh / ah)]


def decode(reference: Box, delta: Sequence[float], scale_clamp: float = math.inf) -> list[float]:
    aw, ah = reference[2] - reference[0], reference[3] - reference[1]
    ax, ay = reference[0] + aw / 2, reference[1] + ah / 2
    dx, dy, dw, dh = delta
    cx, cy = dx * aw + ax, dy * ah + ay
    w, h = math.exp(min(dw, scale_clamp)) * aw, math.exp(min(dh, scale_clamp)) * ah
    return [cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2]


def smooth_l1(x: float, beta: float = 1.0) -> float:
    return 0.5 * x * x / beta if abs(x) < beta else abs(x) - 0.5 * beta


def nms(boxes: Sequence[Box], priority: Sequence[float], threshold: float) -> list[int]:
    """Greedy NMS: visit boxes by descending priority (ties: lower index first); keep a box
    unless it overlaps a kept one with IoU > threshold. Returns kept indices in visiting order."""
    order = sorted(range(len(boxes)), key=lambda i: (-priority[i], i))
    kept: list[int] = []
    for i in order:
        if all(iou(boxes[i], boxes[j]) <= threshold for j in kept):
            kept.append(i)
    return kept


def propose(
    anchor_list: Sequence[Box],
    deltas: Sequence[Sequence[float]],
    logits: Sequence[Sequence[float]],
    image_size: tuple[int, int],
    scale_clamp: float,
    min_size: float,
    pre_nms_n: int,
    post_nms_n: int,
    nms_iou: float,
) -> list[int]:
    """Stage 9, the definition: decode, clip, drop small, rank by softmax, top-n, NMS, top-n.

    Returns:
        anchor indices of the proposals, best first.
    """
    height, width = image_size
    boxes = []
    for a, d in zip(anchor_list, deltas, strict=True):
        x1, y1, x2, y2 = decode(a, d, scale_clamp)
        boxes.append(
            [min(max(x1, 0), width), min(max(y1, 0), height), min(max(x2, 0), width),
             min(max(y2, 0), height)]
        )  # fmt: skip
    prob = [1.0 / (1.0 + math.exp(bg - fg)) for bg, fg in logits]  # softmax of 2 logits
    big = [i for i, b in enumerate(boxes) if b[2] - b[0] >= min_size and b[3] - b[1] >= min_size]
    top = sorted(big, key=lambda i: (-prob[i], i))[:pre_nms_n]
    kept = nms([boxes[i] for i in top], [prob[i] for i in top], nms_iou)
    return [top[k] for k in kept[:post_nms_n]]


def roi_pool(
    features: torch.Tensor, rois: Sequence[Box], output_size: int, spatial_scale: float
) -> torch.Tensor:
    """RoI max pooling as one crop per RoI and ``adaptive_max_pool2d``.

    Quantisation as in Fast R-CNN and torchvision: ``start = round(x1 * scale)``,
    ``end = round(x2 * scale)`` (C's ``round``: halves away from zero, so ``floor(v + 0.5)`` for
    v >= 0, not Python's banker's ``round``), both ends included: the crop is
    ``features[:, y_start:y_end + 1, x_start:x_end + 1]``. Adaptive max pooling splits a length
    L into bins ``[floor(i * L / n), ceil((i + 1) * L / n))``: the same bins as roi_pool's
    ``floor(i * bin)``, ``ceil((i + 1) * bin)`` with ``bin = L / n``.

    Only valid for RoIs whose quantised ends lie inside the feature map (see the test).

    Args:
        features (Tensor[1, C, Hf, Wf]).
    Returns:
        Tensor[S, C, n, n].
    """
    out = []
    for x1, y1, x2, y2 in rois:
        xs, ys = math.floor(x1 * spatial_scale + 0.5), math.floor(y1 * spatial_scale + 0.5)
        xe, ye = math.floor(x2 * spatial_scale + 0.5), math.floor(y2 * spatial_scale + 0.5)
        crop = features[0, :, ys : ye + 1, xs : xe + 1]
        out.append(F.adaptive_max_pool2d(crop, (output_size, output_size)))
    return torch.stack(out)


def proposal_target_candidates(
    rois: Sequence[Box], gt: Sequence[Box], pos_iou: float, neg_hi: float, neg_lo: float
) -> tuple[list[int], list[int], list[float], list[int]]:
    """Stage 10 candidates: (positive indices, negative indices, max IoU, argmax GT)."""
    max_iou, argmax = [], []
    for r in rois:
        row = [iou(r, g) for g in gt]
        best = max(row) if row else 0.0
        max_iou.append(best)
        argmax.append(row.index(best) if row else 0)
    pos = [i for i, v in enumerate(max_iou) if gt and v >= pos_iou]
    neg = [i for i, v in enumerate(max_iou) if neg_lo <= v < neg_hi]
    return pos, neg, max_iou, argmax
