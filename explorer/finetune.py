"""The Fine-tune pages' session glue: the session's dataset, its training run, and the results.

- **Datasets.** A session fine-tunes on one :class:`DatasetChoice`: the shipped dataset (drawn by
  :func:`frcnn_core.synthetic_dataset.make_dataset` on first use into the server's data folder,
  ``$FRCNN_DATA_DIR`` or ``~/.cache/frcnn-explorer``; the same bytes every time), a zip the user
  uploads (any of the four formats, extracted safely into a folder of this session under the
  work folder), or a sub-folder of ``$FRCNN_DATASETS_DIR`` on the server. A dataset that cannot
  be read gives one line and changes nothing: the previous dataset and any trained model stay.
- **Training** runs in a process of its own (:mod:`explorer.finetune_worker`) started by a
  :class:`explorer.jobs.Job` of :data:`QUEUE`: one run per session, at most
  ``$FRCNN_FINETUNE_JOBS`` (default 1) on the server at once, the others queued in order with
  their place in the line. The process has ``$FRCNN_FINETUNE_THREADS`` CPU threads (default:
  half the cores, at least one): ``torch.set_num_threads`` is process-wide, so a training in the
  server's own threads would change every page's forwards; and on a CPU that other work keeps
  busy, torch's default (a thread per core) made training 10-15x slower. The server only polls
  the run's files, so the run never holds the app's forward slots or its interpreter, and
  other users' pages keep their speed. The job survives page switches; the pages poll it.
- **Results.** When the run ends, :func:`collect` (called by the router on every run) keeps it
  as the session's fine-tuned model and makes it selectable on the production-detector pages
  (:func:`explorer.production.register_checkpoint`). :func:`evaluation` re-scores its
  validation detections with pycocotools for the Results page (fast: no forward pass).

Folders: the work folder is ``$FRCNN_FINETUNE_DIR`` or ``<tmp>/frcnn_explorer_finetune``, with
``uploads/<session>/<id>/`` and ``runs/<session>-<id>/``; folders untouched for
``$FRCNN_FINETUNE_KEEP_DAYS`` days (default 3) are removed when a new upload or run starts.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import streamlit as st
from streamlit.runtime.uploaded_file_manager import UploadedFile

from explorer import runtime
from explorer.finetune_worker import CANCEL, EVENTS, OUT, PREDICTIONS, RESULT, SPEC
from explorer.jobs import Job, JobQueue
from explorer.text import shown
from explorer.uploads import LIMITS_MB, too_large
from frcnn_core.datasets import (
    FORMATS,
    DatasetError,
    DatasetSummary,
    DetectionDataset,
    detect_format,
    has_split,
    import_zip,
    load_dataset,
    parse_classes,
    summarize,
)
from frcnn_core.detectors import coco_cache_path
from frcnn_core.evaluate import (
    EvaluationResult,
    evaluate_predictions,
    read_predictions_json,
)
from frcnn_core.finetune import LOSS_NAMES, FinetuneError, FinetuneSettings, JobProgress
from frcnn_core.i18n import N_, _, language, ngettext
from frcnn_core.synthetic_dataset import SyntheticSettings, make_dataset

log = logging.getLogger("frcnn_explorer")

ROOT = Path(__file__).resolve().parents[1]
DATA_DIR_ENV = "FRCNN_DATA_DIR"
WORK_DIR_ENV = "FRCNN_FINETUNE_DIR"
DATASETS_DIR_ENV = "FRCNN_DATASETS_DIR"
JOBS_ENV = "FRCNN_FINETUNE_JOBS"
THREADS_ENV = "FRCNN_FINETUNE_THREADS"
KEEP_DAYS_ENV = "FRCNN_FINETUNE_KEEP_DAYS"
# The shipped dataset's folder name carries its settings' version: new settings, a new folder.
SHIPPED_VERSION = 1
SHIPPED_SETTINGS = SyntheticSettings()  # 200 images of 256 x 256, 160 train / 40 val
SHIPPED, UPLOAD, SERVER = "shipped", "upload", "server"
# Shown through _() where shown (source_name, format_name): the session's language.
SOURCE_NAMES = {
    SHIPPED: N_("Shipped dataset"),
    UPLOAD: N_("Upload a zip"),
    SERVER: N_("Server folder"),
}
FORMAT_NAMES = {"auto": N_("recognise the layout"), **{f: f.upper() for f in FORMATS}}
SHIPPED_NAME = N_("the shipped dataset")
MODEL_NAMES = {
    "fasterrcnn_resnet50_fpn_v2": "ResNet-50 FPN v2",
    "fasterrcnn_resnet50_fpn": "ResNet-50 FPN",
    "fasterrcnn_mobilenet_v3_large_fpn": "MobileNetV3-Large FPN",
}
POLL_S = 0.5  # how often the job looks at its process's files
CANCEL_GRACE_S = 600.0  # after a cancel, how long the run may take to save and score its model

# Session keys.
DATA = "ft:data"  # the DatasetChoice
RUN = "ft:run"  # the latest FinetuneRun (running or ended)
MODEL = "ft:model"  # the FinetuneRun whose model is the session's fine-tuned model
EVALUATION = "ft:evaluation"  # (run id, val dataset, EvaluationResult) of MODEL
MESSAGE = "ft:message"  # ("error" | "success", text) of the last dataset change
UPLOADED = "ft:uploaded"  # file_id of the last upload acted on
VALUES = "ft:values"  # the Train page's settings, by name
SESSION = "ft:session"  # this session's folder name
WIDGET = "ft:set:"  # prefix of the settings widgets' keys

QUEUE = JobQueue(runtime.env_int(JOBS_ENV, 1))


class FinetuneJobError(RuntimeError):
    """A run that failed; the message is one line for the user.

    Made in the job's thread, which has no session (so no language): ``str()`` is English, and
    :meth:`text` translates it where it is shown.
    """

    def __init__(self, template: str, **params: Any) -> None:
        self.template = template  # English, marked N_ where it is written
        self.params = params
        super().__init__(template.format(**params))

    def text(self) -> str:
        """The message in the caller's language."""
        return _(self.template).format(**self.params)


