"""Stage 2: the VGG16 backbone, ``features[:30]`` (conv1_1 .. conv5_3 + ReLU, stride 16).

An 800 x 800 x 3 input gives a 512 x 50 x 50 feature map: four 2 x 2 max-pools halve it four
times, 800 / 16 = 50; the fifth pool (layer 30) is left out.

Weights are found in this order (:func:`load_backbone`):

1. a local file, named by the ``weights`` argument or ``$FRCNN_VGG16_WEIGHTS``: a state_dict of a
   whole torchvision VGG16 (``features.0.weight`` ...) or of its features (``0.weight`` ...),
   loaded with ``weights_only=True``;
2. torchvision's ImageNet weights from the torch hub cache (``$TORCH_HOME``);
3. the same, downloaded, when allowed and the host answers within a few seconds;
4. otherwise random (seeded) weights, and the result says so.
"""

from __future__ import annotations

import io
import os
import socket
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import torch
from torch import nn
from torchvision.models import VGG16_Weights
from torchvision.models.vgg import cfgs as vgg_cfgs
from torchvision.models.vgg import make_layers

from frcnn_core.i18n import N_, _
from frcnn_core.safe_io import InputError, read_file

WEIGHTS_ENV = "FRCNN_VGG16_WEIGHTS"
# A whole torchvision VGG16 state_dict is 528 MB; its features alone 59 MB.
MAX_WEIGHTS_BYTES = 600 * 2**20
OFFLINE_ENV = "FRCNN_OFFLINE"
VGG16_FEATURE_LAYERS = 30
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# A reachability probe is cheap; a hung TCP connect on a closed network is not.
PROBE_TIMEOUT_S = 3.0
DOWNLOAD_TIMEOUT_S = 600.0


class WeightsError(ValueError):
    """A weights file that cannot be used: unreadable, or not a VGG16 state_dict."""


@dataclass(frozen=True)
class BackboneSpec:
    """What the stages after the backbone need to know about it (Detectron2's ``ShapeSpec``):
    every size that follows from the network is derived from this, never typed again.

    Attributes:
        name: what the backbone is, for people.
        stride: input pixels per feature cell: ``2 ** pools``.
        channels: channels of the feature map.
        pools: the 2 x 2 max-pools (with floor) between the input and the feature map.
    """

    name: str
    channels: int
    pools: int

    @property
    def stride(self) -> int:
        return 2**self.pools

    def feature_size(self, image_size: tuple[int, int]) -> tuple[int, int]:
        """(Hf, Wf) for an input frame of ``image_size = (H, W)``: each pool floors, so 800 ->
        50 and 810 -> 405 -> 202 -> 101 -> 50."""
        h, w = image_size
        for _level in range(self.pools):
            h, w = h // 2, w // 2
        return h, w


# features[:30]: conv1_1 .. conv5_3 with their ReLUs and the first four max-pools.
VGG16 = BackboneSpec(name="VGG16 to conv5_3", channels=512, pools=4)


@dataclass(frozen=True)
class BackboneParams:
    """How the image is fed to the backbone.

    ``normalize=False`` reproduces the tutorial's missing ImageNet normalisation (bug B13).
    """

    normalize: bool = True


@dataclass(frozen=True)
class Backbone:
    """The feature extractor and where its weights came from.

    Attributes:
        features: ``vgg16().features[:30]`` in eval mode.
        weights: ``"imagenet"``, ``"random"`` or the path of the file the weights came from.
        note: one sentence for the user on how the weights were found (or why not), in
            English (logs); :meth:`describe` says it in the caller's language.
        spec: its stride and channels.
        said: ``(message, values)`` of ``note`` for :meth:`describe` (the backbone is shared by
            sessions that speak different languages).
    """

    features: nn.Sequential
    weights: str
    note: str
    spec: BackboneSpec = VGG16
    said: tuple[str, tuple[tuple[str, str], ...]] | None = None

    def describe(self) -> str:
        """``note`` in the caller's language."""
        if self.said is None:
            return self.note
        message, values = self.said
        return _(message).format(**dict(values))


def _with_note(features: nn.Sequential, weights: str, message: str, **values: object) -> Backbone:
    """A :class:`Backbone` whose note is ``message`` (marked with ``N_``) filled with ``values``."""
    text = {k: str(v) for k, v in values.items()}
    return Backbone(features, weights, message.format(**text), said=(message, tuple(text.items())))


