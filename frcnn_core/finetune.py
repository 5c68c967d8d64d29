"""Fine-tune a torchvision Faster R-CNN on a detection dataset, in one process or many (DDP).

This is the tutorial's "Train a detector on a customized dataset" on torchvision's models:

- the detector starts from its COCO checkpoint (:func:`frcnn_core.detectors.load_detector`), from
  any checkpoint (``load_from``), or from random weights with a notice; its box predictor is
  replaced by a ``FastRCNNPredictor`` for the dataset's classes (+ background);
- SGD with momentum 0.9 and weight decay 1e-4; the learning rate follows the linear rule,
  0.02 for 16 images a step scaled to ``batch_size x processes`` (2 images on one process:
  0.02 / 8 = 0.0025, the tutorial's value); optional linear warm-up; step decay by ``gamma`` at
  the ``lr_steps`` epochs (MMDetection's 1x schedule: 12 epochs, steps at 8 and 11);
- horizontal flips (probability 0.5), gradient clipping, automatic mixed precision on CUDA,
  a seed;
- a log line every ``log_interval`` iterations (10, as the tutorial), written to
  ``OUT/metrics.jsonl`` and as TensorBoard event files in ``OUT/tf_logs``;
- evaluation (:mod:`frcnn_core.evaluate`: mAP@0.5 and COCO mAP) every ``eval_interval`` epochs
  and after the last; checkpoints ``OUT/epoch_N.pt`` every ``checkpoint_interval`` epochs and
  after the last, and ``OUT/best.pt`` whenever mAP@0.5 improves; ``resume`` continues from one.

Checkpoints are written by :func:`frcnn_core.detectors.save_checkpoint`, so ``detect --weights``
and the app's production pages load them; they also hold the epoch, the optimizer and
gradient-scaler state, the settings and the mAP.

Distributed training is torch.distributed's DDP, launched by torchrun (NCCL on GPUs, gloo on
CPUs); each process reads its share of every epoch (``DistributedSampler``), the evaluation is
split across processes and gathered (``all_gather_object``), and only rank 0 writes files::

    # one process (CPU, or the first GPU)
    python -m frcnn_core finetune --data DIR --model fasterrcnn_mobilenet_v3_large_fpn --out OUT

    # one machine, N processes (N GPUs; on a CPU, N processes with gloo)
    torchrun --nproc_per_node=N -m frcnn_core finetune --data DIR --out OUT

    # M machines with N processes each: run this on every machine (HOST:PORT is one machine
    # that all can reach; JOB any name shared by the machines of this run)
    torchrun --nnodes=M --nproc_per_node=N --rdzv-backend=c10d --rdzv-endpoint=HOST:PORT \\
        --rdzv-id=JOB -m frcnn_core finetune --data DIR --out OUT

With several machines, ``DIR`` must exist on each, and ``OUT`` is written on the machine of
rank 0. The learning rate scales with the number of processes (the linear rule) unless ``lr``
is given.
"""

from __future__ import annotations

import json
import math
import os
import random
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from frcnn_core.datasets import DetectionDataset, has_split, load_dataset, parse_classes
from frcnn_core.detectors import (
    BACKGROUND,
    MODELS,
    WEIGHTS_ENV,
    DetectorWeightsError,
    build_model,
    load_detector,
    save_checkpoint,
)
from frcnn_core.device import default_device
from frcnn_core.evaluate import EvaluationResult, Prediction, evaluate_predictions, image_tensor
from frcnn_core.i18n import N_, _

BASE_LR = 0.02  # for 16 images a step (MMDetection's 8 GPUs x 2 images)
BASE_BATCH = 16
LOSS_NAMES = ("loss_classifier", "loss_box_reg", "loss_objectness", "loss_rpn_box_reg")


class FinetuneError(ValueError):
    """Training that cannot start or go on; the message is one line for the user."""