# -- folders -------------------------------------------------------------------------------------


def data_dir() -> Path:
    """Where the server keeps data it makes once (the shipped dataset)."""
    configured = os.environ.get(DATA_DIR_ENV, "").strip()
    return Path(configured) if configured else Path.home() / ".cache" / "frcnn-explorer"


def work_dir() -> Path:
    """Where uploads are extracted and runs write their files."""
    configured = os.environ.get(WORK_DIR_ENV, "").strip()
    if configured:
        return Path(configured)
    return Path(tempfile.gettempdir()) / "frcnn_explorer_finetune"


def datasets_dir() -> Path | None:
    """The server's dataset folder (``$FRCNN_DATASETS_DIR``), when set and present."""
    configured = os.environ.get(DATASETS_DIR_ENV, "").strip()
    if not configured:
        return None
    path = Path(configured)
    return path if path.is_dir() else None


def default_threads() -> int:
    """CPU threads of a training process: ``$FRCNN_FINETUNE_THREADS``, else half the cores
    (the other half serves the pages), at least one."""
    return runtime.env_int(THREADS_ENV, max(1, (os.cpu_count() or 1) // 2))


def session_id() -> str:
    return st.session_state.setdefault(SESSION, uuid.uuid4().hex[:12])


_active_folders: set[Path] = set()
_active_lock = threading.Lock()


def prune(max_age_s: float | None = None) -> int:
    """Remove upload and run folders untouched for ``$FRCNN_FINETUNE_KEEP_DAYS`` days (none a
    running job uses); returns how many went."""
    if max_age_s is None:
        max_age_s = runtime.env_int(KEEP_DAYS_ENV, 3) * 86400.0
    cutoff = time.time() - max_age_s
    removed = 0
    candidates = [*work_dir().glob("uploads/*/*"), *work_dir().glob("runs/*")]
    with _active_lock:
        active = set(_active_folders)
    for folder in candidates:
        try:
            if folder in active or not folder.is_dir() or folder.stat().st_mtime > cutoff:
                continue
        except OSError:
            continue
        shutil.rmtree(folder, ignore_errors=True)
        removed += 1
    return removed


# -- datasets ------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class DatasetChoice:
    """The dataset a session fine-tunes on.

    Attributes:
        id: unique per load (cache keys of its figures).
        source: ``"shipped"``, ``"upload"`` or ``"server"``.
        name: what the pages call it (already through :func:`explorer.text.shown`).
        root: the folder the readers read.
        format: the format it was read as (one of ``FORMATS``).
        classes: the class list asked for, or None (the dataset's own).
        splits: ``"all"``, plus ``"train"`` and ``"val"`` where split files exist.
        summary: the summary of all its images.
    """

    id: str
    source: str
    name: str
    root: Path
    format: str
    classes: tuple[str, ...] | None
    splits: Mapping[str, DetectionDataset]
    summary: DatasetSummary

    @property
    def all(self) -> DetectionDataset:
        return self.splits["all"]

    @property
    def title(self) -> str:
        """Its name in the session's language (the shipped dataset's is ours to translate)."""
        return _(SHIPPED_NAME) if self.source == SHIPPED else self.name

    @property
    def class_names(self) -> tuple[str, ...]:
        return self.all.classes

    def count(self, split: str) -> int | None:
        found = self.splits.get(split)
        return None if found is None else len(found)

    def split_text(self) -> str:
        """``"200 images: 160 for training, 40 for validation"`` and the like."""
        train, val = self.count("train"), self.count("val")
        n = self.summary.images
        if train is not None and val is not None:
            text = ngettext(
                "{n} image: {train} for training, {val} for validation",
                "{n} images: {train} for training, {val} for validation",
                n,
            )
        elif train is not None:
            text = ngettext(
                "{n} image: {train} for training, validation on every image",
                "{n} images: {train} for training, validation on every image",
                n,
            )
        elif val is not None:
            text = ngettext(
                "{n} image: training on every image, {val} for validation",
                "{n} images: training on every image, {val} for validation",
                n,
            )
        else:
            text = ngettext(
                "{n} image: no split files: training and validation on every image",
                "{n} images: no split files: training and validation on every image",
                n,
            )
        return text.format(n=n, train=train, val=val)

    def describe(self) -> str:
        """One line for messages (plain text; pass it through ``plain_message``)."""
        return _("{name} ({format}, {split})").format(
            name=self.title, format=format_name(self.format), split=self.split_text()
        )


def source_name(source: str) -> str:
    """Where a dataset comes from, as the pages say it."""
    return _(SOURCE_NAMES[source])


def format_name(fmt: str) -> str:
    """A format as the pages say it (``"KITTI"``, ...; ``"auto"``: recognise the layout)."""
    return _(FORMAT_NAMES[fmt])


def open_dataset(
    root: Path,
    fmt: str,
    classes: tuple[str, ...] | None,
    source: str,
    name: str,
) -> DatasetChoice:
    """Read a dataset's images and its train / val splits (so a bad split file is reported now,
    not when training starts) and summarise it.

    Raises:
        DatasetError: anything wrong with it, as one line.
    """
    actual = detect_format(root) if fmt == "auto" else fmt
    splits = {"all": load_dataset(root, actual, classes, "all")}
    for split in ("train", "val"):
        if has_split(root, actual, split):
            splits[split] = load_dataset(root, actual, classes, split)
    if not any(len(r.boxes) for r in splits.get("train", splits["all"]).images):
        raise DatasetError(
            _("the training images hold no box of {classes}: there is nothing to learn").format(
                classes=", ".join(splits["all"].classes)
            )
        )
    return DatasetChoice(
        uuid.uuid4().hex,
        source,
        shown(name),
        root,
        actual,
        classes,
        splits,
        summarize(splits["all"]),
    )


_shipped_lock = threading.Lock()


def shipped_root() -> Path:
    """The shipped dataset's folder, drawn on first use (a few seconds), then kept. It appears
    at once, by a rename, so no session ever reads half of it."""
    root = data_dir() / "datasets" / f"shipped-v{SHIPPED_VERSION}"
    with _shipped_lock:
        if root.is_dir():
            return root
        root.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=".shipped-", dir=root.parent))
        try:
            make_dataset(tmp, SHIPPED_SETTINGS)
            os.replace(tmp, root)
        except OSError:
            shutil.rmtree(tmp, ignore_errors=True)
            if not root.is_dir():  # not another server process that won the race
                raise
    return root


