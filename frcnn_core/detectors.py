"""The production detector: torchvision's Faster R-CNN models, and where their weights come from.

Three models (``MODELS``): ``fasterrcnn_resnet50_fpn_v2`` (the default, 46.7 box mAP on COCO
val2017), ``fasterrcnn_resnet50_fpn`` (37.0; the closest to the tutorial's MMDetection R50-FPN)
and ``fasterrcnn_mobilenet_v3_large_fpn`` (32.8; fast on a CPU). :func:`build_model` builds one
with torchvision's own builder and never downloads anything.

Weights are found in this order (:func:`load_detector` with ``weights="auto"``):

1. a file named by ``$FRCNN_DETECTOR_WEIGHTS`` (or given as ``weights=PATH``): either a state_dict
   of that torchvision model, as torchvision's checkpoint holds it, or a checkpoint in
   ``CHECKPOINT_FORMAT`` written by :func:`save_checkpoint` (fine-tuning); ``weights_only=True``;
2. torchvision's COCO checkpoint in the torch hub cache (``$TORCH_HOME/hub/checkpoints``);
3. the same, downloaded with a progress bar on stderr, when the host answers a short probe and
   ``$FRCNN_OFFLINE`` is not set; the transfer has a time bound;
4. otherwise random (seeded) weights, and :attr:`Detector.note` says how to get the real ones.

Class names follow the weights: COCO's 91 ids (index 0 ``"__background__"``, ``"N/A"`` for the ids
COCO left unused) from torchvision's weights metadata, or the names a checkpoint stores.
"""

from __future__ import annotations

import os
import pickle
import socket
import tempfile
import threading
import time
import zipfile
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import torch
from torch import nn
from torchvision.models import detection as tv_detection
from torchvision.ops import MultiScaleRoIAlign
from torchvision.ops.misc import FrozenBatchNorm2d

from frcnn_core.device import default_device
from frcnn_core.i18n import _

MODELS = (
    "fasterrcnn_resnet50_fpn_v2",
    "fasterrcnn_resnet50_fpn",
    "fasterrcnn_mobilenet_v3_large_fpn",
)
DEFAULT_MODEL = "fasterrcnn_resnet50_fpn_v2"
CHECKPOINT_FORMAT = "frcnn-explorer-detector/1"
WEIGHTS_ENV = "FRCNN_DETECTOR_WEIGHTS"
OFFLINE_ENV = "FRCNN_OFFLINE"
BACKGROUND = "__background__"
# A reachability probe is cheap; a hung TCP connect on a closed network is not.
PROBE_TIMEOUT_S = 3.0
# 167 MB (the v2 checkpoint) at a slow 1 MB/s still fits; a stalled transfer cannot hang the app.
DOWNLOAD_TIMEOUT_S = 600.0
# torchvision's default for a model built from trained weights: conv1, layer1 (or the first
# MobileNet stages) stay frozen when fine-tuning.
TRAINABLE_BACKBONE_LAYERS = 3

_BUILDERS: dict[str, Callable[..., nn.Module]] = {
    "fasterrcnn_resnet50_fpn_v2": tv_detection.fasterrcnn_resnet50_fpn_v2,
    "fasterrcnn_resnet50_fpn": tv_detection.fasterrcnn_resnet50_fpn,
    "fasterrcnn_mobilenet_v3_large_fpn": tv_detection.fasterrcnn_mobilenet_v3_large_fpn,
}
# Only the metadata of these enums is read (URL, categories, mAP): ``get_state_dict`` downloads.
_COCO_WEIGHTS = {
    "fasterrcnn_resnet50_fpn_v2": tv_detection.FasterRCNN_ResNet50_FPN_V2_Weights.COCO_V1,
    "fasterrcnn_resnet50_fpn": tv_detection.FasterRCNN_ResNet50_FPN_Weights.COCO_V1,
    "fasterrcnn_mobilenet_v3_large_fpn": (
        tv_detection.FasterRCNN_MobileNet_V3_Large_FPN_Weights.COCO_V1
    ),
}
# The download URL of each model's COCO checkpoint; a table so a site mirror can be set up
# in one place. The file name carries the first hex digits of its SHA-256, as torch.hub checks.
WEIGHTS_URLS: dict[str, str] = {name: w.url for name, w in _COCO_WEIGHTS.items()}
COCO_CLASS_NAMES: tuple[str, ...] = tuple(
    _COCO_WEIGHTS[DEFAULT_MODEL].meta["categories"]  # the same 91 names for all three
)


