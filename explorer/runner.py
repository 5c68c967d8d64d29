"""The app's runner: the session's pipeline on the server's shared stage cache.

:class:`PageRun` is :class:`frcnn_core.graph.Run` over :data:`frcnn_core.pipeline.PIPELINE`
with the session's image, boxes, settings and model as sources, and
:data:`explorer.caches.STAGES` as its cache: a page asks for the stages it shows, each is
computed at most once per key whatever the number of sessions, and a setting recomputes
exactly the stages downstream of it (the keys come from the graph, never written by hand).

A heavy stage (a network forward) takes one of :data:`explorer.runtime.FORWARDS`' slots. A
stage that runs out of GPU memory is computed again on the CPU, with a notice on the page.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import Any

import streamlit as st
import torch
from streamlit.runtime.scriptrunner import get_script_run_ctx
from torch import nn

from explorer import caches, models, runtime, state
from explorer.caches import StageCache
from explorer.runtime import CPU, OUT_OF_MEMORY
from frcnn_core.backbone import Backbone
from frcnn_core.graph import Run, Source, Stage
from frcnn_core.i18n import N_, _, ngettext
from frcnn_core.params import PipelineParams
from frcnn_core.pipeline import PIPELINE, UserBoxes
from frcnn_core.train import split_backbone

log = logging.getLogger("frcnn_explorer")
SESSION = object()  # PageRun's default for ``own``: the session's model
# What a stage is called in the out-of-memory notice (English here; shown as ``_(name)``).
STEP_NAMES = {
    "backbone": N_("backbone forward"),
    "rpn": N_("RPN head"),
    "proposals": N_("proposals"),
    "test_proposals": N_("test-time proposals"),
    "roi_pool": N_("RoI pooling"),
    "test_roi_pool": N_("RoI pooling"),
    "head": N_("Fast R-CNN head"),
    "test_head": N_("Fast R-CNN head"),
}


def _slot(stage: Stage) -> AbstractContextManager[Any]:
    return forward_turn(_(STEP_NAMES.get(stage.name, stage.name))) if stage.heavy else nullcontext()


@contextmanager
def forward_turn(step: str) -> Iterator[None]:
    """One of the server's forward slots for a step; while others' forwards come first, the
    page says how many (in a script run; a background job just waits)."""
    notice: list[Any] = []

    def on_wait(ahead: int) -> None:
        if get_script_run_ctx(suppress_warning=True) is None:
            return
        if not notice:
            notice.append(st.empty())
        with notice[0]:
            forward_queue_notice(ahead, step)

    with runtime.FORWARDS.hold(on_wait):
        if notice:
            notice[0].empty()
        yield


def forward_queue_notice(ahead: int, step: str) -> None:
    """A forward waiting for the server: how many run or wait before it."""
    st.info(
        ngettext(
            "Waiting for the server: {n} computation is ahead of your {step}. Yours runs as "
            "soon as it ends.",
            "Waiting for the server: {n} computations are ahead of your {step}. Yours runs "
            "in turn, first come first served.",
            ahead,
        ).format(n=ahead, step=step),
        icon=":material/hourglass_top:",
    )


def image_sources(
    choice: state.ImageChoice, boxes: state.BoxesKey, backbone: Backbone, backbone_key: Any
) -> dict[str, Source]:
    """The sources of stages 1 and 2 (image, ground truth, backbone), keyed for the shared
    cache: the image's digest, the boxes, the backbone's weights."""
    coords = tuple(box for box, _label in boxes)
    labels = tuple(label for _box, label in boxes)
    return {
        "photo": Source(choice.digest, lambda: caches.decode(choice.digest, choice.data)),
        "user_boxes": Source.of(UserBoxes(coords, labels), boxes),
        "spec": Source.of(backbone.spec, backbone.spec),
        "backbone_net": Source.of(backbone, backbone_key),
    }


def image_run(
    choice: state.ImageChoice, boxes: state.BoxesKey, params: PipelineParams, backbone: Backbone
) -> Run:
    """A run of stages 1 and 2 on the shared cache, for work outside a page script (a training
    job): it reads no session state, and shares its results with every page's run."""
    sources = image_sources(choice, boxes, backbone, (backbone.weights, ""))
    return Run(PIPELINE, sources, params, cache=caches.STAGES, around=_slot)


class _Sources(dict):
    """The run's sources, each built when first asked for (the heads are chosen only once the
    boxes' labels are known, which needs stage 1)."""

    def __init__(self, run: PageRun) -> None:
        super().__init__()
        self.run = run

    def __missing__(self, name: str) -> Source:
        source = self.run._make_source(name)
        self[name] = source
        return source


