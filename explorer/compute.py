"""Cached computation for the pages: each stage computed once per input, on demand.

- The backbone and the initial heads are ``st.cache_resource``: one copy for all sessions,
  never modified (a user's trained heads live in that user's session, see ``state.TRAINED``).
- Decoded images are in :class:`DecodedImages`, bounded by bytes as well as by count; the other
  per-image results are ``st.cache_data`` with ``max_entries``, keyed on the image digest and
  frozen parameter dataclasses, so memory stays bounded however many students upload images.
- :class:`Stages` computes a stage only when a page asks for it, so a slider recomputes only
  what lies downstream of it. A step that runs out of GPU memory is computed again on the CPU,
  with a notice on the page.
- The heavy torch forwards (backbone, RPN head, Fast R-CNN head) take one of
  :data:`FORWARDS`' slots, so many sessions at once take turns instead of thrashing the cores.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import cached_property
from typing import TypeVar

import streamlit as st
import torch

from explorer import state
from frcnn_core.anchor_targets import AnchorTargetParams, AnchorTargetResult, anchor_targets
from frcnn_core.anchors import AnchorParams, AnchorResult, generate_anchors
from frcnn_core.backbone import Backbone, BackboneParams, load_backbone, run_backbone
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
)
from frcnn_core.proposal_targets import ProposalTargetResult, proposal_targets
from frcnn_core.proposals import ProposalParams, ProposalResult, propose
from frcnn_core.roi_pool import RoIPoolParams, RoIPoolResult, pool_rois
from frcnn_core.rpn import RPNLoss, RPNOutput, RPNParams, rpn_forward, rpn_loss
from frcnn_core.train import split_backbone

log = logging.getLogger("frcnn_explorer")
T = TypeVar("T")

MODEL_SEED = 0
CPU = torch.device("cpu")
# Raised by the CUDA (and, in recent torch, any) allocator; torch.OutOfMemoryError since 2.5.
OUT_OF_MEMORY: type[Exception] = torch.cuda.OutOfMemoryError
# Bounded caches: a few images per user and a few dozen users fit in a few GB.
IMAGE_CACHE_ENTRIES = 64
FEATURE_CACHE_ENTRIES = 24
STAGE_CACHE_ENTRIES = 48
# Decoded originals are the large entries: a 40-megapixel upload (frcnn_core.image's limit) is
# 120 MB of RGB, so a count alone allows 64 x 120 MB; the byte budget keeps them to this many MB
# (four such photos, or a dozen 12-megapixel ones, or all 64 entries of a class's small photos).
IMAGE_CACHE_MB = 512
IMAGE_CACHE_MB_ENV = "FRCNN_IMAGE_CACHE_MB"
FORWARD_SLOTS_ENV = "FRCNN_FORWARD_SLOTS"
CPU_COPIES = "compute:cpu_copies"  # session key: CPU copies of the trained modules


def env_int(name: str, default: int) -> int:
    """A positive integer setting from the environment; unset or not one: ``default``."""
    try:
        value = int(os.environ.get(name, ""))
    except ValueError:
        return default
    return value if value >= 1 else default


def device() -> torch.device:
    return default_device()


# -- the heavy forwards take turns ------------------------------------------------------------


def default_forward_slots() -> int:
    """How many forwards may run at once: the cores divided by torch's intra-op threads.

    One forward already keeps ``torch.get_num_threads()`` cores busy; a second one at the same
    time only time-slices those cores (both finish later than one after the other, and the
    threads thrash each other's caches). 2 cores, 2 threads: 1 slot; 16 cores, 8 threads: 2.
    """
    return max(1, (os.cpu_count() or 1) // max(torch.get_num_threads(), 1))


class ForwardSlots:
    """At most ``slots`` heavy torch forwards at once in this process, whatever the sessions.

    Streamlit runs each session's script in its own thread; a session whose forward finds every
    slot taken waits (behind the stage's spinner) until one is free.

    Deadlock-free by construction: a slot is held only around plain torch code (never around a
    cache lookup or anything else that waits), and a thread that already holds a slot passes
    through a nested ``hold()`` without taking a second one.
    """

    def __init__(self, slots: int) -> None:
        self.slots = slots
        self._free = threading.BoundedSemaphore(slots)
        self._depth = threading.local()

    def held(self) -> bool:
        """True inside ``hold()`` on this thread."""
        return getattr(self._depth, "n", 0) > 0

    @contextlib.contextmanager
    def hold(self) -> Iterator[None]:
        depth = getattr(self._depth, "n", 0)
        with self._free if depth == 0 else contextlib.nullcontext():
            self._depth.n = depth + 1
            try:
                yield
            finally:
                self._depth.n = depth


FORWARDS = ForwardSlots(env_int(FORWARD_SLOTS_ENV, default_forward_slots()))


# -- models -----------------------------------------------------------------------------------


def _frozen(loaded: Backbone, where: torch.device) -> Backbone:
    loaded.features.to(where)
    for p in loaded.features.parameters():
        p.requires_grad_(False)
    return loaded


@st.cache_resource(show_spinner="Loading the VGG16 backbone…")
def backbone() -> Backbone:
    """The shared VGG16 ``features[:30]`` in eval mode on the device (never modified)."""
    return _frozen(load_backbone(seed=MODEL_SEED), device())


@st.cache_resource(show_spinner="Loading a CPU copy of the VGG16 backbone…")
def cpu_backbone() -> Backbone:
    """The same backbone on the CPU, for a step that ran out of GPU memory (loaded afresh, not
    copied, so the full GPU is not asked for more)."""
    return _frozen(load_backbone(seed=MODEL_SEED), CPU)


def backbone_on(where: torch.device) -> Backbone:
    return backbone() if where == device() else cpu_backbone()


@st.cache_resource(max_entries=4, show_spinner="Initialising the RPN and Fast R-CNN heads…")
def initial_heads(num_classes: int, anchors_per_cell: int, on: str = "") -> DetectorHeads:
    """Freshly initialised heads, shared by every session; treat as read-only.

    ``on`` names a device other than the default one (``"cpu"`` after running out of GPU memory):
    the heads are built from the seed there, so they are the same weights.
    """
    where = torch.device(on) if on else device()
    heads = DetectorHeads(num_classes, anchors_per_cell, seed=MODEL_SEED).to(where).eval()
    for p in heads.parameters():
        p.requires_grad_(False)
    return heads


def device_label() -> str:
    return device_name(device())


def cpu_copy(module: torch.nn.Module) -> torch.nn.Module:
    """``module`` copied onto the CPU without allocating anything on its own device (it is
    serialised, then loaded onto the CPU)."""
    buf = io.BytesIO()
    torch.save(module, buf)
    buf.seek(0)
    return torch.load(buf, map_location=CPU, weights_only=False)


def trained_module_on(trained: dict, name: str, where: torch.device) -> torch.nn.Module:
    """The session's trained ``name`` (``"heads"`` or ``"conv5"``) on ``where``: the model
    itself, or its CPU copy, made once per trained model and kept in the session."""
    module = trained[name]
    if where.type != "cpu" or next(module.parameters()).device.type == "cpu":
        return module
    copies = st.session_state.get(CPU_COPIES)
    if not copies or copies["token"] != trained["token"]:
        copies = {"token": trained["token"]}
        st.session_state[CPU_COPIES] = copies
    if name not in copies:
        copies[name] = cpu_copy(module).eval()
    return copies[name]


def release_accelerator_memory() -> None:
    """Return the allocator's cached blocks to the GPU (nothing to do where CUDA is unused)."""
    torch.cuda.empty_cache()


# -- per-image caches -------------------------------------------------------------------------


class DecodedImages:
    """Decoded images by digest, bounded by count and by bytes; least recently used out first.

    Not ``st.cache_data``: that pickles each value and hands every caller its own unpickled
    copy (120 MB per script run for a 40-megapixel photo) and, before Streamlit 1.67, cannot
    bound bytes. Here every session shares one read-only array per image. Process-wide and
    thread-safe (each session's script runs in its own thread).
    """

    def __init__(self, max_entries: int, max_bytes: int) -> None:
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self._items: OrderedDict[str, LoadedImage] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._items)

    @property
    def nbytes(self) -> int:
        """Bytes of pixels held."""
        return self._bytes

    def get(self, digest: str, data: bytes) -> LoadedImage:
        """The decoded image of ``data`` (whose sha256 is ``digest``); raises ``ImageError``."""
        with self._lock:
            hit = self._items.get(digest)
            if hit is not None:
                self._items.move_to_end(digest)
                return hit
        # Decoded outside the lock, so one session's large photo never stalls the others.
        loaded = load_image(data)
        loaded.pixels.setflags(write=False)  # shared by every session that shows this image
        self._keep(digest, loaded)
        return loaded

    def _keep(self, digest: str, loaded: LoadedImage) -> None:
        size = loaded.pixels.nbytes
        if size > self.max_bytes:
            return  # larger than the whole budget: used by this run, not kept
        with self._lock:
            previous = self._items.pop(digest, None)  # decoded twice at once: keep one
            if previous is not None:
                self._bytes -= previous.pixels.nbytes
            self._items[digest] = loaded
            self._bytes += size
            while len(self._items) > self.max_entries or self._bytes > self.max_bytes:
                _, dropped = self._items.popitem(last=False)
                self._bytes -= dropped.pixels.nbytes

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
            self._bytes = 0


DECODED = DecodedImages(IMAGE_CACHE_ENTRIES, env_int(IMAGE_CACHE_MB_ENV, IMAGE_CACHE_MB) * 2**20)


def decode(digest: str, _data: bytes) -> LoadedImage:
    """Decode image bytes once per digest (raises ``ImageError`` for a bad file). The pixels
    are read-only: every session showing this image shares them."""
    return DECODED.get(digest, _data)


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
    digest: str,
    _data: bytes,
    resize: ResizeParams,
    params: BackboneParams,
    weights: str,
    _device: torch.device | None = None,
) -> tuple[torch.Tensor, float]:
    """Backbone features [1, 512, Hf, Wf] on the CPU, and the forward's seconds, computed on
    ``_device`` (default: :func:`device`; not part of the key, the result is the same)."""
    where = _device or device()
    prep = prepared(digest, _data, (), resize)
    model = backbone_on(where)
    with FORWARDS.hold():
        feats, seconds = compute_features(prep.image, model, params, where)
    return feats.cpu(), seconds


