"""The Train page's session glue: a training job per session, its result as the session's model,
and weights files in and out.

Training runs as a job (:mod:`explorer.jobs`) in a worker thread, so it goes on while the
student looks at other pages, and it takes a forward slot per step so other sessions' pages
keep their turn on the cores. The session holds a :class:`TrainingJob`; when the job ends, its
model becomes the session's (:func:`collect`, called by the router on every run).
"""

from __future__ import annotations

import contextlib
import functools
from dataclasses import dataclass
from typing import Any

import streamlit as st
import torch
from streamlit.runtime.scriptrunner import get_script_run_ctx
from streamlit.runtime.uploaded_file_manager import UploadedFile

from explorer import models, runtime, state
from explorer.jobs import Cancelled, Job, JobQueue
from explorer.models import SessionModel
from explorer.runner import image_run
from explorer.samples import samples
from explorer.text import shown
from explorer.uploads import too_large
from frcnn_core.backbone import Backbone, WeightsError, run_backbone
from frcnn_core.i18n import N_, _, ngettext
from frcnn_core.params import PipelineParams
from frcnn_core.pipeline import DetectorHeads
from frcnn_core.train import (
    FC_PREFIXES,
    LoadedHeads,
    Trainer,
    TrainParams,
    TrainSample,
    heads_from_bytes,
    heads_to_bytes,
    split_backbone,
)

JOB = "train:job"
UPLOADED = "train:uploaded"  # file_id of the last weights upload acted on
UPLOAD_MESSAGE = "train:upload_message"
UPLOAD_ROUND = "train:upload_round"  # how many weights files were taken (see upload_key)
SCOPE_CURRENT = "current"
SCOPE_SAMPLES = "samples"
# What the scope radio shows, in English (shown by :func:`scope_name`, a module function: a
# page-defined lambda would keep its run alive).
SCOPE_NAMES = {SCOPE_CURRENT: N_("this image"), SCOPE_SAMPLES: N_("all samples")}
# What the worker reports while it prepares: English and its values (it runs outside any
# session), said in the session's language where the page shows it (:func:`phase_text`).
PHASE_FEATURES = N_("computing the features of {name}")
PHASE_TRAINING = N_("training")
DIVERGED = N_("Training diverged: {reason}. The weights before it are kept.")
TRAINING_JOBS_ENV = "FRCNN_TRAINING_JOBS"
# Training jobs that run at once on the server (each holds a forward slot per step anyway).
QUEUE = JobQueue(runtime.env_int(TRAINING_JOBS_ENV, 1))


@dataclass
class TrainingJob:
    """This session's training: the job and what it trains on.

    Attributes:
        taken: its result has become the session's model (or there was none to take).
    """

    job: Job
    images: tuple[str, ...]
    settings: TrainParams
    taken: bool = False


Input = tuple[str, state.ImageChoice, state.BoxesKey]


def _inputs(scope: str) -> list[Input]:
    """(name, image, boxes) of each image to train on."""
    if scope == SCOPE_CURRENT:
        choice = state.image()
        return [] if choice is None else [(choice.name, choice, state.boxes_key())]
    out = []
    for sample in samples().values():
        data = sample.path.read_bytes()
        choice = state.ImageChoice(sample.name, data, state.digest_of(data), True)
        out.append((sample.name, choice, state.key_of_boxes(sample.box_dicts())))
    return out


def scope_name(scope: str) -> str:
    """What the scope radio calls ``scope``, in the session's language."""
    return _(SCOPE_NAMES[scope])


def phase_text(progress: dict[str, Any]) -> str | None:
    """What the job is doing (``job.progress``), in the session's language; None before it
    says."""
    said = progress.get("phase_said")
    if said is None:
        return progress.get("phase")
    message, values = said
    return _(message).format(**values)


def diverged_text(progress: dict[str, Any]) -> str | None:
    """Why the training stopped early (``job.progress``), in the session's language; None when
    it did not diverge."""
    if "diverged_reason" in progress:
        return _(DIVERGED).format(reason=progress["diverged_reason"])
    return progress.get("diverged")


def current() -> TrainingJob | None:
    return st.session_state.get(JOB)


def running() -> bool:
    job = current()
    return job is not None and job.job.active