class PageRun(Run):
    """The current session's pipeline, computed lazily on the shared cache.

    Raises ``ImageError`` from ``run["photo"]`` (and any stage after it) when the current image
    cannot be decoded.

    Attributes:
        choice: the session's image (name, bytes, digest).
        device: where this run's torch steps compute: the server's device, or the CPU once a
            step ran out of GPU memory.
        notices: what this run told the user about such a fallback.
    """

    def __init__(
        self,
        params: PipelineParams | None = None,
        *,
        choice: state.ImageChoice | None = None,
        boxes: state.BoxesKey | None = None,
        own: models.SessionModel | object | None = SESSION,
        cache: StageCache | None = None,
    ) -> None:
        """Everything not given is the session's: its settings, image, boxes and own model;
        ``cache`` defaults to the server's shared stage cache."""
        choice = choice if choice is not None else state.image()
        if choice is None:
            raise RuntimeError("no image chosen")
        self.choice = choice
        self.boxes = boxes if boxes is not None else state.boxes_key()
        self.own = models.session_model() if own is SESSION else own
        self.device = runtime.device()
        self.notices: list[str] = []
        self._model: models.Choice | None = None
        super().__init__(
            PIPELINE,
            _Sources(self),
            params or state.params(),
            cache=cache if cache is not None else caches.STAGES,
            around=_slot,
        )

    # -- sources ---------------------------------------------------------------------------

    @property
    def model(self) -> models.Choice:
        """The heads this run uses (the session's trained ones when they fit) on
        :attr:`device`."""
        if self._model is None:
            labels = self["ground_truth"].labels
            self._model = models.current(self.params, labels, self.device, self.own)
        return self._model

    @property
    def trained(self) -> bool:
        return self.model.trained

    def _make_source(self, name: str) -> Source:
        if name in ("photo", "user_boxes", "spec"):
            shared = models.backbone()
            return image_sources(self.choice, self.boxes, shared, None)[name]
        if name == "backbone_net":
            return Source(self._backbone_key(), self._backbone_net)
        if name == "heads":
            return Source(self.model.key, lambda: self.model.heads)
        if name == "rpn_net":
            return Source(self.model.rpn_key, lambda: self.model.heads)
        if name == "vocabulary":
            return Source.of(self.model.vocabulary, self.model.vocabulary)
        raise KeyError(name)

    def _backbone_key(self) -> tuple[str, str]:
        own = self.own
        conv5 = own.token if own is not None and own.conv5 is not None else ""
        return (models.backbone().weights, conv5)

    def _backbone_net(self) -> Backbone:
        shared = models.backbone_on(self.device)
        own = self.own
        if own is None or own.conv5 is None:
            return shared
        frozen, _conv5 = split_backbone(shared.features)
        features = nn.Sequential(*frozen, own.on("conv5", self.device))
        return Backbone(features, shared.weights, shared.note, shared.spec, shared.said)

    # -- computing -------------------------------------------------------------------------

    def compute(self, name: str) -> Any:
        """The stage, as :meth:`Run.compute`. When it runs out of GPU memory, the GPU's cached
        blocks are released and it runs again on the CPU, with a notice on the page; this run's
        later steps stay on the CPU. Out of memory on the CPU itself is raised, for the page
        guard to report."""
        try:
            return super().compute(name)
        except OUT_OF_MEMORY:
            if self.device.type == "cpu":
                raise
            failed = self.device
        # Released only here, after the except block: until then the traceback's frames hold
        # the failed step's tensors, and the GPU could not get their memory back.
        step = STEP_NAMES.get(name, name)
        log.warning("the %s ran out of memory on %s; computing it on the CPU", step, failed)
        self.device = CPU
        self._model = None
        for source in ("backbone_net", "heads", "rpn_net"):
            self._values.pop(source, None)
        for stage, value in list(self._values.items()):
            self._values[stage] = _to_cpu(value)
        runtime.release_accelerator_memory()
        notice = _(
            "The GPU ran out of memory computing the {step}, so it was computed on the CPU "
            "instead (slower); the rest of this page is computed there too."
        ).format(step=_(step))
        self.notices.append(notice)
        st.warning(notice, icon=":material/memory:")
        return super().compute(name)


def _to_cpu(value: Any) -> Any:
    """A feature map's result moved off the GPU (the one large tensor a run holds); other
    values are moved by the stages that read them."""
    features = getattr(value, "features", None)
    if isinstance(features, torch.Tensor) and features.device.type != "cpu":
        return type(value)(features.to(CPU), value.seconds)
    return value


def current_run(params: PipelineParams | None = None) -> PageRun:
    """The session's pipeline with its own settings (or ``params``, for a what-if)."""
    return PageRun(params)
