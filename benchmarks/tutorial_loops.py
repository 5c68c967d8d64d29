"""Stages 3 to 13 written the way the tutorial's notebook writes them: the baseline of
``benchmarks/bench_stages.py``.

Python loops over cells, anchors, boxes and RoIs; numpy arrays between stages; the numpy
while-loop NMS; one ``AdaptiveMaxPool2d`` call per RoI. Variable names follow the notebook
(``anchor_boxes``, ``index_inside``, ``gt_argmax_iou``, ``roi``, ``sample_roi`` ...) so each
function can be read next to its cell of ``reference/faster_rcnn_tutorial.txt``.

It is not a second implementation to use: it is what ``frcnn_core`` is measured against. So
that both produce comparable outputs, the tutorial's bugs (SPEC section 4) are fixed here:

- B1: cell centres are visited y-outer, the order of the RPN head's flattened output.
- B2: positives are assigned after negatives; best-IoU ties count only for a GT box whose best
  IoU is over 0 (SPEC stage 5).
- B3, B4: ``n_pos = int(0.5 * 256)``, ``n_neg = 256 - #positives``.
- B5: ``width = x2 - x1`` (a minus, not an assignment).
- B6, B11: ReLU after the RPN's 3 x 3 conv and after fc6 and fc7.
- B7: proposals are ranked by the softmax object probability, not the raw logit.
- B8: NMS visits the boxes in score order; like everywhere else, its IoU has no "+1".
- B10: ``AdaptiveMaxPool2d((7, 7))``.
- B12: the head's loc loss is reduced to a scalar.
- The notebook's ``iou`` / ``ious`` name clash in the IoU loops is resolved.
- SPEC stage 9: ``dw, dh`` are clamped at ``log(1000 / 16)`` before ``exp``; x is clipped to W
  and y to H.

What stays as the tutorial has it, on purpose: anchors and the anchor-GT IoU in float64 with
the IoU stored as float32 (SPEC section 3), the proposal layer in float64 numpy, and RoI
pooling by truncating the RoI to whole feature cells and ``AdaptiveMaxPool2d`` (not
``torchvision.ops.roi_pool``'s rounding and bins, so pooled values differ; shapes do not).

Shape letters: N anchors, K inside anchors, G ground-truth boxes, R proposals, S sampled RoIs.
Boxes are ``(x1, y1, x2, y2)`` in the input frame.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

SCALE_CLAMP = math.log(1000.0 / 16)


@dataclass(frozen=True)
class LoopParams:
    """The tutorial's numbers (SPEC section 2), in the notebook's names."""

    sub_sample: int = 16
    ratios: tuple[float, ...] = (0.5, 1.0, 2.0)
    scales: tuple[float, ...] = (8.0, 16.0, 32.0)
    pos_iou_threshold: float = 0.7
    neg_iou_threshold: float = 0.3
    n_sample: int = 256
    pos_ratio: float = 0.5
    rpn_lambda: float = 10.0
    nms_thresh: float = 0.7
    n_train_pre_nms: int = 12000
    n_train_post_nms: int = 2000
    min_size: float = 16.0
    roi_n_sample: int = 128
    roi_pos_ratio: float = 0.25
    pos_iou_thresh: float = 0.5
    neg_iou_thresh_hi: float = 0.5
    neg_iou_thresh_lo: float = 0.0
    pool_size: int = 7
    roi_lambda: float = 10.0
    seed: int = 0


# Stage 3 ---------------------------------------------------------------------------------


def generate_anchors(feature_size: tuple[int, int], p: LoopParams) -> np.ndarray:
    """Stage 3: ``anchor_boxes`` float64 [N, 4], index ``(iy * Wf + ix) * A + a``."""
    hf, wf = feature_size
    sub_sample = p.sub_sample
    ctr_x = np.arange(sub_sample, (wf + 1) * sub_sample, sub_sample)
    ctr_y = np.arange(sub_sample, (hf + 1) * sub_sample, sub_sample)

    index = 0
    ctr = np.zeros((hf * wf, 2))
    for j in range(len(ctr_y)):  # y outer (B1 fix)
        for i in range(len(ctr_x)):
            ctr[index, 1] = ctr_x[i] - sub_sample / 2
            ctr[index, 0] = ctr_y[j] - sub_sample / 2
            index += 1

    ratios, scales = p.ratios, p.scales
    anchor_boxes = np.zeros((hf * wf * len(ratios) * len(scales), 4))
    index = 0
    for c in ctr:
        ctr_y_c, ctr_x_c = c
        for i in range(len(ratios)):
            for j in range(len(scales)):
                h = sub_sample * scales[j] * np.sqrt(ratios[i])
                w = sub_sample * scales[j] * np.sqrt(1.0 / ratios[i])
                anchor_boxes[index, 1] = ctr_y_c - h / 2.0
                anchor_boxes[index, 0] = ctr_x_c - w / 2.0
                anchor_boxes[index, 3] = ctr_y_c + h / 2.0
                anchor_boxes[index, 2] = ctr_x_c + w / 2.0
                index += 1
    return anchor_boxes


# Stage 4 ---------------------------------------------------------------------------------


def inside_anchors(anchor_boxes: np.ndarray, img_size: tuple[int, int]) -> np.ndarray:
    """Stage 4: ``index_inside`` [K], the anchors wholly inside an image of (H, W)."""
    height, width = img_size
    return np.where(
        (anchor_boxes[:, 0] >= 0)
        & (anchor_boxes[:, 1] >= 0)
        & (anchor_boxes[:, 2] <= width)
        & (anchor_boxes[:, 3] <= height)
    )[0]


# Stage 5 ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class AnchorLabels:
    """Attributes:
    ious [K, G] float32, argmax_ious [K], max_ious [K], gt_max_iou [G], label [K] int32.
    """

    ious: np.ndarray
    argmax_ious: np.ndarray
    max_ious: np.ndarray
    gt_max_iou: np.ndarray
    label: np.ndarray


def label_anchors(valid_anchor_boxes: np.ndarray, bbox: np.ndarray, p: LoopParams) -> AnchorLabels:
    """Stage 5: the anchor-GT IoU double loop (float64, stored float32) and the labels."""
    ious = np.empty((len(valid_anchor_boxes), len(bbox)), dtype=np.float32)
    ious.fill(0)
    for i, anchor_box in enumerate(valid_anchor_boxes):
        xal, yal, xar, yar = anchor_box
        anchor_area = (xar - xal) * (yar - yal)
        for j, gt_box in enumerate(bbox):
            xbl, ybl, xbr, ybr = gt_box
            box_area = (xbr - xbl) * (ybr - ybl)

            inter_x1 = max([xbl, xal])
            inter_y1 = max([ybl, yal])
            inter_x2 = min([xbr, xar])
            inter_y2 = min([ybr, yar])

            if (inter_x1 < inter_x2) and (inter_y1 < inter_y2):
                inter_area = (inter_x2 - inter_x1) * (inter_y2 - inter_y1)
                iou = inter_area / (anchor_area + box_area - inter_area)
            else:
                iou = 0
            ious[i, j] = iou

    gt_argmax_iou = ious.argmax(axis=0)
    gt_max_iou = ious[gt_argmax_iou, np.arange(ious.shape[1])]
    has_overlap = gt_max_iou > 0
    gt_argmax_iou = np.where((ious == gt_max_iou) & has_overlap)[0]

    argmax_ious = ious.argmax(axis=1)
    max_ious = ious[np.arange(len(valid_anchor_boxes)), argmax_ious]

    label = np.empty((len(valid_anchor_boxes),), dtype=np.int32)
    label.fill(-1)
    label[max_ious < p.neg_iou_threshold] = 0  # negatives first (B2 fix)
    label[max_ious >= p.pos_iou_threshold] = 1
    label[gt_argmax_iou] = 1
    return AnchorLabels(ious, argmax_ious, max_ious, gt_max_iou, label)


# Stage 6 ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class AnchorTargets:
    """Attributes:
    label [K] (after sampling), anchor_locs [K, 4], anchor_labels [N], anchor_locations [N, 4].
    """

    label: np.ndarray
    anchor_locs: np.ndarray
    anchor_labels: np.ndarray
    anchor_locations: np.ndarray


def sample_anchors(
    label: np.ndarray,
    valid_anchor_boxes: np.ndarray,
    bbox: np.ndarray,
    argmax_ious: np.ndarray,
    index_inside: np.ndarray,
    n_anchors: int,
    p: LoopParams,
) -> AnchorTargets:
    """Stage 6: sample 256 anchors (``np.random.choice``), their deltas, and both scattered
    back to all N anchors as the notebook's ``anchor_labels`` / ``anchor_locations``."""
    rng = np.random.RandomState(p.seed)
    label = label.copy()
    n_pos = int(p.pos_ratio * p.n_sample)  # B4 fix

    pos_index = np.where(label == 1)[0]
    if len(pos_index) > n_pos:
        disable_index = rng.choice(pos_index, size=(len(pos_index) - n_pos), replace=False)
        label[disable_index] = -1

    n_neg = p.n_sample - np.sum(label == 1)  # B3 fix
    neg_index = np.where(label == 0)[0]
    if len(neg_index) > n_neg:
        disable_index = rng.choice(neg_index, size=(len(neg_index) - n_neg), replace=False)
        label[disable_index] = -1

    max_iou_bbox = bbox[argmax_ious]
    height = valid_anchor_boxes[:, 3] - valid_anchor_boxes[:, 1]
    width = valid_anchor_boxes[:, 2] - valid_anchor_boxes[:, 0]  # B5 fix
    ctr_y = valid_anchor_boxes[:, 1] + 0.5 * height
    ctr_x = valid_anchor_boxes[:, 0] + 0.5 * width

    base_height = max_iou_bbox[:, 3] - max_iou_bbox[:, 1]
    base_width = max_iou_bbox[:, 2] - max_iou_bbox[:, 0]
    base_ctr_y = max_iou_bbox[:, 1] + 0.5 * base_height
    base_ctr_x = max_iou_bbox[:, 0] + 0.5 * base_width

    eps = np.finfo(height.dtype).eps
    height = np.maximum(height, eps)
    width = np.maximum(width, eps)

    dy = (base_ctr_y - ctr_y) / height
    dx = (base_ctr_x - ctr_x) / width
    dh = np.log(base_height / height)
    dw = np.log(base_width / width)
    anchor_locs = np.vstack((dx, dy, dw, dh)).transpose()

    anchor_labels = np.empty((n_anchors,), dtype=label.dtype)
    anchor_labels.fill(-1)
    anchor_labels[index_inside] = label

    anchor_locations = np.empty((n_anchors, 4), dtype=anchor_locs.dtype)
    anchor_locations.fill(0)
    anchor_locations[index_inside, :] = anchor_locs
    return AnchorTargets(label, anchor_locs, anchor_labels, anchor_locations)