class DetectorWeightsError(ValueError):
    """Weights that cannot be used (missing, corrupt, for another model) or an unknown model
    name; the message is one line meant for the user."""


class DeviceError(ValueError):
    """A device that does not exist here (e.g. ``cuda`` without CUDA); one line for the user."""


@dataclass(frozen=True)
class Detector:
    """A production detector ready for inference. Shared: never mutate ``model``.

    Attributes:
        model: torchvision ``FasterRCNN`` in eval mode, on its device.
        name: one of ``MODELS``.
        weights: ``"coco"``, ``"random"`` or the path the weights came from.
        class_names: index = label id; 0 is ``"__background__"``. COCO: 91 names with ``"N/A"``
            gaps, as torchvision's weights metadata gives them.
        note: one sentence for the user: where the weights came from, or how to get real ones.
        meta: the checkpoint's metadata (settings, epoch, mAP, ...) or ``{}``.
    """

    model: nn.Module
    name: str
    weights: str
    class_names: tuple[str, ...]
    note: str
    meta: dict = field(default_factory=dict)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.model.parameters()).dtype

    @property
    def num_classes(self) -> int:
        """Including the background."""
        return len(self.class_names)


def _check_name(name: str) -> str:
    if name not in _BUILDERS:
        raise DetectorWeightsError(
            _("unknown model {name!r}; choose one of {models}").format(
                name=name, models=", ".join(MODELS)
            )
        )
    return name


def resolve_device(device: str | torch.device | None = None) -> torch.device:
    """The device to run on: ``None`` means :func:`frcnn_core.device.default_device`.

    Raises:
        DeviceError: an unknown device string, or CUDA asked for where there is none.
    """
    if device is None:
        return default_device()
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        raise DeviceError(
            _("unknown device {device!r}; use cpu or cuda").format(device=str(device))
        ) from None
    if resolved.type == "cuda":
        if not torch.cuda.is_available():
            raise DeviceError(_("CUDA is not available on this machine; use --device cpu"))
        if resolved.index is not None and resolved.index >= torch.cuda.device_count():
            raise DeviceError(
                _("there is no {device}; this machine has {n} GPU(s)").format(
                    device=resolved, n=torch.cuda.device_count()
                )
            )
    elif resolved.type != "cpu":
        raise DeviceError(
            _("device {device!r} is not supported here; use cpu or cuda").format(device=str(device))
        )
    return resolved


def _freeze_batchnorm(module: nn.Module) -> nn.Module:
    """Replace every ``BatchNorm2d`` below ``module`` by a ``FrozenBatchNorm2d`` with the same
    statistics, as torchvision's builders do when they are given trained weights."""
    for child_name, child in module.named_children():
        if isinstance(child, nn.BatchNorm2d):
            frozen = FrozenBatchNorm2d(child.num_features, eps=child.eps)
            frozen.weight.copy_(child.weight.detach())
            frozen.bias.copy_(child.bias.detach())
            frozen.running_mean.copy_(child.running_mean)
            frozen.running_var.copy_(child.running_var)
            setattr(module, child_name, frozen)
        else:
            _freeze_batchnorm(child)
    return module


