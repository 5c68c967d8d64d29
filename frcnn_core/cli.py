"""Command line: ``python -m frcnn_core summarize | render | train``.

    python -m frcnn_core summarize --image sample_images/zebras.jpg \
        --boxes sample_images/zebras.json
    python -m frcnn_core render --image IMG --boxes BOXES.json --out slides/
    python -m frcnn_core train --image IMG --boxes BOXES.json --iterations 60 --out heads.pt

Bad input exits with status 2 and one line on stderr.

``--lang en|ko`` (before or after the command; default ``$FRCNN_LANG``, else Korean when the
POSIX locale, ``LC_ALL`` / ``LC_MESSAGES`` / ``LANG``, is Korean, else English) is the language
of the messages, the help and the PNGs' text; the JSON printed on stdout is the same in both.
"""

from __future__ import annotations

import argparse
import contextvars
import json
import os
import sys
from collections.abc import Mapping
from pathlib import Path

import cv2
import torch

from frcnn_core import cli_finetune, cli_production
from frcnn_core import params as settings
from frcnn_core.backbone import Backbone, WeightsError, load_backbone
from frcnn_core.device import default_device
from frcnn_core.graph import Run
from frcnn_core.ground_truth import BoxesError, read_boxes_file
from frcnn_core.i18n import LANGUAGES, N_, _, normalise, set_language
from frcnn_core.image import ImageError, load_image
from frcnn_core.params import PipelineParams
from frcnn_core.pipeline import DetectorHeads, UserBoxes, run, summary
from frcnn_core.safe_io import InputError, check_writable, rescue, write_atomic
from frcnn_core.train import Trainer, TrainParams, TrainSample, detection_overlap, heads_to_bytes

LANG_ENV = "FRCNN_LANG"
# POSIX: the first of these that is set decides the messages' locale.
LOCALE_ENVS = ("LC_ALL", "LC_MESSAGES", "LANG")


class UsageError(ValueError):
    """Bad input the user can fix; printed as one line."""