# Stage 7 ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class RPNOut:
    """Attributes:
    pred_anchor_locs [1, N, 4], pred_cls_scores [1, N, 2], objectness_score [1, N] (tensors).
    """

    pred_anchor_locs: torch.Tensor
    pred_cls_scores: torch.Tensor
    objectness_score: torch.Tensor


def rpn_head(
    output_map: torch.Tensor, conv1: nn.Conv2d, reg_layer: nn.Conv2d, cls_layer: nn.Conv2d
) -> RPNOut:
    """Stage 7: conv 3x3 + ReLU (B6 fix), the two 1x1 convs, the notebook's reshapes."""
    _, _, hf, wf = output_map.shape
    n_anchor = reg_layer.out_channels // 4
    x = F.relu(conv1(output_map))
    pred_anchor_locs = reg_layer(x)
    pred_cls_scores = cls_layer(x)

    pred_anchor_locs = pred_anchor_locs.permute(0, 2, 3, 1).contiguous().view(1, -1, 4)
    pred_cls_scores = pred_cls_scores.permute(0, 2, 3, 1).contiguous()
    objectness_score = (
        pred_cls_scores.view(1, hf, wf, n_anchor, 2)[:, :, :, :, 1].contiguous().view(1, -1)
    )
    pred_cls_scores = pred_cls_scores.view(1, -1, 2)
    return RPNOut(pred_anchor_locs, pred_cls_scores, objectness_score)


