"""Stages 12 and 13: the Fast R-CNN head and its loss.

Shape letters: S RoIs, C object classes (class 0 is background, so C + 1 scores).

    pooled (S, 512, 7, 7) -> (S, 25088) -> fc6 4096 + ReLU -> fc7 4096 + ReLU
        -> scores (S, C+1), deltas (S, (C+1)*4) -> (S, C+1, 4)
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from frcnn_core.boxes import smooth_l1_sum


@dataclass(frozen=True)
class HeadParams:
    """Fast R-CNN head settings (stage 12). ``bug_b11_no_relu`` drops the ReLUs between the
    fully connected layers."""

    bug_b11_no_relu: bool = False


@dataclass(frozen=True)
class HeadLossParams:
    """Head loss settings (stage 13): the box term's weight lambda, smooth L1's beta, and
    ``bug_b12_unreduced``, which keeps the loc loss as the tutorial's matrix."""

    loss_lambda: float = 10.0
    smooth_l1_beta: float = 1.0
    bug_b12_unreduced: bool = False


class FastRCNNHead(nn.Module):
    """fc6, fc7 (with ReLU), then a class-score layer and a class-specific box-delta layer.

    fc6, fc7 and the score layer are N(0, 0.01), the delta layer N(0, 0.001), biases 0 (as in
    the paper and torchvision's VGG), drawn from ``seed``. fc6 and fc7 are drawn first, so they
    depend only on the seed and their sizes, not on the number of classes: heads for any
    classes can share one copy of them (they hold 120 M of the head's parameters).
    ``legacy_init`` draws in the order of weights files written before that
    (``frcnn-explorer-heads/1`` without ``"init": 2``), whose fc6 and fc7 depended on it.
    """

    def __init__(
        self,
        num_classes: int,
        in_features: int,
        hidden: int = 4096,
        seed: int = 0,
        legacy_init: bool = False,
    ) -> None:
        super().__init__()
        self.num_classes = num_classes  # object classes, background excluded
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.fc6 = nn.Linear(in_features, hidden)
            self.fc7 = nn.Linear(hidden, hidden)
            if legacy_init:
                self.score = nn.Linear(hidden, num_classes + 1)
                self.loc = nn.Linear(hidden, (num_classes + 1) * 4)
            with torch.no_grad():
                # fc6 / fc7 as torchvision's VGG classifier: N(0, 0.01). PyTorch's default
                # (uniform +-1/sqrt(fan_in)) shrinks a 25088-wide input ~20x per layer, and the
                # head then learns almost nothing in a classroom-length training run.
                for layer in (self.fc6, self.fc7):
                    layer.weight.normal_(0.0, 0.01)
                    layer.bias.zero_()
            if not legacy_init:
                self.score = nn.Linear(hidden, num_classes + 1)
                self.loc = nn.Linear(hidden, (num_classes + 1) * 4)
            with torch.no_grad():
                self.score.weight.normal_(0.0, 0.01)
                self.loc.weight.normal_(0.0, 0.001)
                self.score.bias.zero_()
                self.loc.bias.zero_()

    def forward(self, pooled: torch.Tensor, relu: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
        """Args: pooled (Tensor[S, C, P, P]) with ``C * P * P == in_features``; ``relu=False`` is
        bug B11.

        Returns: scores [S, C+1], deltas [S, C+1, 4]."""
        x = pooled.flatten(1)  # (S, 512, 7, 7) -> (S, 25088)
        x = self.fc6(x)
        if relu:
            x = F.relu(x)
        x = self.fc7(x)
        if relu:
            x = F.relu(x)
        return self.score(x), self.loc(x).reshape(x.shape[0], self.num_classes + 1, 4)


@dataclass(frozen=True)
class HeadOutput:
    """Attributes:
    scores (Tensor[S, C+1]): class logits.
    deltas (Tensor[S, C+1, 4]): class-specific (dx, dy, dw, dh).
    """

    scores: torch.Tensor
    deltas: torch.Tensor

    @property
    def probs(self) -> torch.Tensor:
        return torch.softmax(self.scores.detach(), dim=1)


def head_forward(
    pooled: torch.Tensor, head: FastRCNNHead, params: HeadParams = HeadParams()
) -> HeadOutput:
    """Stage 12."""
    scores, deltas = head(pooled, relu=not params.bug_b11_no_relu)
    return HeadOutput(scores=scores, deltas=deltas)


@dataclass(frozen=True)
class HeadLoss:
    """Attributes:
    cls (Tensor[]): cross-entropy over the S sampled RoIs.
    loc (Tensor[]): ``lambda * sum smoothL1 / N_pos`` over positive RoIs, using the deltas of
        each RoI's true class.
    loc_sum (Tensor[]): the plain smooth-L1 sum, before lambda and N_pos.
    n_pos: positive RoIs.
    """

    cls: torch.Tensor
    loc: torch.Tensor
    loc_sum: torch.Tensor
    n_pos: int

    @property
    def total(self) -> torch.Tensor:
        return self.cls + self.loc


class UnreducedLossError(RuntimeError):
    """The tutorial's B12: a loss that is a matrix cannot be back-propagated."""


def head_loss(
    output: HeadOutput,
    labels: torch.Tensor,
    targets: torch.Tensor,
    params: HeadLossParams = HeadLossParams(),
) -> HeadLoss:
    """Stage 13: ``CE(scores, labels) + lambda * sum_{pos} smoothL1(deltas[label] - t) / N_pos``.

    Args:
        labels (Tensor[S]): int64 class ids, 0 = background.
        targets (Tensor[S, 4]): deltas of each RoI to its GT (used where label > 0).

    Raises:
        UnreducedLossError: with ``bug_b12_unreduced``, as ``.backward()`` fails in the tutorial.
    """
    labels = labels.to(output.scores.device)
    if labels.numel():
        cls = F.cross_entropy(output.scores, labels)
    else:
        cls = output.scores.sum() * 0.0
    pos = torch.nonzero(labels > 0).squeeze(1)
    picked = output.deltas[pos, labels[pos]]  # [P, 4]: each positive's true-class deltas
    if params.bug_b12_unreduced:
        per_element = F.smooth_l1_loss(picked, targets[pos].to(picked.dtype), reduction="none")
        raise UnreducedLossError(
            f"roi_loc_loss has shape {tuple(per_element.shape)}: total_loss is a matrix and "
            "total_loss.backward() raises 'grad can be implicitly created only for scalar outputs'"
        )
    loc_sum = smooth_l1_sum(picked, targets[pos].to(picked.device), params.smooth_l1_beta)
    loc = params.loss_lambda * loc_sum / max(int(pos.numel()), 1)
    return HeadLoss(cls=cls, loc=loc, loc_sum=loc_sum, n_pos=int(pos.numel()))
