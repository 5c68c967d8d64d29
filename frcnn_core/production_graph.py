"""The production detector (torchvision's Faster R-CNN) declared as a stage graph, so every runner
caches it from the declaration, as it does the tutorial's pipeline (:mod:`frcnn_core.graph`).

Sources and stages::

    photo, detector, user_boxes                                          the sources
    staged_run             the forward, every stage kept (trimmed)      photo, detector
    class_candidates       every (RoI, class) box and probability       staged_run, detector
    production_detections  score threshold, per-class NMS, top 100      class_candidates
    labelled_boxes         the user's boxes the detector has a class for staged_run, user_boxes,
                                                                        detector
    production_match       true / false positives, misses at IoU 0.5    production_detections,
                                                                        labelled_boxes
    production_targets     anchor matching, RPN sampling and loss,      staged_run, labelled_boxes,
                           RoI sampling (no network)                    detector
    production_head_loss   the box head's loss on the sampled RoIs      photo, detector,
                                                                        production_targets

``staged_run`` reads ``production_input`` (the resize), ``production_detections`` reads
``production`` (the score threshold), ``production_match`` reads ``match`` (the IoU of a true
positive). So a score threshold is a new key for the last two stages only: the forward pass
(``staged_run``, the one heavy stage a page always needs) comes from the cache.

``photo`` is a :class:`frcnn_core.image.LoadedImage`, ``detector`` a
:class:`frcnn_core.detectors.Detector` (never modified: a resize of its own is a shallow copy,
:func:`with_input_size`), ``user_boxes`` a :class:`frcnn_core.pipeline.UserBoxes` in
original-image pixels.

The training-time rows (matching, sampling, losses) use torchvision's own matchers, samplers
and loss functions on the cached outputs, seeded (:data:`SAMPLING_SEED`). The shared model stays
in eval mode, so its RoIs are sampled from the test-time proposals (1000 rather than training's
2000); everything else is what ``model.train()`` would compute for these boxes.
"""

from __future__ import annotations

import contextlib
import copy
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace

import numpy as np
import torch
from torch import Tensor, nn
from torchvision.models.detection.roi_heads import fastrcnn_loss
from torchvision.models.detection.rpn import concat_box_prediction_layers
from torchvision.models.detection.transform import GeneralizedRCNNTransform, resize_boxes
from torchvision.ops import boxes as box_ops

from frcnn_core import detect
from frcnn_core.detect import Match, MatchParams, match_detections
from frcnn_core.detectors import BACKGROUND, Detector
from frcnn_core.graph import Graph, Stage
from frcnn_core.ground_truth import clean_boxes
from frcnn_core.i18n import N_
from frcnn_core.image import LoadedImage
from frcnn_core.pipeline import UserBoxes
from frcnn_core.production import (
    ClassCandidates,
    Detections,
    StagedRun,
    class_candidates,
    image_tensor,
    run_staged,
)
from frcnn_core.production_params import ProductionInputParams, ProductionParams
from frcnn_core.render_production import input_pixels

# Channels of each FPN level a page can draw (the most active ones).
TILE_CHANNELS = 16
# Every random choice takes an explicit seed (the RPN's and the RoI head's samplers).
SAMPLING_SEED = 0
# COCO's unused ids: never a class a user's label can name.
NOT_A_CLASS = "N/A"
_EMPTY = torch.empty(0)


def with_input_size(model: nn.Module, shorter_side: int, longer_side: int) -> nn.Module:
    """``model`` resizing its input to ``shorter_side`` / ``longer_side``, without modifying it.

    A shallow copy sharing every weight, with a ``GeneralizedRCNNTransform`` of its own (same
    normalisation and padding); ``model`` itself when the sizes are already its own. The result
    equals a model built with ``min_size=shorter_side, max_size=longer_side``.
    """
    transform = model.transform
    if tuple(transform.min_size) == (shorter_side,) and transform.max_size == longer_side:
        return model
    resized = GeneralizedRCNNTransform(
        shorter_side,
        longer_side,
        transform.image_mean,
        transform.image_std,
        size_divisible=transform.size_divisible,
        fixed_size=transform.fixed_size,
    )
    resized.train(transform.training)  # a new module trains: its postprocess would do nothing
    clone = copy.copy(model)
    # Its own module table: assigning the transform below leaves the shared model's alone.
    clone._modules = OrderedDict(model._modules)
    clone.transform = resized
    return clone


