"""Cached computation for the pages: each stage computed once per input, on demand.

- The backbone and the initial heads are ``st.cache_resource``: one copy for all sessions,
  never modified (a user's trained heads live in that user's session, see ``state.TRAINED``).
- Per-image results are ``st.cache_data`` with ``max_entries``, keyed on the image digest and
  frozen parameter dataclasses, so memory stays bounded however many students upload images.
- :class:`Stages` computes a stage only when a page asks for it, so a slider recomputes only
  what lies downstream of it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from functools import cached_property

import streamlit as st
import torch

from explorer import state
from frcnn_core.anchor_targets import AnchorTargetParams, AnchorTargetResult, anchor_targets
from frcnn_core.anchors import AnchorParams, AnchorResult, generate_anchors
from frcnn_core.backbone import Backbone, BackboneParams, load_backbone, run_backbone
from frcnn_core.detect import Detections, Match, match_detections
from frcnn_core.device import default_device, device_name
from frcnn_core.head import HeadLoss, HeadOutput, HeadParams, head_forward, head_loss
from frcnn_core.image import LoadedImage, ResizeParams, load_image
from frcnn_core.pipeline import (
    DetectorHeads,
    PipelineParams,
    PreparedInput,
    compute_features,
    image_tensor,
    prepare_input,
    run_detection,
)
from frcnn_core.proposal_targets import ProposalTargetResult, proposal_targets
from frcnn_core.proposals import ProposalParams, ProposalResult, propose
from frcnn_core.roi_pool import RoIPoolParams, RoIPoolResult, pool_rois
from frcnn_core.rpn import RPNLoss, RPNOutput, RPNParams, rpn_forward, rpn_loss
from frcnn_core.train import split_backbone

MODEL_SEED = 0
# Bounded caches: a few images per user and a few dozen users fit in a few GB.
IMAGE_CACHE_ENTRIES = 64
FEATURE_CACHE_ENTRIES = 24
STAGE_CACHE_ENTRIES = 48


def device() -> torch.device:
    return default_device()


@st.cache_resource(show_spinner="Loading the VGG16 backbone…")
def backbone() -> Backbone:
    """The shared VGG16 ``features[:30]`` in eval mode on the device (never modified)."""
    loaded = load_backbone(seed=MODEL_SEED)
    loaded.features.to(device())
    for p in loaded.features.parameters():
        p.requires_grad_(False)
    return loaded


@st.cache_resource(max_entries=4, show_spinner="Initialising the RPN and Fast R-CNN heads…")
def initial_heads(num_classes: int, anchors_per_cell: int) -> DetectorHeads:
    """Freshly initialised heads, shared by every session; treat as read-only."""
    heads = DetectorHeads(num_classes, anchors_per_cell, seed=MODEL_SEED).to(device()).eval()
    for p in heads.parameters():
        p.requires_grad_(False)
    return heads


def device_label() -> str:
    return device_name(device())


@st.cache_data(max_entries=IMAGE_CACHE_ENTRIES, show_spinner=False)
def decode(digest: str, _data: bytes) -> LoadedImage:
    """Decode image bytes once per digest (raises ``ImageError`` for a bad file)."""
    return load_image(_data)


@st.cache_data(max_entries=IMAGE_CACHE_ENTRIES, show_spinner=False)
def prepared(digest: str, _data: bytes, boxes: tuple, resize: ResizeParams) -> PreparedInput:
    loaded = decode(digest, _data)
    raw = [list(b) for b, _ in boxes]
    labels = [label for _, label in boxes]
    return prepare_input(loaded.pixels, raw, labels, resize, loaded.notes)


@st.cache_data(
    max_entries=FEATURE_CACHE_ENTRIES,
    show_spinner="Running the VGG16 backbone on this image (once per image)…",
)
def features(
    digest: str, _data: bytes, resize: ResizeParams, params: BackboneParams, weights: str
) -> tuple[torch.Tensor, float]:
    """Backbone features [1, 512, Hf, Wf] on the CPU, and the forward's seconds."""
    prep = prepared(digest, _data, (), resize)
    feats, seconds = compute_features(prep.image, backbone(), params, device())
    return feats.cpu(), seconds