def _freeze_backbone_layers(model: nn.Module, name: str, trainable_layers: int) -> None:
    """Turn off gradients of the backbone's first layers, as torchvision's builders do for
    trained weights (``_resnet_fpn_extractor`` / ``_mobilenet_extractor``)."""
    body = model.backbone.body
    if name.startswith("fasterrcnn_resnet50"):
        if not 0 <= trainable_layers <= 5:
            raise ValueError(f"trainable_backbone_layers must be 0..5, got {trainable_layers}")
        train = ["layer4", "layer3", "layer2", "layer1", "conv1"][:trainable_layers]
        if trainable_layers == 5:
            train.append("bn1")
        for pname, param in body.named_parameters():
            if not any(pname.startswith(layer) for layer in train):
                param.requires_grad_(False)
        return
    blocks = list(body.children())  # MobileNetV3 ``features`` up to the last returned stage
    stages = [0] + [i for i, b in enumerate(blocks) if getattr(b, "_is_cn", False)]
    stages.append(len(blocks) - 1)
    if not 0 <= trainable_layers <= len(stages):
        raise ValueError(
            f"trainable_backbone_layers must be 0..{len(stages)}, got {trainable_layers}"
        )
    freeze_before = len(blocks) if trainable_layers == 0 else stages[-trainable_layers]
    for block in blocks[:freeze_before]:
        for param in block.parameters():
            param.requires_grad_(False)


# A square input this size gives every FPN level a whole number of cells (strides up to 64).
_PRIME_SIZE = 128


def _prime_roi_pooler(model: nn.Module) -> None:
    """Fix the RoI pooler's feature scales and level mapper now, from a square dummy input.

    ``MultiScaleRoIAlign`` infers them on its first call from that call's image size, rounding
    ``log2(feature size / image height)``, and keeps them: a thin first image (say 10 x 2000,
    resized to 6 x 1333) makes it pool every later RoI at scales 8, 4, 2, 1 instead of
    1/4 .. 1/32. Priming here makes the shared model right for every image and never changed
    by a forward pass afterwards.
    """
    pooler = model.roi_heads.box_roi_pool
    if not isinstance(pooler, MultiScaleRoIAlign):
        return
    param = next(model.parameters())
    image = torch.zeros(1, 3, _PRIME_SIZE, _PRIME_SIZE, dtype=param.dtype, device=param.device)
    box = torch.tensor([[0.0, 0.0, _PRIME_SIZE, _PRIME_SIZE]], dtype=param.dtype)
    with torch.no_grad():
        features = model.backbone(image)
        if isinstance(features, torch.Tensor):
            features = OrderedDict([("0", features)])
        pooler.scales, pooler.map_levels = None, None
        pooler(features, [box.to(param.device)], [(_PRIME_SIZE, _PRIME_SIZE)])


def build_model(
    name: str,
    num_classes: int,
    *,
    trainable_backbone_layers: int = TRAINABLE_BACKBONE_LAYERS,
    **kwargs: Any,
) -> nn.Module:
    """A torchvision Faster R-CNN with random weights, shaped like the trained one.

    Built by torchvision's own builder with ``weights=None, weights_backbone=None`` (so it never
    downloads). The builder then uses plain ``BatchNorm2d`` in the backbone; they are swapped for
    ``FrozenBatchNorm2d`` and the first backbone layers frozen, exactly as the builder does when
    given trained weights, so torchvision's COCO state_dict and a fine-tuned one load unchanged.
    The RoI pooler's scales are fixed from a dummy input (:func:`_prime_roi_pooler`), so no
    image shape seen first can skew them.

    Args:
        name: one of ``MODELS``.
        num_classes: including the background (COCO: 91).
        trainable_backbone_layers: backbone stages that keep gradients (torchvision's default 3).
        **kwargs: ``FasterRCNN`` settings, e.g. ``min_size=320, max_size=512,
            box_score_thresh=0.3``.

    Returns:
        The model in eval mode, on the CPU.

    Raises:
        DetectorWeightsError: an unknown model name.
    """
    builder = _BUILDERS[_check_name(name)]
    model = builder(weights=None, weights_backbone=None, num_classes=int(num_classes), **kwargs)
    _freeze_batchnorm(model.backbone.body)
    _freeze_backbone_layers(model, name, trainable_backbone_layers)
    model.eval()
    _prime_roi_pooler(model)
    return model


def coco_cache_path(name: str) -> Path:
    """Where ``torch.hub`` (and torchvision) keeps the model's COCO checkpoint."""
    filename = os.path.basename(urlparse(WEIGHTS_URLS[_check_name(name)]).path)
    return Path(torch.hub.get_dir()) / "checkpoints" / filename