# -- the forward, trimmed for a cache -------------------------------------------------------------


@dataclass(frozen=True)
class LevelTiles:
    """What a page draws of one FPN level.

    Attributes:
        shape: (C, H_l, W_l) of the level's feature map.
        stride: (sy, sx) input pixels per cell.
        mean (Tensor[H_l, W_l]): float32, the mean over the C channels.
        channels: ids of the channels in ``tiles``, the most active first (highest mean).
        tiles (Tensor[k, H_l, W_l]): float16, those channels.
    """

    shape: tuple[int, int, int]
    stride: tuple[int, int]
    mean: Tensor
    channels: tuple[int, ...]
    tiles: Tensor


@dataclass(frozen=True)
class CachedRun:
    """A :class:`frcnn_core.production.StagedRun` as a cache keeps it: on the CPU, about 15 MB
    instead of 100 MB (R50-FPN at 800 x 1216, most of it the FPN's 256 channels per level).

    The two tensors no page draws in full are replaced: ``run.input.tensor`` (the normalised,
    padded input) by ``frame``, and ``run.backbone.features`` (every channel of every level) by
    ``levels``; in ``run`` they are empty, so nothing mistakes them for data. Everything else
    (anchors, RPN outputs, the proposal funnel, RoI levels, head outputs, detections) is whole.

    Attributes:
        run: the staged run, on the CPU.
        frame (ndarray[Hi, Wi, 3]): uint8 RGB, the resized image the backbone saw (before
            normalisation and padding).
        levels: level name -> :class:`LevelTiles`, in the backbone's order.
    """

    run: StagedRun
    frame: np.ndarray
    levels: dict[str, LevelTiles]

    @property
    def seconds(self) -> float:
        """The forward's wall time, all stages."""
        return float(sum(self.run.seconds.values()))


def trim(run: StagedRun, channels: int = TILE_CHANNELS) -> CachedRun:
    """``run`` on the CPU without its large tensors (see :class:`CachedRun`)."""
    frame = input_pixels(run)
    frame.setflags(write=False)  # shared by every session that shows this run
    levels = {}
    for name, feature in run.backbone.features.items():
        fmap = feature[0].detach().float()  # [C, H_l, W_l]
        top = fmap.mean(dim=(1, 2)).argsort(descending=True)[:channels]
        levels[name] = LevelTiles(
            shape=tuple(int(s) for s in fmap.shape),  # type: ignore[arg-type]
            stride=run.backbone.strides[name],
            mean=fmap.mean(dim=0).cpu(),
            channels=tuple(int(c) for c in top.tolist()),
            tiles=fmap[top].half().cpu(),
        )
    slim = replace(
        run,
        input=replace(run.input, tensor=_EMPTY),
        backbone=replace(run.backbone, features=OrderedDict()),
    )
    return CachedRun(slim.to("cpu"), frame, levels)


# -- detections after the forward ------------------------------------------------------------------


@dataclass(frozen=True)
class ThresholdedDetections:
    """The detections at a score threshold and how many candidates each step of the
    post-process left.

    Attributes:
        detections: as ``model(images)`` with ``box_score_thresh`` at that threshold.
        counts: ``candidates`` (RoIs x foreground classes), ``above`` (score above the
            threshold), ``after_small`` (boxes of at least 0.01 px), ``after_nms`` (per-class
            NMS), ``kept`` (the top ``detections_per_img``).
    """

    detections: Detections
    counts: dict[str, int]


def threshold_detections(candidates: ClassCandidates, threshold: float) -> ThresholdedDetections:
    """:meth:`ClassCandidates.at` and the count after each of its steps."""
    with torch.inference_mode():
        above = torch.where(candidates.scores > threshold)[0]
        boxes, scores = candidates.boxes[above], candidates.scores[above]
        labels = candidates.labels[above]
        keep = box_ops.remove_small_boxes(boxes, min_size=1e-2)
        after_nms = box_ops.batched_nms(
            boxes[keep], scores[keep], labels[keep], candidates.nms_thresh
        )
    found = candidates.at(threshold)
    counts = {
        "candidates": int(candidates.scores.numel()),
        "above": int(above.numel()),
        "after_small": int(keep.numel()),
        "after_nms": int(after_nms.numel()),
        "kept": len(found),
    }
    return ThresholdedDetections(found, counts)


def _key(name: str) -> str:
    return " ".join(name.split()).casefold()


