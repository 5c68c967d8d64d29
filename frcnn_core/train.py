"""Training the RPN and the Fast R-CNN head (stages 7 to 13 with gradients), and their weights
files.

The backbone is frozen: its features are computed once per image and reused every iteration.
With ``train_last_block`` the conv5 block (``features[23:30]``) is trained too; then the frozen
part ends at conv4_3 (stride 8) and the block runs every iteration.

The trained heads are a deep copy: the module passed in (for the app, the one shared by every
user) is never modified.
"""

from __future__ import annotations

import copy
import io
import math
import os
import time
from dataclasses import dataclass, field

import torch
from torch import nn

from frcnn_core.backbone import WeightsError
from frcnn_core.image import InputImage
from frcnn_core.pipeline import DetectorHeads, PipelineParams, run_pipeline

WEIGHTS_FORMAT = "frcnn-explorer-heads/1"
CONV5_START = 23  # features[23] is pool4; features[23:30] = pool4 + conv5_1..conv5_3 with ReLUs
# Left out of a weights file when they were not trained: they are rebuilt from the seed.
FC_PREFIXES = ("head.fc6.", "head.fc7.")
LOSS_NAMES = ("rpn_cls", "rpn_loc", "roi_cls", "roi_loc", "total")


@dataclass(frozen=True)
class TrainParams:
    """SGD settings. Each iteration uses one image (round-robin) and reseeds the anchor and RoI
    sampling with ``seed + iteration`` so that the batches differ.

    ``train_fc`` trains fc6 and fc7 too (118 M parameters: about 3x slower per iteration and a
    470 MB weights file). By default they stay at their seeded initial values and are shared,
    not copied, so a session's trained model costs a few MB.
    """

    iterations: int = 60
    learning_rate: float = 0.001
    momentum: float = 0.9
    weight_decay: float = 0.0005
    train_fc: bool = False
    train_last_block: bool = False
    seed: int = 0


@dataclass(frozen=True)
class TrainSample:
    """One training image: input frame, GT class ids and frozen backbone features.

    ``features`` is conv5_3's output [1, 512, Hf, Wf], or conv4_3's [1, 512, 2Hf, 2Wf] when the
    last block is trained.
    """

    image: InputImage
    gt_labels: torch.Tensor
    features: torch.Tensor


@dataclass
class Trainer:
    """Runs SGD iterations one at a time so a caller (a page, the CLI, a test) can show
    progress, stop early, and keep the result.

    Attributes:
        heads: the trained copy.
        conv5: the trained copy of the last conv block (``train_last_block``), else None.
        history: one dict of loss floats per iteration (``LOSS_NAMES`` + "seconds").
    """

    heads: DetectorHeads
    samples: list[TrainSample]
    params: PipelineParams
    train: TrainParams
    conv5: nn.Module | None = None
    history: list[dict[str, float]] = field(default_factory=list)
    optimizer: torch.optim.Optimizer | None = None

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
        frozen = set() if train.train_fc else {id(p) for p in _fc_parameters(heads)}
        trainable = [p for p in heads.parameters() if id(p) not in frozen]
        if train.train_last_block:
            if conv5 is None:
                raise ValueError("train_last_block needs the backbone's conv5 block")
            conv5 = copy.deepcopy(conv5).train()
            trainable += list(conv5.parameters())
        else:
            conv5 = None
        for p in trainable:
            p.requires_grad_(True)
        optimizer = torch.optim.SGD(
            trainable,
            lr=train.learning_rate,
            momentum=train.momentum,
            weight_decay=train.weight_decay,
        )
        return cls(heads, samples, params, train, conv5, [], optimizer)

    @property
    def iteration(self) -> int:
        return len(self.history)

    def step(self) -> dict[str, float]:
        """One SGD iteration on the next image; returns its losses.

        Raises:
            FloatingPointError: the loss became NaN or infinite (learning rate too high).
        """
        assert self.optimizer is not None
        started = time.perf_counter()
        sample = self.samples[self.iteration % len(self.samples)]
        features = sample.features
        if self.conv5 is not None:
            features = self.conv5(features)
        params = self.params.with_seed(self.train.seed + self.iteration)
        result = run_pipeline(
            sample.image, sample.gt_labels, features, self.heads, params, grad=True
        )
        loss = result.rpn_loss.total + result.head_loss.total
        if not math.isfinite(float(loss.detach())):
            raise FloatingPointError(
                f"the loss became {float(loss.detach())} at iteration {self.iteration + 1}: "
                "lower the learning rate"
            )
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        losses = result.losses()
        losses["seconds"] = time.perf_counter() - started
        self.history.append(losses)
        return losses

    def finished(self) -> bool:
        return self.iteration >= self.train.iterations

    def frozen_heads(self) -> DetectorHeads:
        """The trained heads in eval mode without gradients (for inference)."""
        heads = self.heads.eval()
        for p in heads.parameters():
            p.requires_grad_(False)
        heads.trained_fc = self.train.train_fc
        if self.conv5 is not None:
            self.conv5.eval()
            for p in self.conv5.parameters():
                p.requires_grad_(False)
        return heads


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
        "anchors_per_cell": heads.rpn.score.out_channels // 2,
        "hidden": heads.head.fc7.out_features,
        "seed": heads.seed,
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


def heads_from_bytes(data: bytes) -> LoadedHeads:
    """Rebuild heads saved by :func:`heads_to_bytes`; ``weights_only=True`` loading.

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
        hidden = int(payload["hidden"])
        seed = int(payload.get("seed", 0))
        trained_fc = bool(payload.get("trained_fc", True))
        class_names = tuple(str(x) for x in payload["class_names"])
        state = payload["heads"]
    except (KeyError, TypeError, ValueError) as exc:
        raise WeightsError(f"the weights file is missing {exc}") from exc
    if not 1 <= num_classes <= 1000 or not 1 <= anchors_per_cell <= 100 or not 1 <= hidden <= 4096:
        raise WeightsError("the weights file describes an impossible model")
    heads = DetectorHeads(num_classes, anchors_per_cell, hidden=hidden, seed=seed)
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
    heads.load_state_dict(state, strict=trained_fc)
    heads.trained_fc = trained_fc
    conv5 = payload.get("conv5")
    return LoadedHeads(heads.eval(), class_names, conv5 if isinstance(conv5, dict) else None)


def save_heads(path: str | os.PathLike[str], data: bytes) -> None:
    with open(path, "wb") as fh:
        fh.write(data)
