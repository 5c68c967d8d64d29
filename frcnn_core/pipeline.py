"""Faster R-CNN as the tutorial builds it, declared once as a stage graph (:data:`PIPELINE`).

Sources (inputs from outside the pipeline) and stages, in the paper's order::

    photo, user_boxes, spec, backbone_net, heads, vocabulary      the sources
    image            1   resize to the input frame        photo
    ground_truth     1   the user's boxes in that frame   photo, user_boxes
    classes              their ids in the vocabulary      ground_truth, vocabulary
    backbone         2   VGG16 -> 512 x 50 x 50           image, backbone_net
    anchors          3-4 22500 anchors, 8940 inside       image, spec
    anchor_overlaps  5   IoU of inside anchors with GT    anchors, ground_truth
    anchor_targets   5-6 labels, 256 sampled, targets     anchors, ground_truth, anchor_overlaps
    rpn              7   RPN head: deltas and logits      backbone, heads
    rpn_loss         8                                    rpn, anchor_targets
    proposals        9   decode, NMS -> 2000 RoIs         image, anchors, rpn
    proposal_targets 10  128 RoIs sampled                 proposals, ground_truth, classes
    roi_pool         11  each RoI to 7 x 7                backbone, proposal_targets, spec
    head             12  fc6, fc7 -> scores, deltas       roi_pool, heads
    head_loss        13                                   head, proposal_targets
    losses               the four terms and the total     rpn_loss, head_loss
    test_proposals   14  6000 -> NMS -> 300               image, anchors, rpn
    test_roi_pool    14                                   backbone, test_proposals, spec
    test_head        14                                   test_roi_pool, heads
    detections       14  per-class decode, threshold, NMS image, test_proposals, test_head
    detection_match      true positives against the GT    detections, ground_truth, classes

``heads`` are the RPN and Fast R-CNN heads, ``vocabulary`` the class names they were built for
(class id = index + 1): two sources, so that sessions whose heads are the same seeded weights
share every result that does not depend on what their classes are called.

Each stage also reads the parameter group of the same name (``proposals`` reads
``proposals`` and ``train_proposals``; the test-time stages read the same groups as their
training-time twins, with ``test_proposals`` for the counts). :mod:`frcnn_core.graph` derives
everything else from this declaration: the eager runner, the app's cache keys, and what a
setting invalidates.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from frcnn_core.anchor_targets import (
    AnchorOverlaps,
    AnchorTargetParams,
    AnchorTargetResult,
    anchor_overlaps,
    anchor_targets,
)
from frcnn_core.anchors import AnchorParams, AnchorResult, generate_anchors
from frcnn_core.backbone import (
    VGG16,
    Backbone,
    BackboneParams,
    BackboneResult,
    BackboneSpec,
    run_backbone,
)
from frcnn_core.detect import (
    Detections,
    DetectParams,
    Match,
    MatchParams,
    detect,
    match_detections,
)
from frcnn_core.graph import Graph, Run, Source, Stage
from frcnn_core.ground_truth import ClassIds, GroundTruth, class_ids, ground_truth
from frcnn_core.head import (
    FastRCNNHead,
    HeadLoss,
    HeadLossParams,
    HeadOutput,
    HeadParams,
    head_forward,
    head_loss,
)
from frcnn_core.i18n import N_
from frcnn_core.image import InputImage, LoadedImage, ResizeParams, resize_image
from frcnn_core.params import PipelineParams
from frcnn_core.proposal_targets import (
    ProposalTargetParams,
    ProposalTargetResult,
    proposal_targets,
)
from frcnn_core.proposals import ProposalCounts, ProposalParams, ProposalResult, propose
from frcnn_core.roi_pool import RoIPoolParams, RoIPoolResult, pool_rois
from frcnn_core.rpn import (
    RPNHead,
    RPNLoss,
    RPNLossParams,
    RPNOutput,
    RPNParams,
    rpn_forward,
    rpn_loss,
)

HIDDEN = 4096  # fc6 and fc7's width (SPEC stage 12)


class DetectorHeads(nn.Module):
    """The trainable parts after the backbone: the RPN head and the Fast R-CNN head.

    Built from ``seed`` alone, so every session that starts from the same seed starts from the
    same weights. Its sizes follow from the backbone and the settings (:meth:`for_params`).
    """

    def __init__(
        self,
        num_classes: int,
        anchors_per_cell: int,
        in_channels: int,
        pooled_size: int,
        seed: int = 0,
        hidden: int = HIDDEN,
        legacy_init: bool = False,
    ) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.seed = seed
        self.pooled_size = pooled_size
        self.rpn = RPNHead(in_channels, anchors_per_cell, seed=seed)
        # The head's input width is the pooled RoI's size: channels x pooled size squared.
        in_features = in_channels * pooled_size * pooled_size
        self.head = FastRCNNHead(
            num_classes, in_features, hidden=hidden, seed=seed + 1, legacy_init=legacy_init
        )

    @classmethod
    def for_params(
        cls,
        num_classes: int,
        params: PipelineParams,
        spec: BackboneSpec = VGG16,
        seed: int = 0,
        hidden: int = HIDDEN,
    ) -> DetectorHeads:
        """Heads sized for ``params`` on ``spec``'s feature map."""
        return cls(
            num_classes,
            params.anchors.per_cell,
            spec.channels,
            params.roi_pool.output_size,
            seed=seed,
            hidden=hidden,
        )

    @property
    def anchors_per_cell(self) -> int:
        return self.rpn.score.out_channels // 2

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def fits(self, params: PipelineParams) -> bool:
        """True when these heads can run with ``params`` (anchors per cell, pooled size)."""
        return (
            self.anchors_per_cell == params.anchors.per_cell
            and self.pooled_size == params.roi_pool.output_size
        )


