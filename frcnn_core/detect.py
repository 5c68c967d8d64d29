"""Stage 14: detection at test time, and how the detections match the ground truth.

300 test proposals -> RoI pool -> head -> softmax -> per-class decode + clip
-> score >= threshold -> per-class NMS -> top max_detections
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torchvision.ops import batched_nms, box_iou, clip_boxes_to_image, remove_small_boxes

from frcnn_core.boxes import SCALE_CLAMP, decode
from frcnn_core.head import HeadOutput
from frcnn_core.i18n import _


@dataclass(frozen=True)
class DetectParams:
    """Test-time detection settings: class-score threshold, per-class NMS IoU, how many
    detections are kept."""

    score_threshold: float = 0.05
    class_nms_iou: float = 0.5
    max_detections: int = 100


@dataclass(frozen=True)
class MatchParams:
    """Grading detections against the ground truth: ``match_iou`` is the IoU a detection needs
    with a box of its class to count as a true positive."""

    match_iou: float = 0.5


@dataclass(frozen=True)
class Detections:
    """Attributes:
    boxes (Tensor[D, 4]), scores (Tensor[D]), labels (Tensor[D]) int64 class ids in 1..C,
        best score first.
    candidates: (class, RoI) pairs before the score threshold; above it; after NMS.
    roi_index (Tensor[D]): int64 index of the RoI (test proposal) each detection was decoded
        from, or None where the detections did not come from :func:`detect`.
    """

    boxes: torch.Tensor
    scores: torch.Tensor
    labels: torch.Tensor
    candidates: tuple[int, int, int]
    roi_index: torch.Tensor | None = None


def detect(
    rois: torch.Tensor, output: HeadOutput, image_size: tuple[int, int], params: DetectParams
) -> Detections:
    """Stage 14 after the head has scored the test proposals.

    Args:
        rois (Tensor[R, 4]): test-time proposals.
        output: the head's scores [R, C+1] and deltas [R, C+1, 4] for those RoIs.
    """
    probs = torch.softmax(output.scores.detach().float(), dim=1)  # [R, C+1]
    r, k = probs.shape
    deltas = output.deltas.detach().float()[:, 1:].reshape(-1, 4)  # [R*C, 4], background dropped
    ref = rois.float()[:, None, :].expand(r, k - 1, 4).reshape(-1, 4)
    boxes = clip_boxes_to_image(decode(ref, deltas, SCALE_CLAMP), image_size)  # [R*C, 4]
    scores = probs[:, 1:].reshape(-1)
    labels = torch.arange(1, k, device=probs.device).repeat(r)
    n_all = int(scores.numel())
    keep = torch.nonzero(scores >= params.score_threshold).squeeze(1)
    keep = keep[remove_small_boxes(boxes[keep], 1e-2)]
    n_scored = int(keep.numel())
    source = keep // max(k - 1, 1)  # candidate r * C + (c - 1) came from RoI r
    boxes, scores, labels = boxes[keep], scores[keep], labels[keep]
    keep = batched_nms(boxes, scores, labels, params.class_nms_iou)
    n_nms = int(keep.numel())
    keep = keep[: params.max_detections]
    return Detections(
        boxes[keep], scores[keep], labels[keep], (n_all, n_scored, n_nms), source[keep]
    )


def top_detections_iou(detections: Detections, gt_boxes: torch.Tensor) -> torch.Tensor:
    """For each GT box, its best IoU with the G best-scored detections (G = number of GT boxes).

    "Do the detections a user sees first sit on the objects?" in one number per box: their
    mean is 1 when the G best detections cover the G boxes exactly, and falls for a box that
    none of them overlaps, for a box left to a lower-scored detection, and for two top
    detections on one object. Classes are ignored.

    Returns: Tensor[G] in [0, 1] (zeros where there are no detections).
    """
    g = gt_boxes.shape[0]
    top = detections.boxes[:g]  # detections are best score first
    if g == 0 or top.shape[0] == 0:
        return torch.zeros(g)
    return box_iou(top.float(), gt_boxes.to(top.device, torch.float32)).max(dim=0).values.cpu()


@dataclass(frozen=True)
class Match:
    """How detections meet the ground truth.

    Attributes:
        best_iou (Tensor[D]): IoU of each detection with its best GT box (any class).
        best_gt (Tensor[D]): index of that box (-1 when there is no GT).
        true_positive (Tensor[D]): bool; greedy by score, each GT box matched once, same class,
            IoU >= match_iou.
        gt_found (Tensor[G]): bool, GT boxes matched by some detection.
        matched_gt (Tensor[D]): int64 index of the GT box each true positive took, -1 for a
            false positive.
    """

    best_iou: torch.Tensor
    best_gt: torch.Tensor
    true_positive: torch.Tensor
    gt_found: torch.Tensor
    matched_gt: torch.Tensor


def match_detections(
    detections: Detections, gt_boxes: torch.Tensor, gt_labels: torch.Tensor, match_iou: float
) -> Match:
    """Match detections (best score first) to GT boxes, as in PASCAL VOC evaluation."""
    d, g = detections.boxes.shape[0], gt_boxes.shape[0]
    device = detections.boxes.device
    if g == 0 or d == 0:
        return Match(
            torch.zeros(d, device=device),
            torch.full((d,), -1, dtype=torch.int64, device=device),
            torch.zeros(d, dtype=torch.bool, device=device),
            torch.zeros(g, dtype=torch.bool, device=device),
            torch.full((d,), -1, dtype=torch.int64, device=device),
        )
    ious = box_iou(detections.boxes, gt_boxes.to(device, torch.float32))  # [D, G]
    best_iou, best_gt = ious.max(dim=1)
    same_class = detections.labels[:, None] == gt_labels.to(device)[None, :]
    candidate = (ious >= match_iou) & same_class
    gt_found = torch.zeros(g, dtype=torch.bool, device=device)
    true_positive = torch.zeros(d, dtype=torch.bool, device=device)
    matched_gt = torch.full((d,), -1, dtype=torch.int64, device=device)
    # D <= max_detections (100): a loop over detections in score order is the definition.
    for i in range(d):
        free = candidate[i] & ~gt_found
        if bool(free.any()):
            j = int(torch.where(free, ious[i], torch.full_like(ious[i], -1.0)).argmax())
            gt_found[j] = True
            true_positive[i] = True
            matched_gt[i] = j
    return Match(best_iou, best_gt, true_positive, gt_found, matched_gt)


@dataclass(frozen=True)
class Verdict:
    """Why one detection is a true or a false positive.

    Attributes:
        kind: "true positive"; or why it is false: "no ground truth", "no box of its class",
            "IoU too low" (no box of its class overlaps it by ``match_iou``), "duplicate" (each
            box of its class that it overlaps enough was taken by a better-scored detection).
        gt: the GT box it took (true positive) or the box of its class it overlaps most
            (false positive); -1 when it overlaps none.
        iou: its IoU with ``gt`` (0 when -1).
        taken_by: for a duplicate, the better-scored detection that took ``gt``; else -1.
    """

    kind: str
    gt: int
    iou: float
    taken_by: int


def explain_match(
    detections: Detections,
    match: Match,
    gt_boxes: torch.Tensor,
    gt_labels: torch.Tensor,
    match_iou: float,
    index: int,
) -> Verdict:
    """The verdict of :func:`match_detections` on detection ``index``, with its reason.

    Args:
        detections, match: the detections and their match.
        gt_boxes (Tensor[G, 4]), gt_labels (Tensor[G]): the ground truth the match used.
        match_iou: the IoU it used.
    """
    d = detections.boxes.shape[0]
    if not 0 <= index < d:
        raise ValueError(_("detection {index} is not in 0..{last}").format(index=index, last=d - 1))
    j = int(match.matched_gt[index])
    box = detections.boxes[index : index + 1].float()
    gt_boxes = gt_boxes.to(box.device, torch.float32)
    if j >= 0:
        return Verdict("true positive", j, float(box_iou(box, gt_boxes[j : j + 1])[0, 0]), -1)
    if gt_boxes.shape[0] == 0:
        return Verdict("no ground truth", -1, 0.0, -1)
    same = gt_labels.to(box.device) == detections.labels[index]
    if not bool(same.any()):
        return Verdict("no box of its class", -1, 0.0, -1)
    ious = torch.where(
        same, box_iou(box, gt_boxes)[0], torch.full_like(same, -1.0, dtype=torch.float32)
    )
    best = int(ious.argmax())
    if float(ious[best]) <= 0.0:
        return Verdict("IoU too low", -1, 0.0, -1)  # it touches no box of its class
    if float(ious[best]) < match_iou:
        return Verdict("IoU too low", best, float(ious[best]), -1)
    # Every box of its class that it overlaps enough was taken earlier (else it would be a
    # true positive): name the best-overlapping one and the detection that took it.
    taken_by = torch.nonzero(match.matched_gt[:index] == best).flatten()
    return Verdict(
        "duplicate", best, float(ious[best]), int(taken_by[0]) if taken_by.numel() else -1
    )
