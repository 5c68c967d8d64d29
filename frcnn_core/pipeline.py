"""The stages chained: image -> backbone -> anchors -> ... -> losses, and the JSON summary.

The backbone's features are the expensive part (seconds on a CPU); :func:`run_pipeline` takes
them as an argument so a caller computes them once per image and re-runs only the cheap stages
(milliseconds) when a threshold changes.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from frcnn_core.anchor_targets import AnchorTargetParams, AnchorTargetResult, anchor_targets
from frcnn_core.anchors import AnchorParams, AnchorResult, generate_anchors
from frcnn_core.backbone import Backbone, BackboneParams, run_backbone
from frcnn_core.detect import Detections, DetectParams, detect
from frcnn_core.ground_truth import clean_boxes
from frcnn_core.head import FastRCNNHead, HeadLoss, HeadOutput, HeadParams, head_forward, head_loss
from frcnn_core.image import InputImage, ResizeParams, resize_to_input
from frcnn_core.proposal_targets import (
    ProposalTargetParams,
    ProposalTargetResult,
    proposal_targets,
)
from frcnn_core.proposals import ProposalParams, ProposalResult, propose
from frcnn_core.roi_pool import RoIPoolParams, RoIPoolResult, pool_rois
from frcnn_core.rpn import RPNHead, RPNLoss, RPNOutput, RPNParams, rpn_forward, rpn_loss

FEATURE_CHANNELS = 512


@dataclass(frozen=True)
class PipelineParams:
    """Every parameter of SPEC section 2, one frozen dataclass per stage (hashable, so a cache
    can key on them). ``training`` picks the train or test proposal counts."""

    resize: ResizeParams = field(default_factory=ResizeParams)
    backbone: BackboneParams = field(default_factory=BackboneParams)
    anchors: AnchorParams = field(default_factory=AnchorParams)
    anchor_targets: AnchorTargetParams = field(default_factory=AnchorTargetParams)
    rpn: RPNParams = field(default_factory=RPNParams)
    proposals: ProposalParams = field(default_factory=ProposalParams)
    proposal_targets: ProposalTargetParams = field(default_factory=ProposalTargetParams)
    roi_pool: RoIPoolParams = field(default_factory=RoIPoolParams)
    head: HeadParams = field(default_factory=HeadParams)
    detect: DetectParams = field(default_factory=DetectParams)
    training: bool = True

    def with_seed(self, seed: int) -> PipelineParams:
        """The same parameters with every sampling seed set to ``seed``."""
        return dataclasses.replace(
            self,
            anchor_targets=dataclasses.replace(self.anchor_targets, seed=seed),
            proposal_targets=dataclasses.replace(self.proposal_targets, seed=seed),
        )

    def with_overrides(self, overrides: dict[str, str]) -> PipelineParams:
        """Set parameters by name, ``"nms_iou=0.6"`` style: a field name that is unique across
        the stages, or ``stage.field`` (``"proposal_targets.seed"``). Values are parsed to the
        field's type (tuples as comma-separated numbers).

        Raises:
            ValueError: unknown or ambiguous name, or a value of the wrong type.
        """
        params = self
        for name, text in overrides.items():
            stage, fname = _resolve(name)
            if stage is None:
                params = dataclasses.replace(
                    params, **{fname: _parse(text, type(getattr(params, fname)), name)}
                )
                continue
            sub = getattr(params, stage)
            value = _parse(text, type(getattr(sub, fname)), name)
            params = dataclasses.replace(
                params, **{stage: dataclasses.replace(sub, **{fname: value})}
            )
        return params


def parameter_names() -> dict[str, list[str]]:
    """Every settable name: ``{"stage": ["field", ...]}``; the top level is stage ``""``."""
    names: dict[str, list[str]] = {"": []}
    for f in dataclasses.fields(PipelineParams):
        default = PipelineParams()
        value = getattr(default, f.name)
        if dataclasses.is_dataclass(value):
            names[f.name] = [g.name for g in dataclasses.fields(value)]
        else:
            names[""].append(f.name)
    return names


def _resolve(name: str) -> tuple[str | None, str]:
    names = parameter_names()
    if "." in name:
        stage, fname = name.split(".", 1)
        if stage in names and fname in names[stage]:
            return stage, fname
        raise ValueError(f"unknown parameter {name!r}")
    if name in names[""]:
        return None, name
    owners = [stage for stage, fields in names.items() if stage and name in fields]
    if not owners:
        raise ValueError(f"unknown parameter {name!r}")
    if len(owners) > 1:
        options = ", ".join(f"{o}.{name}" for o in owners)
        raise ValueError(f"parameter {name!r} is ambiguous: use one of {options}")
    return owners[0], name


def _parse(text: str, kind: type, name: str) -> Any:
    try:
        if kind is bool:
            lowered = text.strip().lower()
            if lowered not in ("true", "false", "1", "0", "yes", "no"):
                raise ValueError(text)
            return lowered in ("true", "1", "yes")
        if kind is tuple:
            return tuple(float(v) for v in text.split(",") if v.strip())
        if kind is int:
            return int(text)
        if kind is float:
            return float(text)
        return kind(text)
    except ValueError:
        raise ValueError(f"{name}={text!r} is not a valid {kind.__name__}") from None


class DetectorHeads(nn.Module):
    """The trainable parts after the backbone: the RPN head and the Fast R-CNN head.

    Built from ``seed`` alone, so every session that starts from the same seed starts from the
    same weights.
    """

    def __init__(
        self, num_classes: int, anchors_per_cell: int = 9, seed: int = 0, hidden: int = 4096
    ):
        super().__init__()
        self.num_classes = num_classes
        self.seed = seed
        self.rpn = RPNHead(FEATURE_CHANNELS, anchors_per_cell, seed=seed)
        self.head = FastRCNNHead(
            num_classes, FEATURE_CHANNELS * 7 * 7, hidden=hidden, seed=seed + 1
        )


@dataclass(frozen=True)
class PreparedInput:
    """Stage 1's output with the labels that survived it.

    Attributes:
        image: input-frame pixels and GT boxes.
        labels: class name of each GT box in ``image.gt_boxes``.
        class_names: distinct labels; class id = index + 1.
        gt_labels (Tensor[G]): int64 class ids of ``image.gt_boxes``.
        notes: what was fixed in the image or the boxes, for the user.
    """

    image: InputImage
    labels: tuple[str, ...]
    class_names: tuple[str, ...]
    gt_labels: torch.Tensor
    notes: tuple[str, ...]


def prepare_input(
    pixels: np.ndarray,
    raw_boxes: list[object],
    raw_labels: list[object],
    params: ResizeParams,
    image_notes: tuple[str, ...] = (),
) -> PreparedInput:
    """Stage 1: clean the user's boxes against the original image, then resize both.

    Args:
        pixels: uint8 RGB [H, W, 3], upright (see :func:`frcnn_core.image.load_image`).
        raw_boxes: (x1, y1, x2, y2) per box in original pixels, as the user gave them.
        raw_labels: one label per box.
    """
    gt = clean_boxes(raw_boxes, raw_labels, (pixels.shape[0], pixels.shape[1]))
    image = resize_to_input(pixels, gt.boxes, params)
    notes = list(image_notes) + list(gt.notes)
    notes += [
        f"box {gt.labels[i]!r} vanished when scaled to the input frame" for i in image.dropped
    ]
    kept = [i for i in range(len(gt.labels)) if i not in set(image.dropped)]
    labels = tuple(gt.labels[i] for i in kept)
    class_names = tuple(dict.fromkeys(labels))
    index = {name: i + 1 for i, name in enumerate(class_names)}
    gt_labels = torch.tensor([index[x] for x in labels], dtype=torch.int64)
    return PreparedInput(image, labels, class_names, gt_labels, tuple(notes))


@dataclass(frozen=True)
class PipelineResult:
    """Each stage's result, stages 1 to 13."""

    image: InputImage
    gt_labels: torch.Tensor
    features: torch.Tensor
    backbone_seconds: float
    anchors: AnchorResult
    anchor_targets: AnchorTargetResult
    rpn: RPNOutput
    rpn_loss: RPNLoss
    proposals: ProposalResult
    proposal_targets: ProposalTargetResult
    roi_pool: RoIPoolResult
    head: HeadOutput
    head_loss: HeadLoss

    def losses(self) -> dict[str, float]:
        """The four loss terms and their total, as floats."""
        out = {
            "rpn_cls": float(self.rpn_loss.cls.detach()),
            "rpn_loc": float(self.rpn_loss.loc.detach()),
            "roi_cls": float(self.head_loss.cls.detach()),
            "roi_loc": float(self.head_loss.loc.detach()),
        }
        out["total"] = sum(out.values())
        return out