@dataclass(frozen=True)
class LabelledBoxes:
    """The user's boxes split by whether the detector has a class of that name.

    Attributes:
        boxes (Tensor[G, 4]): float32 (x1, y1, x2, y2) original-image pixels of the boxes it
            knows, clean (inside the image, x1 < x2, y1 < y2).
        input_boxes (Tensor[G, 4]): the same in the input frame (torchvision's ``resize_boxes``).
        labels: their class names, spelled as the detector spells them.
        ids (Tensor[G]): int64 class ids (index into the detector's class names).
        unknown: the labels it has no class for, in order of first appearance.
        all_boxes (Tensor[T, 4]), all_labels: every clean box (known or not), original pixels.
        notes: what cleaning fixed or dropped.
    """

    boxes: Tensor
    input_boxes: Tensor
    labels: tuple[str, ...]
    ids: Tensor
    unknown: tuple[str, ...]
    all_boxes: Tensor
    all_labels: tuple[str, ...]
    notes: tuple[str, ...] = ()

    @property
    def graded(self) -> bool:
        """True when some box has a label the detector knows."""
        return bool(self.labels)


def label_boxes(
    raw: Sequence[object],
    labels: Sequence[object],
    class_names: Sequence[str],
    original_size: tuple[int, int],
    input_size: tuple[int, int],
) -> LabelledBoxes:
    """Clean the user's boxes and find each label among ``class_names`` (case and spaces
    ignored: "Zebra " is COCO's "zebra"; the background and COCO's "N/A" are no class).

    Args:
        raw: (x1, y1, x2, y2) per box in original pixels, anything a user typed.
        labels: one label per box.
        original_size, input_size: (H, W) of the image and of the input frame.
    """
    gt = clean_boxes(list(raw), list(labels), original_size)  # type: ignore[arg-type]
    index: dict[str, int] = {}
    for i, name in enumerate(class_names):
        if name not in (BACKGROUND, NOT_A_CLASS):
            index.setdefault(_key(name), i)
    known = [i for i, label in enumerate(gt.labels) if _key(label) in index]
    ids = [index[_key(gt.labels[i])] for i in known]
    boxes = gt.boxes[known].reshape(-1, 4)
    unknown = tuple(dict.fromkeys(x for x in gt.labels if _key(x) not in index))
    return LabelledBoxes(
        boxes=boxes,
        input_boxes=resize_boxes(boxes, list(original_size), list(input_size)),
        labels=tuple(class_names[i] for i in ids),
        ids=torch.tensor(ids, dtype=torch.int64),
        unknown=unknown,
        all_boxes=gt.boxes,
        all_labels=gt.labels,
        notes=gt.notes,
    )


def grade(found: Detections, truth: LabelledBoxes, match_iou: float) -> Match:
    """Detections (best first) against the boxes the detector can name, in original pixels:
    :func:`frcnn_core.detect.match_detections` (greedy by score, one detection per box, same
    class, IoU >= ``match_iou``). A box with a label the detector has no class for is not graded.
    """
    as_tutorial = detect.Detections(found.boxes_original, found.scores, found.labels, (0, 0, 0))
    return match_detections(as_tutorial, truth.boxes, truth.ids, match_iou)


# -- training-time targets and losses --------------------------------------------------------------


@contextlib.contextmanager
def _seeded(seed: int = SAMPLING_SEED) -> Iterator[None]:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


@dataclass(frozen=True)
class ProductionTargets:
    """What torchvision would train on for the user's boxes, from the cached run.

    Attributes:
        anchor_labels (Tensor[N]): float32 per anchor (every level, in order): 1 object,
            0 background, -1 between the matcher's thresholds (left out of the loss).
        rpn_sampled_positive, rpn_sampled_negative: anchors the RPN's sampler drew.
        rpn_objectness_loss, rpn_box_loss: ``rpn.compute_loss`` on the cached RPN outputs.
        roi_candidates: proposals plus ground-truth boxes the RoI sampler drew from.
        roi_proposals (Tensor[S, 4]): the sampled RoIs, input frame.
        roi_labels (Tensor[S]): int64 class ids, 0 background.
        roi_regression_targets (Tensor[S, 4]): box coder (10, 10, 5, 5) deltas to their box.
        rpn_thresholds: the RPN matcher's (high, low) IoU; ``rpn_low_quality``: whether each
            box's best anchors are positive below ``high``.
        rpn_batch, rpn_positive_fraction, roi_thresholds, roi_batch, roi_positive_fraction:
            the samplers' and the RoI matcher's settings.
    """

    anchor_labels: Tensor
    rpn_sampled_positive: int
    rpn_sampled_negative: int
    rpn_objectness_loss: float
    rpn_box_loss: float
    roi_candidates: int
    roi_proposals: Tensor
    roi_labels: Tensor
    roi_regression_targets: Tensor
    rpn_thresholds: tuple[float, float]
    rpn_low_quality: bool
    rpn_batch: int
    rpn_positive_fraction: float
    roi_thresholds: tuple[float, float]
    roi_batch: int
    roi_positive_fraction: float

    def anchor_counts(self) -> dict[str, int]:
        labels = self.anchor_labels
        return {
            "positive": int((labels == 1).sum()),
            "negative": int((labels == 0).sum()),
            "ignored": int((labels == -1).sum()),
        }

    def roi_counts(self) -> dict[str, int]:
        return {
            "positive": int((self.roi_labels > 0).sum()),
            "negative": int((self.roi_labels == 0).sum()),
        }