@st.cache_data(
    max_entries=FEATURE_CACHE_ENTRIES,
    show_spinner="Running VGG16 up to conv4_3 on this image (once per image)…",
)
def conv4_features(
    digest: str, _data: bytes, resize: ResizeParams, params: BackboneParams, weights: str
) -> torch.Tensor:
    """The frozen part when the conv5 block is trained: conv4_3's output [1, 512, 2Hf, 2Wf]."""
    prep = prepared(digest, _data, (), resize)
    frozen, _ = split_backbone(backbone().features)
    result = run_backbone(image_tensor(prep.image, device()), frozen, params)
    return result.features.cpu()


@st.cache_data(max_entries=FEATURE_CACHE_ENTRIES, show_spinner=False)
def session_features(
    digest: str,
    _data: bytes,
    resize: ResizeParams,
    params: BackboneParams,
    weights: str,
    token: str,
    _conv5: torch.nn.Module,
) -> tuple[torch.Tensor, float]:
    """Features through a session's trained conv5 block (keyed by that session's token)."""
    conv4 = conv4_features(digest, _data, resize, params, weights).to(device())
    started = time.perf_counter()
    with torch.inference_mode():
        out = _conv5(conv4)
    return out.clone().cpu(), time.perf_counter() - started


@st.cache_data(max_entries=STAGE_CACHE_ENTRIES, show_spinner=False)
def anchors(
    feature_size: tuple[int, int], image_size: tuple[int, int], params: AnchorParams
) -> AnchorResult:
    return generate_anchors(feature_size, image_size, params)


@st.cache_data(max_entries=STAGE_CACHE_ENTRIES, show_spinner=False)
def rpn_outputs(
    features_key: tuple,
    _features: torch.Tensor,
    heads_token: str,
    _heads: DetectorHeads,
    params: RPNParams,
) -> RPNOutput:
    """The RPN head on one feature map; ``features_key`` identifies the features (image digest,
    stage-1/2 parameters, weights, trained conv5 token)."""
    with torch.no_grad():
        out = rpn_forward(_features, _heads.rpn, params)
    return RPNOutput(out.locs.cpu(), out.scores.cpu())


@st.cache_data(max_entries=STAGE_CACHE_ENTRIES, show_spinner=False)
def proposals(
    features_key: tuple,
    _features: torch.Tensor,
    heads_token: str,
    _heads: DetectorHeads,
    rpn_params: RPNParams,
    image_size: tuple[int, int],
    anchor_params: AnchorParams,
    params: ProposalParams,
    training: bool,
) -> ProposalResult:
    out = rpn_outputs(features_key, _features, heads_token, _heads, forward_params(rpn_params))
    grid = anchors(tuple(_features.shape[-2:]), image_size, anchor_params)
    return propose(grid.anchors, out.locs, out.scores, image_size, params, training)


def forward_params(params: RPNParams) -> RPNParams:
    """The part of the RPN settings that changes its outputs (not the loss weights), so a loss
    slider never re-runs the RPN or NMS."""
    return RPNParams(bug_b6_no_relu=params.bug_b6_no_relu)


@st.cache_data(max_entries=STAGE_CACHE_ENTRIES, show_spinner=False)
def anchor_labels(
    feature_size: tuple[int, int],
    image_size: tuple[int, int],
    anchor_params: AnchorParams,
    boxes: tuple,
    _gt_boxes: torch.Tensor,
    params: AnchorTargetParams,
) -> AnchorTargetResult:
    """Stages 5-6 for one grid and one set of GT boxes (``boxes`` is their hashable key)."""
    grid = anchors(feature_size, image_size, anchor_params)
    return anchor_targets(grid.anchors, grid.inside_index, _gt_boxes, params)


@st.cache_data(max_entries=STAGE_CACHE_ENTRIES, show_spinner=False)
def head_outputs(
    key: tuple,
    _features: torch.Tensor,
    _rois: torch.Tensor,
    _heads: DetectorHeads,
    pool: RoIPoolParams,
    relu_off: bool,
) -> HeadOutput:
    """Stages 11-12 for the sampled RoIs identified by ``key`` (fc6 alone is ~0.2 s on a CPU)."""
    with torch.no_grad():
        pooled = pool_rois(_features, _rois.to(_features.device), pool)
        out = head_forward(pooled.pooled, _heads.head, HeadParams(bug_b11_no_relu=relu_off))
    return HeadOutput(out.scores.cpu(), out.deltas.cpu())


