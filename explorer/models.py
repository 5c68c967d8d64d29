"""The networks: the shared ones (one copy for every session, never modified) and a session's
own trained model.

- :func:`backbone` and :func:`initial_heads` are ``st.cache_resource``: built once per server
  and shared by every session. Their parameters do not require gradients, and nothing may
  modify them: a session's training works on a copy of the parts it trains.
- :class:`SessionModel` is what training (or a weights upload) gives one session. It shares
  every frozen tensor with the cached model (fc6 and fc7, unless they were trained) and holds
  only what it trained; it lives in that session's state and is dropped when replaced.
- :func:`current` picks what a run uses: the session's model when it fits the current
  settings and knows every label, else the shared initial heads.
"""

from __future__ import annotations

import contextlib
import io
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field

import streamlit as st
import torch
from streamlit.runtime.scriptrunner import get_script_run_ctx

from explorer import caches, runtime
from explorer.runtime import CPU, env_int
from frcnn_core.backbone import Backbone, load_backbone
from frcnn_core.head import FastRCNNHead
from frcnn_core.i18n import N_, _
from frcnn_core.params import PipelineParams
from frcnn_core.pipeline import DetectorHeads
from frcnn_core.train import TrainParams

MODEL_SEED = 0
SESSION_MODEL = "model"  # session key: the SessionModel, or absent


def _frozen(loaded: Backbone, where: torch.device) -> Backbone:
    loaded.features.to(where)
    for p in loaded.features.parameters():
        p.requires_grad_(False)
    return loaded


# What this process has built once (their spinners are not shown again).
_BUILT: set[tuple] = set()
_BUILT_LOCK = threading.Lock()


@contextlib.contextmanager
def _building(message: str, key: tuple) -> Iterator[None]:
    """A spinner saying ``message`` (marked with ``N_``) in the session's language while ``key``
    is first built in this process. (A cache's own ``show_spinner`` text is fixed at import,
    in English.) Nothing is shown outside a page's run (a worker thread)."""
    if key in _BUILT or get_script_run_ctx(suppress_warning=True) is None:
        yield
        return
    with st.spinner(_(message)):
        yield
    with _BUILT_LOCK:
        _BUILT.add(key)


def backbone() -> Backbone:
    """The shared VGG16 ``features[:30]`` in eval mode on the device (never modified)."""
    with _building(N_("Loading the VGG16 backbone…"), ("backbone",)):
        return _backbone()


@st.cache_resource(show_spinner=False)
def _backbone() -> Backbone:
    return _frozen(load_backbone(seed=MODEL_SEED), runtime.device())


def cpu_backbone() -> Backbone:
    """The same backbone on the CPU, for a step that ran out of GPU memory (loaded afresh, not
    copied, so the full GPU is not asked for more)."""
    with _building(N_("Loading a CPU copy of the VGG16 backbone…"), ("cpu_backbone",)):
        return _cpu_backbone()


@st.cache_resource(show_spinner=False)
def _cpu_backbone() -> Backbone:
    return _frozen(load_backbone(seed=MODEL_SEED), CPU)


def backbone_on(where: torch.device) -> Backbone:
    return backbone() if where == runtime.device() else cpu_backbone()


def _where(on: str) -> torch.device:
    return torch.device(on) if on else runtime.device()


def _frozen_module(module: torch.nn.Module, on: str) -> torch.nn.Module:
    module = module.to(_where(on)).eval()
    for p in module.parameters():
        p.requires_grad_(False)
    return module


def shared_fc(pooled_size: int, on: str = "") -> FastRCNNHead:
    """The seeded fc6 and fc7 (470 MB at the tutorial's sizes) for one pooled size, shared by
    the initial heads of every class count and by every session's own model that did not train
    them. They are drawn first from the head's seed, so they are the same whatever the number
    of classes."""
    with _building(N_("Initialising fc6 and fc7…"), ("shared_fc", pooled_size, on)):
        return _shared_fc(pooled_size, on)


@st.cache_resource(max_entries=3, show_spinner=False)
def _shared_fc(pooled_size: int, on: str = "") -> FastRCNNHead:
    channels = _backbone().spec.channels
    head = _frozen_module(
        FastRCNNHead(1, channels * pooled_size * pooled_size, seed=MODEL_SEED + 1), on
    )
    # Frozen and shared by every session: fc6 keeps the rows it computed (see RowCachedLinear).
    budget = env_int(caches.FC6_ROWS_MB_ENV, caches.FC6_ROWS_MB) * caches.MB
    head.fc6 = caches.RowCachedLinear(head.fc6, budget)
    return head


def initial_heads(
    num_classes: int, anchors_per_cell: int, pooled_size: int, on: str = ""
) -> DetectorHeads:
    """Freshly initialised heads, shared by every session; read-only.

    ``on`` names a device other than the default one (``"cpu"`` after running out of GPU memory):
    the heads are built from the seed there, so they are the same weights.
    """
    key = ("initial_heads", num_classes, anchors_per_cell, pooled_size, on)
    with _building(N_("Initialising the RPN and Fast R-CNN heads…"), key):
        return _initial_heads(num_classes, anchors_per_cell, pooled_size, on)


