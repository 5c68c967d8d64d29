"""Training the RPN and the Fast R-CNN head (stages 7 to 13 with gradients), and their weights
files.

The backbone is frozen: its features are computed once per image and reused every iteration.
With ``train_last_block`` the conv5 block (``features[23:30]``) is trained too; then the frozen
part ends at conv4_3 (stride 8) and the block runs every iteration.

The trained heads are a deep copy: the module passed in (for the app, the one shared by every
user) is never modified.

Why the head's output layers train on standardised fc7 features (``standardize_fc7``), measured
on the zebras with random VGG16 weights and the frozen, seeded fc6 / fc7: fc7's output is
mostly one vector shared by every RoI (its mean carries about 80 % of its energy, and its
second moment's largest eigenvalue is 30 times the next one) and it is small (mean squared
norm about 7 for 4096 units). SGD on those raw features moves the class and box layers almost
only along the shared direction: in 60 iterations the loss falls 3.7 -> 1.3 but the head
learns little more than the share of background RoIs, and the best-scored detections miss the
zebras; a learning rate high enough to learn anyway makes the box-delta loss diverge. So the
class-score and box-delta layers see ``(fc7 - mean) / scale``, the mean and the scale (the RMS
norm of the centred vectors) measured once, before training, on one batch of RoIs per image
(:func:`fc7_statistics`), and learn at their own rate.
This is a change of coordinates, not of the model: when training ends it is folded into those
layers' weights and biases (:meth:`Trainer.frozen_heads`), so the trained model is a plain
Fast R-CNN head and every page and weights file sees no difference. Being measured on the
features, it follows their scale whatever the backbone's weights (only random weights have
been measured here).
"""

from __future__ import annotations

import copy
import io
import math
import time
from dataclasses import dataclass, field

import torch
from torch import nn

from frcnn_core.backbone import VGG16, BackboneSpec, WeightsError
from frcnn_core.detect import Detections, top_detections_iou
from frcnn_core.graph import Run
from frcnn_core.ground_truth import ClassIds, GroundTruth, class_ids, clean_label
from frcnn_core.image import InputImage
from frcnn_core.params import MAX_ANCHORS_PER_CELL, PipelineParams, parameter
from frcnn_core.pipeline import DetectorHeads, run_on_features

WEIGHTS_FORMAT = "frcnn-explorer-heads/1"
CONV5_START = 23  # features[23] is pool4; features[23:30] = pool4 + conv5_1..conv5_3 with ReLUs
# Left out of a weights file when they were not trained: they are rebuilt from the seed.
FC_PREFIXES = ("head.fc6.", "head.fc7.")
LOSS_NAMES = ("rpn_cls", "rpn_loc", "roi_cls", "roi_loc", "total")
HEAD_OUTPUT_LAYERS = ("score", "loc")


@dataclass(frozen=True)
class TrainParams:
    """SGD settings. Each iteration uses one image (round-robin) and reseeds the anchor and RoI
    sampling with ``seed + iteration`` so that the batches differ.

    Learning rates (all measured on the zebras with random VGG16 weights, 60 iterations):

    - ``learning_rate``: the RPN, and fc6 / fc7 or conv5 when they are trained.
    - ``head_learning_rate``: the head's class-score layer, on standardised fc7 (see the module
      docstring). Its box-delta layer learns at this rate divided by the box loss weight lambda
      (10): lambda makes that layer's steps lambda times larger, and at the score layer's rate
      it diverges (0.2 diverges, 0.1 learns). Lambda still balances the two losses where they
      share weights (fc6 / fc7 with ``train_fc``).
    - Both head rates are divided by the number of training images: a class's rows of these
      layers are pushed only by the images that show it, once per round, and the momentum
      carried between pushes makes a rate less stable (the six samples, 13 classes, 60
      iterations: at 1.0 the box loss diverges and the total rises 6.2 -> 10; at 1.0 / 6 it
      falls 6.7 -> 3.4).
    - ``standardize_fc7=False``: the head sees raw fc7 and everything learns at
      ``learning_rate``, as in the tutorial.
    - Every rate rises linearly from ``1 / warmup_iterations`` of its value to all of it over
      the first ``warmup_iterations`` iterations, so the first, largest gradients do not throw
      the box deltas off.

    ``max_grad_norm`` (0: off) rescales a gradient whose norm over all trained parameters is
    larger: a safety net that the default settings do not reach on the zebras (norms 2 - 9),
    but that keeps training fc6 / fc7 from diverging: there the output layers' fast rate makes
    their weights large, the gradients into fc6 / fc7 reach norms of 40 - 240, and without it
    the loss blows up (on a small input: from 3 to 1e19 in 40 iterations).

    ``train_fc`` trains fc6 and fc7 too (118 M parameters: about 3x slower per iteration and a
    470 MB weights file). By default they stay at their seeded initial values and are shared,
    not copied, so a session's trained model costs a few MB.
    """

    iterations: int = 60
    learning_rate: float = 0.001
    head_learning_rate: float = 1.0
    momentum: float = 0.9
    weight_decay: float = 0.0005
    warmup_iterations: int = 10
    max_grad_norm: float = 10.0
    standardize_fc7: bool = True
    train_fc: bool = False
    train_last_block: bool = False
    seed: int = 0