@dataclass(frozen=True)
class UserBoxes:
    """The ``user_boxes`` source: boxes as the user gave them, in original-image pixels
    (anything: stage 1 cleans them, with a note per fix)."""

    boxes: tuple[Any, ...]
    labels: tuple[Any, ...]


@dataclass(frozen=True)
class Losses:
    """The four loss terms; ``total`` is what training minimises."""

    rpn: RPNLoss
    head: HeadLoss

    @property
    def total(self) -> torch.Tensor:
        return self.rpn.total + self.head.total.to(self.rpn.total.device)

    def floats(self) -> dict[str, float]:
        """``rpn_cls``, ``rpn_loc``, ``roi_cls``, ``roi_loc`` and ``total`` as floats."""
        out = {
            "rpn_cls": float(self.rpn.cls.detach()),
            "rpn_loc": float(self.rpn.loc.detach()),
            "roi_cls": float(self.head.cls.detach()),
            "roi_loc": float(self.head.loc.detach()),
        }
        out["total"] = math.fsum(out.values())
        return out


# -- the stages' functions: the library's stage functions, fed from the graph ----------------


def _image(photo: LoadedImage, params: ResizeParams) -> InputImage:
    return resize_image(photo.pixels, params)


def _ground_truth(photo: LoadedImage, boxes: UserBoxes, params: ResizeParams) -> GroundTruth:
    return ground_truth(list(boxes.boxes), list(boxes.labels), photo.size, params)


def _classes(gt: GroundTruth, vocabulary: tuple[str, ...]) -> ClassIds:
    return class_ids(gt.labels, vocabulary)


def _backbone(image: InputImage, net: Backbone, params: BackboneParams) -> BackboneResult:
    device = next(net.features.parameters()).device
    return run_backbone(torch.from_numpy(image.pixels).to(device), net.features, params)


def _anchors(image: InputImage, spec: BackboneSpec, params: AnchorParams) -> AnchorResult:
    return generate_anchors(spec.feature_size(image.size), image.size, params, spec.stride)


def _anchor_overlaps(anchors: AnchorResult, gt: GroundTruth) -> AnchorOverlaps:
    return anchor_overlaps(anchors.inside_anchors, gt.boxes)


def _anchor_targets(
    anchors: AnchorResult, gt: GroundTruth, overlaps: AnchorOverlaps, params: AnchorTargetParams
) -> AnchorTargetResult:
    return anchor_targets(anchors.anchors, anchors.inside_index, gt.boxes, params, overlaps)


def _rpn(features: BackboneResult, heads: DetectorHeads, params: RPNParams) -> RPNOutput:
    return rpn_forward(features.features.to(heads.device), heads.rpn, params)


def _rpn_loss(rpn: RPNOutput, targets: AnchorTargetResult, params: RPNLossParams) -> RPNLoss:
    return rpn_loss(rpn, targets.labels_all, targets.targets_all, params)


def _proposals(
    image: InputImage,
    anchors: AnchorResult,
    rpn: RPNOutput,
    params: ProposalParams,
    counts: ProposalCounts,
) -> ProposalResult:
    return propose(anchors.anchors, rpn.locs, rpn.scores, image.size, params, counts)


def _proposal_targets(
    proposals: ProposalResult, gt: GroundTruth, classes: ClassIds, params: ProposalTargetParams
) -> ProposalTargetResult:
    return proposal_targets(proposals.rois, gt.boxes, classes.gt_labels, params)


def _roi_pool(
    features: BackboneResult, rois: torch.Tensor, spec: BackboneSpec, params: RoIPoolParams
) -> RoIPoolResult:
    return pool_rois(features.features, rois, params, 1.0 / spec.stride)