@st.cache_resource(show_spinner=False)  # the callers' spinner speaks the session's language
def _shipped_dataset() -> DatasetChoice:
    """The shipped dataset, read once per server (never modified). Its name is English: pages
    show :attr:`DatasetChoice.title`."""
    return open_dataset(shipped_root(), "kitti", None, SHIPPED, SHIPPED_NAME)


def shipped_dataset() -> DatasetChoice:
    """The shipped dataset, drawn the first time (a spinner says so when that takes a while)."""
    with st.spinner(_("Drawing the shipped dataset (the first time only)…")):
        return _shipped_dataset()


def server_folders() -> list[str]:
    """Names of the sub-folders of ``$FRCNN_DATASETS_DIR`` (sorted; hidden ones left out)."""
    base = datasets_dir()
    if base is None:
        return []
    try:
        return sorted(p.name for p in base.iterdir() if p.is_dir() and not p.name.startswith("."))
    except OSError:
        return []


def dataset() -> DatasetChoice | None:
    """The session's dataset (None before the first is chosen)."""
    return st.session_state.get(DATA)


def ensure_dataset() -> DatasetChoice:
    """The session's dataset; the shipped one the first time.

    Raises:
        DatasetError, OSError: the shipped dataset cannot be drawn or read (a full disk, say).
    """
    current = dataset()
    if current is None:
        current = shipped_dataset()
        st.session_state[DATA] = current
    return current


NOW_USING = N_("Now using {dataset}.")
NOT_IMPORTED = N_("{name} was not imported: {reason}. Nothing changed.")


def _say(kind: str, message: str, **params: Any) -> None:
    """Keep a message to show: its English text (marked ``N_``) and its values, translated
    where it is shown (the session may switch language in between). A
    :class:`DatasetChoice` value is shown as its :meth:`~DatasetChoice.describe`."""
    st.session_state[MESSAGE] = (kind, message, params)