def coco_map(name: str) -> float:
    """The box mAP torchvision reports for the model's COCO weights on COCO val2017."""
    return float(_COCO_WEIGHTS[_check_name(name)].meta["_metrics"]["COCO-val2017"]["box_map"])


def _generic_class_names(num_classes: int) -> tuple[str, ...]:
    return (BACKGROUND, *(f"class {i}" for i in range(1, num_classes)))


# -- reading files -------------------------------------------------------------------------------


def _read(path: str | os.PathLike[str], mmap: bool = False) -> Any:
    """``torch.load(weights_only=True)`` with every failure turned into one line."""
    path = Path(path)
    if not path.exists():
        raise DetectorWeightsError(_("weights file not found: {path}").format(path=path))
    if not path.is_file():
        raise DetectorWeightsError(_("{path} is not a file").format(path=path))
    if path.stat().st_size == 0:
        raise DetectorWeightsError(_("{file} is empty (0 bytes)").format(file=path.name))
    try:
        # mmap reads tensors lazily (cheap metadata); it needs the zip format torch.save writes.
        use_mmap = mmap and zipfile.is_zipfile(path)
        return torch.load(path, map_location="cpu", weights_only=True, mmap=use_mmap)
    except pickle.UnpicklingError as exc:
        if "Unsupported global" in str(exc):
            raise DetectorWeightsError(
                _(
                    "{file} holds Python objects besides tensors; only state_dicts and "
                    "checkpoints are loaded (weights_only=True)"
                ).format(file=path.name)
            ) from None
        raise DetectorWeightsError(
            _("{file} is not a PyTorch weights file (corrupt, truncated or another format)").format(
                file=path.name
            )
        ) from None
    except Exception:  # torch raises many types for a corrupt, truncated or foreign file
        raise DetectorWeightsError(
            _("{file} is not a PyTorch weights file (corrupt, truncated or another format)").format(
                file=path.name
            )
        ) from None


def _is_checkpoint(obj: Any) -> bool:
    return isinstance(obj, dict) and "format" in obj and "state_dict" in obj


def _guess_model(state: dict) -> str | None:
    """Which of ``MODELS`` a state_dict's keys belong to, from keys only one of them has."""
    keys = set(state)
    if "backbone.body.conv1.weight" in keys:
        if "roi_heads.box_head.fc6.weight" in keys:
            return "fasterrcnn_resnet50_fpn"
        if "roi_heads.box_head.5.weight" in keys:  # v2: four conv layers, then one fc
            return "fasterrcnn_resnet50_fpn_v2"
    if "backbone.body.0.0.weight" in keys and "roi_heads.box_head.fc6.weight" in keys:
        return "fasterrcnn_mobilenet_v3_large_fpn"
    return None


def _num_classes(state: dict, where: str) -> int:
    weight = state.get("roi_heads.box_predictor.cls_score.weight")
    if not isinstance(weight, torch.Tensor) or weight.dim() != 2:
        raise DetectorWeightsError(
            _("{file} is not a Faster R-CNN state_dict (no class scores)").format(file=where)
        )
    return int(weight.shape[0])


def _check_state(state: Any, where: str) -> dict:
    if not isinstance(state, dict) or not state:
        raise DetectorWeightsError(_("{file} does not hold a state_dict").format(file=where))
    bad = next((k for k, v in state.items() if not isinstance(v, torch.Tensor)), None)
    if bad is not None:
        raise DetectorWeightsError(
            _("{file} is not a state_dict ({key!r} is not a tensor)").format(file=where, key=bad)
        )
    return state


