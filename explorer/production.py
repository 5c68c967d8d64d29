"""The production detector in the app: shared detectors, the session's choice of one, and its run
of :data:`frcnn_core.production_graph.PRODUCTION` on the server's shared stage cache.

- Detectors are ``st.cache_resource`` (one per model, weights and device, shared by every
  session, never modified). The menu offers torchvision's three models (COCO weights from the
  torch hub cache, a bounded download, else random weights with a notice), the file named by
  ``$FRCNN_DETECTOR_WEIGHTS`` when set, and the checkpoints this session registered
  (:func:`register_checkpoint`, e.g. after fine-tuning).
- :class:`ProductionRun` is :class:`frcnn_core.graph.Run` with the session's image, boxes,
  settings and detector as sources: the forward pass is computed once per image, detector and
  input size, whatever the number of sessions; the score threshold re-runs only the cheap tail.
- :func:`production_guard` turns the detector's own failures (an image too thin for its resize,
  unusable weights) into one-line messages, on top of the app's page guard.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import tempfile
import threading
from collections.abc import Hashable, Iterator
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import streamlit as st
import torch

from explorer import caches, runtime, state
from explorer.runner import forward_turn
from explorer.runtime import CPU, OUT_OF_MEMORY
from explorer.text import plain, plain_message, shown
from explorer.widgets import page_guard
from frcnn_core.detectors import (
    DEFAULT_MODEL,
    MODELS,
    OFFLINE_ENV,
    WEIGHTS_ENV,
    Detector,
    DetectorWeightsError,
    DeviceError,
    checkpoint_info,
    coco_cache_path,
    coco_map,
    load_detector,
)
from frcnn_core.graph import Run, Source, Stage
from frcnn_core.i18n import N_, _, ngettext, number, using
from frcnn_core.params import PipelineParams
from frcnn_core.pipeline import UserBoxes
from frcnn_core.production import InputSizeError
from frcnn_core.production_graph import PRODUCTION, CachedRun

log = logging.getLogger("frcnn_explorer")

CHOICE = "production_detector"  # session key: the chosen menu entry's id
WIDGET = "production_detector#widget"
CHECKPOINTS = "production_checkpoints"  # session key: {id: DetectorOption} this session added
RANDOM_SEED = 0
# Checkpoints given as bytes are written here, named by their sha256 (shared by sessions).
UPLOAD_DIR = Path(tempfile.gettempdir()) / "frcnn_explorer_checkpoints"
ENV_ID = "env"

MODEL_LABELS = {
    "fasterrcnn_resnet50_fpn_v2": "ResNet-50 FPN v2",
    "fasterrcnn_resnet50_fpn": "ResNet-50 FPN",
    "fasterrcnn_mobilenet_v3_large_fpn": "MobileNetV3-Large FPN",
}
BACKBONE_LABELS = {
    "fasterrcnn_resnet50_fpn_v2": "ResNet-50",
    "fasterrcnn_resnet50_fpn": "ResNet-50",
    "fasterrcnn_mobilenet_v3_large_fpn": "MobileNetV3-Large",
}
MODEL_NOTES = {
    "fasterrcnn_resnet50_fpn_v2": N_("most accurate"),
    "fasterrcnn_resnet50_fpn": N_("as the tutorial's"),
    "fasterrcnn_mobilenet_v3_large_fpn": N_("fast on a CPU"),
}
OUT_OF_MEMORY_NOTICE = N_(
    "The GPU ran out of memory for the production detector, so it ran on the CPU instead "
    "(slower); the rest of this page is computed there too."
)
# Measured forward times, (model, device type, shorter side, longer side) -> seconds: the
# spinner of the next first forward says how long it took last time.
FORWARD_SECONDS: dict[tuple[str, str, int, int], float] = {}


@dataclass(frozen=True)
class DetectorOption:
    """One entry of the detector menu.

    Attributes:
        id: stable within the server: a model name, ``"env"``, or ``"checkpoint:<sha256>"``.
        label: the entry's own name: the model's, the file's, or the one a checkpoint was
            registered with; :func:`option_label` says what the menu shows, in the session's
            language.
        model: one of ``frcnn_core.detectors.MODELS``, or None (the file says).
        path: a weights file, or None (COCO weights from the cache or a download, else random).
        digest: the file's sha256 (None without a file).
        classes: a checkpoint's number of object classes (background left out); else None.
    """

    id: str
    label: str
    model: str | None = None
    path: str | None = None
    digest: str | None = None
    classes: int | None = None


# -- detectors -------------------------------------------------------------------------------------

_digests: dict[tuple[str, int, int], str] = {}
_digest_lock = threading.Lock()


def file_digest(path: str | os.PathLike[str]) -> str:
    """sha256 of a file's bytes, computed once per (path, size, modification time).

    Raises:
        DetectorWeightsError: the file cannot be read.
    """
    try:
        info = os.stat(path)
    except OSError:
        raise DetectorWeightsError(_("weights file not found: {path}").format(path=path)) from None
    key = (str(path), info.st_size, info.st_mtime_ns)
    with _digest_lock:
        known = _digests.get(key)
    if known is not None:
        return known
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as fh:
            for block in iter(lambda: fh.read(2**20), b""):
                digest.update(block)
    except OSError as exc:
        raise DetectorWeightsError(
            _("cannot read {file}: {reason}").format(file=Path(path).name, reason=exc.strerror)
        ) from None
    with _digest_lock:
        _digests[key] = digest.hexdigest()
    return digest.hexdigest()


def _torchvision_detector(name: str, device: str) -> Detector:
    """COCO weights (the torch hub cache, else a bounded download), else random weights with a
    notice that says how to get the real ones. ``$FRCNN_DETECTOR_WEIGHTS`` is its own entry.

    The detector is shared by every session, whatever its language: its note is English (as the
    log and the CLI say it); the pages say where the weights came from with
    :func:`weights_text`, in the session's language."""
    try:
        with using("en"):
            return load_detector(name, "coco", device=device)
    except DetectorWeightsError as exc:
        reason = str(exc)
    log.warning("the %s detector runs on random weights: %s", name, reason)
    detector = load_detector(name, "random", device=device, seed=RANDOM_SEED)
    return replace(
        detector,
        note=f"{reason}. Until then it runs on random weights (seed {RANDOM_SEED}), or set "
        f"{WEIGHTS_ENV}=/path/to/weights.pth before starting the app.",
    )


