"""What each tutorial bug does to the current image: numbers computed with ``frcnn_core``.

Most effects compare two runs of the pipeline that differ only in one bug's setting (see
:func:`explorer.bugs.catalogue.with_bug`): every stage upstream of that setting is shared with
the other pages' runs, so a bug costs only the stages it changes. No streamlit here: the page
places what these functions return.

Tables are rows of dicts whose keys are English column names marked for the catalogue (``N_``):
the code reads them back by those names, and the page translates them where it shows them.
"""

from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from frcnn_core.anchor_targets import (
    AnchorTargetParams,
    AnchorTargetResult,
    TutorialBugError,
    anchor_targets,
)
from frcnn_core.anchors import AnchorParams, AnchorResult, generate_anchors
from frcnn_core.backbone import VGG16, BackboneParams, image_to_tensor
from frcnn_core.boxes import smooth_l1_sum
from frcnn_core.graph import Run
from frcnn_core.head import (
    FastRCNNHead,
    HeadLoss,
    HeadLossParams,
    HeadOutput,
    HeadParams,
    UnreducedLossError,
    head_forward,
    head_loss,
)
from frcnn_core.i18n import N_
from frcnn_core.proposals import ProposalResult
from frcnn_core.roi_pool import pool_rois
from frcnn_core.rpn import RPNHead, RPNParams, rpn_forward

# The tutorial's four zebra boxes in its 800 x 800 input frame.
TUTORIAL_BOXES = (
    (89, 469, 249, 644),
    (238, 417, 415, 630),
    (435, 419, 580, 634),
    (617, 462, 765, 637),
)
TUTORIAL_SIZE = (800, 800)
# B2's example: a 40 x 30 box in the middle of an 800 x 800 frame.
SMALL_BOX = (380.0, 385.0, 420.0, 415.0)


@dataclass(frozen=True)
class PairingEffect:
    """Which cell's prediction each anchor is trained with.

    Attributes:
        cells: feature-map cells (Hf * Wf).
        self_paired: cells whose anchors get their own cell's prediction.
        anchor_centres (Tensor[P, 2]): where the shown anchors are (x, y).
        cell_centres (Tensor[P, 2]): centre of the cell whose prediction each is paired with.
        anchor_boxes (Tensor[P, 4]): the shown anchors.
        positives: positive (sampled) anchors; the shown ones when there are any.
        inside_gt: positives whose paired cell centre lies inside their GT box.
    """

    cells: int
    self_paired: int
    anchor_centres: torch.Tensor
    cell_centres: torch.Tensor
    anchor_boxes: torch.Tensor
    positives: int
    inside_gt: int


def _centres(boxes: torch.Tensor) -> torch.Tensor:
    return (boxes[:, :2] + boxes[:, 2:]) / 2