def _load_state(model: nn.Module, state: dict, name: str, where: str) -> None:
    """``load_state_dict(strict=True)``, with a mismatch reported as one line."""
    expected = model.state_dict()
    guess = _guess_model(state)
    other = (
        _(" (it looks like {model} weights)").format(model=guess) if guess and guess != name else ""
    )
    # FrozenBatchNorm2d drops "num_batches_tracked" itself; it is not a mismatch.
    missing = [k for k in expected if k not in state and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in state if k not in expected and not k.endswith("num_batches_tracked")]
    # torchvision's v1 R50-FPN checkpoint predates RPNHead's conv -> conv.0.0 renaming; the
    # module's own _load_from_state_dict converts it, so those keys are not a mismatch either.
    missing = [k for k in missing if not k.startswith("rpn.head.conv.")]
    unexpected = [k for k in unexpected if not k.startswith("rpn.head.conv.")]
    if missing or unexpected:
        first = missing[0] if missing else unexpected[0]
        if missing:
            why = _("{file} is not a {model} state_dict{guess} (missing {key})")
        else:
            why = _("{file} is not a {model} state_dict{guess} (unexpected {key})")
        raise DetectorWeightsError(why.format(file=where, model=name, guess=other, key=first))
    for key, value in expected.items():
        got = state.get(key)
        if isinstance(got, torch.Tensor) and got.shape != value.shape:
            raise DetectorWeightsError(
                _(
                    "{file} does not fit {model}{guess}: {key} has shape {got}, the model needs "
                    "{needed}"
                ).format(
                    file=where,
                    model=name,
                    guess=other,
                    key=key,
                    got=tuple(got.shape),
                    needed=tuple(value.shape),
                )
            )
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[-1].strip()[:160]
        raise DetectorWeightsError(
            _("{file} does not fit {model}{guess}: {reason}").format(
                file=where, model=name, guess=other, reason=first
            )
        ) from None


@dataclass(frozen=True)
class _FileWeights:
    name: str
    class_names: tuple[str, ...]
    state: dict
    meta: dict
    model_kwargs: dict


def _parse_weights_file(path: str | os.PathLike[str], name: str | None) -> _FileWeights:
    where = Path(path).name
    obj = _read(path)
    if _is_checkpoint(obj):
        if obj["format"] != CHECKPOINT_FORMAT:
            raise DetectorWeightsError(
                _(
                    "{file} is a checkpoint in format {format!r}; this version reads {ours!r}"
                ).format(file=where, format=obj["format"], ours=CHECKPOINT_FORMAT)
            )
        saved = obj.get("model")
        if saved not in MODELS:
            raise DetectorWeightsError(
                _("{file} is a checkpoint for an unknown model {model!r}").format(
                    file=where, model=saved
                )
            )
        if name is not None and name != saved:
            raise DetectorWeightsError(
                _("{file} is a checkpoint for {saved}, not {model}; use --model {saved}").format(
                    file=where, saved=saved, model=name
                )
            )
        state = _check_state(obj["state_dict"], where)
        names = obj.get("class_names")
        k = _num_classes(state, where)
        if (
            not isinstance(names, (list, tuple))
            or not all(isinstance(n, str) for n in names)
            or len(names) != k
        ):
            raise DetectorWeightsError(
                _("{file}: the checkpoint's class_names do not match its {n} class scores").format(
                    file=where, n=k
                )
            )
        meta = {key: value for key, value in obj.items() if key != "state_dict"}
        model_kwargs = obj.get("model_kwargs") or {}
        if not isinstance(model_kwargs, dict):
            raise DetectorWeightsError(_("{file}: model_kwargs is not a dict").format(file=where))
        return _FileWeights(saved, tuple(names), state, meta, dict(model_kwargs))
    state = _check_state(obj, where)
    guess = _guess_model(state)
    if name is not None and guess is not None and guess != name:
        raise DetectorWeightsError(
            _("{file} is a state_dict of {guess}, not {model}; use --model {guess}").format(
                file=where, guess=guess, model=name
            )
        )
    if name is None:
        name = guess
        if name is None:
            raise DetectorWeightsError(
                _("{file} is not a state_dict of any of {models}; name the model").format(
                    file=where, models=", ".join(MODELS)
                )
            )
    k = _num_classes(state, where)
    names = COCO_CLASS_NAMES if k == len(COCO_CLASS_NAMES) else _generic_class_names(k)
    return _FileWeights(name, names, state, {}, {})