@st.cache_resource(max_entries=4, show_spinner=False)
def _shared_detector(
    model: str | None, path: str | None, digest: str | None, coco_here: bool, device: str
) -> Detector:
    """One detector per (model, weights, device) for every session; never modified.
    ``digest`` and ``coco_here`` are in the key so that a new file, or COCO weights fetched
    since, load afresh."""
    if path is None:
        return _torchvision_detector(str(model), device)
    return load_detector(model, path, device=device)


def load(option: DetectorOption, device: torch.device | None = None) -> Detector:
    """The shared detector of a menu entry, on ``device`` (default: the server's).

    Raises:
        DetectorWeightsError: the entry's file is missing, corrupt or for another model.
    """
    where = device or runtime.device()
    digest = file_digest(option.path) if option.path else None
    coco_here = option.path is None and coco_cache_path(str(option.model)).is_file()
    label = plain(option_label(option))
    message = _("Loading the {detector} detector…").format(detector=label)
    if option.path is None and not coco_here and os.environ.get(OFFLINE_ENV, "") in ("", "0"):
        message = _(
            "Loading the {detector} detector: its COCO weights are not on this server yet, so "
            "they are downloaded where the network allows (a few minutes at most, then random "
            "weights)…"
        ).format(detector=label)
    with st.spinner(message):
        return _shared_detector(option.model, option.path, digest, coco_here, str(where))


def identity(detector: Detector, option: DetectorOption) -> Hashable:
    """What identifies a detector's weights in the caches: ``("coco", model)``,
    ``("random:0", model)`` or ``("file", sha256)``."""
    if option.digest or option.path:
        return ("file", option.digest or file_digest(str(option.path)))
    if detector.weights == "random":
        return (f"random:{RANDOM_SEED}", detector.name)
    return (detector.weights, detector.name)


# -- the menu --------------------------------------------------------------------------------------