class StandardizedInput(nn.Module):
    """``layer((x - mean) / scale)`` for a linear layer, ``mean`` [D] and ``scale`` (a number)
    fixed (see :func:`fc7_statistics`).

    :meth:`folded` returns the plain layer computing the same function:
    ``W (x - m) / s + b = (W / s) x + (b - (W / s) m)``.
    """

    def __init__(self, layer: nn.Linear, mean: torch.Tensor, scale: float) -> None:
        super().__init__()
        self.layer = layer
        self.register_buffer("mean", mean.detach().clone())
        self.scale = scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Args: x (Tensor[S, D]), e.g. fc7's output for S RoIs."""
        return self.layer((x - self.mean) / self.scale)

    def folded(self) -> nn.Linear:
        """The wrapped layer with the standardisation folded in (modified in place)."""
        with torch.no_grad():
            self.layer.weight /= self.scale
            self.layer.bias -= self.layer.weight @ self.mean
        return self.layer


@dataclass(frozen=True)
class TrainSample:
    """One training image: its stage-1 results and frozen backbone features.

    ``classes`` maps its boxes to the training set's class vocabulary. ``features`` is
    conv5_3's output [1, 512, Hf, Wf], or conv4_3's [1, 512, 2Hf, 2Wf] when the last block is
    trained.
    """

    image: InputImage
    ground_truth: GroundTruth
    classes: ClassIds
    features: torch.Tensor

    @classmethod
    def from_run(
        cls, result: Run, class_names: tuple[str, ...], features: torch.Tensor | None = None
    ) -> TrainSample:
        """A sample from a run's stage 1 and 2, its boxes' ids in ``class_names`` (the
        training set's vocabulary); ``features`` instead of the run's own (conv4_3's)."""
        gt = result["ground_truth"]
        if features is None:
            features = result["backbone"].features
        return cls(result["image"], gt, class_ids(gt.labels, class_names), features)

    def run(
        self,
        heads: DetectorHeads,
        params: PipelineParams,
        conv5: nn.Module | None = None,
        grad: bool = False,
        spec: BackboneSpec = VGG16,
    ) -> Run:
        """The pipeline after the backbone on this sample (through ``conv5`` first, when
        given)."""
        features = self.features
        if conv5 is not None:
            with torch.set_grad_enabled(grad):
                features = conv5(features)
        return run_on_features(
            self.image, self.ground_truth, self.classes, features, heads, params, spec, grad
        )