@st.cache_resource(max_entries=6, show_spinner=False)
def _initial_heads(
    num_classes: int, anchors_per_cell: int, pooled_size: int, on: str = ""
) -> DetectorHeads:
    spec = _backbone().spec
    heads = DetectorHeads(num_classes, anchors_per_cell, spec.channels, pooled_size, MODEL_SEED)
    # The same values as the freshly built ones (same seed), but one copy for every class count.
    fc = shared_fc(pooled_size, on)
    heads.head.fc6, heads.head.fc7 = fc.fc6, fc.fc7
    return _frozen_module(heads, on)


def initial_heads_for(
    num_classes: int, params: PipelineParams, where: torch.device | None = None
) -> DetectorHeads:
    where = where or runtime.device()
    on = "" if where == runtime.device() else where.type
    return initial_heads(num_classes, params.anchors.per_cell, params.roi_pool.output_size, on)


def cpu_copy(module: torch.nn.Module) -> torch.nn.Module:
    """``module`` copied onto the CPU without allocating anything on its own device (it is
    serialised, then loaded onto the CPU)."""
    buf = io.BytesIO()
    torch.save(module, buf)
    buf.seek(0)
    return torch.load(buf, map_location=CPU, weights_only=False)


@dataclass
class SessionModel:
    """A session's own model: trained here, or loaded from a weights file.

    Attributes:
        heads: the RPN and Fast R-CNN heads, in eval mode, no gradients.
        class_names: the classes they know (class id = index + 1).
        conv5: a trained conv5 block, or None (the shared backbone's is used).
        token: a new identity for every model, so no cache ever mixes two models' results.
        history: the training's per-iteration losses (empty for an upload).
        settings: how it was trained (None for an upload).
        source: "trained" or the uploaded file's name.
    """

    heads: DetectorHeads
    class_names: tuple[str, ...]
    conv5: torch.nn.Module | None = None
    history: list[dict[str, float]] = field(default_factory=list)
    settings: TrainParams | None = None
    source: str = "trained"
    token: str = field(default_factory=lambda: f"trained:{uuid.uuid4().hex}")
    _cpu: dict[str, torch.nn.Module] = field(default_factory=dict, repr=False)

    def fits(self, params: PipelineParams, labels: tuple[str, ...]) -> bool:
        """True when the settings can run these heads and they know every label."""
        return self.heads.fits(params) and set(labels) <= set(self.class_names)

    def on(self, name: str, where: torch.device) -> torch.nn.Module:
        """``heads`` or ``conv5`` on ``where``: itself, or a CPU copy made once."""
        module = getattr(self, name)
        if where.type != "cpu" or next(module.parameters()).device.type == "cpu":
            return module
        if name not in self._cpu:
            self._cpu[name] = cpu_copy(module).eval()
        return self._cpu[name]


def session_model() -> SessionModel | None:
    """This session's own model, if any."""
    return st.session_state.get(SESSION_MODEL)


def set_session_model(model: SessionModel | None) -> None:
    """Make ``model`` this session's (None: back to the initial heads); the previous one is
    released."""
    if model is None:
        st.session_state.pop(SESSION_MODEL, None)
    else:
        model.heads.to(runtime.device()).eval()
        st.session_state[SESSION_MODEL] = model


@dataclass(frozen=True)
class Choice:
    """The heads a run uses and the class vocabulary they were built for.

    Attributes:
        key: identifies the heads' weights in the caches: ``init:...`` for the shared seeded
            ones (the same in every session, so their results are shared), the session
            model's token otherwise.
        rpn_key: identifies the RPN's weights alone: for the seeded heads the same for every
            class count (a student who adds a class still shares the samples' RPN and
            proposals, warm-up included); the model's token otherwise.
        trained: the session's own model, not the initial heads.
    """

    heads: DetectorHeads
    vocabulary: tuple[str, ...]
    key: str
    trained: bool
    rpn_key: str = ""

    def __post_init__(self) -> None:
        if not self.rpn_key:
            object.__setattr__(self, "rpn_key", self.key)


def current(
    params: PipelineParams,
    labels: tuple[str, ...],
    where: torch.device | None = None,
    own: SessionModel | None = None,
) -> Choice:
    """``own`` (the session's model) when it fits ``params`` and knows every one of ``labels``,
    else the shared initial heads for the labels' classes (in order of first appearance); on
    ``where`` (default: the server's device)."""
    where = where or runtime.device()
    if own is not None and own.fits(params, labels):
        return Choice(own.on("heads", where), own.class_names, own.token, True)
    vocabulary = tuple(dict.fromkeys(labels))
    n = max(len(vocabulary), 1)
    heads = initial_heads_for(n, params, where)
    key = f"init:{MODEL_SEED}:{n}:{params.anchors.per_cell}:{params.roi_pool.output_size}"
    # The seeded RPN is drawn from the seed alone, whatever the classes: one key for all.
    rpn_key = f"init:{MODEL_SEED}:rpn:{params.anchors.per_cell}"
    return Choice(heads, vocabulary, key, False, rpn_key)
