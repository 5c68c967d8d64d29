"""Stages 5 and 6: anchor labelling by IoU with the ground truth, and anchor sampling.

Shape letters: N anchors in all, K anchors inside the image, G ground-truth boxes.

Labels: 1 object, 0 background, -1 ignored (not in the loss).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torchvision.ops import box_iou

from frcnn_core.boxes import encode


class TutorialBugError(RuntimeError):
    """The buggy tutorial variant failed the way the original notebook fails."""


@dataclass(frozen=True)
class AnchorTargetParams:
    """Anchor labelling and sampling settings (RPN training targets)."""

    pos_iou: float = 0.7
    neg_iou: float = 0.3
    batch_size: int = 256
    pos_fraction: float = 0.5
    seed: int = 0
    bug_b2_negatives_last: bool = False
    bug_b3_neg_count: bool = False
    bug_b4_float_npos: bool = False
    bug_b5_width_assign: bool = False


@dataclass(frozen=True)
class AnchorOverlaps:
    """How the inside anchors overlap the ground truth: the part of stage 5 that no threshold
    changes.

    Attributes:
        ious (Tensor[K, G]): float32 IoU of inside anchors with GT (computed in float64).
        max_iou (Tensor[K]): best IoU of each anchor over the GT (0 when G = 0).
        argmax_gt (Tensor[K]): index of that GT box.
        gt_best_iou (Tensor[G]): best IoU each GT box reaches over the anchors.
        tie_index (Tensor[T]): inside-anchor indices whose IoU equals some GT's best (ties).
    """

    ious: torch.Tensor
    max_iou: torch.Tensor
    argmax_gt: torch.Tensor
    gt_best_iou: torch.Tensor
    tie_index: torch.Tensor


def anchor_overlaps(anchors: torch.Tensor, gt_boxes: torch.Tensor) -> AnchorOverlaps:
    """IoU of each inside anchor with each GT box, and the best matches both ways.

    The IoU is computed in float64 and stored as float32, and ties are found on the float32
    matrix, as in the tutorial: SPEC section 3's 45 positives depend on it.

    Args:
        anchors (Tensor[K, 4]): inside anchors, (x1, y1, x2, y2).
        gt_boxes (Tensor[G, 4]): (x1, y1, x2, y2).
    """
    k, g = anchors.shape[0], gt_boxes.shape[0]
    device = anchors.device
    ious = box_iou(anchors.double(), gt_boxes.to(device).double()).float()  # [K, G]
    if g == 0 or k == 0:
        return AnchorOverlaps(
            ious,
            torch.zeros(k, dtype=torch.float32, device=device),
            torch.zeros(k, dtype=torch.int64, device=device),
            torch.zeros(g, dtype=torch.float32, device=device),
            torch.zeros(0, dtype=torch.int64, device=device),
        )
    max_iou, argmax_gt = ious.max(dim=1)
    gt_best = ious.max(dim=0).values
    is_tie = (ious == gt_best[None, :]) & (gt_best[None, :] > 0)
    ties = torch.nonzero(is_tie.any(dim=1)).squeeze(1)
    return AnchorOverlaps(ious, max_iou, argmax_gt, gt_best, ties)


@dataclass(frozen=True)
class AnchorTargetResult:
    """Everything the labelling and sampling produced.

    Attributes:
        ious (Tensor[K, G]): float32 IoU of inside anchors with GT (computed in float64).
        max_iou (Tensor[K]): best IoU of each anchor over the GT (0 when G = 0).
        argmax_gt (Tensor[K]): index of that GT box.
        gt_best_iou (Tensor[G]): best IoU each GT box reaches over the anchors.
        tie_index (Tensor[T]): inside-anchor indices whose IoU equals some GT's best (ties).
        labels_unsampled (Tensor[K]): int64 labels before sampling.
        labels (Tensor[K]): int64 labels after sampling.
        labels_all (Tensor[N]): labels for every anchor, -1 outside the image.
        targets (Tensor[K, 4]): float32 (dx, dy, dw, dh) of each inside anchor to its best GT.
        targets_all (Tensor[N, 4]): the same for every anchor, 0 outside.
    """

    ious: torch.Tensor
    max_iou: torch.Tensor
    argmax_gt: torch.Tensor
    gt_best_iou: torch.Tensor
    tie_index: torch.Tensor
    labels_unsampled: torch.Tensor
    labels: torch.Tensor
    labels_all: torch.Tensor
    targets: torch.Tensor
    targets_all: torch.Tensor
    positive_from_threshold: int

    def counts(self) -> dict[str, int]:
        lab, smp = self.labels_unsampled, self.labels
        return {
            "positive": int((lab == 1).sum()),
            "negative": int((lab == 0).sum()),
            "ignored": int((lab == -1).sum()),
            "sampled_positive": int((smp == 1).sum()),
            "sampled_negative": int((smp == 0).sum()),
            "ties": int(self.tie_index.numel()),
            "positive_from_threshold": self.positive_from_threshold,
        }


def label_anchors(
    overlaps: AnchorOverlaps, params: AnchorTargetParams
) -> tuple[torch.Tensor, torch.Tensor]:
    """Stage 5: label anchors by their IoU with the ground truth.

    ``-1`` everywhere; ``max_iou < neg_iou -> 0``; ``max_iou >= pos_iou -> 1``; then every anchor
    whose IoU with some GT equals that GT's best IoU (ties included, best > 0) -> 1. Positives
    come after negatives so that a GT whose best anchor is under ``neg_iou`` still gets one (the
    tutorial did it the other way round: bug B2).

    Returns:
        labels [K] (int64) and how many anchors reach ``pos_iou`` (0-d).
    """
    max_iou, ties = overlaps.max_iou, overlaps.tie_index
    labels = torch.full(max_iou.shape, -1, dtype=torch.int64, device=max_iou.device)
    by_threshold = max_iou >= params.pos_iou
    if params.bug_b2_negatives_last:
        labels[ties] = 1
        labels[by_threshold] = 1
        labels[max_iou < params.neg_iou] = 0
    else:
        labels[max_iou < params.neg_iou] = 0
        labels[by_threshold] = 1
        labels[ties] = 1
    return labels, by_threshold.sum()


def _subsample(index: torch.Tensor, keep: int, generator: torch.Generator) -> torch.Tensor:
    """The entries of ``index`` that are *not* kept when keeping ``keep`` of them at random."""
    perm = torch.randperm(index.numel(), generator=generator).to(index.device)
    return index[perm[keep:]]


def sample_anchors(labels: torch.Tensor, params: AnchorTargetParams) -> torch.Tensor:
    """Stage 6: keep at most ``batch_size`` labelled anchors, ``pos_fraction`` of them positive.

    ``n_pos = min(#pos, batch_size * pos_fraction)``, ``n_neg = min(#neg, batch_size - n_pos)``;
    the rest become -1. The choice is seeded by ``params.seed``.

    Args:
        labels (Tensor[K]): int64 labels from :func:`label_anchors`.

    Returns:
        Tensor[K]: a new tensor of labels.
    """
    labels = labels.clone()
    generator = torch.Generator().manual_seed(params.seed)
    pos_index = torch.nonzero(labels == 1).squeeze(1)
    if params.bug_b4_float_npos:
        n_pos_float = params.pos_fraction * params.batch_size
        if pos_index.numel() > n_pos_float:
            raise TutorialBugError(
                f"np.random.choice(pos_index, size={pos_index.numel()} - {n_pos_float}) "
                "-> TypeError: 'float' object cannot be interpreted as an integer"
            )
    n_pos_max = int(params.batch_size * params.pos_fraction)
    if pos_index.numel() > n_pos_max:
        labels[_subsample(pos_index, n_pos_max, generator)] = -1
    n_pos = int((labels == 1).sum())
    if params.bug_b3_neg_count:
        n_neg = params.batch_size * n_pos
    else:
        n_neg = params.batch_size - n_pos
    neg_index = torch.nonzero(labels == 0).squeeze(1)
    if neg_index.numel() > n_neg:
        labels[_subsample(neg_index, n_neg, generator)] = -1
    return labels


def anchor_deltas(
    anchors: torch.Tensor, matched_gt: torch.Tensor, bug_b5_width_assign: bool = False
) -> torch.Tensor:
    """Regression targets of anchors to their matched GT boxes, float32 [K, 4].

    Computed in float64 like the labelling. ``bug_b5_width_assign`` reproduces the tutorial's
    ``width = anchors[:, 2] = anchors[:, 0]``: an assignment instead of a minus, which makes the
    width x1 and moves the centre to 1.5 * x1.
    """
    anchors = anchors.double()
    if bug_b5_width_assign:
        anchors = anchors.clone()
        anchors[:, 2] = anchors[:, 0] + anchors[:, 0]  # so that w = x1 and cx = 1.5 * x1
    return encode(anchors, matched_gt.double()).float()


def anchor_targets(
    anchors: torch.Tensor,
    inside_index: torch.Tensor,
    gt_boxes: torch.Tensor,
    params: AnchorTargetParams,
    overlaps: AnchorOverlaps | None = None,
) -> AnchorTargetResult:
    """Stages 5 and 6 together: labels and regression targets for every anchor.

    Args:
        anchors (Tensor[N, 4]): all anchors (float64).
        inside_index (Tensor[K]): indices of the inside anchors.
        gt_boxes (Tensor[G, 4]): ground truth in the input frame.
        overlaps: :func:`anchor_overlaps` of the inside anchors and ``gt_boxes``, when
            already computed.
    """
    n = anchors.shape[0]
    device = anchors.device
    inside = anchors[inside_index]
    if overlaps is None:
        overlaps = anchor_overlaps(inside, gt_boxes)
    labels_unsampled, n_thr = label_anchors(overlaps, params)
    labels = sample_anchors(labels_unsampled, params)
    argmax_gt = overlaps.argmax_gt
    if gt_boxes.shape[0] > 0:
        targets = anchor_deltas(inside, gt_boxes.to(device)[argmax_gt], params.bug_b5_width_assign)
    else:
        targets = torch.zeros((inside.shape[0], 4), dtype=torch.float32, device=device)
    labels_all = torch.full((n,), -1, dtype=torch.int64, device=device)
    labels_all[inside_index] = labels
    targets_all = torch.zeros((n, 4), dtype=torch.float32, device=device)
    targets_all[inside_index] = targets
    return AnchorTargetResult(
        ious=overlaps.ious,
        max_iou=overlaps.max_iou,
        argmax_gt=argmax_gt,
        gt_best_iou=overlaps.gt_best_iou,
        tie_index=overlaps.tie_index,
        labels_unsampled=labels_unsampled,
        labels=labels,
        labels_all=labels_all,
        targets=targets,
        targets_all=targets_all,
        positive_from_threshold=int(n_thr),
    )


@dataclass(frozen=True)
class LabelReason:
    """Why one inside anchor has its label (see :func:`label_anchors`, :func:`sample_anchors`).

    Attributes:
        label: its label before sampling: 1, 0 or -1.
        sampled_label: its label after sampling (-1 when sampling left it out of the loss).
        max_iou: its best IoU over the GT boxes.
        reaches_positive: ``max_iou >= pos_iou``.
        under_negative: ``max_iou < neg_iou``.
        best_for: GT boxes whose best IoU over all anchors this anchor reaches exactly (ties
            included): each makes it positive, whatever its IoU.
    """

    label: int
    sampled_label: int
    max_iou: float
    reaches_positive: bool
    under_negative: bool
    best_for: tuple[int, ...]

    @property
    def sampled(self) -> bool:
        """Labelled and kept by sampling: it counts in the loss."""
        return self.label != -1 and self.sampled_label == self.label


def label_reason(
    targets: AnchorTargetResult, params: AnchorTargetParams, index: int
) -> LabelReason:
    """The rules that gave inside anchor ``index`` (a row of ``targets.ious``) its label.

    Uses the same float32 IoUs and the same exact-equality tie rule as :func:`anchor_overlaps`.
    """
    k = targets.labels.shape[0]
    if not 0 <= index < k:
        raise ValueError(f"inside anchor {index} is not in 0..{k - 1}")
    max_iou = float(targets.max_iou[index])
    ious, best = targets.ious[index], targets.gt_best_iou
    tie = (ious == best) & (best > 0) if ious.numel() else ious.bool()
    return LabelReason(
        label=int(targets.labels_unsampled[index]),
        sampled_label=int(targets.labels[index]),
        max_iou=max_iou,
        reaches_positive=bool(targets.max_iou[index] >= params.pos_iou),
        under_negative=bool(targets.max_iou[index] < params.neg_iou),
        best_for=tuple(torch.nonzero(tie).flatten().tolist()),
    )