@dataclass
class Trainer:
    """Runs SGD iterations one at a time so a caller (a page, the CLI, a test) can show
    progress, stop early, and keep the result.

    Attributes:
        heads: the trained copy (its class-score and box-delta layers wrapped in
            :class:`StandardizedInput` until :meth:`frozen_heads`).
        conv5: the trained copy of the last conv block (``train_last_block``), else None.
        history: one dict per iteration: the ``LOSS_NAMES`` floats, "seconds", and
            "grad_norm" (before clipping).
        base_rates: each optimizer parameter group's learning rate after the warm-up.
    """

    heads: DetectorHeads
    samples: list[TrainSample]
    params: PipelineParams
    train: TrainParams
    conv5: nn.Module | None = None
    history: list[dict[str, float]] = field(default_factory=list)
    optimizer: torch.optim.Optimizer | None = None
    base_rates: list[float] = field(default_factory=list)
    ended: bool = False

    @classmethod
    def create(
        cls,
        heads: DetectorHeads,
        samples: list[TrainSample],
        params: PipelineParams,
        train: TrainParams,
        conv5: nn.Module | None = None,
    ) -> Trainer:
        """Copy ``heads`` (and ``conv5``) and set up SGD on the copies."""
        if not samples:
            raise ValueError("no training images: add an image with at least one box")
        memo: dict[int, object] = {}
        if not train.train_fc:
            # Share the frozen fully connected layers instead of copying 470 MB per session.
            memo = {id(heads.head.fc6): heads.head.fc6, id(heads.head.fc7): heads.head.fc7}
        heads = copy.deepcopy(heads, memo).train()
        if train.train_last_block:
            if conv5 is None:
                raise ValueError("train_last_block needs the backbone's conv5 block")
            conv5 = copy.deepcopy(conv5).train()
        else:
            conv5 = None
        score, loc = (list(getattr(heads.head, name).parameters()) for name in HEAD_OUTPUT_LAYERS)
        if train.standardize_fc7:
            mean, scale = fc7_statistics(heads, samples, params, train.seed, conv5)
            for name in HEAD_OUTPUT_LAYERS:
                layer = getattr(heads.head, name)
                setattr(heads.head, name, StandardizedInput(layer, mean, scale))
        skip = {id(p) for p in score + loc}
        if not train.train_fc:
            skip |= {id(p) for p in _fc_parameters(heads)}
        rest = [p for p in heads.parameters() if id(p) not in skip]
        if conv5 is not None:
            rest += list(conv5.parameters())
        for p in rest + score + loc:
            p.requires_grad_(True)
        rates = [train.learning_rate] * 3
        if train.standardize_fc7:
            score_rate = train.head_learning_rate / len(samples)
            loss_lambda = params.head_loss.loss_lambda
            box_rate = score_rate / (loss_lambda if loss_lambda > 0 else 1.0)
            rates = [train.learning_rate, score_rate, box_rate]
        groups = [
            {"params": group, "lr": rate}
            for group, rate in zip((rest, score, loc), rates, strict=True)
        ]
        optimizer = torch.optim.SGD(
            groups, lr=train.learning_rate, momentum=train.momentum, weight_decay=train.weight_decay
        )
        return cls(heads, samples, params, train, conv5, [], optimizer, rates)

    @property
    def iteration(self) -> int:
        return len(self.history)

    def step(self) -> dict[str, float]:
        """One SGD iteration on the next image; returns its losses.

        Raises:
            FloatingPointError: the loss became NaN or infinite (learning rate too high).
            RuntimeError: called after :meth:`frozen_heads` ended the training.
        """
        assert self.optimizer is not None
        if self.ended:
            raise RuntimeError("this training has ended (frozen_heads was called)")
        started = time.perf_counter()
        warmup = min(1.0, (self.iteration + 1) / max(self.train.warmup_iterations, 1))
        for group, rate in zip(self.optimizer.param_groups, self.base_rates, strict=True):
            group["lr"] = rate * warmup
        sample = self.samples[self.iteration % len(self.samples)]
        params = self.params.with_seed(self.train.seed + self.iteration)
        result = sample.run(self.heads, params, self.conv5, grad=True)["losses"]
        loss = result.total
        if not math.isfinite(float(loss.detach())):
            raise FloatingPointError(
                f"the loss became {float(loss.detach())} at iteration {self.iteration + 1}: "
                "lower the learning rate"
            )
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        trained = [p for group in self.optimizer.param_groups for p in group["params"]]
        limit = self.train.max_grad_norm if self.train.max_grad_norm > 0 else math.inf
        grad_norm = float(torch.nn.utils.clip_grad_norm_(trained, limit))
        self.optimizer.step()
        losses = result.floats()
        losses["seconds"] = time.perf_counter() - started
        losses["grad_norm"] = grad_norm
        self.history.append(losses)
        return losses

    def finished(self) -> bool:
        return self.iteration >= self.train.iterations

    def frozen_heads(self) -> DetectorHeads:
        """The trained heads in eval mode without gradients (for inference), the fc7
        standardisation folded into the output layers. Ends the training: :meth:`step` cannot
        be called afterwards."""
        self.ended = True
        for name in HEAD_OUTPUT_LAYERS:
            layer = getattr(self.heads.head, name)
            if isinstance(layer, StandardizedInput):
                setattr(self.heads.head, name, layer.folded())
        heads = self.heads.eval()
        for p in heads.parameters():
            p.requires_grad_(False)
        heads.trained_fc = self.train.train_fc
        if self.conv5 is not None:
            self.conv5.eval()
            for p in self.conv5.parameters():
                p.requires_grad_(False)
        return heads