def production_targets(
    cached: CachedRun, truth: LabelledBoxes, model: nn.Module, seed: int = SAMPLING_SEED
) -> ProductionTargets:
    """The RPN's anchor matching, sampling and loss, and the RoI head's sampling, by the model's
    own matchers, samplers and ``compute_loss`` on ``cached``'s outputs (no network runs).

    Both samplers draw from one seeded stream, the RPN's first, as ``model.train()`` does.
    """
    run = cached.run
    rpn, heads = model.rpn, model.roi_heads
    anchors = torch.cat(list(run.anchors.anchors.values()))  # [N, 4] in the level order
    target = {"boxes": truth.input_boxes.to(anchors.dtype), "labels": truth.ids}
    with torch.inference_mode(), _seeded(seed):
        labels, matched = rpn.assign_targets_to_anchors([anchors], [target])
        regression = rpn.box_coder.encode(matched, [anchors])
        objectness, deltas = concat_box_prediction_layers(
            [o.unsqueeze(0) for o in run.rpn.objectness.values()],
            [d.unsqueeze(0) for d in run.rpn.box_deltas.values()],
        )
        with torch.random.fork_rng(devices=[]):  # the very draw compute_loss makes next
            positive, negative = rpn.fg_bg_sampler(labels)
        objectness_loss, box_loss = rpn.compute_loss(objectness, deltas, labels, regression)
        rois, _, roi_labels, roi_regression = heads.select_training_samples(
            [run.proposals.boxes], [target]
        )
    rpn_matcher, roi_matcher = rpn.proposal_matcher, heads.proposal_matcher
    return ProductionTargets(
        anchor_labels=labels[0],
        rpn_sampled_positive=int(positive[0].sum()),
        rpn_sampled_negative=int(negative[0].sum()),
        rpn_objectness_loss=float(objectness_loss),
        rpn_box_loss=float(box_loss),
        roi_candidates=int(run.proposals.boxes.shape[0] + truth.input_boxes.shape[0]),
        roi_proposals=rois[0],
        roi_labels=roi_labels[0],
        roi_regression_targets=roi_regression[0],
        rpn_thresholds=(float(rpn_matcher.high_threshold), float(rpn_matcher.low_threshold)),
        rpn_low_quality=bool(rpn_matcher.allow_low_quality_matches),
        rpn_batch=int(rpn.fg_bg_sampler.batch_size_per_image),
        rpn_positive_fraction=float(rpn.fg_bg_sampler.positive_fraction),
        roi_thresholds=(float(roi_matcher.high_threshold), float(roi_matcher.low_threshold)),
        roi_batch=int(heads.fg_bg_sampler.batch_size_per_image),
        roi_positive_fraction=float(heads.fg_bg_sampler.positive_fraction),
    )


@dataclass(frozen=True)
class ProductionHeadLoss:
    """torchvision's ``fastrcnn_loss`` on the sampled RoIs: cross-entropy over them, and smooth
    L1 (beta 1/9) on the positives' deltas of their true class, divided by the sampled count.

    Attributes:
        classifier, box_reg: the two terms (floats).
        rois, positive: RoIs that entered the loss, positives among them.
        pooled_shape: (S, C, 7, 7) of MultiScaleRoIAlign's output.
    """

    classifier: float
    box_reg: float
    rois: int
    positive: int
    pooled_shape: tuple[int, ...]