def torchvision_options() -> list[DetectorOption]:
    return [DetectorOption(name, MODEL_LABELS[name], model=name) for name in MODELS]


def env_option() -> DetectorOption | None:
    """The file named by ``$FRCNN_DETECTOR_WEIGHTS``, when it is set."""
    path = os.environ.get(WEIGHTS_ENV, "").strip()
    if not path:
        return None
    return DetectorOption(ENV_ID, Path(path).name, path=path)


def option_label(option: DetectorOption) -> str:
    """What the menu says for ``option``, in the session's language (the option itself keeps
    no translated text: a checkpoint's entry lives in the session across language changes)."""
    if option.classes is not None:
        model = MODEL_LABELS.get(str(option.model), str(option.model))
        return ngettext(
            "{label} ({model}, {n} class)", "{label} ({model}, {n} classes)", option.classes
        ).format(label=option.label, model=model, n=option.classes)
    if option.id == ENV_ID:
        return _("{file} (from {variable})").format(file=option.label, variable=WEIGHTS_ENV)
    if option.path is None and option.id in MODEL_NOTES:
        return f"{option.label} ({_(MODEL_NOTES[option.id])})"
    return option.label


def session_checkpoints() -> dict[str, DetectorOption]:
    return st.session_state.setdefault(CHECKPOINTS, {})


def options() -> list[DetectorOption]:
    """The menu: $FRCNN_DETECTOR_WEIGHTS first (when set), torchvision's three models, then
    this session's checkpoints."""
    env = env_option()
    return [
        *([env] if env else []),
        *torchvision_options(),
        *session_checkpoints().values(),
    ]


def register_checkpoint(
    path_or_bytes: str | os.PathLike[str] | bytes, label: str, select: bool = True
) -> DetectorOption:
    """Make a detector checkpoint selectable in this session (and select it).

    For the fine-tuning pages: a checkpoint written by ``frcnn_core.detectors.save_checkpoint``
    (or a torchvision state_dict), as a path or as the file's bytes (written once to
    :data:`UPLOAD_DIR`, named by its sha256). The file is checked before it is listed.

    Raises:
        DetectorWeightsError: not a detector checkpoint (one line, for the user).
    """
    if isinstance(path_or_bytes, bytes):
        digest = hashlib.sha256(path_or_bytes).hexdigest()
        path = UPLOAD_DIR / f"{digest}.pt"
        if not path.is_file():
            UPLOAD_DIR.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=UPLOAD_DIR, suffix=".tmp")
            with os.fdopen(fd, "wb") as fh:
                fh.write(path_or_bytes)
            os.replace(tmp, path)
    else:
        path = Path(path_or_bytes)
        digest = file_digest(path)
    info = checkpoint_info(path)
    model = info.get("model")
    if model not in MODELS:
        raise DetectorWeightsError(
            _("{label}: not a checkpoint of {models}").format(label=label, models=", ".join(MODELS))
        )
    option = DetectorOption(
        f"checkpoint:{digest}",
        label,
        model=model,
        path=str(path),
        digest=digest,
        classes=info["num_classes"] - 1,
    )
    session_checkpoints()[option.id] = option
    if select:
        st.session_state[CHOICE] = option.id
    return option


def chosen(menu: list[DetectorOption] | None = None) -> DetectorOption:
    """The session's detector: its choice if still offered, else the env file's, else the
    default model."""
    menu = menu or options()
    by_id = {o.id: o for o in menu}
    picked = by_id.get(st.session_state.get(CHOICE, ""))
    if picked is None:
        picked = by_id.get(ENV_ID) or by_id[DEFAULT_MODEL]
    return picked


def _pick() -> None:
    st.session_state[CHOICE] = st.session_state[WIDGET]