def fc7_statistics(
    heads: DetectorHeads,
    samples: list[TrainSample],
    params: PipelineParams,
    seed: int,
    conv5: nn.Module | None = None,
) -> tuple[torch.Tensor, float]:
    """The mean and scale that standardise what the head's output layers see (fc7's output).

    One batch of RoIs per image, sampled as the first iteration samples them (``seed``), no
    gradient. ``mean`` [D]: the mean over all those RoIs. ``scale``: the largest, over the
    images, of the RMS norm of ``fc7 - mean``, so no image's RoIs reach the output layers with a
    mean squared norm above 1 (images differ: on the six samples, the zebras' mean squared
    distance from the common mean is 2.3 times the average image's).
    """
    batches: list[torch.Tensor] = []
    hook = heads.head.score.register_forward_pre_hook(lambda _, args: batches.append(args[0]))
    try:
        for sample in samples:
            sample.run(heads, params.with_seed(seed), conv5)["head"]
    finally:
        hook.remove()
    batches = [b.detach() for b in batches if b.shape[0] > 0]
    if not batches:
        return torch.zeros(heads.head.score.in_features, device=heads.head.score.weight.device), 1.0
    mean = torch.cat(batches).mean(0)  # [D]
    spread = max(float((b - mean).square().sum(1).mean().sqrt()) for b in batches)
    return mean, max(spread, 1e-12)


def detection_overlap(
    sample: TrainSample,
    heads: DetectorHeads,
    params: PipelineParams,
    conv5: nn.Module | None = None,
) -> float:
    """Mean over the sample's GT boxes of :func:`frcnn_core.detect.top_detections_iou`: how well
    the best-scored test-time detections cover the objects (1 = exactly). ``conv5`` is needed
    when the sample holds conv4_3 features (``train_last_block``)."""
    detections: Detections = sample.run(heads, params, conv5)["detections"]
    return float(top_detections_iou(detections, sample.ground_truth.boxes).mean())


def _fc_parameters(heads: DetectorHeads) -> list[nn.Parameter]:
    return [*heads.head.fc6.parameters(), *heads.head.fc7.parameters()]


def split_backbone(features: nn.Sequential) -> tuple[nn.Sequential, nn.Sequential]:
    """``features[:30]`` as the frozen part up to conv4_3 and the conv5 block."""
    layers = list(features)
    return nn.Sequential(*layers[:CONV5_START]), nn.Sequential(*layers[CONV5_START:])


def heads_to_bytes(
    heads: DetectorHeads, class_names: tuple[str, ...], conv5: nn.Module | None = None
) -> bytes:
    """Serialise trained heads (and a trained conv5 block) with what is needed to rebuild them."""
    trained_fc = bool(getattr(heads, "trained_fc", True))
    state = {
        k: v.detach().cpu()
        for k, v in heads.state_dict().items()
        if trained_fc or not k.startswith(FC_PREFIXES)
    }
    payload = {
        "format": WEIGHTS_FORMAT,
        "num_classes": heads.num_classes,
        "anchors_per_cell": heads.anchors_per_cell,
        "in_channels": heads.rpn.conv.in_channels,
        "pooled_size": heads.pooled_size,
        "hidden": heads.head.fc7.out_features,
        "seed": heads.seed,
        # fc6 / fc7 drawn before the output layers (see FastRCNNHead); files without this key
        # drew them after, and are rebuilt that way.
        "init": 2,
        "trained_fc": trained_fc,
        "class_names": list(class_names),
        "heads": state,
        "conv5": None
        if conv5 is None
        else {k: v.detach().cpu() for k, v in conv5.state_dict().items()},
    }
    buf = io.BytesIO()
    torch.save(payload, buf)
    return buf.getvalue()