def message() -> tuple[str | None, str | None]:
    """``(kind, text)`` of the last dataset change: ``"error"`` or ``"success"``; the text holds
    user text already made one bounded line (pass it through ``plain_message``)."""
    kept = st.session_state.get(MESSAGE)
    if not kept or len(kept) != 3:
        return None, None
    kind, text, params = kept
    values = {k: v.describe() if isinstance(v, DatasetChoice) else v for k, v in params.items()}
    return kind, _(text).format(**values)


def classes_from_text(text: str) -> tuple[str, ...] | None:
    """``"Car, Pedestrian"`` -> ``("Car", "Pedestrian")``; empty -> None (the dataset's own).

    Raises:
        DatasetError: a bad class list (duplicates, too long, ...).
    """
    text = (text or "").strip()
    return parse_classes(text) if text else None


def use_shipped() -> bool:
    """Switch to the shipped dataset; True when the session's dataset changed."""
    try:
        choice = shipped_dataset()
    except (DatasetError, OSError) as exc:
        _say(
            "error",
            N_("The shipped dataset cannot be made here: {reason}. Nothing changed."),
            reason=str(exc),
        )
        return False
    st.session_state[DATA] = choice
    _say("success", NOW_USING, dataset=choice)
    return True


def use_server_folder(name: str, fmt: str = "auto", classes_text: str = "") -> bool:
    """Switch to a sub-folder of ``$FRCNN_DATASETS_DIR``; on any failure a message, and the
    session keeps its dataset. True when the dataset changed."""
    base = datasets_dir()
    if base is None or name not in server_folders():
        _say("error", N_("There is no server dataset {name}. Nothing changed."), name=shown(name))
        return False
    try:
        classes = classes_from_text(classes_text)
        choice = open_dataset(base / name, fmt, classes, SERVER, name)
    except (DatasetError, OSError) as exc:
        _say(
            "error",
            N_("{name} cannot be used: {reason}. Nothing changed."),
            name=shown(name),
            reason=shown(str(exc), 300),
        )
        return False
    st.session_state[DATA] = choice
    _say("success", NOW_USING, dataset=choice)
    return True


def take_upload(upload: UploadedFile | None, fmt: str = "auto", classes_text: str = "") -> bool:
    """Import an uploaded zip once (per upload: the same file chosen again is imported again).

    The zip is extracted into a new folder of this session (:func:`frcnn_core.datasets.
    import_zip`: no path leaves it, sizes are bounded); a zip that is not a dataset in a known
    layout, or one with bad data, is removed again with a one-line message, and the session
    keeps its dataset and its trained model. Returns True when the dataset changed.
    """
    if upload is None or st.session_state.get(UPLOADED) == upload.file_id:
        return False
    st.session_state[UPLOADED] = upload.file_id
    name = shown(upload.name)
    reason = too_large(upload, "dataset")
    if reason:
        _say("error", NOT_IMPORTED, name=name, reason=reason)
        return False
    prune()
    dest = work_dir() / "uploads" / session_id() / uuid.uuid4().hex[:12]
    try:
        classes = classes_from_text(classes_text)
        imported = import_zip(upload.getvalue(), dest, fmt, classes)
        choice = open_dataset(imported.root, imported.format, classes, UPLOAD, upload.name)
    except (DatasetError, OSError) as exc:
        shutil.rmtree(dest, ignore_errors=True)
        where = str(exc).replace(str(dest) + os.sep, "").replace(str(dest), _("the zip"))
        _say("error", NOT_IMPORTED, name=name, reason=shown(where, 300))
        return False
    st.session_state[DATA] = choice
    _say("success", N_("Imported {dataset}."), dataset=choice)
    return True


