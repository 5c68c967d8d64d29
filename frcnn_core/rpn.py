"""Stages 7 and 8: the region proposal network head and its loss.

Shape letters: A anchors per cell, Hf, Wf feature-map size, N = Hf * Wf * A anchors.

The head's outputs are flattened in the anchor order of :mod:`frcnn_core.anchors`::

    locs:   (1, A*4, Hf, Wf) -> (1, Hf, Wf, A*4) -> (N, 4)
    scores: (1, A*2, Hf, Wf) -> (1, Hf, Wf, A*2) -> (N, 2)    [background, object] logits
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from frcnn_core.boxes import smooth_l1_sum


@dataclass(frozen=True)
class RPNParams:
    """RPN head settings (stage 7). ``bug_b6_no_relu`` drops the ReLU after the 3 x 3 conv."""

    bug_b6_no_relu: bool = False


@dataclass(frozen=True)
class RPNLossParams:
    """RPN loss settings (stage 8): the box term's weight lambda and smooth L1's beta."""

    loss_lambda: float = 10.0
    smooth_l1_beta: float = 1.0


class RPNHead(nn.Module):
    """conv 3x3 (C -> mid) + ReLU, then 1x1 convs to ``A*4`` deltas and ``A*2`` logits.

    Weights are N(0, 0.01), biases 0 (SPEC stage 7), drawn from ``seed``.
    """

    def __init__(
        self,
        in_channels: int = 512,
        anchors_per_cell: int = 9,
        mid_channels: int = 512,
        seed: int = 0,
    ) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, mid_channels, 3, padding=1)
        self.loc = nn.Conv2d(mid_channels, anchors_per_cell * 4, 1)
        self.score = nn.Conv2d(mid_channels, anchors_per_cell * 2, 1)
        generator = torch.Generator().manual_seed(seed)
        for layer in (self.conv, self.loc, self.score):
            with torch.no_grad():
                layer.weight.normal_(0.0, 0.01, generator=generator)
                layer.bias.zero_()

    def forward(
        self, features: torch.Tensor, relu: bool = True
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Args: features (Tensor[1, C, Hf, Wf]); ``relu=False`` is bug B6.

        Returns: locs [N, 4] and scores [N, 2]."""
        x = self.conv(features)
        if relu:
            x = F.relu(x)
        locs = self.loc(x).permute(0, 2, 3, 1).reshape(-1, 4)  # (1, A*4, Hf, Wf) -> (N, 4)
        scores = self.score(x).permute(0, 2, 3, 1).reshape(-1, 2)  # (1, A*2, Hf, Wf) -> (N, 2)
        return locs, scores


@dataclass(frozen=True)
class RPNOutput:
    """Attributes:
    locs (Tensor[N, 4]): predicted (dx, dy, dw, dh) per anchor.
    scores (Tensor[N, 2]): (background, object) logits per anchor.
    objectness (Tensor[N]): softmax object probability, what proposals are ranked by.
    """

    locs: torch.Tensor
    scores: torch.Tensor

    @property
    def objectness(self) -> torch.Tensor:
        return torch.softmax(self.scores.detach(), dim=1)[:, 1]


def rpn_forward(
    features: torch.Tensor, head: RPNHead, params: RPNParams = RPNParams()
) -> RPNOutput:
    """Stage 7: run the RPN head on the backbone's feature map."""
    locs, scores = head(features, relu=not params.bug_b6_no_relu)
    return RPNOutput(locs=locs, scores=scores)


@dataclass(frozen=True)
class RPNLoss:
    """Attributes:
    cls (Tensor[]): cross-entropy over the sampled anchors (labels 0 / 1; -1 ignored).
    loc (Tensor[]): ``lambda * sum smoothL1 / N_pos`` over positive anchors.
    loc_sum (Tensor[]): the plain smooth-L1 sum, before lambda and N_pos.
    n_sampled, n_pos: how many anchors entered each term.
    """

    cls: torch.Tensor
    loc: torch.Tensor
    loc_sum: torch.Tensor
    n_sampled: int
    n_pos: int

    @property
    def total(self) -> torch.Tensor:
        return self.cls + self.loc


def rpn_loss(
    output: RPNOutput,
    labels: torch.Tensor,
    targets: torch.Tensor,
    params: RPNLossParams = RPNLossParams(),
) -> RPNLoss:
    """Stage 8: ``L = CE(scores, labels) + lambda * sum_{pos} smoothL1(locs - targets) / N_pos``.

    Args:
        labels (Tensor[N]): int64, 1 / 0 / -1 for every anchor (after sampling).
        targets (Tensor[N, 4]): anchor deltas to the matched GT (0 where not positive).
    """
    labels = labels.to(output.scores.device)
    sampled = labels >= 0
    n_sampled = int(sampled.sum())
    if n_sampled:
        cls = F.cross_entropy(output.scores[sampled], labels[sampled])
    else:
        cls = output.scores.sum() * 0.0
    pos = labels == 1
    n_pos = int(pos.sum())
    loc_sum = smooth_l1_sum(
        output.locs[pos], targets.to(output.locs.device)[pos], params.smooth_l1_beta
    )
    loc = params.loss_lambda * loc_sum / max(n_pos, 1)
    return RPNLoss(cls=cls, loc=loc, loc_sum=loc_sum, n_sampled=n_sampled, n_pos=n_pos)