# Stage 8 ---------------------------------------------------------------------------------


def rpn_loss(
    pred_anchor_locs: torch.Tensor,
    pred_cls_scores: torch.Tensor,
    anchor_locations: np.ndarray,
    anchor_labels: np.ndarray,
    p: LoopParams,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Stage 8: (cross-entropy, ``lambda * sum smoothL1 / N_reg``), as the notebook's cells."""
    device = pred_anchor_locs.device
    rpn_loc = pred_anchor_locs[0]
    rpn_score = pred_cls_scores[0]
    gt_rpn_loc = torch.from_numpy(anchor_locations).to(device)
    gt_rpn_score = torch.from_numpy(anchor_labels).to(device)

    rpn_cls_loss = F.cross_entropy(rpn_score, gt_rpn_score.long(), ignore_index=-1)

    pos = gt_rpn_score > 0
    mask = pos.unsqueeze(1).expand_as(rpn_loc)
    mask_loc_preds = rpn_loc[mask].view(-1, 4)
    mask_loc_targets = gt_rpn_loc[mask].view(-1, 4)
    x = torch.abs(mask_loc_targets.cpu() - mask_loc_preds.cpu())
    rpn_loc_loss = ((x < 1).float() * 0.5 * x**2) + ((x >= 1).float() * (x - 0.5))

    n_reg = (gt_rpn_score > 0).float().sum().cpu()
    rpn_loc_loss = p.rpn_lambda * rpn_loc_loss.sum() / n_reg
    return rpn_cls_loss, rpn_loc_loss


# Stage 9 ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Proposals:
    """Attributes:
    roi [R, 4] float64; keep (anchor index of each proposal) [R]; counts: after_min_size,
    pre_nms, after_nms, kept.
    """

    roi: np.ndarray
    keep: np.ndarray
    counts: dict[str, int]


def proposal_layer(
    anchor_boxes: np.ndarray,
    pred_anchor_locs: torch.Tensor,
    pred_cls_scores: torch.Tensor,
    img_size: tuple[int, int],
    p: LoopParams,
) -> Proposals:
    """Stage 9: decode, clip, min size, top 12000 by softmax probability, while-loop NMS,
    top 2000 (training counts)."""
    anc_height = anchor_boxes[:, 3] - anchor_boxes[:, 1]
    anc_width = anchor_boxes[:, 2] - anchor_boxes[:, 0]
    anc_ctr_y = anchor_boxes[:, 1] + 0.5 * anc_height
    anc_ctr_x = anchor_boxes[:, 0] + 0.5 * anc_width

    pred_anchor_locs_numpy = pred_anchor_locs[0].cpu().data.numpy()
    pred_cls_scores_numpy = pred_cls_scores[0].cpu().data.numpy()
    # B7 fix: the object probability of the 2-way softmax, not the raw logit.
    exp_scores = np.exp(pred_cls_scores_numpy - pred_cls_scores_numpy.max(axis=1, keepdims=True))
    objectness_score_numpy = exp_scores[:, 1] / exp_scores.sum(axis=1)

    dy = pred_anchor_locs_numpy[:, 1::4]
    dx = pred_anchor_locs_numpy[:, 0::4]
    dh = np.minimum(pred_anchor_locs_numpy[:, 3::4], SCALE_CLAMP)
    dw = np.minimum(pred_anchor_locs_numpy[:, 2::4], SCALE_CLAMP)

    ctr_y = dy * anc_height[:, np.newaxis] + anc_ctr_y[:, np.newaxis]
    ctr_x = dx * anc_width[:, np.newaxis] + anc_ctr_x[:, np.newaxis]
    h = np.exp(dh) * anc_height[:, np.newaxis]
    w = np.exp(dw) * anc_width[:, np.newaxis]

    roi = np.zeros(pred_anchor_locs_numpy.shape, dtype=anchor_boxes.dtype)
    roi[:, 0::4] = ctr_x - 0.5 * w
    roi[:, 1::4] = ctr_y - 0.5 * h
    roi[:, 2::4] = ctr_x + 0.5 * w
    roi[:, 3::4] = ctr_y + 0.5 * h

    height, width = img_size
    roi[:, slice(0, 4, 2)] = np.clip(roi[:, slice(0, 4, 2)], 0, width)
    roi[:, slice(1, 4, 2)] = np.clip(roi[:, slice(1, 4, 2)], 0, height)

    hs = roi[:, 3] - roi[:, 1]
    ws = roi[:, 2] - roi[:, 0]
    keep = np.where((hs >= p.min_size) & (ws >= p.min_size))[0]
    roi = roi[keep, :]
    score = objectness_score_numpy[keep]
    after_min_size = len(keep)

    # Highest score first; ties in index order, as a stable descending sort.
    order = np.argsort(-score.ravel(), kind="stable")
    order = order[: p.n_train_pre_nms]
    roi = roi[order, :]
    pre_nms_anchor = keep[order]

    x1 = roi[:, 0]
    y1 = roi[:, 1]
    x2 = roi[:, 2]
    y2 = roi[:, 3]
    areas = (x2 - x1) * (y2 - y1)  # no +1

    order = np.arange(len(roi))  # B8 fix: roi is already in score order
    nms_keep = []
    while order.size > 0:
        i = order[0]
        nms_keep.append(i)

        xx1 = np.maximum(x1[i], x1[order[1:]])
        yy1 = np.maximum(y1[i], y1[order[1:]])
        xx2 = np.minimum(x2[i], x2[order[1:]])
        yy2 = np.minimum(y2[i], y2[order[1:]])

        w = np.maximum(0.0, xx2 - xx1)
        h = np.maximum(0.0, yy2 - yy1)

        inter = w * h
        ovr = inter / (areas[i] + areas[order[1:]] - inter)
        inds = np.where(ovr <= p.nms_thresh)[0]
        order = order[inds + 1]

    after_nms = len(nms_keep)
    nms_keep = nms_keep[: p.n_train_post_nms]
    counts = {
        "after_min_size": after_min_size,
        "pre_nms": len(roi),
        "after_nms": after_nms,
        "kept": len(nms_keep),
    }
    return Proposals(roi[nms_keep], pre_nms_anchor[nms_keep], counts)


# Stage 10 --------------------------------------------------------------------------------


@dataclass(frozen=True)
class ProposalTargets:
    """Attributes:
    ious [R, G], max_iou [R], sample_roi [S, 4], gt_roi_labels [S], gt_roi_locs [S, 4];
    counts: positive, negative (sampled), positive_candidates, negative_candidates.
    """

    ious: np.ndarray
    max_iou: np.ndarray
    sample_roi: np.ndarray
    gt_roi_labels: np.ndarray
    gt_roi_locs: np.ndarray
    counts: dict[str, int]


def proposal_targets(
    roi: np.ndarray, bbox: np.ndarray, labels: np.ndarray, p: LoopParams
) -> ProposalTargets:
    """Stage 10: the proposal-GT IoU double loop, 128 RoIs (25 % positive) by
    ``np.random.choice``, their class labels and deltas."""
    rng = np.random.RandomState(p.seed)
    ious = np.empty((len(roi), bbox.shape[0]), dtype=np.float32)
    ious.fill(0)
    for num1, i in enumerate(roi):
        xa1, ya1, xa2, ya2 = i
        anchor_area = (ya2 - ya1) * (xa2 - xa1)
        for num2, j in enumerate(bbox):
            xb1, yb1, xb2, yb2 = j
            box_area = (yb2 - yb1) * (xb2 - xb1)
            inter_x1 = max([xb1, xa1])
            inter_y1 = max([yb1, ya1])
            inter_x2 = min([xb2, xa2])
            inter_y2 = min([yb2, ya2])

            if (inter_x1 < inter_x2) and (inter_y1 < inter_y2):
                inter_area = (inter_y2 - inter_y1) * (inter_x2 - inter_x1)
                iou = inter_area / (anchor_area + box_area - inter_area)
            else:
                iou = 0
            ious[num1, num2] = iou

    gt_assignment = ious.argmax(axis=1)
    max_iou = ious.max(axis=1)
    gt_roi_label = labels[gt_assignment]

    pos_roi_per_image = int(p.roi_n_sample * p.roi_pos_ratio)
    pos_index = np.where(max_iou >= p.pos_iou_thresh)[0]
    positive_candidates = pos_index.size
    pos_roi_per_this_image = int(min(pos_roi_per_image, pos_index.size))
    if pos_index.size > 0:
        pos_index = rng.choice(pos_index, size=pos_roi_per_this_image, replace=False)

    neg_index = np.where((max_iou < p.neg_iou_thresh_hi) & (max_iou >= p.neg_iou_thresh_lo))[0]
    negative_candidates = neg_index.size
    neg_roi_per_this_image = p.roi_n_sample - pos_roi_per_this_image
    neg_roi_per_this_image = int(min(neg_roi_per_this_image, neg_index.size))
    if neg_index.size > 0:
        neg_index = rng.choice(neg_index, size=neg_roi_per_this_image, replace=False)

    keep_index = np.append(pos_index, neg_index)
    gt_roi_labels = gt_roi_label[keep_index]
    gt_roi_labels[pos_roi_per_this_image:] = 0
    sample_roi = roi[keep_index]

    bbox_for_sampled_roi = bbox[gt_assignment[keep_index]]
    width = sample_roi[:, 2] - sample_roi[:, 0]
    height = sample_roi[:, 3] - sample_roi[:, 1]
    ctr_x = sample_roi[:, 0] + 0.5 * width
    ctr_y = sample_roi[:, 1] + 0.5 * height

    base_width = bbox_for_sampled_roi[:, 2] - bbox_for_sampled_roi[:, 0]
    base_height = bbox_for_sampled_roi[:, 3] - bbox_for_sampled_roi[:, 1]
    base_ctr_x = bbox_for_sampled_roi[:, 0] + 0.5 * base_width
    base_ctr_y = bbox_for_sampled_roi[:, 1] + 0.5 * base_height

    eps = np.finfo(height.dtype).eps
    height = np.maximum(height, eps)
    width = np.maximum(width, eps)

    dx = (base_ctr_x - ctr_x) / width
    dy = (base_ctr_y - ctr_y) / height
    dw = np.log(base_width / width)
    dh = np.log(base_height / height)
    gt_roi_locs = np.vstack((dx, dy, dw, dh)).transpose()
    counts = {
        "positive": pos_roi_per_this_image,
        "negative": neg_roi_per_this_image,
        "positive_candidates": int(positive_candidates),
        "negative_candidates": int(negative_candidates),
    }
    return ProposalTargets(ious, max_iou, sample_roi, gt_roi_labels, gt_roi_locs, counts)


# Stage 11 --------------------------------------------------------------------------------


def roi_pool(output_map: torch.Tensor, sample_roi: np.ndarray, p: LoopParams) -> torch.Tensor:
    """Stage 11: [S, C, 7, 7], one ``AdaptiveMaxPool2d((7, 7))`` call per RoI (B10 fix) on the
    RoI truncated to whole feature cells."""
    rois = torch.from_numpy(sample_roi).float()
    roi_indices = 0 * np.ones((len(rois),), dtype=np.int32)
    roi_indices = torch.from_numpy(roi_indices).float()
    indices_and_rois = torch.cat([roi_indices[:, None], rois], dim=1)
    xy_indices_and_rois = indices_and_rois[:, [0, 2, 1, 4, 3]]  # (idx, y1, x1, y2, x2)
    indices_and_rois = xy_indices_and_rois.contiguous()

    adaptive_max_pool = nn.AdaptiveMaxPool2d((p.pool_size, p.pool_size))
    output = []
    rois = indices_and_rois.data.float()
    rois[:, 1:].mul_(1 / float(p.sub_sample))
    rois = rois.long()
    num_rois = rois.size(0)
    for i in range(num_rois):
        roi = rois[i]
        im_idx = roi[0]
        im = output_map.narrow(0, im_idx, 1)[..., roi[1] : (roi[3] + 1), roi[2] : (roi[4] + 1)]
        tmp = adaptive_max_pool(im)
        output.append(tmp)
    return torch.cat(output, 0)


# Stage 12 --------------------------------------------------------------------------------


def head(
    pooled: torch.Tensor, fc6: nn.Linear, fc7: nn.Linear, score: nn.Linear, cls_loc: nn.Linear
) -> tuple[torch.Tensor, torch.Tensor]:
    """Stage 12: ``(roi_cls_loc [S, (C+1)*4], roi_cls_score [S, C+1])``; ReLUs added (B11)."""
    roi_head_classifier = nn.Sequential(fc6, nn.ReLU(), fc7, nn.ReLU())
    k = pooled.view(pooled.size(0), -1)
    k = roi_head_classifier(k)
    roi_cls_loc = cls_loc(k)
    roi_cls_score = score(k)
    return roi_cls_loc, roi_cls_score


# Stage 13 --------------------------------------------------------------------------------


def head_loss(
    roi_cls_loc: torch.Tensor,
    roi_cls_score: torch.Tensor,
    gt_roi_locs: np.ndarray,
    gt_roi_labels: np.ndarray,
    p: LoopParams,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Stage 13: (cross-entropy, ``lambda * sum smoothL1 / N_pos``), reduced (B12 fix)."""
    device = roi_cls_score.device
    gt_roi_loc = torch.from_numpy(gt_roi_locs).to(device)
    gt_roi_label = torch.from_numpy(np.float32(gt_roi_labels)).long().to(device)
    roi_cls_loss = F.cross_entropy(roi_cls_score, gt_roi_label, ignore_index=-1)

    n_sample = roi_cls_loc.shape[0]
    roi_loc = roi_cls_loc.view(n_sample, -1, 4)
    roi_loc = roi_loc[torch.arange(0, n_sample, device=device).long(), gt_roi_label]

    pos = gt_roi_label > 0
    mask = pos.unsqueeze(1).expand_as(roi_loc)
    mask_loc_preds = roi_loc[mask].view(-1, 4)
    mask_loc_targets = gt_roi_loc[mask].view(-1, 4)
    x = torch.abs(mask_loc_targets - mask_loc_preds)
    roi_loc_loss = ((x < 1).float() * 0.5 * x**2) + ((x >= 1).float() * (x - 0.5))
    n_pos = max(int(pos.sum()), 1)
    roi_loc_loss = p.roi_lambda * roi_loc_loss.sum() / n_pos
    return roi_cls_loss, roi_loc_loss


# Stages 3 to 13 --------------------------------------------------------------------------


@dataclass(frozen=True)
class ChainResult:
    """Every stage's output of :func:`chain`."""

    anchor_boxes: np.ndarray
    index_inside: np.ndarray
    labels: AnchorLabels
    targets: AnchorTargets
    rpn: RPNOut
    rpn_loss: tuple[torch.Tensor, torch.Tensor]
    proposals: Proposals
    proposal_targets: ProposalTargets
    pooled: torch.Tensor
    head: tuple[torch.Tensor, torch.Tensor]
    head_loss: tuple[torch.Tensor, torch.Tensor]


def chain(
    output_map: torch.Tensor,
    bbox: np.ndarray,
    labels: np.ndarray,
    rpn_layers: tuple[nn.Conv2d, nn.Conv2d, nn.Conv2d],
    head_layers: tuple[nn.Linear, nn.Linear, nn.Linear, nn.Linear],
    img_size: tuple[int, int],
    p: LoopParams,
) -> ChainResult:
    """Stages 3 to 13 in a row, each fed by the previous one, as the notebook runs them.

    Args:
        output_map (Tensor[1, 512, Hf, Wf]): the backbone's features.
        bbox: [G, 4] GT boxes (float64). labels: [G] class ids in 1..C.
        rpn_layers: (conv1, reg_layer, cls_layer). head_layers: (fc6, fc7, score, cls_loc).
    """
    hf, wf = output_map.shape[-2:]
    anchor_boxes = generate_anchors((hf, wf), p)
    index_inside = inside_anchors(anchor_boxes, img_size)
    valid_anchor_boxes = anchor_boxes[index_inside]
    anchor_label = label_anchors(valid_anchor_boxes, bbox, p)
    targets = sample_anchors(
        anchor_label.label,
        valid_anchor_boxes,
        bbox,
        anchor_label.argmax_ious,
        index_inside,
        len(anchor_boxes),
        p,
    )
    rpn = rpn_head(output_map, *rpn_layers)
    loss_rpn = rpn_loss(
        rpn.pred_anchor_locs,
        rpn.pred_cls_scores,
        targets.anchor_locations,
        targets.anchor_labels,
        p,
    )
    proposals = proposal_layer(anchor_boxes, rpn.pred_anchor_locs, rpn.pred_cls_scores, img_size, p)
    roi_targets = proposal_targets(proposals.roi, bbox, labels, p)
    pooled = roi_pool(output_map, roi_targets.sample_roi, p)
    head_out = head(pooled, *head_layers)
    loss_head = head_loss(*head_out, roi_targets.gt_roi_locs, roi_targets.gt_roi_labels, p)
    return ChainResult(
        anchor_boxes=anchor_boxes,
        index_inside=index_inside,
        labels=anchor_label,
        targets=targets,
        rpn=rpn,
        rpn_loss=loss_rpn,
        proposals=proposals,
        proposal_targets=roi_targets,
        pooled=pooled,
        head=head_out,
        head_loss=loss_head,
    )