def image_tensor(image: InputImage, device: torch.device) -> torch.Tensor:
    """The input-frame pixels as a uint8 [H, W, 3] tensor on ``device``."""
    return torch.from_numpy(image.pixels).to(device)


def compute_features(
    image: InputImage, backbone: Backbone, params: BackboneParams, device: torch.device
) -> tuple[torch.Tensor, float]:
    """Stage 2 for one input image: features [1, 512, Hf, Wf] and the forward's seconds."""
    result = run_backbone(image_tensor(image, device), backbone.features, params)
    return result.features, result.seconds


def run_pipeline(
    image: InputImage,
    gt_labels: torch.Tensor,
    features: torch.Tensor,
    heads: DetectorHeads,
    params: PipelineParams,
    backbone_seconds: float = 0.0,
    grad: bool = False,
) -> PipelineResult:
    """Stages 3 to 13 (and 14 when asked) on precomputed features.

    Args:
        image: the input-frame image and GT boxes (stage 1).
        gt_labels (Tensor[G]): int64 class ids in 1..C of ``image.gt_boxes``.
        features (Tensor[1, 512, Hf, Wf]): stage 2's output for this image.
        heads: RPN and Fast R-CNN heads (not modified).
        grad: keep the autograd graph (for training); otherwise runs under no_grad.
    """
    with torch.set_grad_enabled(grad):
        device = features.device
        hf, wf = features.shape[-2:]
        anchors = generate_anchors((hf, wf), image.size, params.anchors)
        gt = image.gt_boxes.to(device)
        targets = anchor_targets(
            anchors.anchors.to(device), anchors.inside_index.to(device), gt, params.anchor_targets
        )
        rpn = rpn_forward(features, heads.rpn, params.rpn)
        loss_rpn = rpn_loss(rpn, targets.labels_all, targets.targets_all, params.rpn)
        proposals = propose(
            anchors.anchors, rpn.locs, rpn.scores, image.size, params.proposals, params.training
        )
        roi_targets = proposal_targets(
            proposals.rois, gt, gt_labels.to(device), params.proposal_targets
        )
        pooled = pool_rois(features, roi_targets.rois, params.roi_pool)
        head = head_forward(pooled.pooled, heads.head, params.head)
        loss_head = head_loss(head, roi_targets.labels, roi_targets.targets, params.head)
    return PipelineResult(
        image=image,
        gt_labels=gt_labels,
        features=features,
        backbone_seconds=backbone_seconds,
        anchors=anchors,
        anchor_targets=targets,
        rpn=rpn,
        rpn_loss=loss_rpn,
        proposals=proposals,
        proposal_targets=roi_targets,
        roi_pool=pooled,
        head=head,
        head_loss=loss_head,
    )


