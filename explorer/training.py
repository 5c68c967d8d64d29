"""The Train page's session glue: build training samples, run a Trainer in steps, keep the
result in this session only, and read or write weights files.

The session's trained model lives in ``st.session_state[state.TRAINED]``; the shared cached
initial heads are only ever deep-copied (see ``frcnn_core.train.Trainer.create``).
"""

from __future__ import annotations

import copy
import uuid
from dataclasses import dataclass

import streamlit as st
import torch
from streamlit.runtime.uploaded_file_manager import UploadedFile

from explorer import compute, state
from explorer.samples import samples
from frcnn_core.backbone import WeightsError
from frcnn_core.pipeline import DetectorHeads
from frcnn_core.train import (
    LoadedHeads,
    Trainer,
    TrainParams,
    TrainSample,
    heads_from_bytes,
    heads_to_bytes,
    split_backbone,
)

TRAINER = "trainer"
RUNNING = "training_running"
DOWNLOAD = "trained_download"
UPLOADED = "train:uploaded"  # file_id of the last weights upload acted on
UPLOAD_MESSAGE = "train:upload_message"
SCOPE_CURRENT = "current"
SCOPE_SAMPLES = "samples"
# What the scope radio shows (a dict lookup: a page-defined lambda would keep its run alive).
SCOPE_NAMES = {SCOPE_CURRENT: "this image", SCOPE_SAMPLES: "all samples"}


@dataclass(frozen=True)
class TrainingSet:
    samples: list[TrainSample]
    class_names: tuple[str, ...]
    images: list[str]


def _inputs(scope: str) -> list[tuple[str, str, bytes, tuple]]:
    """(name, digest, data, boxes key) of each image to train on."""
    if scope == SCOPE_CURRENT:
        choice = state.image()
        return (
            [] if choice is None else [(choice.name, choice.digest, choice.data, state.boxes_key())]
        )
    out = []
    for sample in samples().values():
        data = sample.path.read_bytes()
        key = tuple((tuple(float(v) for v in box), label) for box, label in sample.boxes)
        out.append((sample.name, state.digest_of(data), data, key))
    return out


def training_set(scope: str, settings: TrainParams) -> TrainingSet:
    """Images with at least one box, their GT class ids in one vocabulary, and their frozen
    features (conv5_3, or conv4_3 when the last block is trained)."""
    params = state.params()
    weights = compute.backbone().weights
    prepared = []
    for name, digest, data, boxes in _inputs(scope):
        prep = compute.prepared(digest, data, boxes, params.resize)
        if prep.labels:
            prepared.append((name, digest, data, prep))
    class_names = tuple(dict.fromkeys(label for *_, prep in prepared for label in prep.labels))
    index = {name: i + 1 for i, name in enumerate(class_names)}
    result = []
    for _, digest, data, prep in prepared:
        if settings.train_last_block:
            feats = compute.conv4_features(digest, data, params.resize, params.backbone, weights)
        else:
            feats, _ = compute.features(digest, data, params.resize, params.backbone, weights)
        labels = torch.tensor([index[x] for x in prep.labels], dtype=torch.int64)
        result.append(TrainSample(prep.image, labels, feats.to(compute.device())))
    return TrainingSet(result, class_names, [name for name, *_ in prepared])


def start(scope: str, settings: TrainParams) -> str | None:
    """Set up a Trainer in this session; returns an error message for the user, or None."""
    data = training_set(scope, settings)
    if not data.samples:
        return "There is nothing to train on: draw at least one box on the Image page first."
    params = state.params()
    heads = compute.initial_heads(len(data.class_names), params.anchors.per_cell)
    conv5 = split_backbone(compute.backbone().features)[1] if settings.train_last_block else None
    trainer = Trainer.create(heads, data.samples, params, settings, conv5)
    st.session_state[TRAINER] = {
        "trainer": trainer,
        "class_names": data.class_names,
        "images": data.images,
    }
    st.session_state[RUNNING] = True
    return None


def active() -> dict | None:
    return st.session_state.get(TRAINER)


def running() -> bool:
    return bool(st.session_state.get(RUNNING)) and active() is not None


def stop() -> None:
    st.session_state[RUNNING] = False


