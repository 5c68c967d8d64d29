"""torchvision's Faster R-CNN, stage by stage, keeping every intermediate.

:func:`run_staged` calls the model's own modules in the order ``GeneralizedRCNN.forward`` does
(no module is re-implemented), and keeps what each one produced, so a page can show every stage
and the final detections equal ``model(images)``::

    model.transform                         -> ImageList: resized (min 800 / max 1333, aspect kept),
                                               normalised, padded to a multiple of 32
    model.backbone                          -> OrderedDict of FPN levels "0".."3", "pool"
    model.rpn.head                          -> objectness logits and box deltas per level
    model.rpn.anchor_generator              -> anchors per level (input-frame pixels)
    model.rpn.box_coder.decode              -> one proposal per anchor
    model.rpn.filter_proposals              -> per level: pre-NMS top-n, clip, small-box removal,
                                               score threshold, NMS; then post-NMS top-n
    model.roi_heads.box_roi_pool            -> MultiScaleRoIAlign: 7 x 7 features per RoI, each
                                               pooled from the level its LevelMapper assigns
    model.roi_heads.box_head, box_predictor -> class logits and per-class box deltas per RoI
    model.roi_heads.postprocess_detections  -> softmax, decode (weights 10, 10, 5, 5), clip,
                                               score threshold, per-class NMS, top detections
    model.transform.postprocess             -> boxes back in original-image pixels

``filter_proposals`` returns only its survivors, so the per-level funnel (how many boxes each level
keeps at each step, and which level each final proposal came from) is traced beside it with the
same torchvision ops and the RPN's own settings (:func:`_proposal_funnel`); the proposals the RoI
heads use are always ``filter_proposals``' own.

The score threshold can be moved without a forward pass: :func:`class_candidates` turns the
cached head outputs into every (RoI, class) box and score before the threshold (the first half of
``postprocess_detections``, once, tens of milliseconds), and :meth:`ClassCandidates.at` applies a
threshold, the small-box removal, per-class NMS and the top-n cut (its second half, milliseconds):
the same detections as the model with ``box_score_thresh`` at that value, ties included.

Shape letters: L levels; for level l, A_l anchors per location on an H_l x W_l map and
N_l = A_l H_l W_l anchors; M proposals entering NMS, P final proposals (RoIs), K classes with
the background, D detections. Boxes are (x1, y1, x2, y2) in input-frame pixels unless named
``*_original``.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, fields, is_dataclass, replace

import numpy as np
import torch
from torch import Tensor, nn
from torch.nn import functional as F
from torchvision.models.detection.rpn import concat_box_prediction_layers
from torchvision.models.detection.transform import resize_boxes
from torchvision.ops import boxes as box_ops

from frcnn_core.i18n import _

# The tutorial's score threshold (MMDetection demo): detections below it are not shown.
DISPLAY_SCORE_THRESHOLD = 0.3
# Pooled 7 x 7 features are 12 KB per RoI at 256 channels; only the first ones are kept.
KEEP_POOLED = 16


class InputSizeError(ValueError):
    """An image the transform cannot resize (a side would shrink under one pixel); one line."""


def check_input_size(transform: nn.Module, height: int, width: int) -> tuple[int, int]:
    """The (H, W) ``transform`` resizes an ``height x width`` image to, computed as torchvision
    does (scale ``min(min_size / short side, max_size / long side)`` in double precision, sides
    floored by ``interpolate``).

    Raises:
        InputSizeError: a side would be under one pixel (e.g. a 1 x 400 strip).
    """
    fixed = getattr(transform, "fixed_size", None)
    if fixed is not None:
        return int(fixed[1]), int(fixed[0])
    scale = min(
        transform.min_size[-1] / min(height, width), transform.max_size / max(height, width)
    )
    size = (math.floor(height * scale), math.floor(width * scale))
    if min(size) < 1:
        raise InputSizeError(
            _(
                "a {width} x {height} image is too thin for the detector: resized to at most "
                "{longest} pixels it would be {new_width} x {new_height}; crop or pad it"
            ).format(
                width=width,
                height=height,
                longest=transform.max_size,
                new_width=size[1],
                new_height=size[0],
            )
        )
    return size


@dataclass(frozen=True)
class InputStage:
    """``model.transform``: the image as the backbone sees it.

    Attributes:
        tensor (Tensor[3, Hp, Wp]): normalised, resized, zero-padded to a multiple of
            ``size_divisible`` (32).
        original_size: (H, W) of the image given.
        input_size: (Hi, Wi) after the aspect-preserving resize, before padding.
        padded_size: (Hp, Wp).
        scale: input pixels per original pixel (the same along both axes up to rounding).
        min_size, max_size, size_divisible, image_mean, image_std: the transform's settings.
    """

    tensor: Tensor
    original_size: tuple[int, int]
    input_size: tuple[int, int]
    padded_size: tuple[int, int]
    scale: float
    min_size: int
    max_size: int
    size_divisible: int
    image_mean: tuple[float, ...]
    image_std: tuple[float, ...]


@dataclass(frozen=True)
class BackboneStage:
    """``model.backbone`` (body + FPN).

    Attributes:
        features: level name -> Tensor[1, C, H_l, W_l], in the backbone's order.
        strides: level name -> (sy, sx) input pixels per feature cell, as the anchor generator
            computes them (padded size // feature size).
    """

    features: OrderedDict[str, Tensor]
    strides: dict[str, tuple[int, int]]

    @property
    def levels(self) -> tuple[str, ...]:
        return tuple(self.features)

    def shapes(self) -> dict[str, list[int]]:
        """level -> [C, H_l, W_l]."""
        return {name: list(f.shape[1:]) for name, f in self.features.items()}


@dataclass(frozen=True)
class AnchorStage:
    """``model.rpn.anchor_generator``: anchors centred at ``stride * (i, j)``, no
    cross-boundary filter.

    Attributes:
        anchors: level -> Tensor[N_l, 4], ordered (y, x, anchor) as the RPN head's outputs.
        sizes: level -> anchor sizes (sqrt of area) in input pixels.
        aspect_ratios: level -> h / w ratios.
    """

    anchors: dict[str, Tensor]
    sizes: dict[str, tuple[int, ...]]
    aspect_ratios: dict[str, tuple[float, ...]]

    def counts(self) -> dict[str, int]:
        return {name: int(a.shape[0]) for name, a in self.anchors.items()}

    @property
    def total(self) -> int:
        return sum(self.counts().values())


@dataclass(frozen=True)
class RPNStage:
    """``model.rpn.head``: one objectness logit (sigmoid, not softmax) and 4 deltas per anchor.

    Attributes:
        objectness: level -> Tensor[A_l, H_l, W_l] logits.
        box_deltas: level -> Tensor[A_l * 4, H_l, W_l] (dx, dy, dw, dh); the RPN's box coder
            weights are (1, 1, 1, 1).
    """

    objectness: dict[str, Tensor]
    box_deltas: dict[str, Tensor]


@dataclass(frozen=True)
class ProposalStage:
    """``model.rpn.filter_proposals`` and its per-level funnel.

    Attributes:
        candidates (Tensor[M, 4]): the boxes that entered NMS: per level the ``pre_nms_top_n``
            highest-objectness anchors, decoded, clipped, without boxes under ``min_size`` and
            below ``score_thresh``.
        candidate_scores (Tensor[M]): sigmoid objectness.
        candidate_levels (Tensor[M]): int64 index into ``levels``.
        kept (Tensor[M]): bool, survived the per-level NMS (IoU ``nms_thresh``).
        boxes (Tensor[P, 4]): ``filter_proposals``' output: the RoIs, best first.
        scores (Tensor[P]): their objectness.
        box_levels (Tensor[P]): int64 index into ``levels``: the level each RoI came from.
        levels: the RPN's level names (all FPN levels).
        funnel: level -> counts after each step: ``anchors``, ``top_n``, ``after_small``,
            ``after_score``, ``after_nms``, ``final``.
        pre_nms_top_n, post_nms_top_n, nms_thresh, score_thresh, min_size: the RPN's settings.
    """

    candidates: Tensor
    candidate_scores: Tensor
    candidate_levels: Tensor
    kept: Tensor
    boxes: Tensor
    scores: Tensor
    box_levels: Tensor
    levels: tuple[str, ...]
    funnel: dict[str, dict[str, int]]
    pre_nms_top_n: int
    post_nms_top_n: int
    nms_thresh: float
    score_thresh: float
    min_size: float

    @property
    def pre_nms(self) -> int:
        """Boxes that entered NMS (all levels)."""
        return int(self.candidates.shape[0])

    @property
    def post_nms(self) -> int:
        """Final proposals (after NMS and the post-NMS top-n)."""
        return int(self.boxes.shape[0])


@dataclass(frozen=True)
class RoIStage:
    """``model.roi_heads.box_roi_pool`` (MultiScaleRoIAlign).

    The level of a RoI of w x h input pixels is FPN's eq. (1),
    ``k = clamp(floor(k0 + log2(sqrt(w h) / s0) + eps), k_min, k_max)``, computed by the pooler's
    own ``LevelMapper``; ``k_min``, ``k_max`` come from the feature strides (torchvision infers
    them on the pooler's first call and keeps them; :func:`frcnn_core.detectors.build_model`
    fixes them at build time from a square input, so no odd first image can skew them).

    Attributes:
        levels (Tensor[P]): int64 index into ``level_names``, one per RoI (same order as
            ``ProposalStage.boxes``).
        level_names: the pooled levels (``featmap_names`` present in the features).
        scales: per pooled level, feature cells per input pixel (1/4, 1/8, ...).
        canonical_scale (s0), canonical_level (k0), k_min, k_max: the level rule's constants.
        output_size: (7, 7).
        sampling_ratio: RoIAlign samples per bin side.
        pooled (Tensor[min(P, KEEP_POOLED), C, 7, 7]): pooled features of the first RoIs.
    """

    levels: Tensor
    level_names: tuple[str, ...]
    scales: tuple[float, ...]
    canonical_scale: int
    canonical_level: int
    k_min: int
    k_max: int
    output_size: tuple[int, int]
    sampling_ratio: int
    pooled: Tensor

    def counts(self) -> dict[str, int]:
        return {name: int((self.levels == i).sum()) for i, name in enumerate(self.level_names)}


@dataclass(frozen=True)
class HeadStage:
    """``box_head`` + ``box_predictor`` for every RoI.

    Attributes:
        class_logits (Tensor[P, K]): softmax gives the class probabilities (column 0: background).
        box_regression (Tensor[P, K * 4]): per-class deltas, box coder weights ``bbox_weights``.
        bbox_weights: (wx, wy, ww, wh), (10, 10, 5, 5) in torchvision.
    """

    class_logits: Tensor
    box_regression: Tensor
    bbox_weights: tuple[float, float, float, float]

    def probabilities(self) -> Tensor:
        """Tensor[P, K]: softmax of the class logits."""
        return torch.softmax(self.class_logits.float(), dim=-1)


@dataclass(frozen=True)
class Detections:
    """Detections after the score threshold, per-class NMS and the top-``detections_per_img`` cut.

    Attributes:
        boxes (Tensor[D, 4]): in the input frame (before ``transform.postprocess``).
        boxes_original (Tensor[D, 4]): in original-image pixels, what ``model(images)`` returns.
        scores (Tensor[D]): class probability, best first.
        labels (Tensor[D]): int64 class ids (index into the class names; never 0).
        threshold: a detection is kept when its score is above this.
    """

    boxes: Tensor
    boxes_original: Tensor
    scores: Tensor
    labels: Tensor
    threshold: float

    def __len__(self) -> int:
        return int(self.scores.shape[0])

    def above(self, threshold: float) -> Detections:
        """The detections scoring above ``threshold`` (>= ``self.threshold``): a plain filter.

        NMS is greedy in score order, so this equals the model at ``threshold`` except, where
        scores tie exactly (random weights), in which of the tied boxes comes first or survives
        NMS; :meth:`ClassCandidates.at` is exact."""
        keep = self.scores > threshold
        return Detections(
            self.boxes[keep],
            self.boxes_original[keep],
            self.scores[keep],
            self.labels[keep],
            float(threshold),
        )


@dataclass(frozen=True)
class StagedRun:
    """Everything one image produced on its way through the model.

    ``detections`` are at the model's own ``box_score_thresh`` and equal ``model([image])[0]``;
    :func:`class_candidates` / :func:`detections_at` move the threshold without a forward pass.
    ``seconds`` holds each stage's wall time (on CUDA only when ``run_staged(sync=True)``).
    """

    input: InputStage
    backbone: BackboneStage
    anchors: AnchorStage
    rpn: RPNStage
    proposals: ProposalStage
    roi: RoIStage
    head: HeadStage
    detections: Detections
    nms_thresh: float
    detections_per_img: int
    seconds: dict[str, float]

    def to(self, device: torch.device | str) -> StagedRun:
        """A copy with every tensor on ``device`` (e.g. ``"cpu"`` before caching)."""
        return _map_tensors(self, lambda t: t.to(device))


def _map_tensors(obj, fn: Callable[[Tensor], Tensor]):
    if isinstance(obj, Tensor):
        return fn(obj)
    if is_dataclass(obj):
        return replace(obj, **{f.name: _map_tensors(getattr(obj, f.name), fn) for f in fields(obj)})
    if isinstance(obj, OrderedDict):
        return OrderedDict((k, _map_tensors(v, fn)) for k, v in obj.items())
    if isinstance(obj, dict):
        return {k: _map_tensors(v, fn) for k, v in obj.items()}
    return obj


def image_tensor(
    pixels: np.ndarray | Tensor,
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float32,
) -> Tensor:
    """HxWx3 uint8 RGB (as :func:`frcnn_core.image.load_image` gives) -> Tensor[3, H, W] in
    [0, 1], the input torchvision's detection models take."""
    if isinstance(pixels, np.ndarray):
        pixels = torch.from_numpy(np.ascontiguousarray(pixels))
    if pixels.dim() != 3 or pixels.shape[2] != 3:
        raise ValueError(f"expected an H x W x 3 RGB image, got shape {tuple(pixels.shape)}")
    # Divide in float32, then cast: the same values model(images) gets from the same pixels.
    return pixels.to(device).permute(2, 0, 1).float().div_(255.0).to(dtype)


def _proposal_funnel(
    rpn: nn.Module,
    proposals: Tensor,
    objectness: Tensor,
    image_size: tuple[int, int],
    num_anchors_per_level: list[int],
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, list[dict[str, int]]]:
    """The steps of ``RegionProposalNetwork.filter_proposals`` for one image, keeping the level of
    every box and the count each step leaves per level.

    Args:
        proposals (Tensor[1, N, 4]): decoded, one per anchor.
        objectness (Tensor[1, N]): logits.

    Returns:
        candidates (Tensor[M, 4]), scores (Tensor[M]), levels (Tensor[M]), kept (Tensor[M] bool),
        final (Tensor[P]: indices into the candidates, best first), per-level counts.
    """
    device = proposals.device
    num_levels = len(num_anchors_per_level)
    levels = torch.cat(
        [
            torch.full((n,), i, dtype=torch.int64, device=device)
            for i, n in enumerate(num_anchors_per_level)
        ]
    )
    top_n_idx = rpn._get_top_n_idx(objectness.detach().reshape(1, -1), num_anchors_per_level)[0]
    boxes = proposals[0, top_n_idx]
    scores = torch.sigmoid(objectness.detach().reshape(-1)[top_n_idx])
    lvl = levels[top_n_idx]
    steps: dict[str, Tensor] = {}  # step -> Tensor[L] counts, read back in one sync at the end

    def count(step: str, which: Tensor) -> None:
        steps[step] = torch.bincount(which, minlength=num_levels)

    count("top_n", lvl)
    boxes = box_ops.clip_boxes_to_image(boxes, image_size)
    keep = box_ops.remove_small_boxes(boxes, rpn.min_size)
    boxes, scores, lvl = boxes[keep], scores[keep], lvl[keep]
    count("after_small", lvl)
    keep = torch.where(scores >= rpn.score_thresh)[0]
    boxes, scores, lvl = boxes[keep], scores[keep], lvl[keep]
    count("after_score", lvl)
    keep = box_ops.batched_nms(boxes, scores, lvl, rpn.nms_thresh)
    kept = torch.zeros(scores.shape[0], dtype=torch.bool, device=device)
    kept[keep] = True
    count("after_nms", lvl[keep])
    final = keep[: rpn.post_nms_top_n()]
    count("final", lvl[final])
    table = torch.stack(list(steps.values())).tolist()  # [steps][L]
    counts = [
        {"anchors": n, **{step: row[i] for step, row in zip(steps, table, strict=True)}}
        for i, n in enumerate(num_anchors_per_level)
    ]
    return boxes, scores, lvl, kept, final, counts


def _levels_by_match(final_boxes: Tensor, candidates: Tensor, levels: Tensor) -> Tensor:
    """The level of each final proposal, found by exact box equality among the candidates
    (used only if torchvision's filter_proposals ever orders its output differently)."""
    same = (final_boxes[:, None, :] == candidates[None, :, :]).all(dim=2)  # [P, M]
    first = same.to(torch.int8).argmax(dim=1)
    return torch.where(same.any(dim=1), levels[first], torch.full_like(first, -1))


class _Clock:
    def __init__(self, device: torch.device, sync: bool):
        self.sync = sync and device.type == "cuda"
        self.seconds: dict[str, float] = {}
        self.last = time.perf_counter()

    def lap(self, stage: str) -> None:
        if self.sync:
            torch.cuda.synchronize()
        now = time.perf_counter()
        self.seconds[stage] = now - self.last
        self.last = now


@torch.inference_mode()
def run_staged(
    model: nn.Module, image: Tensor, keep_pooled: int = KEEP_POOLED, sync: bool = False
) -> StagedRun:
    """Run a torchvision ``FasterRCNN`` on one image, one stage at a time.

    Args:
        model: a torchvision Faster R-CNN in eval mode, never modified (one not built by
            :func:`frcnn_core.detectors.build_model` has its RoI pooler's scales cached on the
            first call, by torchvision, exactly as ``model(images)`` would).
        image (Tensor[3, H, W]): RGB in [0, 1], on the model's device, in its dtype
            (:func:`image_tensor`).
        keep_pooled: how many RoIs keep their pooled 7 x 7 features.
        sync: on CUDA, synchronise after each stage so ``seconds`` is per stage (slower).

    Returns:
        StagedRun, whose detections equal ``model([image])[0]``.

    Raises:
        InputSizeError: an image so thin that the resize would leave a side under one pixel.
    """
    if model.training:
        raise ValueError("run_staged needs the model in eval mode (model.eval())")
    if image.dim() != 3 or image.shape[0] != 3:
        raise ValueError(f"expected a [3, H, W] image tensor, got shape {tuple(image.shape)}")
    clock = _Clock(image.device, sync)
    original_size = (int(image.shape[-2]), int(image.shape[-1]))
    transform, rpn, heads = model.transform, model.rpn, model.roi_heads
    check_input_size(transform, *original_size)

    images, _ = transform([image])
    input_size = tuple(int(s) for s in images.image_sizes[0])
    padded = tuple(int(s) for s in images.tensors.shape[-2:])
    stage_input = InputStage(
        tensor=images.tensors[0],
        original_size=original_size,
        input_size=input_size,
        padded_size=padded,
        scale=input_size[0] / original_size[0],
        min_size=int(transform.min_size[-1]),
        max_size=int(transform.max_size),
        size_divisible=int(transform.size_divisible),
        image_mean=tuple(float(v) for v in transform.image_mean),
        image_std=tuple(float(v) for v in transform.image_std),
    )
    clock.lap("transform")

    features = model.backbone(images.tensors)
    if isinstance(features, Tensor):
        features = OrderedDict([("0", features)])
    names = tuple(features)
    feature_list = list(features.values())
    stage_backbone = BackboneStage(
        features=OrderedDict(features),
        strides={
            n: (padded[0] // int(f.shape[-2]), padded[1] // int(f.shape[-1]))
            for n, f in features.items()
        },
    )
    clock.lap("backbone")

    objectness, deltas = rpn.head(feature_list)
    anchors = rpn.anchor_generator(images, feature_list)[0]  # [sum N_l, 4]
    num_anchors_per_level = [int(o[0].numel()) for o in objectness]
    generator = rpn.anchor_generator
    stage_anchors = AnchorStage(
        anchors=dict(zip(names, anchors.split(num_anchors_per_level), strict=True)),
        sizes={n: tuple(int(s) for s in sz) for n, sz in zip(names, generator.sizes, strict=True)},
        aspect_ratios={
            n: tuple(float(r) for r in ar)
            for n, ar in zip(names, generator.aspect_ratios, strict=True)
        },
    )
    stage_rpn = RPNStage(
        objectness={n: o[0] for n, o in zip(names, objectness, strict=True)},
        box_deltas={n: d[0] for n, d in zip(names, deltas, strict=True)},
    )
    clock.lap("rpn_head")

    flat_objectness, flat_deltas = concat_box_prediction_layers(objectness, deltas)
    decoded = rpn.box_coder.decode(flat_deltas.detach(), [anchors]).view(1, -1, 4)
    flat_objectness = flat_objectness.view(1, -1)
    proposal_list, score_list = rpn.filter_proposals(
        decoded, flat_objectness, images.image_sizes, num_anchors_per_level
    )
    clock.lap("proposals")
    candidates, cand_scores, cand_levels, kept, final, counts = _proposal_funnel(
        rpn, decoded, flat_objectness, images.image_sizes[0], num_anchors_per_level
    )
    proposals, proposal_scores = proposal_list[0], score_list[0]
    if torch.equal(candidates[final], proposals):
        box_levels = cand_levels[final]
    else:
        box_levels = _levels_by_match(proposals, candidates, cand_levels)
    stage_proposals = ProposalStage(
        candidates=candidates,
        candidate_scores=cand_scores,
        candidate_levels=cand_levels,
        kept=kept,
        boxes=proposals,
        scores=proposal_scores,
        box_levels=box_levels,
        levels=names,
        funnel=dict(zip(names, counts, strict=True)),
        pre_nms_top_n=int(rpn.pre_nms_top_n()),
        post_nms_top_n=int(rpn.post_nms_top_n()),
        nms_thresh=float(rpn.nms_thresh),
        score_thresh=float(rpn.score_thresh),
        min_size=float(rpn.min_size),
    )
    clock.lap("proposal_funnel")

    pooler = heads.box_roi_pool
    box_features = pooler(features, proposal_list, images.image_sizes)
    stage_roi = _roi_stage(pooler, features, proposal_list, box_features, keep_pooled)
    clock.lap("roi_pool")

    head_features = heads.box_head(box_features)
    class_logits, box_regression = heads.box_predictor(head_features)
    stage_head = HeadStage(
        class_logits=class_logits,
        box_regression=box_regression,
        bbox_weights=tuple(float(w) for w in heads.box_coder.weights),
    )
    clock.lap("box_head")

    boxes, scores, labels = heads.postprocess_detections(
        class_logits, box_regression, proposal_list, images.image_sizes
    )
    result = transform.postprocess(
        [{"boxes": boxes[0], "scores": scores[0], "labels": labels[0]}],
        images.image_sizes,
        [original_size],
    )[0]
    detections = Detections(
        boxes[0], result["boxes"], scores[0], labels[0], float(heads.score_thresh)
    )
    clock.lap("postprocess")
    return StagedRun(
        input=stage_input,
        backbone=stage_backbone,
        anchors=stage_anchors,
        rpn=stage_rpn,
        proposals=stage_proposals,
        roi=stage_roi,
        head=stage_head,
        detections=detections,
        nms_thresh=float(heads.nms_thresh),
        detections_per_img=int(heads.detections_per_img),
        seconds=clock.seconds,
    )


def _roi_stage(
    pooler: nn.Module,
    features: OrderedDict[str, Tensor],
    proposal_list: list[Tensor],
    box_features: Tensor,
    keep_pooled: int,
) -> RoIStage:
    pooled_names = tuple(n for n in features if n in pooler.featmap_names)
    mapper = pooler.map_levels  # set at build time, or by the pooler's first call
    return RoIStage(
        levels=mapper(proposal_list),
        level_names=pooled_names,
        scales=tuple(float(s) for s in pooler.scales),
        canonical_scale=int(mapper.s0),
        canonical_level=int(mapper.lvl0),
        k_min=int(mapper.k_min),
        k_max=int(mapper.k_max),
        output_size=tuple(int(s) for s in pooler.output_size),
        sampling_ratio=int(pooler.sampling_ratio),
        pooled=box_features[:keep_pooled].clone(),
    )


@dataclass(frozen=True)
class ClassCandidates:
    """Every (RoI, foreground class) pair before the score threshold: the detections before the
    threshold, from which :meth:`at` makes those after it.

    Attributes:
        boxes (Tensor[P * (K - 1), 4]): the class's decoded box, clipped to the input frame.
        scores (Tensor[P * (K - 1)]): softmax probability of the class.
        labels (Tensor[P * (K - 1)]): int64 class id (1 .. K - 1).
        input_size, original_size: (H, W) of the input frame and of the original image.
        nms_thresh: per-class NMS IoU threshold (0.5).
        detections_per_img: the top-n cut (100).
    """

    boxes: Tensor
    scores: Tensor
    labels: Tensor
    input_size: tuple[int, int]
    original_size: tuple[int, int]
    nms_thresh: float
    detections_per_img: int

    def at(self, threshold: float) -> Detections:
        """The detections at ``threshold``: the second half of ``postprocess_detections``
        (score above threshold, boxes under 0.01 px removed, per-class NMS, top-n), then the
        boxes back to original pixels as ``transform.postprocess`` does."""
        with torch.inference_mode():
            inds = torch.where(self.scores > threshold)[0]
            boxes, scores, labels = self.boxes[inds], self.scores[inds], self.labels[inds]
            keep = box_ops.remove_small_boxes(boxes, min_size=1e-2)
            boxes, scores, labels = boxes[keep], scores[keep], labels[keep]
            keep = box_ops.batched_nms(boxes, scores, labels, self.nms_thresh)
            keep = keep[: self.detections_per_img]
            boxes, scores, labels = boxes[keep], scores[keep], labels[keep]
            original = resize_boxes(boxes, list(self.input_size), list(self.original_size))
        return Detections(boxes, original, scores, labels, float(threshold))


def class_candidates(run: StagedRun, model: nn.Module) -> ClassCandidates:
    """The first half of ``model.roi_heads.postprocess_detections`` on the run's cached head
    outputs: decode every class's box with the head's box coder (weights 10, 10, 5, 5), softmax
    the class logits, clip, drop the background column. No forward pass.

    Cache the result beside the run: each :meth:`ClassCandidates.at` is then milliseconds.
    """
    heads = model.roi_heads
    with torch.inference_mode():
        boxes = heads.box_coder.decode(run.head.box_regression, [run.proposals.boxes])
        scores = F.softmax(run.head.class_logits, -1)  # [P, K]
        boxes = box_ops.clip_boxes_to_image(boxes, run.input.input_size)  # [P, K, 4]
        labels = torch.arange(scores.shape[-1], device=scores.device).view(1, -1)
        labels = labels.expand_as(scores)
    return ClassCandidates(
        boxes=boxes[:, 1:].reshape(-1, 4),
        scores=scores[:, 1:].reshape(-1),
        labels=labels[:, 1:].reshape(-1),
        input_size=run.input.input_size,
        original_size=run.input.original_size,
        nms_thresh=float(heads.nms_thresh),
        detections_per_img=int(heads.detections_per_img),
    )


def detections_at(run: StagedRun, threshold: float, model: nn.Module) -> Detections:
    """The detections at another score threshold, without a forward pass: the same as running
    ``model`` with ``box_score_thresh=threshold``. For a slider, cache
    :func:`class_candidates` and call its ``at`` instead."""
    if float(threshold) == run.detections.threshold:
        return run.detections
    return class_candidates(run, model).at(float(threshold))


def top_rois(run: StagedRun, k: int = 10) -> tuple[Tensor, Tensor]:
    """The ``k`` RoIs with the most confident foreground class, and their class probabilities.

    Returns:
        indices (Tensor[k]): into ``run.proposals.boxes``.
        probabilities (Tensor[k, K]): softmax over the classes, background in column 0.
    """
    probs = run.head.probabilities()
    best = probs[:, 1:].max(dim=1).values if probs.shape[1] > 1 else probs[:, 0]
    order = best.argsort(descending=True)[:k]
    return order, probs[order]