@dataclass(frozen=True)
class FinetuneSettings:
    """Everything a fine-tuning run needs; the defaults are the tutorial's where it has one.

    Attributes:
        data: dataset folder (or COCO JSON file).
        out: folder for checkpoints and logs (created).
        format: ``"kitti"``, ``"coco"``, ``"voc"``, ``"yolo"`` or ``"auto"``.
        classes: class names (default: the format's, KITTI: Car, Pedestrian, Cyclist).
        model: one of :data:`frcnn_core.detectors.MODELS` (default: R50-FPN, the tutorial's).
        weights: ``"auto"`` (COCO if found, else random with a notice), ``"coco"``, ``"random"``.
        load_from: a checkpoint or state_dict to start from instead (overrides ``weights``).
        resume: a checkpoint of this training to continue (epoch, optimizer, scaler).
        epochs: training epochs (the tutorial's 1x schedule: 12).
        batch_size: images per step per process (the tutorial: 2).
        lr: learning rate; ``None``: the linear rule ``0.02 * batch_size * processes / 16``.
        momentum, weight_decay: SGD's (0.9, 1e-4).
        warmup_iters: iterations over which the rate rises linearly from ``warmup_factor`` of
            its value (the tutorial turns warm-up off: 0).
        lr_steps: epochs after which the rate is multiplied by ``gamma``.
        clip_grad_norm: clip the gradients' total norm to this (0: off, as the tutorial).
        amp: mixed precision on CUDA (``None``: on when training on CUDA).
        hflip: probability of a horizontal flip of a training image.
        min_size, max_size: the model's resize (torchvision: 800, 1333); small values make CPU
            training fast.
        rois_per_image: RoIs sampled per image for the box head's loss (torchvision: 512).
        proposals: RPN proposals kept per image before and after NMS (``None``: torchvision's).
        trainable_backbone_layers: ``None``: torchvision's (3 from COCO weights, all from random).
        seed: seed of the weights of new layers, the sampling order and the flips.
        eval_interval, checkpoint_interval: in epochs (the tutorial: 12); the last epoch is
            always evaluated and saved.
        eval_at_start: evaluate before the first step too (the untrained model's mAP).
        evaluate: evaluate at all (off: no mAP and no best.pt, for benchmarks).
        save_best: write ``best.pt`` when mAP@0.5 improves.
        log_interval: iterations per log line.
        max_iters: stop after this many iterations in all (for quick runs); ``None``: no cap.
        workers: DataLoader worker processes (``None``: 2 on CUDA, 0 on a CPU).
        device: ``"cpu"``, ``"cuda"`` or ``None`` (CUDA when available; one GPU per process).
    """

    data: str
    out: str
    format: str = "auto"
    classes: tuple[str, ...] | None = None
    model: str = "fasterrcnn_resnet50_fpn"
    weights: str = "auto"
    load_from: str | None = None
    resume: str | None = None
    epochs: int = 12
    batch_size: int = 2
    lr: float | None = None
    momentum: float = 0.9
    weight_decay: float = 1e-4
    warmup_iters: int = 0
    warmup_factor: float = 0.001
    lr_steps: tuple[int, ...] = (8, 11)
    gamma: float = 0.1
    clip_grad_norm: float = 0.0
    amp: bool | None = None
    hflip: float = 0.5
    min_size: int = 800
    max_size: int = 1333
    rois_per_image: int = 512
    proposals: int | None = None
    trainable_backbone_layers: int | None = None
    seed: int = 0
    eval_interval: int = 12
    checkpoint_interval: int = 12
    eval_at_start: bool = False
    evaluate: bool = True
    save_best: bool = True
    log_interval: int = 10
    max_iters: int | None = None
    workers: int | None = None
    device: str | None = None

    @classmethod
    def quick_cpu(cls, data: str, out: str, **changes) -> FinetuneSettings:
        """The shipped dataset's quick recipe: the MobileNet model from random weights at the
        images' 256 px, 4 images a step at 0.02 with a 50-iteration warm-up and clipping, few
        RoIs and proposals (the images hold at most four objects), 6 epochs, decay after 5.
        Measured on a busy 2-core CPU with ``--threads 1``: mAP@0.5 on the val split 0.0007
        before, 0.65 after 4 epochs, 0.86 after 6 (7 min 17 s in all)."""
        recipe = cls(
            data=data,
            out=out,
            model="fasterrcnn_mobilenet_v3_large_fpn",
            weights="random",
            epochs=6,
            batch_size=4,
            lr=0.02,
            warmup_iters=50,
            clip_grad_norm=10.0,
            lr_steps=(5,),
            min_size=256,
            max_size=256,
            rois_per_image=32,
            proposals=100,
            eval_interval=2,
            checkpoint_interval=6,
            eval_at_start=True,
        )
        return replace(recipe, **changes)

    def check(self) -> None:
        """Raises FinetuneError (one line) for values that cannot work."""
        if self.model not in MODELS:
            raise FinetuneError(
                _("unknown model {model!r}; choose one of {models}").format(
                    model=self.model, models=", ".join(MODELS)
                )
            )
        if self.weights not in ("auto", "coco", "random"):
            raise FinetuneError(_("--weights must be auto, coco or random (use --load-from FILE)"))
        positive = {
            N_("epochs"): self.epochs,
            N_("batch size"): self.batch_size,
            N_("min size"): self.min_size,
            N_("max size"): self.max_size,
            N_("rois per image"): self.rois_per_image,
            N_("eval interval"): self.eval_interval,
            N_("checkpoint interval"): self.checkpoint_interval,
            N_("log interval"): self.log_interval,
        }
        for name, value in positive.items():
            if value < 1:
                raise FinetuneError(
                    _("{name} must be at least 1, got {value}").format(name=_(name), value=value)
                )
        if self.min_size > self.max_size:
            raise FinetuneError(_("min size must not exceed max size"))
        if self.lr is not None and not (0 < self.lr < 10):
            raise FinetuneError(
                _("learning rate must be between 0 and 10, got {lr}").format(lr=self.lr)
            )
        if not 0 <= self.hflip <= 1:
            raise FinetuneError(_("the flip probability must be between 0 and 1"))
        if self.warmup_iters < 0 or not 0 < self.warmup_factor <= 1:
            raise FinetuneError(_("warm-up needs iterations >= 0 and a factor in (0, 1]"))
        if self.clip_grad_norm < 0 or self.momentum < 0 or self.weight_decay < 0:
            raise FinetuneError(_("momentum, weight decay and clipping must not be negative"))
        if not 0 < self.gamma <= 1:
            raise FinetuneError(_("gamma must be in (0, 1]"))
        if self.max_iters is not None and self.max_iters < 1:
            raise FinetuneError(_("max iterations must be at least 1"))
        if self.proposals is not None and self.proposals < 1:
            raise FinetuneError(_("proposals must be at least 1"))

    def learning_rate(self, world_size: int = 1) -> float:
        """The base rate: ``lr``, else the linear rule ``0.02 * batch * processes / 16``."""
        if self.lr is not None:
            return self.lr
        return BASE_LR * self.batch_size * world_size / BASE_BATCH

    def model_kwargs(self) -> dict:
        """``FasterRCNN`` settings that shape the model's behaviour; stored in checkpoints so
        that a loaded checkpoint resizes and proposes as in training."""
        kwargs: dict = {
            "min_size": self.min_size,
            "max_size": self.max_size,
            "box_batch_size_per_image": self.rois_per_image,
        }
        if self.proposals is not None:
            for phase in ("train", "test"):
                kwargs[f"rpn_pre_nms_top_n_{phase}"] = self.proposals
                kwargs[f"rpn_post_nms_top_n_{phase}"] = self.proposals
        return kwargs

    def to_dict(self) -> dict:
        """Plain data (lists, not tuples) for checkpoints and JSON."""
        out = asdict(self)
        out["classes"] = list(self.classes) if self.classes is not None else None
        out["lr_steps"] = list(self.lr_steps)
        return out