def _detector_from_file(
    path: str | os.PathLike[str], name: str | None, model_kwargs: dict
) -> tuple[nn.Module, _FileWeights]:
    parsed = _parse_weights_file(path, name)
    kwargs = {**parsed.model_kwargs, **model_kwargs}
    try:
        model = build_model(parsed.name, len(parsed.class_names), **kwargs)
    except (TypeError, ValueError) as exc:
        if not parsed.model_kwargs:
            raise
        first = str(exc).strip().splitlines()[0][:160] if str(exc).strip() else type(exc).__name__
        raise DetectorWeightsError(
            _("{file}: its model_kwargs {kwargs} do not fit {model} ({reason})").format(
                file=Path(path).name,
                kwargs=sorted(parsed.model_kwargs),
                model=parsed.name,
                reason=first,
            )
        ) from None
    _load_state(model, parsed.state, parsed.name, Path(path).name)
    return model.eval(), parsed


def checkpoint_info(path: str | os.PathLike[str]) -> dict:
    """A weights file's metadata, without building the model (for listing checkpoints).

    Returns:
        For a ``CHECKPOINT_FORMAT`` checkpoint: everything but the state_dict (``format``,
        ``model``, ``class_names``, ``settings``, extras such as ``epoch`` or ``map``), plus
        ``num_classes``, ``path`` and ``bytes``. For a plain state_dict: ``format="state_dict"``,
        ``model`` (recognised from its keys, or ``None``), ``num_classes``, ``path``, ``bytes``.

    Raises:
        DetectorWeightsError: the file is missing, unreadable, or holds something else.
    """
    where = Path(path).name
    obj = _read(path, mmap=True)
    size = Path(path).stat().st_size
    if _is_checkpoint(obj):
        state = _check_state(obj["state_dict"], where)
        info = {key: value for key, value in obj.items() if key != "state_dict"}
        info["num_classes"] = _num_classes(state, where)
    else:
        state = _check_state(obj, where)
        info = {
            "format": "state_dict",
            "model": _guess_model(state),
            "num_classes": _num_classes(state, where),
        }
    info["path"] = str(path)
    info["bytes"] = size
    return info


def save_checkpoint(
    path: str | os.PathLike[str],
    model: nn.Module,
    name: str,
    class_names: Sequence[str],
    settings: dict | None = None,
    **extra: Any,
) -> None:
    """Write a detector checkpoint in ``CHECKPOINT_FORMAT``, atomically.

    The file holds ``{"format", "model", "class_names", "state_dict" (CPU tensors), "settings",
    **extra}``; values must be tensors or plain Python data (``weights_only=True`` reads them).
    An ``extra`` key ``model_kwargs`` (e.g. ``{"min_size": 512}``) is passed to
    :func:`build_model` when the checkpoint is loaded. It is written to a temporary file in the
    same folder, then renamed over ``path``, so a crash never leaves half a checkpoint.

    Raises:
        DetectorWeightsError: an unknown model name, or class names that do not match the
            model's class scores.
    """
    _check_name(name)
    state = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}
    k = _num_classes(state, "the model")
    names = [str(n) for n in class_names]
    if len(names) != k:
        raise DetectorWeightsError(
            _("{n} class names for a model with {k} class scores (background included)").format(
                n=len(names), k=k
            )
        )
    payload = {
        "format": CHECKPOINT_FORMAT,
        "model": name,
        "class_names": names,
        "state_dict": state,
        "settings": dict(settings or {}),
        **extra,
    }
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            torch.save(payload, fh)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


# -- the COCO checkpoint: cache and download -----------------------------------------------------


def _offline() -> bool:
    return os.environ.get(OFFLINE_ENV, "") not in ("", "0")


def host_reachable(url: str, timeout: float = PROBE_TIMEOUT_S) -> bool:
    """Whether a TCP connection to the URL's host opens within ``timeout`` seconds."""
    parsed = urlparse(url)
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    try:
        with socket.create_connection((parsed.hostname, port), timeout=timeout):
            return True
    except (OSError, ValueError):
        return False