def production_head_loss(
    pixels: np.ndarray, detector: Detector, targets: ProductionTargets, size: ProductionInputParams
) -> ProductionHeadLoss:
    """Run the transform and backbone again (the cached run keeps no full feature map), pool
    the sampled RoIs, run the box head and ``fastrcnn_loss``: the head's loss for these boxes.

    Args:
        pixels (ndarray[H, W, 3]): uint8 RGB, the original image.
    """
    model = with_input_size(detector.model, size.shorter_side, size.longer_side)
    device, dtype = detector.device, detector.dtype
    heads = model.roi_heads
    with torch.inference_mode():
        images, _ = model.transform([image_tensor(np.array(pixels), device, dtype)])
        features = model.backbone(images.tensors)
        if isinstance(features, Tensor):
            features = OrderedDict([("0", features)])
        rois = [targets.roi_proposals.to(device, dtype)]
        pooled = heads.box_roi_pool(features, rois, images.image_sizes)
        class_logits, box_regression = heads.box_predictor(heads.box_head(pooled))
        classifier, box_reg = fastrcnn_loss(
            class_logits.float(),
            box_regression.float(),
            [targets.roi_labels.to(device)],
            [targets.roi_regression_targets.to(device)],
        )
    return ProductionHeadLoss(
        classifier=float(classifier),
        box_reg=float(box_reg),
        rois=int(targets.roi_labels.numel()),
        positive=int((targets.roi_labels > 0).sum()),
        pooled_shape=tuple(int(s) for s in pooled.shape),
    )


# -- the graph -------------------------------------------------------------------------------------


def _staged_run(photo: LoadedImage, detector: Detector, size: ProductionInputParams) -> CachedRun:
    model = with_input_size(detector.model, size.shorter_side, size.longer_side)
    # A writable copy: the decoded photo is shared read-only, and torch warns on such arrays.
    image = image_tensor(np.array(photo.pixels), detector.device, detector.dtype)
    return trim(run_staged(model, image))


def _class_candidates(cached: CachedRun, detector: Detector) -> ClassCandidates:
    return class_candidates(cached.run, detector.model)


def _detections(candidates: ClassCandidates, params: ProductionParams) -> ThresholdedDetections:
    return threshold_detections(candidates, params.box_score_thresh)


def _labelled_boxes(cached: CachedRun, boxes: UserBoxes, detector: Detector) -> LabelledBoxes:
    run = cached.run
    return label_boxes(
        boxes.boxes,
        boxes.labels,
        detector.class_names,
        run.input.original_size,
        run.input.input_size,
    )


def _match(found: ThresholdedDetections, truth: LabelledBoxes, params: MatchParams) -> Match:
    return grade(found.detections, truth, params.match_iou)


def _targets(cached: CachedRun, truth: LabelledBoxes, detector: Detector) -> ProductionTargets:
    return production_targets(cached, truth, detector.model)


def _head_loss(
    photo: LoadedImage,
    detector: Detector,
    targets: ProductionTargets,
    size: ProductionInputParams,
) -> ProductionHeadLoss:
    return production_head_loss(photo.pixels, detector, targets, size)


SOURCES = ("photo", "detector", "user_boxes")

PRODUCTION = Graph(
    SOURCES,
    [
        Stage(
            "staged_run",
            _staged_run,
            ("photo", "detector"),
            ("production_input",),
            N_("Production forward"),
            heavy=True,
        ),
        Stage(
            "class_candidates",
            _class_candidates,
            ("staged_run", "detector"),
            (),
            N_("Class candidates"),
        ),
        Stage(
            "production_detections",
            _detections,
            ("class_candidates",),
            ("production",),
            N_("Score threshold and per-class NMS"),
        ),
        Stage(
            "labelled_boxes",
            _labelled_boxes,
            ("staged_run", "user_boxes", "detector"),
            (),
            N_("Your boxes with class names"),
        ),
        Stage(
            "production_match",
            _match,
            ("production_detections", "labelled_boxes"),
            ("match",),
            N_("Detections against your boxes"),
        ),
        Stage(
            "production_targets",
            _targets,
            ("staged_run", "labelled_boxes", "detector"),
            (),
            N_("Training targets"),
        ),
        Stage(
            "production_head_loss",
            _head_loss,
            ("photo", "detector", "production_targets"),
            ("production_input",),
            N_("Head loss (second forward)"),
            heavy=True,
        ),
    ],
)