LOADED_FROM = N_("Weights loaded from {path}.")
RANDOM_ASKED = N_("Random weights were asked for.")
IMAGENET_FROM = N_("ImageNet weights from {path}.")
DOWNLOADED = N_("ImageNet weights downloaded in {seconds} s to {path}.")
NOT_FOUND_OFFLINE = N_(
    "ImageNet weights not found (download disabled): using random weights (seed {seed}). "
    "Put VGG16 weights at {path} or set {env}=/path/to/vgg16.pth."
)
NOT_FOUND_NETWORK = N_(
    "ImageNet weights not found (no network access to the weights): using random weights "
    "(seed {seed}). Put VGG16 weights at {path} or set {env}=/path/to/vgg16.pth."
)


@dataclass(frozen=True)
class BackboneResult:
    """Attributes:
    features (Tensor[1, 512, Hf, Wf]): the feature map, float32, contiguous.
    seconds: wall time of the forward pass.
    """

    features: torch.Tensor
    seconds: float


def _features_module() -> nn.Sequential:
    """VGG16's conv layers up to conv5_3 + ReLU, initialised as torchvision's VGG does
    (Kaiming normal, fan-out), without building the 123 M-parameter classifier."""
    layers = list(make_layers(vgg_cfgs["D"], batch_norm=False))[:VGG16_FEATURE_LAYERS]
    for layer in layers:
        if isinstance(layer, nn.Conv2d):
            nn.init.kaiming_normal_(layer.weight, mode="fan_out", nonlinearity="relu")
            nn.init.zeros_(layer.bias)
    return nn.Sequential(*layers)


def _random_features(seed: int) -> nn.Sequential:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return _features_module()


def load_weights_file(path: str | os.PathLike[str]) -> nn.Sequential:
    """Build ``features[:30]`` from a local state_dict file (whole VGG16 or features only).

    Raises:
        WeightsError: the file is missing, unreadable or holds something else.
    """
    path = Path(path)
    try:
        data = read_file(path, MAX_WEIGHTS_BYTES, "weights file")
    except InputError as exc:
        raise WeightsError(str(exc)) from None
    try:
        state = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types, with pages of advice, for a foreign file
        raise WeightsError(
            f"{path.name} is not a PyTorch weights file that can be read safely "
            f"({type(exc).__name__})"
        ) from None
    if not isinstance(state, dict):
        raise WeightsError(f"{path.name} does not hold a state_dict")
    if any(str(k).startswith("features.") for k in state):
        state = {
            k.removeprefix("features."): v for k, v in state.items() if k.startswith("features.")
        }
    module = _features_module()
    expected = module.state_dict()
    missing = [k for k in expected if k not in state]
    if missing:
        raise WeightsError(f"{path.name} is not a VGG16 state_dict (missing {missing[0]})")
    for key, value in expected.items():
        got = state[key]
        if not isinstance(got, torch.Tensor) or got.shape != value.shape:
            shape = tuple(got.shape) if isinstance(got, torch.Tensor) else type(got).__name__
            raise WeightsError(
                f"{path.name}: {key} has shape {shape}, VGG16 needs {tuple(value.shape)}"
            )
    module.load_state_dict({k: state[k] for k in expected})
    return module


def imagenet_cache_path() -> Path:
    """Where torchvision keeps the downloaded ImageNet VGG16 weights."""
    name = os.path.basename(urlparse(VGG16_Weights.IMAGENET1K_V1.url).path)
    return Path(torch.hub.get_dir()) / "checkpoints" / name


def _host_reachable(url: str, timeout: float = PROBE_TIMEOUT_S) -> bool:
    parsed = urlparse(url)
    try:
        with socket.create_connection((parsed.hostname, parsed.port or 443), timeout=timeout):
            return True
    except OSError:
        return False