@dataclass(frozen=True)
class HeadsChoice:
    """The heads a session uses: its own trained copy, or the shared initial ones."""

    heads: DetectorHeads
    token: str
    trained: bool


def trained_model() -> dict | None:
    """This session's trained model, if any: ``{"heads", "conv5", "token", "class_names",
    "anchors_per_cell", "history", "settings"}``."""
    return st.session_state.get(state.TRAINED)


def current_heads(class_names: tuple[str, ...], anchors_per_cell: int) -> HeadsChoice:
    """The session's trained heads when they fit (same anchors per cell, and they know every
    class in ``class_names``), else the shared initial heads for that many classes."""
    trained = trained_model()
    if trained is not None and fits(trained, class_names, anchors_per_cell):
        return HeadsChoice(trained["heads"], trained["token"], True)
    n = max(len(class_names), 1)
    heads = initial_heads(n, anchors_per_cell)
    return HeadsChoice(heads, f"init:{MODEL_SEED}:{n}:{anchors_per_cell}", False)


def fits(trained: dict, class_names: tuple[str, ...], anchors_per_cell: int) -> bool:
    return trained["anchors_per_cell"] == anchors_per_cell and set(class_names) <= set(
        trained["class_names"]
    )


class Stages:
    """The current session's pipeline, computed lazily: a page touches only what it shows.

    Raises ``ImageError`` from :attr:`loaded` when the current image cannot be decoded.
    """

    def __init__(self, params: PipelineParams | None = None) -> None:
        choice = state.image()
        if choice is None:
            raise RuntimeError("no image chosen")
        self.choice = choice
        self.params = params or state.params()
        self.boxes = state.boxes_key()
        self.timings: dict[str, float] = {}

    def _timed(self, name: str, started: float) -> None:
        self.timings[name] = time.perf_counter() - started

    @cached_property
    def backbone(self) -> Backbone:
        return backbone()

    @cached_property
    def loaded(self) -> LoadedImage:
        return decode(self.choice.digest, self.choice.data)

    @cached_property
    def prepared(self) -> PreparedInput:
        _ = self.loaded  # surface a decoding error first
        return prepared(self.choice.digest, self.choice.data, self.boxes, self.params.resize)

    @cached_property
    def class_names(self) -> tuple[str, ...]:
        """The class vocabulary: the trained model's when it knows every current label (so
        class ids match its outputs), else the current labels in order of appearance."""
        current = self.prepared.class_names
        trained = trained_model()
        if trained is not None and fits(trained, current, self.params.anchors.per_cell):
            return tuple(trained["class_names"])
        return current

    @cached_property
    def gt_labels(self) -> torch.Tensor:
        """Tensor[G] int64 class ids (1..C in :attr:`class_names`) of the GT boxes."""
        index = {name: i + 1 for i, name in enumerate(self.class_names)}
        return torch.tensor([index[x] for x in self.prepared.labels], dtype=torch.int64)

    @cached_property
    def heads(self) -> HeadsChoice:
        return current_heads(self.class_names, self.params.anchors.per_cell)

    @cached_property
    def _features(self) -> tuple[torch.Tensor, float]:
        p = self.params
        args = (self.choice.digest, self.choice.data, p.resize, p.backbone, self.backbone.weights)
        trained = trained_model()
        if trained is not None and trained.get("conv5") is not None:
            feats, seconds = session_features(*args, trained["token"], trained["conv5"])
        else:
            feats, seconds = features(*args)
        return feats.to(device()), seconds

    @property
    def features(self) -> torch.Tensor:
        return self._features[0]

    @property
    def backbone_seconds(self) -> float:
        return self._features[1]

    @cached_property
    def gt_boxes(self) -> torch.Tensor:
        return self.prepared.image.gt_boxes

    @cached_property
    def anchors(self) -> AnchorResult:
        hf, wf = self.feature_size
        return anchors((hf, wf), self.prepared.image.size, self.params.anchors)

    @cached_property
    def feature_size(self) -> tuple[int, int]:
        # Four 2 x 2 poolings with floor: the same as the backbone's output, without running it.
        h, w = self.prepared.image.size
        return h // 16, w // 16

    @cached_property
    def anchor_targets(self) -> AnchorTargetResult:
        started = time.perf_counter()
        key = (self.choice.digest, self.boxes, self.params.resize)
        p = self.params
        result = anchor_labels(
            self.feature_size,
            self.prepared.image.size,
            p.anchors,
            key,
            self.gt_boxes,
            p.anchor_targets,
        )
        self._timed("anchor_targets", started)
        return result

    @cached_property
    def features_key(self) -> tuple:
        """What identifies this session's feature map in the caches."""
        p = self.params
        trained = trained_model()
        conv5 = trained["token"] if trained is not None and trained.get("conv5") is not None else ""
        return (self.choice.digest, p.resize, p.backbone, self.backbone.weights, conv5)

    def _cache_args(self) -> tuple:
        return (self.features_key, self.features, self.heads.token, self.heads.heads)

    @cached_property
    def rpn(self) -> RPNOutput:
        started = time.perf_counter()
        out = rpn_outputs(*self._cache_args(), forward_params(self.params.rpn))
        self._timed("rpn", started)
        return out

    @cached_property
    def rpn_loss(self) -> RPNLoss:
        t = self.anchor_targets
        return rpn_loss(self.rpn, t.labels_all, t.targets_all, self.params.rpn)

    def proposals_for(self, training: bool) -> ProposalResult:
        started = time.perf_counter()
        p = self.params
        out = proposals(
            *self._cache_args(), p.rpn, self.prepared.image.size, p.anchors, p.proposals, training
        )
        self._timed(f"proposals_{'train' if training else 'test'}", started)
        return out

    @cached_property
    def proposals(self) -> ProposalResult:
        return self.proposals_for(self.params.training)

    @cached_property
    def proposal_targets(self) -> ProposalTargetResult:
        rois = self.proposals.rois
        started = time.perf_counter()
        result = proposal_targets(rois, self.gt_boxes, self.gt_labels, self.params.proposal_targets)
        self._timed("proposal_targets", started)
        return result

    @cached_property
    def roi_pool(self) -> RoIPoolResult:
        started = time.perf_counter()
        result = pool_rois(
            self.features, self.proposal_targets.rois.to(device()), self.params.roi_pool
        )
        self._timed("roi_pool", started)
        return result

    @cached_property
    def roi_key(self) -> tuple:
        """What identifies the sampled RoIs in the caches."""
        p = self.params
        return (
            self.features_key,
            self.heads.token,
            forward_params(p.rpn),
            p.anchors,
            p.proposals,
            p.training,
            self.boxes,
            self.class_names,
            p.proposal_targets,
        )

    @cached_property
    def head(self) -> HeadOutput:
        """Stage 12 on the sampled RoIs (pooled with the current RoI pooling settings)."""
        rois = self.proposal_targets.rois
        started = time.perf_counter()
        p = self.params
        out = head_outputs(
            self.roi_key,
            self.features,
            rois,
            self.heads.heads,
            p.roi_pool,
            p.head.bug_b11_no_relu,
        )
        self._timed("head", started)
        return HeadOutput(out.scores.to(device()), out.deltas.to(device()))

    @cached_property
    def head_loss(self) -> HeadLoss:
        t = self.proposal_targets
        return head_loss(self.head, t.labels.to(device()), t.targets.to(device()), self.params.head)

    def losses(self) -> dict[str, float]:
        out = {
            "rpn_cls": float(self.rpn_loss.cls),
            "rpn_loc": float(self.rpn_loss.loc),
            "roi_cls": float(self.head_loss.cls),
            "roi_loc": float(self.head_loss.loc),
        }
        out["total"] = sum(out.values())
        return out

    @cached_property
    def detection(self) -> tuple[ProposalResult, HeadOutput, Detections]:
        started = time.perf_counter()
        props = self.proposals_for(training=False)
        head, dets = run_detection(
            self.features, props, self.heads.heads, self.prepared.image.size, self.params
        )
        self._timed("detection", started)
        return props, head, dets

    @cached_property
    def match(self) -> Match:
        _, _, dets = self.detection
        return match_detections(dets, self.gt_boxes, self.gt_labels, self.params.detect.match_iou)