def detector_picker() -> DetectorOption:
    """The detector menu (in the sidebar); the choice holds across pages."""
    menu = options()
    current = chosen(menu)
    labels = {o.id: option_label(o) for o in menu}
    # The widget's state is dropped on pages without it: set it from the session's choice.
    st.session_state[WIDGET] = current.id
    maps = ", ".join(f"{MODEL_LABELS[n]} {number(coco_map(n), 1)}" for n in MODELS)
    st.selectbox(
        _("Detector"),
        list(labels),
        format_func=lambda i: shown(labels[i], 200),
        key=WIDGET,
        on_change=_pick,
        help=_(
            "torchvision's Faster R-CNN trained on COCO (box mAP on COCO val2017: {maps}). "
            "ResNet-50 FPN is built like the tutorial's MMDetection model; MobileNetV3-Large FPN "
            "is several times faster on a CPU (each forward pass's time is shown under the "
            "picture). Checkpoints from fine-tuning appear here too."
        ).format(maps=maps),
    )
    return chosen(menu)


def weights_text(detector: Detector) -> str:
    """Where the detector's weights came from (or, for random weights, why and how to get the
    real ones), in the session's language. The shared detector's own ``note`` is English."""
    if detector.weights == "coco":
        return _("COCO weights ({map} box mAP on COCO val2017) from {path}.").format(
            map=number(coco_map(detector.name), 1), path=coco_cache_path(detector.name)
        )
    if detector.weights != "random":
        return _("Weights loaded from {path}.").format(path=detector.weights)
    cached = coco_cache_path(detector.name)
    if cached.is_file():
        why = _("The COCO weights file {file} on this server cannot be read.")
    elif os.environ.get(OFFLINE_ENV, "") not in ("", "0"):
        why = _(
            "Its COCO weights ({file}) are not on this server, and downloads are turned off "
            "({variable} is set)."
        )
    else:
        why = _(
            "Its COCO weights ({file}) are not on this server, and they could not be downloaded "
            "from here."
        )
    how = _(
        "Run the command below where a network exists and copy {file} to {folder}, or set "
        "{variable}=/path/to/weights.pth before starting the app. Until then it runs on random "
        "weights (seed {seed})."
    )
    where = {"file": cached.name, "folder": cached.parent, "variable": OFFLINE_ENV}
    return (
        why.format(**where)
        + " "
        + how.format(file=cached.name, folder=cached.parent, variable=WEIGHTS_ENV, seed=RANDOM_SEED)
    )


def weights_notice(detector: Detector) -> None:
    """Say clearly when the weights are random, and how to get the real ones."""
    if detector.weights == "random":
        st.warning(
            _(
                "The {model} detector runs on **random weights**: its boxes and scores mean "
                "nothing, but every stage, shape and count is real."
            ).format(model=plain(MODEL_LABELS.get(detector.name, detector.name))),
            icon=":material/warning:",
        )
        with st.expander(_("How to get the COCO weights")):
            st.caption(plain_message(weights_text(detector)))
            st.code(f"python -m frcnn_core fetch-weights --model {detector.name}")
    else:
        st.caption(plain_message(weights_text(detector)))


# -- the run ---------------------------------------------------------------------------------------


def _slot(stage: Stage) -> AbstractContextManager[Any]:
    return forward_turn(_("forward pass")) if stage.heavy else nullcontext()