def pairing_effect(
    grid: AnchorResult,
    targets: AnchorTargetResult,
    row_major: AnchorResult,
    gt_boxes: torch.Tensor,
    sample_cells: int = 40,
) -> PairingEffect:
    """Anchor ``i`` of ``grid`` is trained with RPN output ``i``, which the head computes at the
    cell of ``row_major``'s anchor ``i``. Shows the positives, or a seeded sample of cells when
    there are none.

    Args:
        grid: the anchors the labels were computed on (x-outer for the tutorial).
        targets: labels on ``grid``.
        row_major: the anchors in the RPN output's order.
        gt_boxes (Tensor[G, 4]): input frame.
    """
    per_cell = grid.base_anchors.shape[0]
    cell_of_index = _centres(row_major.anchors[::per_cell])  # [Hf*Wf, 2]
    anchor_cell = _centres(grid.anchors[::per_cell])
    self_paired = int(torch.isclose(cell_of_index, anchor_cell).all(dim=1).sum())
    pos = torch.nonzero(targets.labels == 1).squeeze(1)
    index = grid.inside_index[pos]
    inside = 0
    if pos.numel():
        cell = cell_of_index[index // per_cell]
        gt = gt_boxes.double()[targets.argmax_gt[pos]]
        inside = int(
            (
                (cell[:, 0] >= gt[:, 0])
                & (cell[:, 0] <= gt[:, 2])
                & (cell[:, 1] >= gt[:, 1])
                & (cell[:, 1] <= gt[:, 3])
            ).sum()
        )
    else:
        cells = cell_of_index.shape[0]
        pick = torch.randperm(cells, generator=torch.Generator().manual_seed(0))[:sample_cells]
        index = pick * per_cell + per_cell // 2
    return PairingEffect(
        cells=int(cell_of_index.shape[0]),
        self_paired=self_paired,
        anchor_centres=_centres(grid.anchors[index]),
        cell_centres=cell_of_index[index // per_cell],
        anchor_boxes=grid.anchors[index],
        positives=int(pos.numel()),
        inside_gt=inside,
    )


def positives_per_box(targets: AnchorTargetResult, pos_iou: float) -> list[int]:
    """Positive anchors each GT box produced: its best anchors (ties) or IoU >= ``pos_iou``,
    if the labelling left them positive."""
    is_pos = targets.labels_unsampled == 1  # [K]
    ious = targets.ious  # [K, G]
    best = targets.gt_best_iou  # [G]
    claimed = ((ious == best[None, :]) & (best[None, :] > 0)) | (ious >= pos_iou)
    return (claimed & is_pos[:, None]).sum(dim=0).tolist()


@dataclass(frozen=True)
class SmallBoxDemo:
    box: tuple[float, float, float, float]
    best_iou: float
    fixed_positives: int
    tutorial_positives: int


@functools.cache
def small_box_demo(box: tuple[float, float, float, float] = SMALL_BOX) -> SmallBoxDemo:
    """B2's example: one 40 x 30 box, tutorial anchors and thresholds, 800 x 800 frame."""
    grid = generate_anchors(
        VGG16.feature_size(TUTORIAL_SIZE), TUTORIAL_SIZE, AnchorParams(), VGG16.stride
    )
    gt = torch.tensor([box], dtype=torch.float32)
    fixed, tutorial = (
        anchor_targets(
            grid.anchors, grid.inside_index, gt, AnchorTargetParams(bug_b2_negatives_last=buggy)
        )
        for buggy in (False, True)
    )
    return SmallBoxDemo(
        box,
        float(fixed.gt_best_iou[0]),
        fixed.counts()["positive"],
        tutorial.counts()["positive"],
    )


@dataclass(frozen=True)
class SamplingEffect:
    sampled_positive: int
    sampled_negative: int
    cls_loss: float

    @property
    def negatives_per_positive(self) -> float:
        return self.sampled_negative / max(self.sampled_positive, 1)


def sampling_effect(run: Run) -> SamplingEffect:
    """What the RPN's classification loss sees with this run's anchor labels."""
    counts = run["anchor_targets"].counts()
    loss = run["rpn_loss"]
    return SamplingEffect(counts["sampled_positive"], counts["sampled_negative"], float(loss.cls))


@dataclass(frozen=True)
class FloatCountEffect:
    positives: int
    limit: float
    error: str | None


def float_count_effect(
    anchors: torch.Tensor,
    inside_index: torch.Tensor,
    gt_boxes: torch.Tensor,
    params: AnchorTargetParams,
) -> FloatCountEffect:
    """Run the sampling with the float ``n_pos``: the error message, or None if not triggered."""
    buggy = dataclasses.replace(params, bug_b4_float_npos=True)
    fixed = dataclasses.replace(params, bug_b4_float_npos=False)
    positives = anchor_targets(anchors, inside_index, gt_boxes, fixed).counts()["positive"]
    limit = params.pos_fraction * params.batch_size
    try:
        anchor_targets(anchors, inside_index, gt_boxes, buggy)
    except TutorialBugError as exc:
        return FloatCountEffect(positives, limit, str(exc))
    return FloatCountEffect(positives, limit, None)


def float_count_on(fixed: Run, buggy: Run) -> FloatCountEffect:
    """B4 on this image: the fixed run's positives, and the buggy run's failure if it fails."""
    positives = fixed["anchor_targets"].counts()["positive"]
    params = fixed.params.anchor_targets
    limit = params.pos_fraction * params.batch_size
    try:
        buggy["anchor_targets"]
    except TutorialBugError as exc:
        return FloatCountEffect(positives, limit, str(exc))
    return FloatCountEffect(positives, limit, None)


@functools.cache
def float_count_demo(pos_iou: float = 0.5) -> FloatCountEffect:
    """The tutorial's zebra boxes with a positive IoU of 0.5: 129 positives, > 128."""
    grid = generate_anchors(
        VGG16.feature_size(TUTORIAL_SIZE), TUTORIAL_SIZE, AnchorParams(), VGG16.stride
    )
    gt = torch.tensor(TUTORIAL_BOXES, dtype=torch.float32)
    return float_count_effect(
        grid.anchors, grid.inside_index, gt, AnchorTargetParams(pos_iou=pos_iou)
    )


@dataclass(frozen=True)
class TargetEffect:
    positives: int
    zero_prediction_sum: float  # sum smoothL1(0 - t) over the sampled positives
    rpn_loc_loss: float  # the RPN's loc loss with this image's current predictions
    targets: torch.Tensor  # [P, 4] the positives' targets


def target_effect(run: Run) -> TargetEffect:
    """B5's numbers for one variant: its positives' targets, and the box loss they give."""
    targets: AnchorTargetResult = run["anchor_targets"]
    pos = targets.labels == 1
    t = targets.targets[pos]
    beta = run.params.rpn_loss.smooth_l1_beta
    zero = float(smooth_l1_sum(torch.zeros_like(t), t, beta))
    return TargetEffect(int(pos.sum()), zero, float(run["rpn_loss"].loc), t)


def targets_table(
    grid: AnchorResult, targets: AnchorTargetResult, fixed: torch.Tensor, buggy: torch.Tensor
) -> list[dict[str, float | str]]:
    """The first positives' anchors and their (dx, dw) targets, fixed vs tutorial.

    Args:
        fixed, buggy (Tensor[P, 4]): targets of the sampled positives of ``targets`` (B5 does
            not change which anchors are positive, so the rows line up).
    """
    pos = torch.nonzero(targets.labels == 1).squeeze(1)
    rows = []
    for k, i in enumerate(pos.tolist()[:8]):
        x1, y1, x2, y2 = grid.inside_anchors[i].tolist()
        rows.append(
            {
                N_("anchor"): f"({x1:.0f}, {y1:.0f}, {x2:.0f}, {y2:.0f})",
                N_("width"): x2 - x1,
                N_("tutorial width (= x1)"): x1,
                N_("dx fixed"): float(fixed[k, 0]),
                N_("dx tutorial"): float(buggy[k, 0]),
                N_("dw fixed"): float(fixed[k, 2]),
                N_("dw tutorial"): float(buggy[k, 2]),
            }
        )
    return rows


@dataclass(frozen=True)
class Linearity:
    """``f(a + b) - f(a) - f(b) + f(0)`` relative to ``|f(a + b) - f(0)|``: 0 for an affine map.

    Attributes:
        with_relu: the residual of the fixed layers.
        without_relu: the residual of the tutorial's layers.
        merged_error: max |tutorial output - the single merged layer's output| / max |output|
            (NaN when not computed).
        params_stacked / params_merged: parameters of the two layers / of the merged one.
    """

    with_relu: float
    without_relu: float
    merged_error: float
    params_stacked: int
    params_merged: int


def _residual(f, a: torch.Tensor, b: torch.Tensor) -> float:
    out = f(torch.cat((a, b, a + b, torch.zeros_like(a))))
    fa, fb, fab, f0 = out.chunk(4)
    scale = (fab - f0).abs().max().clamp(min=1e-12)
    return float((fab - fa - fb + f0).abs().max() / scale)


def feature_windows(features: torch.Tensor, size: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
    """Two ``size`` x ``size`` windows of the feature map: the top-left and the centre."""
    hf, wf = features.shape[-2:]
    size = max(1, min(size, hf, wf))
    r, c = (hf - size) // 2, (wf - size) // 2
    return features[..., :size, :size], features[..., r : r + size, c : c + size]


def rpn_linearity(head: RPNHead, features: torch.Tensor, params: RPNParams) -> Linearity:
    """B6 on two windows of this image's feature map, with the session's RPN head, through
    :func:`rpn_forward` with ``bug_b6_no_relu`` off and on."""
    a, b = feature_windows(features.float())

    def f(bug: bool):
        variant = dataclasses.replace(params, bug_b6_no_relu=bug)

        def run(x: torch.Tensor) -> torch.Tensor:
            out = rpn_forward(x, head, variant)  # batch-major: chunk(4) splits the inputs
            return torch.cat((out.locs, out.scores), dim=1)

        return run

    with torch.no_grad():
        res_relu = _residual(f(False), a, b)
        res_lin = _residual(f(True), a, b)
        # conv 3x3 (W3, b3) then conv 1x1 (W1, b1) = one conv 3x3 with W1·W3 and W1·b3 + b1.
        w1 = torch.cat((head.loc.weight, head.score.weight))[:, :, 0, 0]  # [O, M]
        b1 = torch.cat((head.loc.bias, head.score.bias))
        w3 = head.conv.weight  # [M, C, 3, 3]
        merged_w = torch.einsum("om,mckl->ockl", w1, w3)
        merged_b = w1 @ head.conv.bias + b1
        merged = F.conv2d(b, merged_w, merged_b, padding=1)
        h = head.conv(b)
        reference = torch.cat((head.loc(h), head.score(h)), dim=1)
        merged_error = float(
            (merged - reference).abs().max() / reference.abs().max().clamp(min=1e-12)
        )
    stacked = sum(p.numel() for m in (head.conv, head.loc, head.score) for p in m.parameters())
    return Linearity(res_relu, res_lin, merged_error, stacked, merged_w.numel() + merged_b.numel())


def head_linearity(head: FastRCNNHead, pooled: torch.Tensor, params: HeadParams) -> Linearity:
    """B11 on two pooled RoIs (Tensor[2, 512, 7, 7]), with the session's Fast R-CNN head,
    through :func:`head_forward` with ``bug_b11_no_relu`` off and on."""
    a, b = pooled[:1].float(), pooled[1:2].float()

    def f(bug: bool):
        variant = dataclasses.replace(params, bug_b11_no_relu=bug)

        def run(x: torch.Tensor) -> torch.Tensor:
            out = head_forward(x, head, variant)
            return torch.cat((out.scores, out.deltas.flatten(1)), dim=1)

        return run

    with torch.no_grad():
        res_relu = _residual(f(False), a, b)
        res_lin = _residual(f(True), a, b)
    stacked = sum(p.numel() for m in (head.fc6, head.fc7) for p in m.parameters())
    merged = head.fc6.in_features * head.fc7.out_features + head.fc7.out_features
    return Linearity(res_relu, res_lin, float("nan"), stacked, merged)


@dataclass(frozen=True)
class ProposalOverlap:
    fixed_kept: int
    tutorial_kept: int
    common: int
    pre_nms_common: int
    pre_nms: int
    fixed_mean_prob: float  # mean object probability of the kept proposals
    tutorial_mean_prob: float


def proposal_overlap(
    fixed: ProposalResult, buggy: ProposalResult, objectness: torch.Tensor
) -> ProposalOverlap:
    """How many kept proposals (anchor numbers) the two variants share.

    Args:
        objectness (Tensor[N]): the softmax object probability of every anchor.
    """
    a, b = fixed.keep_index.cpu(), buggy.keep_index.cpu()
    common = int(torch.isin(a, b).sum())
    pre = int(torch.isin(fixed.pre_nms_index.cpu(), buggy.pre_nms_index.cpu()).sum())
    prob = objectness.cpu()

    def mean(index: torch.Tensor) -> float:
        return float(prob[index].mean()) if index.numel() else float("nan")

    return ProposalOverlap(
        fixed_kept=int(a.numel()),
        tutorial_kept=int(b.numel()),
        common=common,
        pre_nms_common=pre,
        pre_nms=int(fixed.pre_nms_index.numel()),
        fixed_mean_prob=mean(a),
        tutorial_mean_prob=mean(b),
    )


@dataclass(frozen=True)
class Crops:
    """The tutorial's RoI slices of the feature map, in feature cells.

    Attributes:
        cells: (x1, y1, x2, y2) of the RoI in feature cells (``box / stride``, truncated).
        correct (Tensor[h, w]): channel mean of rows y1..y2, columns x1..x2.
        swapped (Tensor[h', w']): channel mean of rows x1..x2, columns y1..y2 (may be empty).
        swapped_box: the swapped region in input pixels (x1, y1, x2, y2).
    """

    cells: tuple[int, int, int, int]
    correct: torch.Tensor
    swapped: torch.Tensor
    swapped_box: tuple[float, float, float, float]


def demo_box(gt_boxes: torch.Tensor, image_size: tuple[int, int]) -> tuple[torch.Tensor, bool]:
    """The first GT box, or the centre quarter of the image when there is none."""
    if gt_boxes.shape[0]:
        return gt_boxes[0].float(), True
    h, w = image_size
    return torch.tensor([w / 4, h / 4, 3 * w / 4, 3 * h / 4]), False


def roi_crops(features: torch.Tensor, box: torch.Tensor, stride: int) -> Crops:
    """B9: the slice the pooling uses and the slice the visualisation used, for one RoI."""
    x1, y1, x2, y2 = (box.double() / stride).long().tolist()
    fmap = features[0].float().mean(dim=0).cpu()  # [Hf, Wf]
    correct = fmap[y1 : y2 + 1, x1 : x2 + 1]
    swapped = fmap[x1 : x2 + 1, y1 : y2 + 1]
    hf, wf = fmap.shape
    # The swapped slice covers rows x1..x2 and columns y1..y2, clipped by the map's size.
    sx1, sx2 = min(y1, wf), min(y2 + 1, wf)
    sy1, sy2 = min(x1, hf), min(x2 + 1, hf)
    return Crops(
        (x1, y1, x2, y2),
        correct,
        swapped,
        (sx1 * stride, sy1 * stride, sx2 * stride, sy2 * stride),
    )


@dataclass(frozen=True)
class PoolDemo:
    """What ``nn.AdaptiveMaxPool2d(7, 7)`` returns on one RoI of this image."""

    return_indices: object
    output_type: str
    values_shape: tuple[int, ...]
    indices_shape: tuple[int, ...]
    matches_fixed: bool
    fixed_item_shape: tuple[int, ...]


def adaptive_pool_demo(features: torch.Tensor, box: torch.Tensor, stride: int) -> PoolDemo:
    """B10: the tutorial's layer on the tutorial's slice of one RoI, against the fixed layer."""
    x1, y1, x2, y2 = (box.double() / stride).long().tolist()
    im = features[..., y1 : y2 + 1, x1 : x2 + 1].float()  # [1, C, h, w]
    size = (7, 7)
    tutorial = nn.AdaptiveMaxPool2d(size[0], size[1])
    fixed = nn.AdaptiveMaxPool2d(size)
    with torch.no_grad():
        tmp = tutorial(im)
        ref = fixed(im)
    values, indices = tmp
    return PoolDemo(
        return_indices=tutorial.return_indices,
        output_type=type(tmp).__name__,
        values_shape=tuple(values.shape),
        indices_shape=tuple(indices.shape),
        matches_fixed=bool(torch.equal(values, ref)),
        fixed_item_shape=tuple(ref[0].shape),
    )


@dataclass(frozen=True)
class UnreducedEffect:
    error: str | None
    fixed: HeadLoss
    per_element: torch.Tensor  # [P, 4] the matrix the tutorial added to the scalar losses
    sampled: int  # RoIs in the loss


def unreduced_effect(fixed: Run) -> UnreducedEffect:
    """Run the head loss both ways on the sampled RoIs of ``fixed`` (a run with B12 off)."""
    output: HeadOutput = fixed["head"]
    targets = fixed["proposal_targets"]
    labels = targets.labels.to(output.scores.device)
    params: HeadLossParams = fixed.params.head_loss
    error = None
    try:
        head_loss(
            output, labels, targets.targets, dataclasses.replace(params, bug_b12_unreduced=True)
        )
    except UnreducedLossError as exc:
        error = str(exc)
    loss = fixed["head_loss"]
    pos = torch.nonzero(labels > 0).squeeze(1)
    picked = output.deltas.detach()[pos, labels[pos]]
    per_element = F.smooth_l1_loss(
        picked, targets.targets.to(picked.device)[pos].to(picked.dtype), reduction="none"
    )
    return UnreducedEffect(error, loss, per_element.cpu(), int(labels.numel()))


def input_statistics(pixels: np.ndarray) -> list[dict[str, float | str]]:
    """Per-channel mean and std of the backbone's input, without and with normalisation."""
    image = torch.from_numpy(np.ascontiguousarray(pixels))
    raw = image_to_tensor(image, BackboneParams(normalize=False))[0].flatten(1)  # [3, H*W]
    norm = image_to_tensor(image, BackboneParams(normalize=True))[0].flatten(1)
    return [
        {
            N_("channel"): name,
            N_("tutorial mean"): float(raw[c].mean()),
            N_("tutorial std"): float(raw[c].std()),
            N_("fixed mean"): float(norm[c].mean()),
            N_("fixed std"): float(norm[c].std()),
        }
        for c, name in enumerate(("R", "G", "B"))
    ]


@dataclass(frozen=True)
class FeatureChange:
    cosine: float  # cosine similarity of the two flattened feature maps
    norm_ratio: float  # |tutorial| / |fixed|
    zero_fraction_fixed: float  # share of exactly-zero activations (dead ReLUs)
    zero_fraction_tutorial: float


def feature_change(fixed: torch.Tensor, tutorial: torch.Tensor) -> FeatureChange:
    a = fixed.float().flatten().cpu()
    b = tutorial.float().flatten().cpu()
    cosine = float(F.cosine_similarity(a, b, dim=0))
    return FeatureChange(
        cosine=cosine,
        norm_ratio=float(b.norm() / a.norm().clamp(min=1e-12)),
        zero_fraction_fixed=float((a == 0).float().mean()),
        zero_fraction_tutorial=float((b == 0).float().mean()),
    )


def pairing_effects(fixed: Run, buggy: Run) -> tuple[PairingEffect, PairingEffect]:
    """B1 in both variants: which cell's prediction each anchor is trained with."""
    row_major: AnchorResult = fixed["anchors"]
    gt = fixed["ground_truth"].boxes
    return tuple(  # type: ignore[return-value]
        pairing_effect(v["anchors"], v["anchor_targets"], row_major, gt) for v in (fixed, buggy)
    )


def positives_rows(fixed: Run, buggy: Run) -> list[dict[str, object]]:
    """B2 on the user's boxes: the positive anchors each GT box gets in both variants."""
    pos_iou = fixed.params.anchor_targets.pos_iou
    results = [v["anchor_targets"] for v in (fixed, buggy)]
    good, bad = (positives_per_box(t, pos_iou) for t in results)
    return [
        {
            N_("box"): f"{i + 1}: {label}",
            N_("best IoU"): float(results[0].gt_best_iou[i]),
            N_("positives (fixed)"): good[i],
            N_("positives (tutorial)"): bad[i],
        }
        for i, label in enumerate(fixed["ground_truth"].labels)
    ]


def rpn_linearity_on(run: Run) -> Linearity:
    """B6 with this run's RPN head on two windows of its feature map."""
    features = run["backbone"].features
    heads = run["heads"]
    return rpn_linearity(heads.rpn, features.to(heads.device), run.params.rpn)


def head_linearity_on(run: Run) -> tuple[Linearity, bool, bool]:
    """B11 with this run's head on two pooled RoIs: the first GT box (or the image's centre)
    and the second GT box (or the whole image). Returns the linearity and whether each RoI was
    a GT box."""
    gt = run["ground_truth"].boxes
    box, from_gt = demo_box(gt, run["image"].size)
    h, w = run["image"].size
    rois = torch.stack((box, torch.tensor([0.0, 0.0, float(w), float(h)])))
    second_gt = gt.shape[0] > 1
    if second_gt:
        rois[1] = gt[1]
    features = run["backbone"].features
    pooled = pool_rois(features, rois, run.params.roi_pool, 1.0 / run["spec"].stride).pooled
    heads = run["heads"]
    return head_linearity(heads.head, pooled.to(heads.device), run.params.head), from_gt, second_gt
