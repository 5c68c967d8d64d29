"""Command line for the production detector: ``detect`` and ``fetch-weights``.

    python -m frcnn_core detect --image sample_images/zebras.jpg [--model NAME] \
        [--weights auto|coco|random|PATH] [--score-threshold 0.3] [--device cpu|cuda] [--out DIR]
    python -m frcnn_core fetch-weights [--model NAME|vgg16|all]

``detect`` prints one JSON object (boxes in original-image pixels, best first)::

    {"model", "weights", "image_size": [H, W], "input_size": [H, W],
     "feature_maps": {level: [C, H, W]}, "anchors_per_level": {level: int},
     "proposals": {"pre_nms": int, "post_nms": int},
     "detections": [{"box": [x1, y1, x2, y2], "label": str, "label_id": int, "score": float}]}

Notes (e.g. random weights) go to stderr. Bad input exits with status 2 and one line on stderr.
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import os
import sys
from collections.abc import Callable
from pathlib import Path

import cv2
import torch

from frcnn_core.backbone import imagenet_cache_path
from frcnn_core.detectors import (
    DEFAULT_MODEL,
    DOWNLOAD_TIMEOUT_S,
    MODELS,
    DetectorWeightsError,
    DeviceError,
    fetch_coco_weights,
    fetch_to_cache,
    load_detector,
    resolve_device,
)
from frcnn_core.device import DEVICE_ENV, device_name
from frcnn_core.i18n import _
from frcnn_core.image import ImageError, load_image
from frcnn_core.production import (
    DISPLAY_SCORE_THRESHOLD,
    InputSizeError,
    check_input_size,
    detections_at,
    image_tensor,
    run_staged,
)

VGG16 = "vgg16"


class _Usage(ValueError):
    """Bad input the user can fix; printed as one line."""


def _one_line(command: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """Turn every failure the user can fix into ``error: ...`` on stderr and exit status 2."""

    @functools.wraps(command)
    def run(args: argparse.Namespace) -> int:
        try:
            return command(args)
        except (_Usage, DetectorWeightsError, DeviceError, ImageError, InputSizeError) as exc:
            message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        except torch.cuda.OutOfMemoryError:
            message = _("out of GPU memory; try --device cpu or a smaller model")
        print(_("error: {message}").format(message=message), file=sys.stderr)
        return 2

    return run


def detection_report(run, found, detector) -> dict:
    """The ``detect`` JSON object for one staged run (see the module docstring)."""
    names = detector.class_names
    return {
        "model": detector.name,
        "weights": detector.weights,
        "image_size": list(run.input.original_size),
        "input_size": list(run.input.input_size),
        "feature_maps": run.backbone.shapes(),
        "anchors_per_level": run.anchors.counts(),
        "proposals": {"pre_nms": run.proposals.pre_nms, "post_nms": run.proposals.post_nms},
        "detections": [
            {
                "box": [round(float(v), 2) for v in box],
                "label": names[label] if 0 <= label < len(names) else str(label),
                "label_id": int(label),
                "score": float(score),
            }
            for box, score, label in zip(
                found.boxes_original.float().cpu().tolist(),
                found.scores.float().cpu().tolist(),
                found.labels.cpu().tolist(),
                strict=True,
            )
        ],
    }


@_one_line
def detect(args: argparse.Namespace) -> int:
    threshold = args.score_threshold
    if not math.isfinite(threshold) or not 0.0 <= threshold <= 1.0:
        raise _Usage(
            _("--score-threshold must be between 0 and 1, got {threshold}").format(
                threshold=threshold
            )
        )
    device = resolve_device(args.device)
    if args.half and device.type != "cuda":
        raise _Usage(_("--half needs CUDA (--device cuda)"))
    out = Path(args.out) if args.out else None
    if out is not None:
        try:
            out.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise _Usage(
                _("cannot create {path}: {reason}").format(path=out, reason=exc.strerror or exc)
            ) from None
    loaded = load_image(args.image)
    detector = load_detector(args.model, args.weights, device=device, half=args.half)
    check_input_size(detector.model.transform, *loaded.size)
    # Notes only once the input is known to be usable: a failure prints its one line alone.
    for note in loaded.notes:
        print(_("note: {note}").format(note=note), file=sys.stderr)
    wanted = os.environ.get(DEVICE_ENV, "").strip()
    if args.device is None and wanted.startswith("cuda") and device.type != "cuda":
        print(
            _("note: {env}={value} but CUDA is not available").format(env=DEVICE_ENV, value=wanted),
            file=sys.stderr,
        )
    print(_("note: running on {device}").format(device=device_name(device)), file=sys.stderr)
    said = _("warning: {note}") if detector.weights == "random" else _("note: {note}")
    print(said.format(note=detector.note), file=sys.stderr)
    image = image_tensor(loaded.pixels, device, detector.dtype)
    run = run_staged(detector.model, image)
    found = detections_at(run, threshold, detector.model)
    print(json.dumps(detection_report(run, found, detector)))
    if out is not None:
        from frcnn_core import render_production

        pictures = render_production.all_stages(
            run.to("cpu"), found, detector.class_names, loaded.pixels
        )
        for stem, picture in pictures.items():
            path = out / f"{stem}.png"
            if not cv2.imwrite(str(path), cv2.cvtColor(picture, cv2.COLOR_RGB2BGR)):
                raise _Usage(_("cannot write {path}").format(path=path))
            print(_("wrote {path}").format(path=path), file=sys.stderr)
    return 0


@_one_line
def fetch_weights(args: argparse.Namespace) -> int:
    wanted = args.model
    if wanted == "all":
        names = [*MODELS, VGG16]
    elif wanted in (*MODELS, VGG16):
        names = [wanted]
    else:
        raise _Usage(
            _("unknown model {model!r}; choose one of {models}, vgg16, all").format(
                model=wanted, models=", ".join(MODELS)
            )
        )
    for name in names:
        if name == VGG16:
            from torchvision.models import VGG16_Weights

            dest = imagenet_cache_path()
            downloaded = not dest.is_file()
            if downloaded:
                fetch_to_cache(VGG16_Weights.IMAGENET1K_V1.url, dest, DOWNLOAD_TIMEOUT_S)
        else:
            dest, downloaded = fetch_coco_weights(name)
        if downloaded:
            print(_("{name}: {path} (downloaded)").format(name=name, path=dest))
        else:
            print(_("{name}: {path} (already in the cache)").format(name=name, path=dest))
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``detect`` and ``fetch-weights`` to the ``python -m frcnn_core`` parser."""
    p = sub.add_parser(
        "detect",
        help=_("run torchvision's Faster R-CNN stage by stage; print the detections as JSON"),
    )
    p.add_argument("--image", required=True, help=_("image file (JPEG, PNG, WebP, BMP)"))
    p.add_argument(
        "--model",
        default=None,
        help=_("{models} (default: a checkpoint's own model, else {default})").format(
            models=" | ".join(MODELS), default=DEFAULT_MODEL
        ),
    )
    p.add_argument(
        "--weights",
        default="auto",
        help=_(
            "auto (default: $FRCNN_DETECTOR_WEIGHTS, the cached COCO weights, a download, or "
            "random) | coco | random | path to a state_dict or fine-tuned checkpoint"
        ),
    )
    p.add_argument(
        "--score-threshold",
        type=float,
        default=DISPLAY_SCORE_THRESHOLD,
        help=_(
            "keep detections scoring above this (default {threshold}, as in the tutorial)"
        ).format(threshold=DISPLAY_SCORE_THRESHOLD),
    )
    p.add_argument("--device", default=None, help=_("cpu or cuda (default: cuda when available)"))
    p.add_argument("--half", action="store_true", help=_("float16 on CUDA"))
    p.add_argument("--out", help=_("folder for one PNG per stage"))
    p.set_defaults(func=detect)
    p = sub.add_parser(
        "fetch-weights",
        help=_("download weights into the torch cache (needs network access)"),
    )
    p.add_argument(
        "--model",
        default=DEFAULT_MODEL,
        help=_("{models} | vgg16 | all (default {default})").format(
            models=" | ".join(MODELS), default=DEFAULT_MODEL
        ),
    )
    p.set_defaults(func=fetch_weights)