@st.cache_data(
    max_entries=FEATURE_CACHE_ENTRIES,
    show_spinner="Running VGG16 up to conv4_3 on this image (once per image)…",
)
def conv4_features(
    digest: str,
    _data: bytes,
    resize: ResizeParams,
    params: BackboneParams,
    weights: str,
    _device: torch.device | None = None,
) -> torch.Tensor:
    """The frozen part when the conv5 block is trained: conv4_3's output [1, 512, 2Hf, 2Wf]."""
    where = _device or device()
    prep = prepared(digest, _data, (), resize)
    frozen, _ = split_backbone(backbone_on(where).features)
    with FORWARDS.hold():
        result = run_backbone(image_tensor(prep.image, where), frozen, params)
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
    _device: torch.device | None = None,
) -> tuple[torch.Tensor, float]:
    """Features through a session's trained conv5 block (keyed by that session's token);
    ``_conv5`` must be on ``_device``."""
    where = _device or device()
    conv4 = conv4_features(digest, _data, resize, params, weights, where).to(where)
    with FORWARDS.hold():
        started = time.perf_counter()
        with torch.inference_mode():
            out = _conv5(conv4)
        seconds = time.perf_counter() - started
    return out.clone().cpu(), seconds


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
    with FORWARDS.hold(), torch.no_grad():
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
    with FORWARDS.hold(), torch.no_grad():
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