def keep(job: dict) -> None:
    """Make the (finished or stopped) run this session's model for every page."""
    trainer: Trainer = job["trainer"]
    if not trainer.history:
        return
    heads = trainer.frozen_heads()
    set_trained(
        heads,
        trainer.conv5,
        tuple(job["class_names"]),
        list(trainer.history),
        trainer.train,
    )


def set_trained(
    heads: DetectorHeads,
    conv5: torch.nn.Module | None,
    class_names: tuple[str, ...],
    history: list[dict],
    settings: TrainParams | None,
) -> None:
    st.session_state[state.TRAINED] = {
        "heads": heads.to(compute.device()).eval(),
        "conv5": conv5,
        "token": f"trained:{uuid.uuid4().hex}",
        "class_names": class_names,
        "anchors_per_cell": heads.rpn.score.out_channels // 2,
        "history": history,
        "settings": settings,
    }
    st.session_state.pop(DOWNLOAD, None)


def reset() -> None:
    """Back to the initial weights: forget this session's trained model and any run."""
    # UPLOADED stays: the file still in the uploader must not be loaded again at once.
    for key in (state.TRAINED, TRAINER, RUNNING, DOWNLOAD, UPLOAD_MESSAGE):
        st.session_state.pop(key, None)


def download_bytes() -> bytes | None:
    """The session's trained model as a weights file (built once per model)."""
    trained = compute.trained_model()
    if trained is None:
        return None
    cached = st.session_state.get(DOWNLOAD)
    if cached is None or cached[0] != trained["token"]:
        data = heads_to_bytes(trained["heads"], trained["class_names"], trained["conv5"])
        cached = (trained["token"], data)
        st.session_state[DOWNLOAD] = cached
    return cached[1]


def take_upload(upload: UploadedFile | None) -> bool:
    """Install a weights upload once, and leave a message for :func:`upload_message`.

    Streamlit gives every upload its own ``file_id``: a rerun with the same upload does nothing,
    while the same file chosen again (after a reset, say) is loaded again. (A name and size
    would refuse a second upload of the same file and confuse two files of equal size.)

    Removing the file from the uploader removes its message (the model it loaded stays).

    Returns True when the session's model changed (the page then reruns so every widget sees it).
    """
    if upload is None:
        st.session_state.pop(UPLOAD_MESSAGE, None)
        return False
    if st.session_state.get(UPLOADED) == upload.file_id:
        return False
    st.session_state[UPLOADED] = upload.file_id
    try:
        message = load_upload(upload.getvalue())
    except WeightsError as exc:
        st.session_state[UPLOAD_MESSAGE] = ("error", f"{upload.name} was not loaded: {exc}")
        return False
    st.session_state[UPLOAD_MESSAGE] = ("success", message)
    return True


def upload_message() -> tuple[str | None, str | None]:
    """``(kind, text)`` of the last upload's outcome: ``"error"`` or ``"success"``."""
    return st.session_state.get(UPLOAD_MESSAGE, (None, None))


def load_upload(data: bytes) -> str:
    """Install an uploaded weights file as this session's model.

    Returns a message for the user. Raises ``WeightsError`` for a file that cannot be used; the
    session's current model is then left as it was.
    """
    loaded: LoadedHeads = heads_from_bytes(data)
    per_cell = state.params().anchors.per_cell
    anchors = loaded.heads.rpn.score.out_channels // 2
    if anchors != per_cell:
        raise WeightsError(
            f"these weights were trained with {anchors} anchors per cell; the current settings "
            f"have {per_cell} (change scales/ratios on the Anchors page, or reset to defaults)"
        )
    conv5 = None
    if loaded.conv5_state is not None:
        conv5 = copy.deepcopy(split_backbone(compute.backbone().features)[1])
        try:
            conv5.load_state_dict(loaded.conv5_state)
        except (RuntimeError, KeyError) as exc:
            raise WeightsError(f"the conv5 block in the file does not fit VGG16 ({exc})") from exc
        conv5.to(compute.device()).eval()
    set_trained(loaded.heads, conv5, loaded.class_names, [], None)
    names = ", ".join(loaded.class_names)
    return f"Loaded heads for {len(loaded.class_names)} classes ({names})."