def page_count(images: int, per_page: int) -> int:
    return max(1, -(-images // per_page))


def page_slice(images: int, page: int, per_page: int) -> range:
    """Indices of the images on ``page`` (1-based, clamped to the pages there are)."""
    page = min(max(page, 1), page_count(images, per_page))
    start = (page - 1) * per_page
    return range(start, min(start + per_page, images))


# -- settings --------------------------------------------------------------------------------------

TUTORIAL = FinetuneSettings(data="", out="")
WEIGHTS_COCO, WEIGHTS_RANDOM = "coco", "random"
# The settings the Train page offers, by name; "linear_rule" and "start" are the page's own
# (the learning rate is None under the linear rule; "start" picks ``weights``).
SETTING_NAMES = (
    "model",
    "start",
    "epochs",
    "batch_size",
    "linear_rule",
    "lr",
    "momentum",
    "weight_decay",
    "warmup_iters",
    "lr_steps",
    "gamma",
    "clip_grad_norm",
    "amp",
    "hflip",
    "min_size",
    "max_size",
    "rois_per_image",
    "proposals",
    "seed",
    "eval_interval",
    "checkpoint_interval",
    "eval_at_start",
    "log_interval",
    "max_iters",
)


def cuda_here() -> bool:
    return runtime.device().type == "cuda"


def coco_available(model: str) -> bool:
    """Whether torchvision's COCO checkpoint of ``model`` is on this server (no download)."""
    return coco_cache_path(model).is_file()


def values_of(settings: FinetuneSettings) -> dict[str, Any]:
    """The Train page's values for ``settings``."""
    return {
        "model": settings.model,
        "start": WEIGHTS_RANDOM
        if settings.weights == "random" or not coco_available(settings.model)
        else WEIGHTS_COCO,
        "epochs": settings.epochs,
        "batch_size": settings.batch_size,
        "linear_rule": settings.lr is None,
        "lr": settings.lr if settings.lr is not None else settings.learning_rate(1),
        "momentum": settings.momentum,
        "weight_decay": settings.weight_decay,
        "warmup_iters": settings.warmup_iters,
        "lr_steps": list(settings.lr_steps),
        "gamma": settings.gamma,
        "clip_grad_norm": settings.clip_grad_norm,
        "amp": bool(settings.amp if settings.amp is not None else cuda_here()) and cuda_here(),
        "hflip": settings.hflip,
        "min_size": settings.min_size,
        "max_size": settings.max_size,
        "rois_per_image": settings.rois_per_image,
        "proposals": settings.proposals or 0,
        "seed": settings.seed,
        "eval_interval": settings.eval_interval,
        "checkpoint_interval": settings.checkpoint_interval,
        "eval_at_start": settings.eval_at_start,
        "log_interval": settings.log_interval,
        "max_iters": settings.max_iters or 0,
    }


def quick_recipe() -> FinetuneSettings:
    """:meth:`FinetuneSettings.quick_cpu`: the measured recipe for the shipped dataset."""
    return FinetuneSettings.quick_cpu("", "")


def values() -> dict[str, Any]:
    """The session's Train-page settings (the tutorial's until changed)."""
    return st.session_state.setdefault(VALUES, values_of(TUTORIAL))


def widget_key(name: str) -> str:
    """The key of setting ``name``'s widget, holding the session's value: a widget's state is
    dropped on pages without it, so it is set again from :func:`values` when it comes back."""
    key = WIDGET + name
    if key not in st.session_state:
        st.session_state[key] = values()[name]
    return key


def remember(name: str, value: Any) -> Any:
    """Keep a Train-page widget's value (see :func:`widget_key`); returns it."""
    values()[name] = value
    return value


def apply(settings: FinetuneSettings) -> None:
    """Set every Train-page widget to ``settings`` (a button's callback: before the widgets)."""
    new = values_of(settings)
    st.session_state[VALUES] = new
    for name, value in new.items():
        st.session_state[WIDGET + name] = value


def settings_from(
    chosen: Mapping[str, Any], data: DatasetChoice, out: str | os.PathLike[str]
) -> FinetuneSettings:
    """The run's settings from the Train page's values and the session's dataset.

    Raises:
        FinetuneError: values that cannot train (one line).
    """
    settings = FinetuneSettings(
        data=str(data.root),
        out=str(out),
        format=data.format,
        classes=data.classes,
        model=str(chosen["model"]),
        # COCO weights only from this server's cache: a page never waits on a download.
        weights=WEIGHTS_COCO
        if chosen["start"] == WEIGHTS_COCO and coco_available(str(chosen["model"]))
        else WEIGHTS_RANDOM,
        epochs=int(chosen["epochs"]),
        batch_size=int(chosen["batch_size"]),
        lr=None if chosen["linear_rule"] else float(chosen["lr"]),
        momentum=float(chosen["momentum"]),
        weight_decay=float(chosen["weight_decay"]),
        warmup_iters=int(chosen["warmup_iters"]),
        lr_steps=tuple(sorted(int(s) for s in chosen["lr_steps"])),
        gamma=float(chosen["gamma"]),
        clip_grad_norm=float(chosen["clip_grad_norm"]),
        amp=bool(chosen["amp"]) and cuda_here(),
        hflip=float(chosen["hflip"]),
        min_size=int(chosen["min_size"]),
        max_size=int(chosen["max_size"]),
        rois_per_image=int(chosen["rois_per_image"]),
        proposals=int(chosen["proposals"]) or None,
        seed=int(chosen["seed"]),
        eval_interval=int(chosen["eval_interval"]),
        checkpoint_interval=int(chosen["checkpoint_interval"]),
        eval_at_start=bool(chosen["eval_at_start"]),
        log_interval=int(chosen["log_interval"]),
        max_iters=int(chosen["max_iters"]) or None,
        device=runtime.device().type,
    )
    settings.check()
    return settings


# -- the run ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Outcome:
    """What a run that ended with a model left (``result.json``).

    Attributes:
        state: ``"finished"`` or ``"cancelled"``.
        model: the kept checkpoint (best mAP@0.5, else the last weights), weights only.
        model_epoch: the epoch it is from.
        map50, map: its scores on the validation images (None: no class had ground truth).
        iterations, epochs, seconds: how far the run went and how long it took.
        note: where the starting weights came from.
    """

    state: str
    model: Path | None
    model_epoch: int | None
    map50: float | None
    map: float | None
    iterations: int
    epochs: int
    seconds: float
    note: str = ""
    notes: tuple[str, ...] = ()


@dataclass(eq=False)
class FinetuneRun:
    """A session's training: the job, what it trains, where its files go.

    Attributes:
        taken: its end was seen by :func:`collect`.
    """

    id: str
    job: Job
    settings: FinetuneSettings
    dataset: DatasetChoice
    folder: Path
    threads: int
    taken: bool = False
    registered: str | None = field(default=None)  # the production menu's entry id
    register_error: str | None = None  # English when ours (N_): translated where shown
    failures: list = field(default_factory=list)  # the FinetuneJobError of a failed run

    @property
    def outcome(self) -> Outcome | None:
        return self.job.result if isinstance(self.job.result, Outcome) else None


class _Events:
    """The new complete lines of a growing JSON-lines file."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = 0

    def read(self) -> list[dict]:
        try:
            with open(self.path, "rb") as fh:
                fh.seek(self.offset)
                data = fh.read()
        except FileNotFoundError:
            return []
        end = data.rfind(b"\n") + 1
        self.offset += end
        out = []
        for line in data[:end].splitlines():
            with contextlib.suppress(ValueError):
                out.append(json.loads(line))
        return out


def fold(progress: JobProgress, event: dict) -> JobProgress:
    """A training event (``metrics.jsonl``'s ``start`` / ``train`` / ``val`` lines) into the
    job's snapshot, as :class:`frcnn_core.finetune.TrainingJob` does in-process."""
    mode = event.get("mode")
    if mode == "start":
        return replace(
            progress,
            total_iterations=int(event["total_iterations"]),
            iteration=int(event["iteration"]),
            epochs=int(event.get("epochs", progress.epochs)),
            note=str(event.get("note", "")),
        )
    if mode == "train":
        losses = {k: float(event[k]) for k in ("loss", *LOSS_NAMES) if k in event}
        return replace(
            progress,
            iteration=int(event["iteration"]),
            total_iterations=int(event["total_iterations"]),
            epoch=int(event["epoch"]),
            losses=losses,
            loss_history=(*progress.loss_history, (int(event["iteration"]), losses)),
            seconds_per_iteration=float(event["time"]),
            eta_seconds=float(event["eta"]),
        )
    if mode == "val":
        entry = (int(event["epoch"]), int(event["iteration"]), event["map50"], event["map"])
        return replace(progress, evaluations=(*progress.evaluations, entry))
    return progress


def _outcome(folder: Path, code: int | None, log_path: Path) -> Outcome:
    """The run's ``result.json`` as an Outcome.

    Raises:
        FinetuneJobError: the run failed, or its process ended without a result.
    """
    try:
        report = json.loads((folder / RESULT).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        tail = ""
        with contextlib.suppress(OSError):
            lines = [x for x in log_path.read_text(errors="replace").splitlines() if x.strip()]
            tail = f" ({lines[-1].strip()[:200]})" if lines else ""
        raise FinetuneJobError(
            N_("the training process stopped unexpectedly (exit status {code}){tail}"),
            code=code,
            tail=tail,
        ) from None
    if report.get("state") == "failed":
        # The worker wrote its message in the session's language of the start (spec.json).
        if report.get("message"):
            raise FinetuneJobError("{reason}", reason=str(report["message"]))
        raise FinetuneJobError(N_("the training failed"))
    return Outcome(
        state=str(report["state"]),
        model=Path(report["model"]) if report.get("model") else None,
        model_epoch=report.get("model_epoch"),
        map50=report.get("map50"),
        map=report.get("map"),
        iterations=int(report.get("iterations", 0)),
        epochs=int(report.get("epochs", 0)),
        seconds=float(report.get("seconds", 0.0)),
        note=str(report.get("note", "")),
        notes=tuple(report.get("notes") or ()),
    )


def _work(
    folder: Path,
    settings: FinetuneSettings,
    threads: int,
    lang: str,
    failures: list,
    job: Job,
) -> Outcome:
    """The job: start the training process, follow its events, pass a cancel on.

    This thread has no session: what it reports is English (the phases are marked ``N_``, a
    failure is a :class:`FinetuneJobError`, kept in ``failures``), translated where shown. The
    training process speaks ``lang``, the session's language when the run started: the core's
    messages (a bad label file, settings that cannot train) are made there.
    """
    with _active_lock:
        _active_folders.add(folder)
    try:
        spec = {
            "settings": settings.to_dict(),
            "threads": threads,
            "parent": os.getpid(),
            "lang": lang,
        }
        (folder / SPEC).write_text(json.dumps(spec), encoding="utf-8")
        env = dict(
            os.environ,
            OMP_NUM_THREADS=str(threads),
            MKL_NUM_THREADS=str(threads),
            PYTHONUNBUFFERED="1",
        )
        log_path = folder / "worker.log"
        events = _Events(folder / EVENTS)
        progress = JobProgress(state="running", epochs=settings.epochs)
        job.report(ft=progress, phase=N_("starting the training process"))
        with open(log_path, "wb") as log_file:
            process = subprocess.Popen(
                [sys.executable, "-m", "explorer.finetune_worker", str(folder)],
                cwd=ROOT,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
            )
        cancelled_at = None
        try:
            while True:
                if job.cancelled and cancelled_at is None:
                    (folder / CANCEL).touch()
                    cancelled_at = time.monotonic()
                    job.report(phase=N_("stopping: saving and scoring the weights reached"))
                for event in events.read():
                    progress = fold(progress, event)
                    job.report(ft=progress, phase=N_("training"))
                code = process.poll()
                if code is not None:
                    break
                if cancelled_at is not None and time.monotonic() - cancelled_at > CANCEL_GRACE_S:
                    process.kill()
                time.sleep(POLL_S)
        finally:
            if process.poll() is None:  # this thread is going away (the server stops)
                process.kill()
            process.wait()
        for event in events.read():
            progress = fold(progress, event)
        job.report(ft=progress)
        try:
            return _outcome(folder, process.returncode, log_path)
        except FinetuneJobError as exc:
            failures.append(exc)
            raise
    finally:
        with _active_lock:
            _active_folders.discard(folder)


def current() -> FinetuneRun | None:
    return st.session_state.get(RUN)


def running() -> bool:
    run = current()
    return run is not None and run.job.active


def start(chosen: Mapping[str, Any]) -> str | None:
    """Queue a fine-tuning run of this session on its dataset; returns a one-line message when
    it cannot start (one run per session; settings that cannot train), else None."""
    if running():
        return _("A fine-tuning run of yours is already going: cancel it first.")
    data = dataset()
    if data is None:
        return _("Choose a dataset on the Dataset page first.")
    prune()
    previous = current()
    folder = work_dir() / "runs" / f"{session_id()}-{uuid.uuid4().hex[:8]}"
    try:
        settings = settings_from(chosen, data, folder / OUT)
    except FinetuneError as exc:
        return _("These settings cannot train: {reason}.").format(reason=exc)
    folder.mkdir(parents=True, exist_ok=True)
    threads = default_threads()
    failures: list[FinetuneJobError] = []
    job = Job(
        functools.partial(_work, folder, settings, threads, language(), failures),
        title="fine-tuning",
    )
    st.session_state[RUN] = FinetuneRun(
        uuid.uuid4().hex, job, settings, data, folder, threads, failures=failures
    )
    if previous is not None and previous is not st.session_state.get(MODEL):
        _drop_checkpoints(previous)
    kept = st.session_state.get(MODEL)
    if kept is not None:
        _drop_checkpoints(kept, keep_model=True)
    QUEUE.submit(job)
    return None


def _drop_checkpoints(run: FinetuneRun, keep_model: bool = False) -> None:
    """Free a previous run's disk: its resumable epoch checkpoints (the kept model stays when
    ``keep_model``: the Results page and the production menu use it)."""
    if run.job.active:
        return
    outcome = run.outcome
    keep = outcome.model if (keep_model and outcome is not None) else None
    for path in (run.folder / OUT).glob("*.pt"):
        if path != keep:
            path.unlink(missing_ok=True)


def cancel() -> None:
    """Ask this session's run to stop; it keeps (and scores) the weights it reached."""
    run = current()
    if run is not None:
        run.job.cancel()


def progress_of(run: FinetuneRun) -> JobProgress:
    """The run's latest snapshot, with its elapsed time."""
    progress = run.job.progress.get("ft") or JobProgress(
        state="pending", epochs=run.settings.epochs
    )
    started = run.job.started
    if started is not None:
        end = run.job.finished or time.monotonic()
        progress = replace(progress, elapsed_seconds=end - started)
    return progress


def failure_text(run: FinetuneRun) -> str:
    """Why the run failed, in the session's language (a failure of the job's own making), or
    as the training process wrote it."""
    if run.failures:
        return run.failures[-1].text()
    return run.job.error or _("unknown error")


def phase_text(run: FinetuneRun) -> str:
    """What the job is doing, in the session's language (``""`` when it has not said)."""
    phase = run.job.progress.get("phase", "")
    return _(phase) if phase else ""


def queue_position(run: FinetuneRun) -> int:
    """How many runs are ahead of this one (0 once it runs)."""
    return QUEUE.ahead(run.job)


def collect() -> bool:
    """Once a run has ended: keep its model as the session's fine-tuned model (when it left
    one) and list it on the production-detector pages. True when the model changed."""
    run = current()
    if run is None or run.job.active or run.taken:
        return False
    run.taken = True
    outcome = run.outcome
    if outcome is None or outcome.model is None:
        return False
    st.session_state[MODEL] = run
    st.session_state.pop(EVALUATION, None)
    register(run, select=False)
    return True


def model_run() -> FinetuneRun | None:
    """The run whose model is the session's fine-tuned model."""
    return st.session_state.get(MODEL)


def model_label(run: FinetuneRun) -> str:
    """The model's entry in the production-detector menu (in the session's language when it
    is listed)."""
    return _("Fine-tuned on {name}").format(name=run.dataset.title)


def register(run: FinetuneRun, select: bool) -> str | None:
    """List (and with ``select``, choose) the run's model on the production-detector pages;
    returns a one-line reason when it cannot be."""
    from frcnn_core.detectors import DetectorWeightsError

    try:
        from explorer import production  # the production pages' detector menu
    except ImportError:  # an app without those pages
        run.register_error = N_("this app has no production-detector pages")
        return _(run.register_error)
    outcome = run.outcome
    if outcome is None or outcome.model is None:
        return _("this run left no model")
    try:
        option = production.register_checkpoint(outcome.model, model_label(run), select=select)
    except (DetectorWeightsError, OSError) as exc:
        run.register_error = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        return run.register_error
    run.registered = option.id
    run.register_error = None
    return None


def model_file(run: FinetuneRun) -> tuple[Path, int] | None:
    """The kept checkpoint and its size in bytes, or None when it is gone."""
    outcome = run.outcome
    if outcome is None or outcome.model is None:
        return None
    try:
        return outcome.model, outcome.model.stat().st_size
    except OSError:
        return None


def fits_upload_limit(size: int) -> bool:
    """Whether a checkpoint this size can be uploaded back (``LIMITS_MB["checkpoint"]``)."""
    return size <= LIMITS_MB["checkpoint"] * 2**20


def val_split(run: FinetuneRun) -> str:
    return "val" if "val" in run.dataset.splits else "all"


def evaluation(run: FinetuneRun) -> tuple[DetectionDataset, EvaluationResult]:
    """The kept model's validation images and their scored detections (pycocotools on the
    detections the run saved: no forward pass), once per run.

    Raises:
        DatasetError, EvaluationError: the dataset or the detections are gone or changed.
    """
    cached = st.session_state.get(EVALUATION)
    if cached is not None and cached[0] == run.id:
        return cached[1], cached[2]
    settings = run.settings
    val = load_dataset(settings.data, settings.format, settings.classes, val_split(run))
    predictions = read_predictions_json(run.folder / PREDICTIONS, val)
    result = evaluate_predictions(val, predictions)
    st.session_state[EVALUATION] = (run.id, val, result)
    return val, result


# -- page state ----------------------------------------------------------------------------------

UI = "ft:ui"  # values of the pages' own widgets (source, split, page, threshold), by key


def sticky(key: str, default: Any) -> str:
    """A page widget's key whose value survives page switches (Streamlit drops the state of a
    widget that is not drawn): set again from the session's last value when it comes back."""
    kept = st.session_state.setdefault(UI, {})
    if key not in st.session_state:
        st.session_state[key] = kept.get(key, default)
    return key


def keep(key: str, value: Any) -> Any:
    """Remember a page widget's value (see :func:`sticky`); returns it."""
    st.session_state.setdefault(UI, {})[key] = value
    return value


def duration(seconds: float | None) -> str:
    """``75.2`` -> ``"1 min 15 s"``; None -> ``"—"``."""
    if seconds is None:
        return "—"
    whole = round(seconds)
    if whole < 60:
        return _("{s} s").format(s=whole)
    if whole < 3600:
        return _("{m} min {s:02d} s").format(m=whole // 60, s=whole % 60)
    return _("{h} h {m:02d} min").format(h=whole // 3600, m=whole // 60 % 60)


def run_figure(run: FinetuneRun, kind: str, data: tuple, build: Any) -> Any:
    """``build(data)``, a training curve, built again only when it has new points: the page
    polls every second or so, and a plotly figure takes tens of milliseconds to build."""
    key = (run.id, len(data), language())  # the figure's titles are in the session's language
    cache = st.session_state.setdefault("ft:figures", {})
    if cache.get(kind, (None, None))[0] != key:
        cache[kind] = (key, build(data))
    return cache[kind][1]