def run_detection(
    features: torch.Tensor,
    proposals: ProposalResult,
    heads: DetectorHeads,
    image_size: tuple[int, int],
    params: PipelineParams,
) -> tuple[HeadOutput, Detections]:
    """Stage 14 on test-time proposals (``propose(..., training=False)``: 6000 / 300): RoI pool,
    head, per-class decoding, score threshold and per-class NMS."""
    with torch.no_grad():
        rois = proposals.rois.to(features.device)
        pooled = pool_rois(features, rois, params.roi_pool)
        head = head_forward(pooled.pooled, heads.head, params.head)
        return head, detect(rois, head, image_size, params.detect)


def summary(result: PipelineResult, weights: str) -> dict[str, Any]:
    """The machine-readable summary of SPEC section 6."""
    counts = result.anchor_targets.counts()
    h, w = result.image.size
    return {
        "input_size": [h, w],
        "gt_boxes": [[round(float(v), 4) for v in box] for box in result.image.gt_boxes.tolist()],
        "feature_map": list(result.features.shape[1:]),
        "weights": weights,
        "anchors": {"total": result.anchors.total, "inside": result.anchors.inside},
        "anchor_labels": {
            "positive": counts["positive"],
            "negative": counts["negative"],
            "ignored": counts["ignored"],
            "gt_best_iou": [float(v) for v in result.anchor_targets.gt_best_iou.tolist()],
            "sampled_positive": counts["sampled_positive"],
            "sampled_negative": counts["sampled_negative"],
        },
        "proposals": result.proposals.counts(),
        "roi_targets": {
            "positive": int(result.proposal_targets.pos_index.numel()),
            "negative": int(result.proposal_targets.neg_index.numel()),
        },
        "roi_pool": list(result.roi_pool.pooled.shape),
        "losses": result.losses(),
    }