def download_file(
    url: str, dest: Path, timeout: float = DOWNLOAD_TIMEOUT_S, progress: bool = True
) -> str | None:
    """Download ``url`` to ``dest`` with torch.hub (a progress bar on stderr; the SHA-256 prefix
    in the file name is checked), in a daemon thread so a stalled transfer cannot hang the
    caller.

    Returns:
        ``None`` on success, else one line saying why not.
    """
    dest.parent.mkdir(parents=True, exist_ok=True)
    match = torch.hub.HASH_REGEX.search(os.path.basename(urlparse(url).path))
    hash_prefix = match.group(1) if match else None
    outcome: list[str | None] = []

    def fetch() -> None:
        try:
            torch.hub.download_url_to_file(url, str(dest), hash_prefix, progress=progress)
            outcome.append(None)
        except RuntimeError as exc:  # torch.hub's checksum mismatch
            outcome.append(str(exc).splitlines()[0][:200] if str(exc) else _("download failed"))
        except Exception as exc:  # any network or disk failure means "not available"
            outcome.append(
                f"{type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''}"
            )

    thread = threading.Thread(target=fetch, daemon=True, name=f"download {dest.name}")
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        return _("the download did not finish within {seconds:.0f} s").format(seconds=timeout)
    return outcome[0] if outcome else _("download failed")


def fetch_coco_weights(
    name: str, timeout: float = DOWNLOAD_TIMEOUT_S, progress: bool = True
) -> tuple[Path, bool]:
    """Make sure the model's COCO checkpoint is in the torch hub cache.

    Returns:
        (path, downloaded): ``downloaded`` is false when it was already there.

    Raises:
        DetectorWeightsError: offline (``$FRCNN_OFFLINE``), the host does not answer, or the
            download fails or times out.
    """
    url = WEIGHTS_URLS[_check_name(name)]
    dest = coco_cache_path(name)
    if dest.is_file():
        return dest, False
    return fetch_to_cache(url, dest, timeout, progress), True


def fetch_to_cache(
    url: str, dest: Path, timeout: float = DOWNLOAD_TIMEOUT_S, progress: bool = True
) -> Path:
    """Download ``url`` to ``dest`` after a short reachability probe.

    Raises:
        DetectorWeightsError: offline (``$FRCNN_OFFLINE``), the host does not answer within
            ``PROBE_TIMEOUT_S``, or the download fails, has the wrong checksum, or times out.
    """
    host = urlparse(url).hostname
    if _offline():
        raise DetectorWeightsError(
            _(
                "{variable} is set: not downloading {file}; unset it where {host} is reachable"
            ).format(variable=OFFLINE_ENV, file=dest.name, host=host)
        )
    if not host_reachable(url):
        raise DetectorWeightsError(
            _(
                "no network access to {host}: cannot download {file}; copy it to {path} instead"
            ).format(host=host, file=dest.name, path=dest)
        )
    why = download_file(url, dest, timeout, progress)
    if why is not None:
        raise DetectorWeightsError(
            _("downloading {file} failed: {reason}").format(file=dest.name, reason=why)
        )
    return dest


def _random_model(name: str, num_classes: int, seed: int, model_kwargs: dict) -> nn.Module:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build_model(name, num_classes, **model_kwargs)


def _coco_model(path: Path, name: str, model_kwargs: dict) -> nn.Module:
    model = build_model(name, len(COCO_CLASS_NAMES), **model_kwargs)
    _load_state(model, _check_state(_read(path), path.name), name, path.name)
    return model


def _place(model: nn.Module, device: torch.device, half: bool) -> tuple[nn.Module, str]:
    model = model.to(device).eval()
    if not half:
        return model, ""
    if device.type != "cuda":
        return model, " Half precision needs CUDA: running in float32."
    return model.half(), " Running in half precision."