def _sampled_roi_pool(
    features: BackboneResult,
    targets: ProposalTargetResult,
    spec: BackboneSpec,
    params: RoIPoolParams,
) -> RoIPoolResult:
    return _roi_pool(features, targets.rois, spec, params)


def _test_roi_pool(
    features: BackboneResult, proposals: ProposalResult, spec: BackboneSpec, params: RoIPoolParams
) -> RoIPoolResult:
    return _roi_pool(features, proposals.rois, spec, params)


def _head(pooled: RoIPoolResult, heads: DetectorHeads, params: HeadParams) -> HeadOutput:
    return head_forward(pooled.pooled.to(heads.device), heads.head, params)


def _head_loss(head: HeadOutput, targets: ProposalTargetResult, params: HeadLossParams) -> HeadLoss:
    device = head.scores.device
    return head_loss(head, targets.labels.to(device), targets.targets.to(device), params)


def _losses(rpn: RPNLoss, head: HeadLoss) -> Losses:
    return Losses(rpn, head)


def _detections(
    image: InputImage, proposals: ProposalResult, head: HeadOutput, params: DetectParams
) -> Detections:
    return detect(proposals.rois.to(head.scores.device), head, image.size, params)


def _detection_match(
    detections: Detections, gt: GroundTruth, classes: ClassIds, params: MatchParams
) -> Match:
    return match_detections(detections, gt.boxes, classes.gt_labels, params.match_iou)


# ``rpn_net`` is the heads again, keyed by their RPN alone: heads that differ only in the Fast
# R-CNN head's classes (the seeded ones for 1 class and for 2) share the RPN's results.
SOURCES = ("photo", "user_boxes", "spec", "backbone_net", "heads", "rpn_net", "vocabulary")

PIPELINE = Graph(
    SOURCES,
    [
        Stage("image", _image, ("photo",), ("resize",), N_("Load and resize")),
        Stage(
            "ground_truth",
            _ground_truth,
            ("photo", "user_boxes"),
            ("resize",),
            N_("Ground-truth boxes"),
        ),
        Stage("classes", _classes, ("ground_truth", "vocabulary"), (), N_("Class ids")),
        Stage(
            "backbone",
            _backbone,
            ("image", "backbone_net"),
            ("backbone",),
            N_("Backbone"),
            heavy=True,
        ),
        Stage("anchors", _anchors, ("image", "spec"), ("anchors",), N_("Anchors")),
        Stage(
            "anchor_overlaps",
            _anchor_overlaps,
            ("anchors", "ground_truth"),
            (),
            N_(
                "Anchor–ground-truth IoU",
            ),
        ),
        Stage(
            "anchor_targets",
            _anchor_targets,
            ("anchors", "ground_truth", "anchor_overlaps"),
            ("anchor_targets",),
            N_("Anchor labelling and sampling"),
        ),
        Stage("rpn", _rpn, ("backbone", "rpn_net"), ("rpn",), N_("RPN head"), heavy=True),
        Stage("rpn_loss", _rpn_loss, ("rpn", "anchor_targets"), ("rpn_loss",), N_("RPN loss")),
        Stage(
            "proposals",
            _proposals,
            ("image", "anchors", "rpn"),
            ("proposals", "train_proposals"),
            N_("Proposal layer"),
        ),
        Stage(
            "proposal_targets",
            _proposal_targets,
            ("proposals", "ground_truth", "classes"),
            ("proposal_targets",),
            N_("Proposal targets (RoI sampling)"),
        ),
        Stage(
            "roi_pool",
            _sampled_roi_pool,
            ("backbone", "proposal_targets", "spec"),
            ("roi_pool",),
            N_("RoI pooling"),
        ),
        Stage("head", _head, ("roi_pool", "heads"), ("head",), N_("Fast R-CNN head"), heavy=True),
        Stage(
            "head_loss", _head_loss, ("head", "proposal_targets"), ("head_loss",), N_("Head loss")
        ),
        Stage("losses", _losses, ("rpn_loss", "head_loss"), (), N_("Losses")),
        Stage(
            "test_proposals",
            _proposals,
            ("image", "anchors", "rpn"),
            ("proposals", "test_proposals"),
            N_("Test-time proposals"),
        ),
        Stage(
            "test_roi_pool",
            _test_roi_pool,
            ("backbone", "test_proposals", "spec"),
            ("roi_pool",),
            N_("Test-time RoI pooling"),
        ),
        Stage(
            "test_head",
            _head,
            ("test_roi_pool", "heads"),
            ("head",),
            N_("Test-time head"),
            heavy=True,
        ),
        Stage(
            "detections",
            _detections,
            ("image", "test_proposals", "test_head"),
            ("detect",),
            N_("Detection"),
        ),
        Stage(
            "detection_match",
            _detection_match,
            ("detections", "ground_truth", "classes"),
            ("match",),
            N_("Detections against the ground truth"),
        ),
    ],
)