def _overrides(pairs: list[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name.strip():
            raise UsageError(_("--set takes name=value, got {pair!r}").format(pair=pair))
        out[name.strip()] = value.strip()
    return out


def _params(args: argparse.Namespace) -> PipelineParams:
    params = PipelineParams().with_seed(args.seed)
    try:
        return params.with_overrides(_overrides(args.set or []))
    except ValueError as exc:
        raise UsageError(str(exc)) from exc


def _device(args: argparse.Namespace) -> torch.device:
    """``--device``, checked: a device torch knows and this machine has."""
    if not args.device:
        return default_device()
    try:
        device = torch.device(args.device)
    except (RuntimeError, ValueError):
        raise UsageError(
            _("--device {device!r} is not a device (use cpu or cuda)").format(device=args.device)
        ) from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UsageError(
            _("--device {device}: this machine has no CUDA GPU (use cpu)").format(
                device=args.device
            )
        )
    if device.type == "cuda" and (device.index or 0) >= torch.cuda.device_count():
        n = torch.cuda.device_count()
        raise UsageError(
            _("--device {device}: this machine has {n} CUDA GPU(s)").format(device=args.device, n=n)
        )
    if device.type not in ("cpu", "cuda"):
        raise UsageError(
            _("--device {device!r}: only cpu and cuda are supported").format(device=args.device)
        )
    return device


def _backbone(args: argparse.Namespace, device: torch.device) -> Backbone:
    try:
        backbone = load_backbone(args.weights, seed=args.seed)
    except WeightsError as exc:
        raise UsageError(str(exc)) from exc
    if backbone.weights == "random":
        print(_("warning: {note}").format(note=backbone.note), file=sys.stderr)
    backbone.features.to(device)
    return backbone


def _run(args: argparse.Namespace) -> tuple[Run, Backbone]:
    params = _params(args)
    device = _device(args)
    try:
        loaded = load_image(args.image)
        boxes, labels = read_boxes_file(args.boxes)
    except (ImageError, BoxesError) as exc:
        raise UsageError(str(exc)) from exc
    backbone = _backbone(args, device)
    result = run(loaded, UserBoxes(tuple(boxes), tuple(labels)), backbone, params, seed=args.seed)
    for note in loaded.notes + result.ground_truth.notes:
        print(_("note: {note}").format(note=note), file=sys.stderr)
    return result, backbone


def summarize(args: argparse.Namespace) -> int:
    result, backbone = _run(args)
    print(json.dumps(summary(result, backbone.weights), indent=2))
    return 0


def render(args: argparse.Namespace) -> int:
    from frcnn_core import render as pictures

    out = Path(args.out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(
            _("cannot create {path}: {reason}").format(path=out, reason=exc.strerror or exc)
        ) from exc
    _writable(out / "01_gt_boxes.png", "--out")
    result, _backbone = _run(args)
    for stem, image in pictures.all_stages(result).items():
        path = out / f"{stem}.png"
        cv2.imwrite(str(path), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
        print(path)
    return 0


def train(args: argparse.Namespace) -> int:
    images, boxes_files = args.image, args.boxes
    if len(images) != len(boxes_files):
        raise UsageError(_("give one --boxes per --image"))
    params = _params(args)
    out = _writable(args.out, "--out")
    log_path = _writable(args.log or out.with_suffix(".losses.json"), "--log")
    if args.iterations < 1:
        raise UsageError(_("--iterations must be at least 1"))
    if args.warmup < 0:
        raise UsageError(_("--warmup must be at least 0"))
    settings = TrainParams(
        iterations=args.iterations,
        learning_rate=args.lr,
        head_learning_rate=args.head_lr,
        momentum=args.momentum,
        weight_decay=args.weight_decay,
        warmup_iterations=args.warmup,
        max_grad_norm=args.max_grad_norm,
        standardize_fc7=not args.raw_fc7,
        train_fc=args.train_fc,
        seed=args.seed,
    )
    inputs = []
    for image_path, boxes_path in zip(images, boxes_files, strict=True):
        try:
            loaded = load_image(image_path)
            boxes, labels = read_boxes_file(boxes_path)
        except (ImageError, BoxesError) as exc:
            raise UsageError(str(exc)) from exc
        inputs.append((loaded, UserBoxes(tuple(boxes), tuple(labels))))
    device = _device(args)
    backbone = _backbone(args, device)
    runs = [run(loaded, boxes, backbone, params) for loaded, boxes in inputs]
    class_names = tuple(dict.fromkeys(x for r in runs for x in r.ground_truth.labels))
    if not class_names:
        raise UsageError(_("no boxes to train on: every boxes file is empty"))
    samples = [TrainSample.from_run(r, class_names) for r in runs]
    heads = DetectorHeads.for_params(len(class_names), params, backbone.spec, seed=args.seed)
    heads.to(device)
    before = [detection_overlap(sample, heads, params) for sample in samples]
    trainer = Trainer.create(heads, samples, params, settings)
    log = []
    try:
        while not trainer.finished():
            losses = trainer.step()
            log.append({"iteration": trainer.iteration, **losses})
            # The losses' names are the JSON log's keys: the same in every language.
            values = "  ".join(f"{k} {v:.4f}" for k, v in losses.items() if k != "seconds")
            print(
                _("iteration {iteration:4d}  {losses}  ({seconds:.2f} s)").format(
                    iteration=trainer.iteration, losses=values, seconds=losses["seconds"]
                ),
                file=sys.stderr,
            )
    except FloatingPointError as exc:
        raise UsageError(str(exc)) from exc
    trained = trainer.frozen_heads()
    after = [detection_overlap(sample, trained, params) for sample in samples]
    weights_at = _save(out, heads_to_bytes(trained, class_names), HEADS_NOT_WRITTEN)
    log_at = _save(log_path, json.dumps(log, indent=1).encode(), LOG_NOT_WRITTEN)
    seconds = [entry["seconds"] for entry in log]
    report = {
        "weights": str(weights_at),
        "log": str(log_at),
        "first": log[0],
        "last": log[-1],
        "seconds_per_iteration": sum(seconds) / len(seconds),
        "learning_rates": dict(
            zip(("rpn", "class_scores", "box_deltas"), trainer.base_rates, strict=True)
        ),
        # Per image: mean over its GT boxes of the best IoU among its best-scored detections.
        "detection_overlap": {"before": before, "after": after},
    }
    print(json.dumps(report))
    if (weights_at, log_at) != (out, log_path):
        return 2  # the work is kept, but not where it was asked for: _save said where
    return 0


def _writable(path: str | Path, option: str) -> Path:
    """``path``, once it is clear it can be written (checked before any long work)."""
    try:
        return check_writable(path, option)
    except InputError as exc:
        raise UsageError(str(exc)) from None


HEADS_NOT_WRITTEN = N_(
    "error: could not write {path} ({reason}); the trained heads were saved to {kept} instead"
)
LOG_NOT_WRITTEN = N_(
    "error: could not write {path} ({reason}); the loss log was saved to {kept} instead"
)


def _save(path: Path, data: bytes, failed: str) -> Path:
    """Write ``data`` to ``path``; when that fails after all (disk full, folder removed), keep
    it elsewhere and say where (``failed``: the message, with ``{path}``, ``{reason}`` and
    ``{kept}``). Returns where it is."""
    try:
        return write_atomic(path, data)
    except OSError as exc:
        kept = rescue(data, path.name)
        print(
            _(failed).format(path=path, reason=exc.strerror or exc, kept=kept),
            file=sys.stderr,
        )
        return kept


def _common(p: argparse.ArgumentParser, several: bool = False) -> None:
    action = "append" if several else "store"
    p.add_argument(
        "--image",
        required=True,
        action=action,
        help=_("image file (JPEG, PNG, WebP, BMP) (repeat --image and --boxes for several images)")
        if several
        else _("image file (JPEG, PNG, WebP, BMP)"),
    )
    p.add_argument(
        "--boxes",
        required=True,
        action=action,
        help=_('JSON list of {"box": [x1, y1, x2, y2], "label": "..."} in original-image pixels'),
    )
    p.add_argument("--seed", type=int, default=0, help=_("seed of sampling and random weights"))
    p.add_argument(
        "--set",
        action="append",
        metavar="NAME=VALUE",
        help=_("override a parameter, e.g. nms_iou=0.6 or proposal_targets.roi_batch_size=64"),
    )
    p.add_argument(
        "--weights",
        default="auto",
        help=_("auto (default) | imagenet | random | path to a VGG16 state_dict"),
    )
    p.add_argument("--device", default=None, help=_("cpu or cuda (default: cuda when available)"))


def default_language(environ: Mapping[str, str] = os.environ) -> str:
    """The language without ``--lang``: ``$FRCNN_LANG``; else Korean when the POSIX locale
    (the first of ``LC_ALL``, ``LC_MESSAGES``, ``LANG`` that is set) starts with ``ko``; else
    English."""
    chosen = normalise(environ.get(LANG_ENV, ""))
    if chosen is not None:
        return chosen
    for name in LOCALE_ENVS:
        value = environ.get(name, "").strip()
        if value:
            return "ko" if value.lower().startswith("ko") else "en"
    return "en"


def requested_language(argv: list[str], environ: Mapping[str, str] = os.environ) -> str:
    """The language of this command: the last ``--lang`` of ``argv`` that names one, else
    :func:`default_language`. Read before the parser is built, so that its help is in that
    language (a ``--lang`` the parser then refuses is refused in the default language)."""
    lang = None
    for i, arg in enumerate(argv):
        if arg == "--":
            break
        value = argv[i + 1] if arg == "--lang" and i + 1 < len(argv) else None
        if arg.startswith("--lang="):
            value = arg.partition("=")[2]
        if value is not None and normalise(value) is not None:
            lang = normalise(value)
    return lang or default_language(environ)


def _lang_option(p: argparse.ArgumentParser, default: object) -> None:
    p.add_argument(
        "--lang",
        type=lambda value: normalise(value) or value,  # ko_KR, KO -> ko
        choices=list(LANGUAGES),
        default=default,
        help=_(
            "language of the messages and of the pictures' text: en or ko (default: "
            "$FRCNN_LANG, else the locale's)"
        ),
    )


def build_parser() -> argparse.ArgumentParser:
    """The command line's parser, its help in the current language (:func:`main` sets it
    first)."""
    epilog = (
        _(
            "settings for --set (NAME is group.field, or the field alone when only one group "
            "has it):"
        )
        + "\n"
        + settings.describe()
    )
    parser = argparse.ArgumentParser(
        prog="python -m frcnn_core",
        description=_("Faster R-CNN, stage by stage."),
        epilog=epilog,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _lang_option(parser, None)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("summarize", help=_("print the JSON summary of every stage"))
    _common(p)
    p.set_defaults(func=summarize)
    p = sub.add_parser("render", help=_("write one PNG per stage"))
    _common(p)
    p.add_argument("--out", required=True, help=_("folder for the PNGs"))
    p.set_defaults(func=render)
    p = sub.add_parser("train", help=_("train the RPN and Fast R-CNN heads; write a weights file"))
    _common(p, several=True)
    p.add_argument("--iterations", type=int, default=60, help=_("training iterations"))
    defaults = TrainParams()
    p.add_argument(
        "--lr",
        type=float,
        default=defaults.learning_rate,
        help=_("learning rate of the RPN (and fc6/fc7 with --train-fc)"),
    )
    p.add_argument(
        "--head-lr",
        type=float,
        default=defaults.head_learning_rate,
        help=_(
            "learning rate of the head's class-score layer on standardised fc7 (its box-delta "
            "layer: this / the box loss weight; both divided by the number of images)"
        ),
    )
    p.add_argument("--momentum", type=float, default=defaults.momentum, help=_("SGD momentum"))
    p.add_argument(
        "--weight-decay", type=float, default=defaults.weight_decay, help=_("SGD weight decay")
    )
    p.add_argument(
        "--warmup",
        type=int,
        default=defaults.warmup_iterations,
        help=_("iterations over which the learning rates rise linearly to their value"),
    )
    p.add_argument(
        "--max-grad-norm",
        type=float,
        default=defaults.max_grad_norm,
        help=_("clip the gradient's norm to this (0: off)"),
    )
    p.add_argument(
        "--raw-fc7",
        action="store_true",
        help=_("train the head on raw fc7 features at --lr, as the tutorial (learns little)"),
    )
    p.add_argument("--train-fc", action="store_true", help=_("train fc6/fc7 too (slow, 470 MB)"))
    p.add_argument("--out", required=True, help=_("weights file to write (.pt)"))
    p.add_argument("--log", help=_("loss log (JSON); default: OUT with .losses.json"))
    p.set_defaults(func=train)
    cli_production.register(sub)
    cli_finetune.register(sub)
    # --lang after the command too ("detect --lang ko"); SUPPRESS keeps the global one's value.
    for command in sub.choices.values():
        _lang_option(command, argparse.SUPPRESS)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one command; returns its exit status (2: bad input, one line on stderr).

    The language (``--lang``, see :func:`requested_language`) is set in a copy of the
    caller's context, so a program or a test that calls ``main`` keeps its own language."""
    argv = sys.argv[1:] if argv is None else list(argv)
    return contextvars.copy_context().run(_main, argv)


def _main(argv: list[str]) -> int:
    set_language(requested_language(argv))
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except UsageError as exc:
        print(_("error: {message}").format(message=exc), file=sys.stderr)
        return 2