def current_heads(
    class_names: tuple[str, ...], anchors_per_cell: int, where: torch.device | None = None
) -> HeadsChoice:
    """The session's trained heads when they fit (same anchors per cell, and they know every
    class in ``class_names``), else the shared initial heads for that many classes; on
    ``where`` (default: :func:`device`)."""
    where = where or device()
    trained = trained_model()
    if trained is not None and fits(trained, class_names, anchors_per_cell):
        return HeadsChoice(trained_module_on(trained, "heads", where), trained["token"], True)
    n = max(len(class_names), 1)
    heads = initial_heads(n, anchors_per_cell, "" if where == device() else where.type)
    return HeadsChoice(heads, f"init:{MODEL_SEED}:{n}:{anchors_per_cell}", False)


def fits(trained: dict, class_names: tuple[str, ...], anchors_per_cell: int) -> bool:
    return trained["anchors_per_cell"] == anchors_per_cell and set(class_names) <= set(
        trained["class_names"]
    )


class Stages:
    """The current session's pipeline, computed lazily: a page touches only what it shows.

    Raises ``ImageError`` from :attr:`loaded` when the current image cannot be decoded.

    Attributes:
        device: where this run's torch steps compute: :func:`device`, or the CPU once a step
            ran out of GPU memory (see :meth:`on_device`).
        notices: what this run told the user about such a fallback.
    """

    def __init__(self, params: PipelineParams | None = None) -> None:
        choice = state.image()
        if choice is None:
            raise RuntimeError("no image chosen")
        self.choice = choice
        self.params = params or state.params()
        self.boxes = state.boxes_key()
        self.timings: dict[str, float] = {}
        self.device = device()
        self.notices: list[str] = []
        self._heads: dict[str, HeadsChoice] = {}

    def _timed(self, name: str, started: float) -> None:
        self.timings[name] = time.perf_counter() - started

    def on_device(self, step: str, compute: Callable[[], T]) -> T:
        """``compute()``, which reads :attr:`device`. When it runs out of GPU memory, the GPU's
        cached blocks are released and it runs again on the CPU, with a notice on the page;
        this run's later steps stay on the CPU (their inputs are there now). Out of memory on
        the CPU itself is raised, for the page guard to report."""
        try:
            return compute()
        except OUT_OF_MEMORY:
            if self.device.type == "cpu":
                raise
            failed = self.device
        # Released only here, after the except block: until then the traceback's frames hold
        # the failed step's tensors, and the GPU could not get their memory back.
        log.warning("the %s ran out of memory on %s; computing it on the CPU", step, failed)
        self.device = CPU
        if "_features" in self.__dict__:  # this run's feature map leaves the GPU too
            feats, seconds = self.__dict__["_features"]
            self.__dict__["_features"] = (feats.to(CPU), seconds)
        release_accelerator_memory()
        notice = (
            f"The GPU ran out of memory computing the {step}, so it was computed on the CPU "
            "instead (slower); the rest of this page is computed there too."
        )
        self.notices.append(notice)
        st.warning(notice, icon=":material/memory:")
        return compute()

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

    @property
    def heads(self) -> HeadsChoice:
        """The heads, on :attr:`device`."""
        where = str(self.device)
        if where not in self._heads:
            self._heads[where] = current_heads(
                self.class_names, self.params.anchors.per_cell, self.device
            )
        return self._heads[where]

    @cached_property
    def _features(self) -> tuple[torch.Tensor, float]:
        p = self.params
        args = (self.choice.digest, self.choice.data, p.resize, p.backbone, self.backbone.weights)
        trained = trained_model()

        def compute() -> tuple[torch.Tensor, float]:
            where = self.device
            if trained is not None and trained.get("conv5") is not None:
                conv5 = trained_module_on(trained, "conv5", where)
                feats, seconds = session_features(*args, trained["token"], conv5, where)
            else:
                feats, seconds = features(*args, where)
            return feats.to(where), seconds

        return self.on_device("backbone forward", compute)

    @property
    def features(self) -> torch.Tensor:
        """Tensor[1, 512, Hf, Wf] on :attr:`device`."""
        return self._features[0].to(self.device)

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
        fp = forward_params(self.params.rpn)
        out = self.on_device("RPN head", lambda: rpn_outputs(*self._cache_args(), fp))
        self._timed("rpn", started)
        return out

    @cached_property
    def rpn_loss(self) -> RPNLoss:
        t = self.anchor_targets
        return rpn_loss(self.rpn, t.labels_all, t.targets_all, self.params.rpn)

    def proposals_for(self, training: bool) -> ProposalResult:
        started = time.perf_counter()
        p = self.params
        size = self.prepared.image.size
        out = self.on_device(
            "proposals",
            lambda: proposals(*self._cache_args(), p.rpn, size, p.anchors, p.proposals, training),
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
        rois = self.proposal_targets.rois
        started = time.perf_counter()
        result = self.on_device(
            "RoI pooling",
            lambda: pool_rois(self.features, rois.to(self.device), self.params.roi_pool),
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
        out = self.on_device(
            "Fast R-CNN head",
            lambda: head_outputs(
                self.roi_key,
                self.features,
                rois,
                self.heads.heads,
                p.roi_pool,
                p.head.bug_b11_no_relu,
            ),
        )
        self._timed("head", started)
        return HeadOutput(out.scores.to(self.device), out.deltas.to(self.device))

    @cached_property
    def head_loss(self) -> HeadLoss:
        t = self.proposal_targets
        head = self.head  # first: it may move this run to the CPU
        where = self.device
        return head_loss(
            HeadOutput(head.scores.to(where), head.deltas.to(where)),
            t.labels.to(where),
            t.targets.to(where),
            self.params.head,
        )

    def losses(self) -> dict[str, float]:
        out = {
            "rpn_cls": float(self.rpn_loss.cls),
            "rpn_loc": float(self.rpn_loss.loc),
            "roi_cls": float(self.head_loss.cls),
            "roi_loc": float(self.head_loss.loc),
        }
        out["total"] = sum(out.values())
        return out