def _download_bounded(url: str, dest: Path, timeout: float) -> bool:
    """Download in a daemon thread so a stalled transfer cannot hang the caller."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    done: list[bool] = []

    def fetch() -> None:
        try:
            torch.hub.download_url_to_file(url, str(dest), progress=False)
            done.append(True)
        except Exception:  # any network or disk failure means "not available"
            done.append(False)

    thread = threading.Thread(target=fetch, daemon=True)
    thread.start()
    thread.join(timeout)
    return bool(done and done[0])


def _from_imagenet_file(path: Path) -> nn.Sequential:
    module = _features_module()
    state = torch.load(path, map_location="cpu", weights_only=True)
    module.load_state_dict(
        {k.removeprefix("features."): v for k, v in state.items() if k.startswith("features.")}
    )
    return module


def load_backbone(
    weights: str | None = None,
    seed: int = 0,
    allow_download: bool | None = None,
) -> Backbone:
    """Build the VGG16 feature extractor, finding weights as the module docstring says.

    Args:
        weights: ``None`` or ``"auto"`` (file from ``$FRCNN_VGG16_WEIGHTS``, else ImageNet, else
            random), ``"imagenet"`` (the same without the file), ``"random"``, or a file path.
        seed: seed of the random initialisation.
        allow_download: try to download ImageNet weights when they are not cached. Defaults to
            true unless ``$FRCNN_OFFLINE`` is set.

    Raises:
        WeightsError: an explicitly named weights file cannot be used.
    """
    if allow_download is None:
        allow_download = os.environ.get(OFFLINE_ENV, "") in ("", "0")
    choice = (weights or "auto").strip()
    if choice == "auto" and os.environ.get(WEIGHTS_ENV):
        choice = os.environ[WEIGHTS_ENV]
    if choice not in ("auto", "imagenet", "random"):
        module = load_weights_file(choice)
        return _with_note(module.eval(), str(choice), LOADED_FROM, path=choice)
    if choice == "random":
        return _with_note(_random_features(seed).eval(), "random", RANDOM_ASKED)
    cached = imagenet_cache_path()
    if cached.is_file():
        try:
            return _with_note(
                _from_imagenet_file(cached).eval(), "imagenet", IMAGENET_FROM, path=cached
            )
        except Exception:  # a half-written cache file: fall through to download or random
            cached.unlink(missing_ok=True)
    url = VGG16_Weights.IMAGENET1K_V1.url
    if allow_download and _host_reachable(url):
        started = time.perf_counter()
        if _download_bounded(url, cached, DOWNLOAD_TIMEOUT_S):
            seconds = time.perf_counter() - started
            return _with_note(
                _from_imagenet_file(cached).eval(),
                "imagenet",
                DOWNLOADED,
                seconds=f"{seconds:.0f}",
                path=cached,
            )
    message = NOT_FOUND_OFFLINE if not allow_download else NOT_FOUND_NETWORK
    return _with_note(
        _random_features(seed).eval(), "random", message, seed=seed, path=cached, env=WEIGHTS_ENV
    )


def image_to_tensor(image: torch.Tensor, params: BackboneParams) -> torch.Tensor:
    """HxWx3 uint8 RGB -> [1, 3, H, W] float32 in [0, 1], ImageNet-normalised unless the B13
    variant is asked for."""
    x = image.permute(2, 0, 1).float().div_(255.0)[None]  # [1, 3, H, W]
    if params.normalize:
        mean = torch.tensor(IMAGENET_MEAN, device=x.device).view(1, 3, 1, 1)
        std = torch.tensor(IMAGENET_STD, device=x.device).view(1, 3, 1, 1)
        x = (x - mean) / std
    return x


def run_backbone(
    image: torch.Tensor,
    backbone: nn.Module,
    params: BackboneParams | None = None,
    channels_last: bool = True,
) -> BackboneResult:
    """Stage 2: the feature map of one image.

    Args:
        image (Tensor[H, W, 3]): uint8 RGB in the input frame, on the backbone's device.
        backbone: the ``features[:30]`` module (never modified).
        channels_last: the memory format of the forward (the same numbers either way).

    Returns:
        BackboneResult with features [1, 512, H // 16, W // 16].
    """
    params = params or BackboneParams()
    x = image_to_tensor(image, params)
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    started = time.perf_counter()
    with torch.inference_mode():
        out = backbone(x.contiguous(memory_format=memory_format))
    # A plain copy made outside inference mode, so later stages may train on it (autograd
    # refuses inference tensors).
    out = out.contiguous().clone()
    if out.device.type == "cuda":
        torch.cuda.synchronize(out.device)
    return BackboneResult(features=out, seconds=time.perf_counter() - started)