@dataclass(frozen=True)
class LoadedHeads:
    heads: DetectorHeads
    class_names: tuple[str, ...]
    conv5_state: dict[str, torch.Tensor] | None


def heads_from_bytes(data: bytes, shared: DetectorHeads | None = None) -> LoadedHeads:
    """Rebuild heads saved by :func:`heads_to_bytes`; ``weights_only=True`` loading.

    A file whose fc6 and fc7 were not trained leaves them out: they are the seeded initial
    layers. Given ``shared`` (initial heads of the same seed and sizes, e.g. the app's cached
    ones), the rebuilt heads use its fc6 and fc7 modules instead of building another 470 MB
    copy; without it they are rebuilt from the seed.

    Raises:
        WeightsError: not such a file, corrupt, or tensors of the wrong shape.
    """
    if not data:
        raise WeightsError("the weights file is empty")
    try:
        payload = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for foreign or corrupt files
        raise WeightsError(f"not a readable PyTorch weights file ({type(exc).__name__})") from exc
    if not isinstance(payload, dict) or payload.get("format") != WEIGHTS_FORMAT:
        raise WeightsError(
            "not an explorer weights file (expected one downloaded from the Train page "
            "or written by `python -m frcnn_core train`)"
        )
    try:
        num_classes = int(payload["num_classes"])
        anchors_per_cell = int(payload["anchors_per_cell"])
        # Files from before the pooled size was a setting: VGG16's 512 channels, 7 x 7.
        in_channels = int(payload.get("in_channels", VGG16.channels))
        pooled_size = int(payload.get("pooled_size", 7))
        hidden = int(payload["hidden"])
        seed = int(payload.get("seed", 0))
        legacy_init = int(payload.get("init", 1)) < 2
        trained_fc = bool(payload.get("trained_fc", True))
        # Other people's files: their class names are labels like any other.
        class_names = tuple(clean_label(x) for x in payload["class_names"])
        state = payload["heads"]
    except (KeyError, TypeError, ValueError) as exc:
        raise WeightsError(f"the weights file is missing {exc}") from exc
    if (
        not 1 <= num_classes <= 1000
        or not 1 <= anchors_per_cell <= MAX_ANCHORS_PER_CELL
        or not 1 <= hidden <= 4096
        or in_channels != VGG16.channels
        or not 1 <= pooled_size <= int(parameter("roi_pool.output_size").high or 1)
    ):
        raise WeightsError("the weights file describes an impossible model")
    sizes = (num_classes, anchors_per_cell, in_channels, pooled_size)
    reuse = (
        not trained_fc
        and not legacy_init
        and shared is not None
        and shared.seed == seed
        and shared.head.fc6.in_features == in_channels * pooled_size * pooled_size
        and shared.head.fc7.out_features == hidden
    )
    if reuse:
        # Built without memory (meta tensors), then given real tensors: the file's, and the
        # shared fc6 / fc7 modules.
        with torch.device("meta"):
            heads = DetectorHeads(*sizes, hidden=hidden, seed=seed)
        heads.head.fc6, heads.head.fc7 = shared.head.fc6, shared.head.fc7  # type: ignore[union-attr]
    else:
        heads = DetectorHeads(*sizes, hidden=hidden, seed=seed, legacy_init=legacy_init)
    shapes = {
        k: v.shape
        for k, v in heads.state_dict().items()
        if trained_fc or not k.startswith(FC_PREFIXES)
    }
    if not isinstance(state, dict) or set(state) != set(shapes):
        raise WeightsError("the weights file does not hold the RPN and Fast R-CNN heads")
    for key, shape in shapes.items():
        value = state[key]
        if not isinstance(value, torch.Tensor) or value.shape != shape:
            got = tuple(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__
            raise WeightsError(f"{key} has shape {got}, expected {tuple(shape)}")
        if not torch.isfinite(value).all():
            raise WeightsError(f"{key} holds NaN or infinite values")
    heads.load_state_dict(state, strict=trained_fc, assign=reuse)
    heads.trained_fc = trained_fc
    assert not any(p.is_meta for p in heads.parameters())
    conv5 = payload.get("conv5")
    return LoadedHeads(heads.eval(), class_names, conv5 if isinstance(conv5, dict) else None)