def lr_factor(iteration: int, epoch: int, settings: FinetuneSettings) -> float:
    """The multiplier of the base rate at a global ``iteration`` (0-based) in ``epoch``
    (1-based): linear warm-up from ``warmup_factor`` to 1 over ``warmup_iters`` iterations, times
    ``gamma`` for each of ``lr_steps`` already passed (a step at 8 applies from epoch 9 on)."""
    warm = 1.0
    if iteration < settings.warmup_iters:
        alpha = iteration / settings.warmup_iters
        warm = settings.warmup_factor * (1 - alpha) + alpha
    decays = sum(1 for step in settings.lr_steps if epoch > step)
    return warm * settings.gamma**decays


# -- data ------------------------------------------------------------------------------------


class _TrainImages(Dataset):
    """(image Tensor[3, H, W] in 0..1, target) pairs; target boxes [N, 4] xyxy, labels 1..C
    (the model's ids). Ignored boxes are not trained on (torchvision has no ignore regions, and
    the tutorial's detector does not use them either)."""

    def __init__(self, dataset: DetectionDataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int):
        rec = self.dataset.images[index]
        target = {"boxes": rec.boxes.clone(), "labels": rec.labels + 1}
        return image_tensor(rec), target


def _collate(batch):
    return tuple(zip(*batch, strict=True))