def load_detector(
    name: str | None = None,
    weights: str = "auto",
    device: str | torch.device | None = None,
    allow_download: bool | None = None,
    seed: int = 0,
    half: bool = False,
    **model_kwargs: Any,
) -> Detector:
    """Build a production detector, finding its weights as the module docstring says.

    Args:
        name: one of ``MODELS``; ``None`` means the checkpoint's model for a checkpoint file,
            else ``DEFAULT_MODEL``.
        weights: ``"auto"`` ($FRCNN_DETECTOR_WEIGHTS, else the cached COCO checkpoint, else a
            bounded download, else random with a notice), ``"coco"`` (cache or download; an
            error if neither works), ``"random"``, or the path of a weights file.
        device: ``"cpu"``, ``"cuda"``, a ``torch.device`` or ``None`` (CUDA when available).
        allow_download: try to download the COCO checkpoint when it is not cached. Defaults to
            true unless ``$FRCNN_OFFLINE`` is set.
        seed: seed of the random initialisation (random weights only).
        half: float16 weights on CUDA (ignored, with a note, on the CPU).
        **model_kwargs: ``FasterRCNN`` settings for :func:`build_model` (e.g. ``min_size``).

    Raises:
        DetectorWeightsError: an unknown model name; a weights file that is missing, corrupt or
            for another model; ``"coco"`` weights that are neither cached nor downloadable.
        DeviceError: a device that does not exist here.
    """
    if name is not None:
        _check_name(name)
    target = resolve_device(device)
    if allow_download is None:
        allow_download = not _offline()
    choice = (weights or "auto").strip()
    if choice == "auto" and os.environ.get(WEIGHTS_ENV, "").strip():
        choice = os.environ[WEIGHTS_ENV].strip()
    if choice not in ("auto", "coco", "random"):
        model, parsed = _detector_from_file(choice, name, model_kwargs)
        model, extra = _place(model, target, half)
        return Detector(
            model,
            parsed.name,
            str(choice),
            parsed.class_names,
            f"Weights loaded from {choice}.{extra}",
            parsed.meta,
        )
    name = name or DEFAULT_MODEL
    if choice == "random":
        model, extra = _place(
            _random_model(name, len(COCO_CLASS_NAMES), seed, model_kwargs), target, half
        )
        return Detector(
            model,
            name,
            "random",
            COCO_CLASS_NAMES,
            f"Random weights (seed {seed}) were asked for: the detections mean nothing.{extra}",
        )
    cached = coco_cache_path(name)
    reason = ""
    if cached.is_file():
        try:
            model = _coco_model(cached, name, model_kwargs)
        except DetectorWeightsError as exc:
            reason = _("the cached file is unusable ({reason})").format(reason=exc)
        else:
            model, extra = _place(model, target, half)
            return Detector(
                model,
                name,
                "coco",
                COCO_CLASS_NAMES,
                f"COCO weights ({coco_map(name)} box mAP on COCO val2017) from {cached}.{extra}",
            )
    if allow_download and not reason:
        started = time.perf_counter()
        try:
            fetch_to_cache(WEIGHTS_URLS[name], cached, DOWNLOAD_TIMEOUT_S, progress=True)
            model = _coco_model(cached, name, model_kwargs)
        except DetectorWeightsError as exc:
            reason = str(exc)
        else:
            model, extra = _place(model, target, half)
            seconds = time.perf_counter() - started
            return Detector(
                model,
                name,
                "coco",
                COCO_CLASS_NAMES,
                f"COCO weights downloaded in {seconds:.0f} s to {cached}.{extra}",
            )
    elif not reason:
        reason = (
            _("download disabled: {variable} is set").format(variable=OFFLINE_ENV)
            if _offline()
            else _("download disabled")
        )
    if choice == "coco":
        raise DetectorWeightsError(
            _(
                "COCO weights for {model} are not available: {reason}. Run `python -m frcnn_core "
                "fetch-weights --model {model}` where a network exists, or copy {file} to {folder}"
            ).format(model=name, reason=reason, file=cached.name, folder=cached.parent)
        )
    model, extra = _place(
        _random_model(name, len(COCO_CLASS_NAMES), seed, model_kwargs), target, half
    )
    return Detector(
        model,
        name,
        "random",
        COCO_CLASS_NAMES,
        f"COCO weights for {name} not found ({reason}): using random weights (seed {seed}), so "
        f"the detections mean nothing. To get the real ones run `python -m frcnn_core "
        f"fetch-weights --model {name}` where a network exists, copy {cached.name} to "
        f"{cached.parent}, or set {WEIGHTS_ENV}=/path/to/weights.pth.{extra}",
    )