class ProductionRun(Run):
    """The session's production detector on its image and boxes, on the shared stage cache.

    Attributes:
        option: the detector's menu entry; ``detector`` the loaded detector.
        device: where its forward runs: the server's device, or the CPU once out of GPU memory.
        notices: what this run told the user about such a fallback.
    """

    def __init__(
        self,
        option: DetectorOption,
        params: PipelineParams | None = None,
        *,
        choice: state.ImageChoice | None = None,
        boxes: state.BoxesKey | None = None,
        cache: caches.StageCache | None = None,
    ) -> None:
        choice = choice if choice is not None else state.image()
        if choice is None:
            raise RuntimeError("no image chosen")
        boxes = boxes if boxes is not None else state.boxes_key()
        self.option = option
        self.device = runtime.device()
        self.notices: list[str] = []
        self.detector = load(option, self.device)
        coords = tuple(box for box, _ in boxes)
        labels = tuple(label for _, label in boxes)
        sources = {
            "photo": Source(choice.digest, lambda: caches.decode(choice.digest, choice.data)),
            "detector": Source.of(self.detector, identity(self.detector, option)),
            "user_boxes": Source.of(UserBoxes(coords, labels), boxes),
        }
        super().__init__(
            PRODUCTION,
            sources,
            params or state.params(),
            cache=cache if cache is not None else caches.STAGES,
            around=_slot,
        )

    def cached(self, name: str) -> bool:
        """True when ``name`` needs no computing (in this run or in the shared cache)."""
        return self.has(name) or (self.cache is not None and self.key(name) in self.cache)

    def compute(self, name: str) -> Any:
        """As :meth:`Run.compute`; a stage out of GPU memory runs again on the CPU with a CPU
        copy of the detector, and the page says so."""
        try:
            return super().compute(name)
        except OUT_OF_MEMORY:
            if self.device.type == "cpu":
                raise
        log.warning("the production %s ran out of GPU memory; computing it on the CPU", name)
        self.device = CPU
        key = self.sources["detector"].key
        self._values.pop("detector", None)
        runtime.release_accelerator_memory()
        self.detector = load(self.option, CPU)
        self.sources["detector"] = Source.of(self.detector, key)
        self.notices.append(OUT_OF_MEMORY_NOTICE)  # English: translated where shown
        st.warning(_(OUT_OF_MEMORY_NOTICE), icon=":material/memory:")
        return super().compute(name)

    def _speed_key(self) -> tuple[str, str, int, int]:
        size = self.params.production_input
        return (self.detector.name, self.device.type, size.shorter_side, size.longer_side)

    def forward(self) -> CachedRun:
        """The forward pass (``staged_run``): from the cache, or computed behind a spinner
        that says how long it took last time on this device."""
        if self.cached("staged_run"):
            return self["staged_run"]
        with st.spinner(self.forward_message()):
            result = self["staged_run"]
        if "staged_run" in self.timings:
            FORWARD_SECONDS[self._speed_key()] = self.timings["staged_run"]
        return result

    def forward_message(self) -> str:
        name = MODEL_LABELS.get(self.detector.name, self.detector.name)
        gpu = self.device.type == "cuda"
        last = FORWARD_SECONDS.get(self._speed_key())
        if last is not None:
            if gpu:
                message = _("Running the {model} detector on the GPU: about {seconds} s last time…")
            else:
                message = _("Running the {model} detector on the CPU: about {seconds} s last time…")
            return message.format(model=name, seconds=number(round(last)))
        if gpu:
            return _("Running the {model} detector on the GPU…").format(model=name)
        return _(
            "Running the {model} detector on the CPU for the first time on this image: a forward "
            "pass takes seconds (tens of seconds for a ResNet-50 on a small server)…"
        ).format(model=name)

    def forward_caption(self, cached: CachedRun) -> str:
        """How long the forward took (when it ran for this page) or that it came from the
        cache."""
        name = MODEL_LABELS.get(self.detector.name, self.detector.name)
        if "staged_run" in self.timings:
            return _(
                "Forward pass of the {model} detector: {seconds} s on {device}; moving the score "
                "threshold does not repeat it."
            ).format(
                model=name,
                seconds=number(self.timings["staged_run"], 1),
                device=self.device.type.upper(),
            )
        return _(
            "Forward pass of the {model} detector: {seconds} s when it ran; this page took it "
            "from the server's cache."
        ).format(model=name, seconds=number(cached.seconds, 1))


def run_or_stop(option: DetectorOption) -> ProductionRun:
    """The session's production run with the detector ``option`` (from
    :func:`detector_picker`); stops the page with a message when there is no image."""
    if state.image() is None:
        st.warning(_("No image yet: choose a sample or upload one on the Image page."))
        st.stop()
    return ProductionRun(option)


@contextlib.contextmanager
def production_guard() -> Iterator[None]:
    """The app's page guard, plus the production detector's own one-line failures."""
    with page_guard():
        try:
            yield
        except InputSizeError as exc:
            st.error(
                _(
                    "The production detector cannot use this image: {reason}. Choose another "
                    "image on the Image page."
                ).format(reason=plain_message(str(exc)))
            )
        except DetectorWeightsError as exc:
            st.error(
                _(
                    "These detector weights cannot be used: {reason}. Pick another detector in "
                    "the sidebar."
                ).format(reason=plain_message(str(exc)))
            )
        except DeviceError as exc:
            st.error(
                _("The production detector cannot run here: {reason}.").format(
                    reason=plain_message(str(exc))
                )
            )