def hflip(image: torch.Tensor, boxes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mirror an image [3, H, W] and its boxes [N, 4] (x1, y1, x2, y2): x -> W - x."""
    width = image.shape[-1]
    flipped = boxes.clone()
    flipped[:, 0] = width - boxes[:, 2]
    flipped[:, 2] = width - boxes[:, 0]
    return image.flip(-1), flipped


# -- distributed ----------------------------------------------------------------------------


@dataclass(frozen=True)
class DistInfo:
    """This process's place: ``world_size`` processes, ``rank`` 0 writes files."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def main(self) -> bool:
        return self.rank == 0


def init_distributed(device: str | None) -> tuple[DistInfo, torch.device]:
    """Join the process group torchrun set up (``WORLD_SIZE`` > 1 in the environment): NCCL with
    one GPU per process when CUDA is used, else gloo. Without torchrun: one process."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    want = torch.device(device) if device else default_device()
    if want.type == "cuda" and not torch.cuda.is_available():
        raise FinetuneError(_("CUDA is not available on this machine; use --device cpu"))
    if world <= 1:
        return DistInfo(), want
    info = DistInfo(int(os.environ.get("RANK", "0")), world, int(os.environ.get("LOCAL_RANK", "0")))
    if want.type == "cuda":
        want = torch.device("cuda", info.local_rank)
        torch.cuda.set_device(want)
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if want.type == "cuda" else "gloo")
    return info, want


def _all_gather(obj, info: DistInfo) -> list:
    if not info.distributed:
        return [obj]
    out: list = [None] * info.world_size
    dist.all_gather_object(out, obj)
    return out


# -- the model -------------------------------------------------------------------------------


def _replace_predictor(model: nn.Module, num_classes: int) -> None:
    from torchvision.models.detection.faster_rcnn import FastRCNNPredictor

    in_features = model.roi_heads.box_predictor.cls_score.in_features
    model.roi_heads.box_predictor = FastRCNNPredictor(in_features, num_classes)


def _random_model(settings: FinetuneSettings, num_classes: int) -> nn.Module:
    """Random weights with trainable BatchNorm in every backbone layer: from scratch, frozen
    statistics of random weights would leave the activations unnormalised. (A checkpoint of it
    loads into :func:`build_model`'s frozen-BatchNorm model with the learned statistics.)"""
    from torchvision.models import detection

    builder = getattr(detection, settings.model)
    model = builder(
        weights=None, weights_backbone=None, num_classes=num_classes, **settings.model_kwargs()
    )
    _fix_pooler_scales(model)
    return model


def _fix_pooler_scales(model: nn.Module, side: int = 128) -> None:
    """Set the RoI pooler's level scales from a square input, as :func:`build_model` does for
    its models: torchvision infers them from the first batch and keeps them, and a thin first
    image would skew them. Eval mode, so that no BatchNorm statistic moves."""
    from torchvision.ops import MultiScaleRoIAlign

    pooler = model.roi_heads.box_roi_pool
    if not isinstance(pooler, MultiScaleRoIAlign):
        return
    was_training = model.training
    model.eval()
    with torch.no_grad():
        features = model.backbone(torch.zeros(1, 3, side, side))
        box = torch.tensor([[0.0, 0.0, float(side), float(side)]])
        pooler.scales, pooler.map_levels = None, None
        pooler(features, [box], [(side, side)])
    model.train(was_training)


@dataclass(frozen=True)
class StartingPoint:
    model: nn.Module
    weights: str  # "coco", "random" or the path loaded
    note: str


def initial_model(settings: FinetuneSettings, classes: Sequence[str]) -> StartingPoint:
    """The model to fine-tune, on the CPU, with a box predictor for ``classes`` + background.

    Raises:
        FinetuneError: weights that cannot be loaded (one line).
    """
    num_classes = len(classes) + 1
    kwargs = settings.model_kwargs()
    extra = {}
    if settings.trainable_backbone_layers is not None:
        extra["trainable_backbone_layers"] = settings.trainable_backbone_layers
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(settings.seed)
        if settings.load_from is not None or settings.weights != "random":
            try:
                detector = load_detector(
                    settings.model if settings.load_from is None else None,
                    weights=settings.load_from or settings.weights,
                    device="cpu",
                    seed=settings.seed,
                    **kwargs,
                )
            except DetectorWeightsError as exc:
                raise FinetuneError(str(exc)) from None
            if detector.name != settings.model:
                raise FinetuneError(
                    _("{path} holds {name} weights, not {model}; use --model {name}").format(
                        path=settings.load_from, name=detector.name, model=settings.model
                    )
                )
            if detector.weights != "random":
                model = detector.model
                if settings.trainable_backbone_layers is not None:
                    model = _with_trainable_layers(settings, detector.model)
                if tuple(detector.class_names[1:]) != tuple(classes):
                    _replace_predictor(model, num_classes)
                return StartingPoint(model.train(), detector.weights, detector.note)
            note = _(
                "COCO weights for {model} were not found: training from random weights (mAP "
                "rises far more slowly). To start from COCO, run `python -m frcnn_core "
                "fetch-weights --model {model}` where a network exists, or set "
                "{env}=/path/to/weights.pth"
            ).format(model=settings.model, env=WEIGHTS_ENV)
        else:
            note = _("training from random weights (asked for)")
        model = _random_model(settings, num_classes)
        return StartingPoint(model.train(), "random", note)


def _with_trainable_layers(settings: FinetuneSettings, loaded: nn.Module) -> nn.Module:
    model = build_model(
        settings.model,
        loaded.roi_heads.box_predictor.cls_score.out_features,
        trainable_backbone_layers=settings.trainable_backbone_layers,
        **settings.model_kwargs(),
    )
    model.load_state_dict(loaded.state_dict())
    return model


def inference_model(model: nn.Module, name: str, num_classes: int, kwargs: dict) -> nn.Module:
    """The model exactly as a checkpoint of it loads (:func:`build_model` + its state_dict):
    frozen BatchNorm, eval mode. Evaluating this one makes the mAP logged in training equal
    ``evaluate --checkpoint``'s."""
    copy = build_model(name, num_classes, **kwargs)
    copy.load_state_dict(model.state_dict())
    return copy.eval()


# -- events, results ---------------------------------------------------------------------------


@dataclass(frozen=True)
class FinetuneResult:
    """What a run leaves.

    Attributes:
        out: the output folder.
        classes: the dataset's classes (the checkpoint's class names minus the background).
        checkpoints: files written, in order.
        best: the best-mAP checkpoint (or None).
        evaluation: the last evaluation (of the final weights), or None on rank > 0.
        iterations: iterations run; epochs: epochs completed.
        cancelled: stopped by :class:`TrainingJob.cancel`.
        seconds: wall time.
    """

    out: Path
    classes: tuple[str, ...]
    checkpoints: tuple[Path, ...]
    best: Path | None
    evaluation: EvaluationResult | None
    iterations: int
    epochs: int
    cancelled: bool
    seconds: float
    notes: tuple[str, ...] = ()


Event = dict
ProgressCallback = Callable[[Event], None]


class _Logs:
    """metrics.jsonl and TensorBoard events, on rank 0 only."""

    def __init__(self, out: Path, enabled: bool, append: bool) -> None:
        self.enabled = enabled
        self.jsonl = None
        self.writer = None
        if not enabled:
            return
        from torch.utils.tensorboard import SummaryWriter

        out.mkdir(parents=True, exist_ok=True)
        # Kept open for the run (a line per log event); close() closes it.
        self.jsonl = open(out / "metrics.jsonl", "a" if append else "w", encoding="utf-8")  # noqa: SIM115
        self.writer = SummaryWriter(log_dir=str(out / "tf_logs"))

    def write(self, event: Event) -> None:
        if not self.enabled:
            return
        assert self.jsonl is not None and self.writer is not None
        self.jsonl.write(json.dumps(event) + "\n")
        self.jsonl.flush()
        step = event["iteration"]
        if event["mode"] == "train":
            for key in ("loss", *LOSS_NAMES, "lr", "time"):
                self.writer.add_scalar(f"train/{key}", event[key], step)
        else:
            for key in ("map50", "map"):
                if event[key] is not None:
                    self.writer.add_scalar(f"val/{key}", event[key], step)
            for name, ap in event["per_class"].items():
                if ap["ap50"] is not None:
                    self.writer.add_scalar(f"val_ap50/{name}", ap["ap50"], step)
        self.writer.flush()

    def close(self) -> None:
        if self.jsonl is not None:
            self.jsonl.close()
        if self.writer is not None:
            self.writer.close()


# -- evaluation ------------------------------------------------------------------------------


@torch.no_grad()
def evaluate_model(
    model: nn.Module,
    dataset: DetectionDataset,
    device: torch.device,
    info: DistInfo = DistInfo(),
) -> EvaluationResult | None:
    """Predict every image of ``dataset`` (each process its share, ``rank::world_size``), gather
    the predictions on every process and evaluate them on rank 0 (others get None).

    ``model`` must be in eval mode (an :func:`inference_model`)."""
    mine = list(range(info.rank, len(dataset), info.world_size))
    preds = []
    for i in mine:
        out = model([image_tensor(dataset.images[i]).to(device)])[0]
        preds.append(
            (
                i,
                out["boxes"].float().cpu(),
                out["scores"].float().cpu(),
                (out["labels"] - 1).cpu(),
            )
        )
    gathered = _all_gather(preds, info)
    if not info.main:
        return None
    ordered: list[Prediction | None] = [None] * len(dataset)
    for part in gathered:
        for i, boxes, scores, labels in part:
            ordered[i] = Prediction(boxes, scores, labels)
    assert all(p is not None for p in ordered)
    return evaluate_predictions(dataset, ordered)  # type: ignore[arg-type]


# -- the training loop ---------------------------------------------------------------------


def _resolve_splits(settings: FinetuneSettings) -> tuple[DetectionDataset, DetectionDataset, list]:
    notes = []
    classes = parse_classes(settings.classes)
    root = Path(settings.data)
    train_split = "train" if has_split(root, settings.format, "train") else "all"
    val_split = "val" if has_split(root, settings.format, "val") else "all"
    train = load_dataset(root, settings.format, classes, train_split)
    val = load_dataset(root, settings.format, classes, val_split)
    if train_split == "all":
        notes.append(_("no train split file: training on every image"))
    if val_split == "all":
        notes.append(_("no val split file: evaluating on every image (the training images)"))
    if not any(len(r.boxes) for r in train.images):
        raise FinetuneError(
            _("{root}: the training images hold no box of {classes}").format(
                root=root, classes=", ".join(train.classes)
            )
        )
    return train, val, notes


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def run_finetune(
    settings: FinetuneSettings,
    progress: ProgressCallback | None = None,
    cancel: threading.Event | None = None,
    echo: Callable[[str], None] | None = None,
) -> FinetuneResult:
    """Train as the module docstring says; under torchrun, as one of its processes.

    Args:
        progress: called on rank 0 with every log event (the ``metrics.jsonl`` lines, and
            ``{"mode": "start", ...}`` first).
        cancel: set it to stop after the current iteration (single process only); the weights
            reached are saved to ``OUT/cancelled.pt``.
        echo: where rank 0's human-readable log lines go (the CLI: stderr).

    Raises:
        FinetuneError, DatasetError: bad settings, data or weights (one line).
    """
    settings.check()
    started = time.perf_counter()
    info, device = init_distributed(settings.device)
    logs = None
    try:
        train_set, val_set, notes = _resolve_splits(settings)
        classes = train_set.classes
        class_names = (BACKGROUND, *classes)
        out = Path(settings.out)
        resume_state = _read_resume(settings, class_names) if settings.resume else None
        if resume_state is not None:
            start = StartingPoint(resume_state["model"], "resume", f"resuming {settings.resume}")
        else:
            start = initial_model(settings, classes)
        model = start.model.to(device)
        trainable_bn = any(isinstance(m, nn.BatchNorm2d) for m in model.modules())
        use_amp = bool(settings.amp if settings.amp is not None else device.type == "cuda")
        use_amp = use_amp and device.type == "cuda"
        _seed_everything(settings.seed + info.rank)
        base_lr = settings.learning_rate(info.world_size)
        params = [p for p in model.parameters() if p.requires_grad]
        optimizer = torch.optim.SGD(
            params, lr=base_lr, momentum=settings.momentum, weight_decay=settings.weight_decay
        )
        scaler = torch.amp.GradScaler("cuda", enabled=use_amp)
        first_epoch, iteration, best_map50 = 1, 0, -1.0
        if resume_state is not None:
            optimizer.load_state_dict(resume_state["optimizer"])
            if resume_state.get("scaler"):
                scaler.load_state_dict(resume_state["scaler"])
            first_epoch = int(resume_state["epoch"]) + 1
            iteration = int(resume_state["iteration"])
            best_map50 = float(resume_state.get("best_map50") or -1.0)
        train_model: nn.Module = model
        if info.distributed:
            train_model = nn.parallel.DistributedDataParallel(
                model, device_ids=[device.index] if device.type == "cuda" else None
            )
        sampler = DistributedSampler(
            _TrainImages(train_set),
            num_replicas=info.world_size,
            rank=info.rank,
            shuffle=True,
            seed=settings.seed,
        )
        workers = (
            settings.workers
            if settings.workers is not None
            else (2 if device.type == "cuda" else 0)
        )
        loader = DataLoader(
            _TrainImages(train_set),
            batch_size=settings.batch_size,
            sampler=sampler,
            num_workers=workers,
            collate_fn=_collate,
            pin_memory=device.type == "cuda",
        )
        per_epoch = len(loader)
        total = per_epoch * settings.epochs
        if settings.max_iters is not None:
            total = min(total, settings.max_iters)
        logs = _Logs(out, info.main, append=resume_state is not None)
        flip_gen = torch.Generator()
        say = echo if (echo is not None and info.main) else (lambda _line: None)
        emit = progress if (progress is not None and info.main) else (lambda _event: None)
        kwargs = settings.model_kwargs()
        start_event = {
            "mode": "start",
            "iteration": iteration,
            "total_iterations": total,
            "iterations_per_epoch": per_epoch,
            "epochs": settings.epochs,
            "lr": base_lr,
            "world_size": info.world_size,
            "device": str(device),
            "amp": use_amp,
            "weights": start.weights,
            "note": start.note,
            "train_images": len(train_set),
            "val_images": len(val_set),
            "classes": list(classes),
            "notes": notes,
        }
        emit(start_event)
        say(f"{start.note}")
        for line in notes:
            say(f"note: {line}")
        say(
            f"{len(train_set)} training images, {len(val_set)} validation images, classes "
            f"{', '.join(classes)}; {info.world_size} process(es) on {device}, lr {base_lr:g}"
        )
        checkpoints: list[Path] = []
        best: Path | None = None
        evaluation: EvaluationResult | None = None

        def run_eval(epoch: int) -> EvaluationResult | None:
            t0 = time.perf_counter()
            copy = inference_model(model, settings.model, len(class_names), kwargs).to(device)
            result = evaluate_model(copy, val_set, device, info)
            if info.main and result is not None:
                event = {
                    "mode": "val",
                    "epoch": epoch,
                    "iteration": iteration,
                    **result.to_dict(),
                    "time": time.perf_counter() - t0,
                }
                logs.write(event)
                emit(event)
                say(
                    f"Epoch(val) [{epoch}] mAP@0.5: {_fmt(result.map50)}, "
                    f"mAP@[.5:.95]: {_fmt(result.map)}"
                )
            return result

        def checkpoint(
            path: Path, epoch: int, result: EvaluationResult | None, resumable: bool = True
        ) -> None:
            """Write a checkpoint (rank 0); ``resumable`` adds the optimizer and scaler state,
            which doubles its size (best.pt, meant for inference, goes without)."""
            if not info.main:
                return
            save_checkpoint(
                path,
                model,
                settings.model,
                class_names,
                settings=settings.to_dict(),
                model_kwargs=kwargs,
                epoch=epoch,
                iteration=iteration,
                optimizer=optimizer.state_dict() if resumable else None,
                scaler=scaler.state_dict() if (use_amp and resumable) else None,
                map50=result.map50 if result is not None else None,
                map=result.map if result is not None else None,
                best_map50=best_map50 if best_map50 >= 0 else None,
                world_size=info.world_size,
                # Trained from random weights, the backbone's BatchNorm layers learn (a resume
                # rebuilds them so); from COCO weights they are frozen, as torchvision does.
                trainable_batchnorm=trainable_bn,
            )
            checkpoints.append(path)

        if settings.eval_at_start and settings.evaluate and resume_state is None:
            run_eval(0)
        window: list[float] = []
        window_losses: dict[str, list[float]] = {}
        cancelled = False
        completed = first_epoch - 1
        tick = time.perf_counter()
        for epoch in range(first_epoch, settings.epochs + 1):
            if iteration >= total:
                break
            sampler.set_epoch(epoch)
            # Seeded per epoch (and process): a resumed run draws the same flips and the same
            # RPN / RoI samples as an uninterrupted one.
            epoch_seed = _epoch_seed(settings.seed, info.rank, epoch)
            flip_gen.manual_seed(epoch_seed)
            torch.manual_seed(epoch_seed)
            train_model.train()
            for step, (images, targets) in enumerate(loader, start=1):
                factor = lr_factor(iteration, epoch, settings)
                for group in optimizer.param_groups:
                    group["lr"] = base_lr * factor
                images, targets = _to_device(images, targets, device, flip_gen, settings.hflip)
                with torch.autocast(device.type, enabled=use_amp):
                    loss_dict = train_model(images, targets)
                loss = sum(loss_dict.values())
                optimizer.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()
                if settings.clip_grad_norm > 0:
                    scaler.unscale_(optimizer)
                    nn.utils.clip_grad_norm_(params, settings.clip_grad_norm)
                scaler.step(optimizer)
                scaler.update()
                values = _reduce_losses(loss_dict, info, device)
                if not math.isfinite(values["loss"]):
                    raise FinetuneError(
                        _(
                            "the loss became {loss} at iteration {iteration}; lower --lr, add "
                            "--warmup-iters or set --clip-grad-norm"
                        ).format(loss=values["loss"], iteration=iteration + 1)
                    )
                iteration += 1
                now = time.perf_counter()
                window.append(now - tick)
                tick = now
                for key, value in values.items():
                    window_losses.setdefault(key, []).append(value)
                if iteration % settings.log_interval == 0 or iteration == total:
                    seconds = sum(window) / len(window)
                    event = {
                        "mode": "train",
                        "epoch": epoch,
                        "iter": step,
                        "iterations_per_epoch": per_epoch,
                        "iteration": iteration,
                        "total_iterations": total,
                        "lr": base_lr * factor,
                        **{k: float(np.mean(v)) for k, v in window_losses.items()},
                        "time": seconds,
                        "images_per_s": settings.batch_size * info.world_size / seconds,
                        "eta": seconds * (total - iteration),
                    }
                    logs.write(event)
                    emit(event)
                    say(_train_line(event))
                    window, window_losses = [], {}
                if cancel is not None and cancel.is_set():
                    cancelled = True
                    break
                if iteration >= total:
                    break
            if cancelled:
                break
            completed = epoch
            last = epoch == settings.epochs or iteration >= total
            result = None
            if settings.evaluate and (last or epoch % settings.eval_interval == 0):
                result = run_eval(epoch)
                if result is not None:
                    evaluation = result
                    if (
                        settings.save_best
                        and result.map50 is not None
                        and result.map50 > best_map50
                    ):
                        best_map50 = result.map50
                        best = out / "best.pt"
                        checkpoint(best, epoch, result, resumable=False)
            if last or epoch % settings.checkpoint_interval == 0:
                checkpoint(out / f"epoch_{epoch}.pt", epoch, result)
            tick = time.perf_counter()
            if last:
                break
        if cancelled:
            checkpoint(out / "cancelled.pt", completed, None)
            say(f"cancelled at iteration {iteration}; weights saved to {out / 'cancelled.pt'}")
        if info.distributed:
            dist.barrier()
        return FinetuneResult(
            out=out,
            classes=tuple(classes),
            checkpoints=tuple(checkpoints),
            best=best,
            evaluation=evaluation,
            iterations=iteration,
            epochs=completed,
            cancelled=cancelled,
            seconds=time.perf_counter() - started,
            notes=tuple(notes),
        )
    finally:
        if logs is not None:
            logs.close()
        if info.distributed and dist.is_initialized():
            dist.destroy_process_group()


def _epoch_seed(seed: int, rank: int, epoch: int) -> int:
    return (seed * 1_000_003 + epoch * 1_009 + rank) % 2**63


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4f}"


def _train_line(event: Event) -> str:
    """MMDetection's text log line: ``Epoch [1][10/25]  lr: ..., eta: ..., time: ..., losses``."""
    eta = int(event["eta"])
    losses = ", ".join(f"{k}: {event[k]:.4f}" for k in (*LOSS_NAMES, "loss"))
    return (
        f"Epoch [{event['epoch']}][{event['iter']}/{event['iterations_per_epoch']}]\t"
        f"lr: {event['lr']:.3e}, eta: {eta // 3600}:{eta // 60 % 60:02d}:{eta % 60:02d}, "
        f"time: {event['time']:.3f}, {losses}"
    )


def _to_device(images, targets, device: torch.device, gen: torch.Generator, p_flip: float):
    out_images, out_targets = [], []
    for image, target in zip(images, targets, strict=True):
        boxes = target["boxes"]
        if p_flip > 0 and torch.rand(1, generator=gen).item() < p_flip:
            image, boxes = hflip(image, boxes)
        out_images.append(image.to(device, non_blocking=True))
        out_targets.append({"boxes": boxes.to(device), "labels": target["labels"].to(device)})
    return out_images, out_targets


def _reduce_losses(loss_dict: dict, info: DistInfo, device: torch.device) -> dict[str, float]:
    """The losses averaged over processes (what the log shows), as floats."""
    names = [k for k in LOSS_NAMES if k in loss_dict]
    stacked = torch.stack([loss_dict[k].detach().float() for k in names])
    if info.distributed:
        dist.all_reduce(stacked)
        stacked /= info.world_size
    values = dict(zip(names, stacked.tolist(), strict=True))
    values["loss"] = float(sum(values.values()))
    return values


def _read_resume(settings: FinetuneSettings, class_names: tuple[str, ...]) -> dict:
    """The model and the training state of a checkpoint to resume."""
    from frcnn_core.detectors import CHECKPOINT_FORMAT

    path = Path(settings.resume or "")
    if not path.is_file():
        raise FinetuneError(_("checkpoint to resume not found: {path}").format(path=path))
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # any unreadable file is one message
        raise FinetuneError(
            _("{name} is not a checkpoint that can be read").format(name=path.name)
        ) from None
    if not isinstance(obj, dict) or obj.get("format") != CHECKPOINT_FORMAT:
        raise FinetuneError(
            _("{name} is not a {format} checkpoint").format(
                name=path.name, format=CHECKPOINT_FORMAT
            )
        )
    if obj.get("model") != settings.model:
        raise FinetuneError(
            _("{name} is for {model}; use --model {model}").format(
                name=path.name, model=obj.get("model")
            )
        )
    if tuple(obj.get("class_names") or ()) != class_names:
        raise FinetuneError(
            _("{name} was trained for classes {saved}, this dataset has {classes}").format(
                name=path.name,
                saved=(obj.get("class_names") or [None])[1:],
                classes=list(class_names[1:]),
            )
        )
    if not obj.get("optimizer") or "epoch" not in obj:
        raise FinetuneError(
            _("{name} holds no training state to resume (no optimizer)").format(name=path.name)
        )
    saved = obj.get("settings") or {}
    if obj.get("trainable_batchnorm"):
        model = _random_model(settings, len(class_names))
    else:
        layers = saved.get("trainable_backbone_layers")
        extra = {} if layers is None else {"trainable_backbone_layers": layers}
        model = build_model(settings.model, len(class_names), **extra, **settings.model_kwargs())
    try:
        model.load_state_dict(obj["state_dict"])
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[-1][:160]
        raise FinetuneError(
            _("{name} does not fit {model}: {reason}").format(
                name=path.name, model=settings.model, reason=first
            )
        ) from None
    obj["model"] = model.train()
    return obj


# -- a job for the app -------------------------------------------------------------------------


@dataclass(frozen=True)
class JobProgress:
    """A snapshot of a :class:`TrainingJob` for a page to draw.

    Attributes:
        state: ``"pending"``, ``"running"``, ``"finished"``, ``"cancelled"`` or ``"failed"``.
        iteration, total_iterations, epoch, epochs: where training is.
        losses: the latest logged losses (``loss``, ``loss_classifier``, ...).
        loss_history: (iteration, losses) per log line, oldest first.
        seconds_per_iteration: over the last log interval; eta_seconds: time left (iterations
            only, evaluation not included); elapsed_seconds: since start.
        evaluations: (epoch, iteration, map50, map) per evaluation.
        message: the error for ``"failed"``; note: where the weights came from.
        result: the :class:`FinetuneResult` once finished or cancelled.
    """

    state: str
    iteration: int = 0
    total_iterations: int = 0
    epoch: int = 0
    epochs: int = 0
    losses: dict = field(default_factory=dict)
    loss_history: tuple[tuple[int, dict], ...] = ()
    seconds_per_iteration: float | None = None
    eta_seconds: float | None = None
    elapsed_seconds: float = 0.0
    evaluations: tuple[tuple[int, int, float | None, float | None], ...] = ()
    message: str = ""
    note: str = ""
    result: FinetuneResult | None = None

    @property
    def done(self) -> bool:
        return self.state in ("finished", "cancelled", "failed")


class TrainingJob:
    """One fine-tuning run in a background thread, polled by a page.

    ``job = TrainingJob(settings); job.start()``, then ``job.progress()`` whenever the page
    redraws, ``job.cancel()`` to stop (the weights reached are saved to ``OUT/cancelled.pt``).
    Nothing a page does blocks on the training; a failure becomes ``state="failed"`` with a
    one-line ``message``, never an exception in the page.
    """

    def __init__(self, settings: FinetuneSettings) -> None:
        self.settings = settings
        self._cancel = threading.Event()
        self._lock = threading.Lock()
        self._progress = JobProgress(state="pending", epochs=settings.epochs)
        self._thread: threading.Thread | None = None
        self._started = 0.0

    def start(self) -> None:
        """Start training in a daemon thread (once)."""
        with self._lock:
            if self._thread is not None:
                return
            self._started = time.perf_counter()
            self._progress = replace(self._progress, state="running")
            self._thread = threading.Thread(target=self._run, name="finetune", daemon=True)
        self._thread.start()

    def cancel(self) -> None:
        """Ask the run to stop after its current iteration."""
        self._cancel.set()

    def progress(self) -> JobProgress:
        """The latest snapshot (cheap; safe from any thread)."""
        with self._lock:
            elapsed = time.perf_counter() - self._started if self._started else 0.0
            return replace(self._progress, elapsed_seconds=elapsed)

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the run ends (for scripts and tests); True when it has."""
        if self._thread is None:
            return False
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def _update(self, **changes) -> None:
        with self._lock:
            self._progress = replace(self._progress, **changes)

    def _on_event(self, event: Event) -> None:
        mode = event["mode"]
        if mode == "start":
            self._update(
                total_iterations=event["total_iterations"],
                iteration=event["iteration"],
                note=event["note"],
            )
        elif mode == "train":
            losses = {k: event[k] for k in ("loss", *LOSS_NAMES) if k in event}
            with self._lock:
                p = self._progress
                self._progress = replace(
                    p,
                    iteration=event["iteration"],
                    total_iterations=event["total_iterations"],
                    epoch=event["epoch"],
                    losses=losses,
                    loss_history=(*p.loss_history, (event["iteration"], losses)),
                    seconds_per_iteration=event["time"],
                    eta_seconds=event["eta"],
                )
        elif mode == "val":
            with self._lock:
                p = self._progress
                entry = (event["epoch"], event["iteration"], event["map50"], event["map"])
                self._progress = replace(p, evaluations=(*p.evaluations, entry))

    def _run(self) -> None:
        try:
            result = run_finetune(self.settings, progress=self._on_event, cancel=self._cancel)
        except (ValueError, OSError) as exc:  # DatasetError, FinetuneError, disk full, ...
            message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            self._update(state="failed", message=message)
            return
        except Exception as exc:  # a page must show a line, not lose the thread silently
            self._update(state="failed", message=f"{type(exc).__name__}: {exc}".splitlines()[0])
            return
        self._update(
            state="cancelled" if result.cancelled else "finished",
            result=result,
            eta_seconds=0.0,
        )