def sources(photo: LoadedImage, boxes: UserBoxes, backbone: Backbone) -> dict[str, Source]:
    """The graph's image, boxes and backbone sources for values in hand, keyed by the objects'
    identities: right for an eager run (a shared cache needs real keys: digests, weights)."""
    return {
        "photo": Source.of(photo, id(photo)),
        "user_boxes": Source.of(boxes, (boxes.boxes, boxes.labels)),
        "spec": Source.of(backbone.spec, backbone.spec),
        "backbone_net": Source.of(backbone, id(backbone)),
    }


def run(
    photo: LoadedImage,
    boxes: UserBoxes,
    backbone: Backbone,
    params: PipelineParams,
    heads: DetectorHeads | None = None,
    vocabulary: tuple[str, ...] | None = None,
    *,
    seed: int = 0,
    hidden: int = HIDDEN,
) -> Run:
    """An eager run of :data:`PIPELINE` (the command line, tests, benchmarks): stages are
    computed when first read, once each, with no cache.

    ``vocabulary`` (the classes ``heads`` know) defaults to the classes of the boxes that
    survive stage 1, in order of first appearance. Without ``heads``, fresh ones (``seed``)
    are built for the vocabulary, on the backbone's device.
    """
    out = Run(PIPELINE, sources(photo, boxes, backbone), params)

    def vocabulary_of_boxes() -> tuple[str, ...]:
        return tuple(dict.fromkeys(out["ground_truth"].labels))

    def fresh_heads() -> DetectorHeads:
        n = max(len(out["vocabulary"]), 1)
        made = DetectorHeads.for_params(n, params, backbone.spec, seed, hidden).eval()
        return made.to(next(backbone.features.parameters()).device)

    if vocabulary is None:
        out.sources["vocabulary"] = Source("boxes", vocabulary_of_boxes)
    else:
        out.sources["vocabulary"] = Source.of(vocabulary, vocabulary)
    if heads is None:
        out.sources["heads"] = Source("fresh", fresh_heads)
    else:
        out.sources["heads"] = Source.of(heads, id(heads))
    out.sources["rpn_net"] = Source(out.sources["heads"].key, lambda: out["heads"])
    return out


def run_on_features(
    image: InputImage,
    gt: GroundTruth,
    classes: ClassIds,
    features: torch.Tensor,
    heads: DetectorHeads,
    params: PipelineParams,
    spec: BackboneSpec = VGG16,
    grad: bool = False,
) -> Run:
    """An eager run on an image whose stage 1 and 2 are done (a training sample): the stages
    after the backbone, with ``features`` [1, C, Hf, Wf] as the backbone's result."""
    given = {
        "image": image,
        "ground_truth": gt,
        "classes": classes,
        "backbone": BackboneResult(features, 0.0),
    }
    known = {
        "spec": Source.of(spec, spec),
        "heads": Source.of(heads, id(heads)),
        "rpn_net": Source.of(heads, id(heads)),
    }
    return Run(PIPELINE, known, params, given=given, grad=grad)


def summary(result: Run, weights: str) -> dict[str, Any]:
    """The machine-readable summary of SPEC section 6 (computes the training stages)."""
    targets: AnchorTargetResult = result["anchor_targets"]
    counts = targets.counts()
    image: InputImage = result["image"]
    gt: GroundTruth = result["ground_truth"]
    roi_targets: ProposalTargetResult = result["proposal_targets"]
    anchors: AnchorResult = result["anchors"]
    h, w = image.size
    return {
        "input_size": [h, w],
        "gt_boxes": [[round(float(v), 4) for v in box] for box in gt.boxes.tolist()],
        "feature_map": list(result["backbone"].features.shape[1:]),
        "weights": weights,
        "anchors": {"total": anchors.total, "inside": anchors.inside},
        "anchor_labels": {
            "positive": counts["positive"],
            "negative": counts["negative"],
            "ignored": counts["ignored"],
            "gt_best_iou": [float(v) for v in targets.gt_best_iou.tolist()],
            "sampled_positive": counts["sampled_positive"],
            "sampled_negative": counts["sampled_negative"],
        },
        "proposals": result["proposals"].counts(),
        "roi_targets": {
            "positive": int(roi_targets.pos_index.numel()),
            "negative": int(roi_targets.neg_index.numel()),
        },
        "roi_pool": list(result["roi_pool"].pooled.shape),
        "losses": result["losses"].floats(),
    }