def start(scope: str, settings: TrainParams) -> str | None:
    """Queue a training job for this session; returns a message for the user when there is
    nothing to train on, else None."""
    if running():
        return _("A training is already running for you: stop it first.")
    params = state.params()
    backbone = models.backbone()
    inputs, labels = [], []
    for name, choice, boxes in _inputs(scope):
        # Stage 1 only (cheap, cached): which images have boxes, and their classes.
        gt = image_run(choice, boxes, params, backbone)["ground_truth"]
        if gt.labels:
            inputs.append((name, choice, boxes))
            labels.extend(gt.labels)
    if not inputs:
        return _("There is nothing to train on: draw at least one box on the Image page first.")
    class_names = tuple(dict.fromkeys(labels))
    heads = models.initial_heads_for(len(class_names), params)
    work = functools.partial(_train, inputs, params, settings, backbone, heads, class_names)
    job = QUEUE.submit(Job(work, title="training the RPN and the Fast R-CNN head"))
    st.session_state[JOB] = TrainingJob(job, tuple(i[0] for i in inputs), settings)
    return None


def _train(
    inputs: list[Input],
    params: PipelineParams,
    settings: TrainParams,
    backbone: Backbone,
    heads: DetectorHeads,
    class_names: tuple[str, ...],
    job: Job,
) -> SessionModel | None:
    """The job's work: features for each image (from the shared cache), then SGD steps, each in
    a forward slot. Stopped early (or diverged), it keeps what it trained so far."""
    frozen, conv5 = split_backbone(backbone.features)
    samples_ = []
    for name, choice, boxes in inputs:
        job.check()
        job.report(
            phase=PHASE_FEATURES.format(name=name), phase_said=(PHASE_FEATURES, {"name": name})
        )
        result = image_run(choice, boxes, params, backbone)
        conv4 = None
        if settings.train_last_block:
            image = torch.from_numpy(result["image"].pixels).to(runtime.device())
            with runtime.FORWARDS.hold():
                conv4 = run_backbone(image, frozen, params.backbone).features
        samples_.append(TrainSample.from_run(result, class_names, conv4))
    trainer = Trainer.create(
        heads, samples_, params, settings, conv5 if settings.train_last_block else None
    )
    job.report(
        phase=PHASE_TRAINING,
        phase_said=(PHASE_TRAINING, {}),
        iteration=0,
        base_rates=list(trainer.base_rates),
        history=[],
    )
    try:
        while not trainer.finished():
            job.check()
            with runtime.FORWARDS.hold():
                trainer.step()
            job.report(iteration=trainer.iteration, history=list(trainer.history))
    except Cancelled:
        pass
    except FloatingPointError as exc:
        job.report(diverged=DIVERGED.format(reason=exc), diverged_reason=str(exc))
    if not trainer.history:
        return None
    trained = trainer.frozen_heads()
    return SessionModel(trained, class_names, trainer.conv5, list(trainer.history), settings)


def stop() -> None:
    """Stop this session's training; the weights trained so far become its model."""
    job = current()
    if job is not None:
        job.job.cancel()


def collect() -> bool:
    """Make a finished (or stopped) job's model the session's, once. True when the session's
    model changed (the caller reruns so that every widget sees it)."""
    job = current()
    if job is None or job.job.active or job.taken:
        return False
    job.taken = True
    if isinstance(job.job.result, SessionModel):
        models.set_session_model(job.job.result)
        return True
    return False


def reset() -> None:
    """Back to the initial weights: stop any training and forget this session's model."""
    stop()
    models.set_session_model(None)
    for key in (JOB, UPLOAD_MESSAGE):
        st.session_state.pop(key, None)


def download_bytes() -> bytes | None:
    """The session's model as a weights file (None without one). Built on each call (about
    10 MB, tens of ms): a session keeps its model, not a serialised copy of it; callers ask
    once per model (a digest, a store entry) or when the user clicks a download."""
    own = models.session_model()
    return None if own is None else model_bytes(own)


def model_bytes(own: models.SessionModel) -> bytes:
    """``own`` as a weights file; needs no session (a deferred download calls it)."""
    return heads_to_bytes(own.heads, own.class_names, own.conv5)


def download_size(own: models.SessionModel) -> int:
    """About how many bytes :func:`model_bytes` makes (the tensors it holds), without making it."""
    trained_fc = bool(getattr(own.heads, "trained_fc", True))
    tensors = [
        v for k, v in own.heads.state_dict().items() if trained_fc or not k.startswith(FC_PREFIXES)
    ]
    if own.conv5 is not None:
        tensors += list(own.conv5.state_dict().values())
    return sum(t.numel() * t.element_size() for t in tensors)


