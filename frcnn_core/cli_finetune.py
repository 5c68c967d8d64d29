"""Command line for datasets, fine-tuning and evaluation.

    python -m frcnn_core dataset-info --data DIR [--format kitti|coco|voc|yolo] [--split S]
    python -m frcnn_core make-dataset --out DIR [--images 200] [--seed 0]
    python -m frcnn_core fetch-dataset kitti-tiny --out DIR
    python -m frcnn_core finetune --data DIR --out OUT [--model NAME] [--epochs 12] ...
    torchrun --nproc_per_node=N -m frcnn_core finetune --data DIR --out OUT ...
    python -m frcnn_core evaluate --data DIR (--checkpoint CKPT | --predictions PRED.json)

``dataset-info`` prints ``{"images", "classes", "boxes_per_class", "ignored", ...}``;
``evaluate`` prints ``{"map50", "map", "per_class": {name: {"ap50", "ap"}}}`` (``null`` for a
class without ground truth, which does not count in the means); ``finetune`` prints the last
evaluation with the checkpoints written. See :mod:`frcnn_core.finetune` for the several-machine
torchrun command. Bad input exits with status 2 and one line on stderr.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import sys
from collections.abc import Callable

import torch

from frcnn_core.dataset_fetch import FetchError, fetch_kitti_tiny
from frcnn_core.datasets import FORMATS, DatasetError, load_dataset, parse_classes, summarize
from frcnn_core.detectors import MODELS, DetectorWeightsError, DeviceError
from frcnn_core.evaluate import (
    EvaluationError,
    evaluate_checkpoint,
    evaluate_predictions,
    read_predictions_json,
)
from frcnn_core.finetune import FinetuneError, FinetuneSettings, run_finetune
from frcnn_core.i18n import _
from frcnn_core.synthetic_dataset import SyntheticSettings, make_dataset

_ERRORS = (
    DatasetError,
    EvaluationError,
    FinetuneError,
    FetchError,
    DetectorWeightsError,
    DeviceError,
)


def _rank0() -> bool:
    return os.environ.get("RANK", "0") == "0"


def _one_line(command: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """Every failure the user can fix becomes ``error: ...`` on stderr and exit status 2
    (printed by rank 0 only under torchrun: every process meets the same error)."""

    @functools.wraps(command)
    def run(args: argparse.Namespace) -> int:
        try:
            return command(args)
        except _ERRORS as exc:
            message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        except OSError as exc:
            where = f" ({exc.filename})" if exc.filename else ""
            message = f"{exc.strerror or exc}{where}"
        except torch.cuda.OutOfMemoryError:
            message = _("out of GPU memory; lower --batch-size or --max-size, or use --device cpu")
        if _rank0():
            print(_("error: {message}").format(message=message), file=sys.stderr)
        return 2

    return run


def _print_json(obj: dict) -> None:
    if _rank0():
        print(json.dumps(obj, indent=2))


@_one_line
def dataset_info(args: argparse.Namespace) -> int:
    data = load_dataset(args.data, args.format, args.classes, args.split)
    for note in data.notes:
        print(_("note: {note}").format(note=note), file=sys.stderr)
    _print_json(summarize(data).to_dict())
    return 0


@_one_line
def make_dataset_command(args: argparse.Namespace) -> int:
    settings = SyntheticSettings(
        images=args.images, width=args.size, height=args.size, seed=args.seed
    )
    try:
        settings.check()
    except ValueError as exc:
        raise DatasetError(str(exc)) from None
    root = make_dataset(args.out, settings)
    _print_json(summarize(load_dataset(root, "kitti", split="all")).to_dict())
    return 0


@_one_line
def fetch_dataset(args: argparse.Namespace) -> int:
    data = fetch_kitti_tiny(args.out)
    print(_("KITTI-tiny unpacked to {path}").format(path=data.root), file=sys.stderr)
    _print_json(summarize(data).to_dict())
    return 0


def _settings(args: argparse.Namespace) -> FinetuneSettings:
    try:
        steps = tuple(int(s) for s in args.lr_steps.split(",") if s.strip())
    except ValueError:
        raise FinetuneError(
            _("--lr-steps takes epochs like 8,11, got {value!r}").format(value=args.lr_steps)
        ) from None
    settings = FinetuneSettings(
        data=args.data,
        out=args.out,
        format=args.format,
        classes=parse_classes(args.classes),
        model=args.model,
        weights=args.weights,
        load_from=args.load_from,
        resume=args.resume,
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        momentum=args.momentum,
        weight_decay=args.weight_decay,
        warmup_iters=args.warmup_iters,
        warmup_factor=args.warmup_factor,
        lr_steps=steps,
        gamma=args.gamma,
        clip_grad_norm=args.clip_grad_norm,
        amp=args.amp,
        hflip=args.hflip,
        min_size=args.min_size,
        max_size=args.max_size,
        rois_per_image=args.rois_per_image,
        proposals=args.proposals,
        trainable_backbone_layers=args.trainable_backbone_layers,
        seed=args.seed,
        eval_interval=args.eval_interval,
        checkpoint_interval=args.checkpoint_interval,
        eval_at_start=args.eval_at_start,
        evaluate=not args.no_eval,
        save_best=not args.no_save_best,
        log_interval=args.log_interval,
        max_iters=args.max_iters,
        workers=args.workers,
        device=args.device,
    )
    settings.check()
    return settings


@_one_line
def finetune(args: argparse.Namespace) -> int:
    settings = _settings(args)
    if args.threads is not None:
        if args.threads < 1:
            raise FinetuneError(_("--threads must be at least 1"))
        torch.set_num_threads(args.threads)
    result = run_finetune(settings, echo=lambda line: print(line, file=sys.stderr, flush=True))
    report = result.evaluation.to_dict() if result.evaluation is not None else {}
    report.update(
        out=str(result.out),
        checkpoints=[str(p) for p in result.checkpoints],
        best=str(result.best) if result.best else None,
        iterations=result.iterations,
        epochs=result.epochs,
        seconds=round(result.seconds, 1),
    )
    _print_json(report)
    return 0


@_one_line
def evaluate(args: argparse.Namespace) -> int:
    data = load_dataset(args.data, args.format, args.classes, args.split)
    if args.checkpoint:
        result = evaluate_checkpoint(args.checkpoint, data, args.device)
    else:
        result = evaluate_predictions(data, read_predictions_json(args.predictions, data))
    _print_json(result.to_dict(curves=args.curves))
    return 0


def _data_args(p: argparse.ArgumentParser, split_help: str | None) -> None:
    p.add_argument("--data", required=True, help=_("dataset folder (or a COCO JSON file)"))
    p.add_argument(
        "--format",
        default="auto",
        help=_("{formats} (default: recognised from the layout)").format(
            formats=" | ".join(FORMATS)
        ),
    )
    p.add_argument(
        "--classes",
        help=_(
            "class names A,B,... (default: the dataset's; KITTI: Car,Pedestrian,Cyclist); "
            "boxes of other classes become ignored boxes"
        ),
    )
    if split_help is not None:  # finetune picks its splits itself: train and val
        p.add_argument("--split", default=None, help=split_help)


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``dataset-info``, ``make-dataset``, ``fetch-dataset``, ``finetune`` and ``evaluate``."""
    raw = argparse.RawDescriptionHelpFormatter
    p = sub.add_parser("dataset-info", help=_("summarise a detection dataset as JSON"))
    _data_args(p, _("train, val or all (default: val where a val split exists, else all)"))
    p.set_defaults(func=dataset_info)

    p = sub.add_parser(
        "make-dataset",
        help=_("draw the small offline dataset (KITTI layout: Car, Pedestrian, ...)"),
    )
    p.add_argument("--out", required=True, help=_("folder to write (created)"))
    p.add_argument(
        "--images", type=int, default=SyntheticSettings.images, help=_("number of images")
    )
    p.add_argument("--size", type=int, default=SyntheticSettings.width, help=_("image side (px)"))
    p.add_argument("--seed", type=int, default=0, help=_("seed of the drawing"))
    p.set_defaults(func=make_dataset_command)

    p = sub.add_parser(
        "fetch-dataset", help=_("download the tutorial's KITTI-tiny (needs a network)")
    )
    p.add_argument("name", choices=("kitti-tiny",), help=_("the dataset"))
    p.add_argument("--out", required=True, help=_("new folder for the dataset"))
    p.set_defaults(func=fetch_dataset)

    from frcnn_core import finetune as ft

    d = FinetuneSettings(data="", out="")
    p = sub.add_parser(
        "finetune",
        help=_(
            "fine-tune a torchvision Faster R-CNN on a dataset (torchrun for several processes)"
        ),
        description=ft.__doc__,
        formatter_class=raw,
    )
    _data_args(p, None)
    p.add_argument(
        "--out", required=True, help=_("folder for checkpoints, metrics.jsonl, tf_logs/")
    )
    p.add_argument("--model", default=d.model, help=" | ".join(MODELS))
    p.add_argument(
        "--weights",
        default=d.weights,
        help=_(
            "auto | coco | random: start from COCO weights (auto: COCO if found, else random "
            "weights with a notice)"
        ),
    )
    p.add_argument("--load-from", help=_("start from this checkpoint or state_dict instead"))
    p.add_argument("--resume", help=_("continue this training from one of its checkpoints"))
    p.add_argument("--epochs", type=int, default=d.epochs, help=_("epochs to train"))
    p.add_argument("--batch-size", type=int, default=d.batch_size, help=_("images per process"))
    p.add_argument(
        "--lr",
        type=float,
        default=None,
        help=_("learning rate (default: 0.02 x batch size x processes / 16; 2 images: 0.0025)"),
    )
    p.add_argument("--momentum", type=float, default=d.momentum, help=_("SGD momentum"))
    p.add_argument("--weight-decay", type=float, default=d.weight_decay, help=_("SGD weight decay"))
    p.add_argument(
        "--warmup-iters",
        type=int,
        default=d.warmup_iters,
        help=_("warm-up iterations (0: no warm-up)"),
    )
    p.add_argument(
        "--warmup-factor",
        type=float,
        default=d.warmup_factor,
        help=_("the learning rate's factor at the start of the warm-up"),
    )
    p.add_argument(
        "--lr-steps",
        default=",".join(str(s) for s in d.lr_steps),
        help=_("epochs after which the rate is multiplied by --gamma"),
    )
    p.add_argument(
        "--gamma", type=float, default=d.gamma, help=_("factor of the learning rate at each step")
    )
    p.add_argument(
        "--clip-grad-norm",
        type=float,
        default=d.clip_grad_norm,
        help=_("clip the gradient's norm to this (0: off)"),
    )
    p.add_argument(
        "--amp",
        action=argparse.BooleanOptionalAction,
        default=None,
        help=_("mixed precision (default: on with CUDA)"),
    )
    p.add_argument("--hflip", type=float, default=d.hflip, help=_("horizontal flip probability"))
    p.add_argument("--min-size", type=int, default=d.min_size, help=_("resize: shorter side"))
    p.add_argument(
        "--max-size", type=int, default=d.max_size, help=_("resize: longer side at most")
    )
    p.add_argument(
        "--rois-per-image",
        type=int,
        default=d.rois_per_image,
        help=_("RoIs sampled per image for the head's loss"),
    )
    p.add_argument("--proposals", type=int, default=None, help=_("RPN proposals per image"))
    p.add_argument(
        "--trainable-backbone-layers",
        type=int,
        default=None,
        help=_("how many of the backbone's last layers are trained"),
    )
    p.add_argument("--seed", type=int, default=d.seed, help=_("random seed"))
    p.add_argument(
        "--eval-interval", type=int, default=d.eval_interval, help=_("evaluate every N epochs")
    )
    p.add_argument(
        "--checkpoint-interval",
        type=int,
        default=d.checkpoint_interval,
        help=_("save a checkpoint every N epochs"),
    )
    p.add_argument(
        "--eval-at-start", action="store_true", help=_("evaluate the untrained model too")
    )
    p.add_argument("--no-eval", action="store_true", help=_("no evaluation (benchmarks)"))
    p.add_argument("--no-save-best", action="store_true", help=_("do not write best.pt"))
    p.add_argument(
        "--log-interval",
        type=int,
        default=d.log_interval,
        help=_("print the losses every N iterations"),
    )
    p.add_argument("--max-iters", type=int, default=None, help=_("stop after this many iterations"))
    p.add_argument("--workers", type=int, default=None, help=_("data loader processes"))
    p.add_argument("--device", default=None, help=_("cpu or cuda (default: cuda when available)"))
    p.add_argument(
        "--threads",
        type=int,
        default=None,
        help=_(
            "CPU threads of this process (default: torch's, one per core; torchrun: 1). On a "
            "CPU that other programs keep busy, 1 is often several times faster"
        ),
    )
    p.set_defaults(func=finetune)

    p = sub.add_parser(
        "evaluate",
        help=_("mAP@0.5 and COCO mAP of a checkpoint or of COCO-format predictions"),
    )
    _data_args(p, _("train, val or all (default: val where a val split exists, else all)"))
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--checkpoint", help=_("a fine-tuned checkpoint (or state_dict)"))
    source.add_argument(
        "--predictions",
        help=_(
            "COCO results JSON: image_id = file name stem, category_id = class index, "
            "bbox = [x, y, w, h] pixels, score"
        ),
    )
    p.add_argument("--curves", action="store_true", help=_("add precision-recall curves"))
    p.add_argument("--device", default=None, help=_("cpu or cuda (default: cuda when available)"))
    p.set_defaults(func=evaluate)
