"""Stage 10: proposal targets. Sample RoIs from the proposals and give each a class and deltas.

Shape letters: R proposals, G ground-truth boxes, S sampled RoIs (S <= roi_batch_size).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torchvision.ops import box_iou

from frcnn_core.boxes import encode


@dataclass(frozen=True)
class ProposalTargetParams:
    """RoI sampling settings (SPEC stage 10): ``roi_batch_size`` RoIs, ``roi_pos_fraction`` of
    them positive at IoU >= ``roi_pos_iou``; negatives have IoU in ``[roi_neg_iou_lo,
    roi_neg_iou_hi)`` (and under ``roi_pos_iou``, so that no RoI is both)."""

    roi_batch_size: int = 128
    roi_pos_fraction: float = 0.25
    roi_pos_iou: float = 0.5
    roi_neg_iou_hi: float = 0.5
    roi_neg_iou_lo: float = 0.0
    seed: int = 0


@dataclass(frozen=True)
class ProposalTargetResult:
    """Attributes:
    ious (Tensor[R, G]): IoU of every proposal with every GT box.
    max_iou (Tensor[R]): best IoU per proposal (0 when G = 0).
    gt_assignment (Tensor[R]): index of that GT box.
    pos_index (Tensor[P]), neg_index (Tensor[Q]): sampled proposal indices.
    sample_index (Tensor[S]): ``cat(pos_index, neg_index)``.
    rois (Tensor[S, 4]): the sampled RoIs, positives first.
    labels (Tensor[S]): int64 class ids (0 = background).
    targets (Tensor[S, 4]): deltas of each RoI to its GT box (0 for negatives).
    candidates: (#proposals at or over roi_pos_iou, #in the negative IoU range).
    """

    ious: torch.Tensor
    max_iou: torch.Tensor
    gt_assignment: torch.Tensor
    pos_index: torch.Tensor
    neg_index: torch.Tensor
    sample_index: torch.Tensor
    rois: torch.Tensor
    labels: torch.Tensor
    targets: torch.Tensor
    candidates: tuple[int, int]

    def counts(self) -> dict[str, int]:
        return {
            "positive": int(self.pos_index.numel()),
            "negative": int(self.neg_index.numel()),
            "positive_candidates": self.candidates[0],
            "negative_candidates": self.candidates[1],
        }


def _choose(index: torch.Tensor, n: int, generator: torch.Generator) -> torch.Tensor:
    """``n`` of ``index`` chosen at random without replacement (all of them when fewer)."""
    if index.numel() <= n:
        return index
    return index[torch.randperm(index.numel(), generator=generator)[:n].to(index.device)]


def proposal_targets(
    rois: torch.Tensor,
    gt_boxes: torch.Tensor,
    gt_labels: torch.Tensor,
    params: ProposalTargetParams,
) -> ProposalTargetResult:
    """Stage 10: sample ``roi_batch_size`` RoIs and their classification and regression targets.

    ``n_pos = min(#(max_iou >= roi_pos_iou), int(roi_batch_size * roi_pos_fraction))``,
    ``n_neg = min(#negatives in range, roi_batch_size - n_pos)``; seeded by ``params.seed``.

    Args:
        rois (Tensor[R, 4]): proposals, (x1, y1, x2, y2).
        gt_boxes (Tensor[G, 4]): ground truth.
        gt_labels (Tensor[G]): int64 class ids in 1..C.
    """
    device = rois.device
    gt_boxes = gt_boxes.to(device, torch.float32)
    gt_labels = gt_labels.to(device)
    r, g = rois.shape[0], gt_boxes.shape[0]
    ious = box_iou(rois.float(), gt_boxes)  # [R, G]
    if g:
        max_iou, gt_assignment = ious.max(dim=1)
    else:
        max_iou = torch.zeros(r, device=device)
        gt_assignment = torch.zeros(r, dtype=torch.int64, device=device)
    generator = torch.Generator().manual_seed(params.seed)
    pos_candidates = (
        torch.nonzero(max_iou >= params.roi_pos_iou).squeeze(1)
        if g
        else max_iou.new_zeros(0, dtype=torch.int64)
    )
    # A RoI is never both: with roi_pos_iou under roi_neg_iou_hi, positives win.
    neg_hi = min(params.roi_neg_iou_hi, params.roi_pos_iou) if g else params.roi_neg_iou_hi
    neg_candidates = torch.nonzero((max_iou < neg_hi) & (max_iou >= params.roi_neg_iou_lo)).squeeze(
        1
    )
    n_pos_max = int(params.roi_batch_size * params.roi_pos_fraction)
    pos_index = _choose(pos_candidates, n_pos_max, generator)
    neg_index = _choose(neg_candidates, params.roi_batch_size - pos_index.numel(), generator)
    sample_index = torch.cat((pos_index, neg_index))
    sample_rois = rois[sample_index]
    labels = torch.zeros(sample_index.numel(), dtype=torch.int64, device=device)
    targets = torch.zeros((sample_index.numel(), 4), dtype=torch.float32, device=device)
    n_pos = pos_index.numel()
    if n_pos:
        matched = gt_assignment[pos_index]
        labels[:n_pos] = gt_labels[matched]
        targets[:n_pos] = encode(rois[pos_index].float(), gt_boxes[matched])
    return ProposalTargetResult(
        ious=ious,
        max_iou=max_iou,
        gt_assignment=gt_assignment,
        pos_index=pos_index,
        neg_index=neg_index,
        sample_index=sample_index,
        rois=sample_rois,
        labels=labels,
        targets=targets,
        candidates=(int(pos_candidates.numel()), int(neg_candidates.numel())),
    )