def upload_key() -> str:
    """The weights uploader's key: a new one after each file is taken, so the uploader is empty
    and ready for the next file."""
    round_ = st.session_state.get(UPLOAD_ROUND, 0)
    return "train:upload" if round_ == 0 else f"train:upload#{round_}"


def take_upload(upload: UploadedFile | None) -> bool:
    """Install a weights upload, and leave a message for :func:`upload_message`.

    Every file is taken once, loaded or refused, and then let go: its bytes leave the server
    (a loaded model keeps its tensors, not the file it came from; thirty sessions with a heads
    file each would otherwise hold thirty copies), and the uploader gets a new key so it
    shows empty.

    Returns True when a file was taken (the page then reruns: the new uploader, and every
    widget sees the new model).
    """
    if upload is None or st.session_state.get(UPLOADED) == upload.file_id:
        return False
    st.session_state[UPLOADED] = upload.file_id
    try:
        reason = too_large(upload, "heads")
        if reason:
            st.session_state[UPLOAD_MESSAGE] = (
                "error",
                _("{name} was not loaded: {reason}").format(name=shown(upload.name), reason=reason),
            )
            return True
        try:
            load_upload(upload.getvalue(), shown(upload.name))
        except WeightsError as exc:
            st.session_state[UPLOAD_MESSAGE] = (
                "error",
                _("{name} was not loaded: {reason}").format(name=shown(upload.name), reason=exc),
            )
            return True
        # Said until the next file, so kept as what it says: each run says it in its language.
        own = models.session_model()
        st.session_state[UPLOAD_MESSAGE] = ("success", own.class_names if own else ())
        return True
    finally:
        _let_go(upload)


def _let_go(upload: UploadedFile) -> None:
    """Drop an upload's bytes from the server and give the uploader a new key."""
    ctx = get_script_run_ctx()
    if ctx is not None:
        with contextlib.suppress(Exception):  # a test runner without a file manager
            ctx.uploaded_file_mgr.remove_file(ctx.session_id, upload.file_id)
    st.session_state[UPLOAD_ROUND] = st.session_state.get(UPLOAD_ROUND, 0) + 1


def upload_message() -> tuple[str | None, str | None]:
    """``(kind, text)`` of the last upload's outcome: ``"error"`` (said once) or
    ``"success"`` (until the next file)."""
    kind, text = st.session_state.get(UPLOAD_MESSAGE, (None, None))
    if kind == "error":
        st.session_state.pop(UPLOAD_MESSAGE, None)
    elif kind == "success":
        text = loaded_message(text)
    return kind, text


def loaded_message(class_names: tuple[str, ...] | list[str]) -> str:
    """What loading heads for ``class_names`` says, in the session's language."""
    n = len(class_names)
    return ngettext(
        "Loaded heads for {n} class: {names}", "Loaded heads for {n} classes: {names}", n
    ).format(n=n, names=", ".join(class_names))


def load_upload(data: bytes, name: str = "uploaded") -> str:
    """Install an uploaded weights file as this session's model.

    Returns a message for the user. Raises ``WeightsError`` for a file that cannot be used; the
    session's current model is then left as it was.
    """
    params = state.params()
    # fc6 and fc7, when the file does not hold them, are the shared seeded ones (not a copy).
    loaded: LoadedHeads = heads_from_bytes(data, shared=models.initial_heads_for(1, params))
    heads = loaded.heads
    if heads.anchors_per_cell != params.anchors.per_cell:
        raise WeightsError(
            _(
                "these weights were trained with {file} anchors per cell; the current settings "
                "have {current} (change the scales or ratios on the Anchors page, or reset to "
                "defaults)"
            ).format(file=heads.anchors_per_cell, current=params.anchors.per_cell)
        )
    if heads.pooled_size != params.roi_pool.output_size:
        raise WeightsError(
            _(
                "these weights take RoIs pooled to {size} x {size}; the current setting is "
                "{current} (change it on the RoI page, or reset to defaults)"
            ).format(size=heads.pooled_size, current=params.roi_pool.output_size)
        )
    conv5 = None
    if loaded.conv5_state is not None:
        _frozen_part, shared = split_backbone(models.backbone().features)
        conv5 = models.cpu_copy(shared)
        try:
            conv5.load_state_dict(loaded.conv5_state)
        except (RuntimeError, KeyError) as exc:
            raise WeightsError(_("the conv5 block in the file does not fit VGG16")) from exc
        conv5.to(runtime.device()).eval()
    models.set_session_model(SessionModel(heads, loaded.class_names, conv5, source=name))
    return loaded_message(loaded.class_names)
