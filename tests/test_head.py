"""Stages 12 and 13: the Fast R-CNN head, its loss, and bugs B11 and B12."""

from __future__ import annotations

import math

import pytest
import torch

from frcnn_core.head import (
    FastRCNNHead,
    HeadLossParams,
    HeadOutput,
    HeadParams,
    UnreducedLossError,
    head_forward,
    head_loss,
)

SMALL = {"in_features": 2 * 7 * 7, "hidden": 32}


def test_shapes_and_initialisation():
    head = FastRCNNHead(num_classes=3, **SMALL, seed=0)
    pooled = torch.randn(5, 2, 7, 7, generator=torch.Generator().manual_seed(0))
    out = head_forward(pooled, head)
    assert out.scores.shape == (5, 4)  # C + 1
    assert out.deltas.shape == (5, 4, 4)  # (C + 1) x (dx, dy, dw, dh)
    torch.testing.assert_close(out.probs.sum(dim=1), torch.ones(5))
    assert (head.score.bias == 0).all() and (head.loc.bias == 0).all()
    big = FastRCNNHead(num_classes=20, in_features=64, hidden=4096, seed=0)
    with torch.no_grad():
        # 21 x 4096 and 84 x 4096 draws: the sample std is within 3% of 0.01 and 0.001.
        assert float(big.score.weight.std()) == pytest.approx(0.01, rel=0.03)
        assert float(big.loc.weight.std()) == pytest.approx(0.001, rel=0.03)
    again = FastRCNNHead(num_classes=3, **SMALL, seed=0)
    assert torch.equal(again.fc6.weight, head.fc6.weight)
    assert not torch.equal(FastRCNNHead(num_classes=3, **SMALL, seed=1).fc6.weight, head.fc6.weight)


def test_loss_picks_the_true_class_deltas():
    # Two RoIs, classes 0 (background), 1, 2. RoI 0 is class 2 with target (0.5, 0, 0, 0);
    # RoI 1 is background. The deltas of the wrong classes are huge: only class 2's row of RoI 0
    # may enter the loc loss. Its deltas are 0, so smoothL1(0 - 0.5) = 0.5 * 0.25 = 0.125;
    # loc = lambda * 0.125 / N_pos = 10 * 0.125 / 1 = 1.25.
    # Scores all 0: CE = log 3 per RoI.
    deltas = torch.full((2, 3, 4), 100.0)
    deltas[0, 2] = 0.0
    out = HeadOutput(scores=torch.zeros(2, 3), deltas=deltas)
    labels = torch.tensor([2, 0])
    targets = torch.tensor([[0.5, 0.0, 0.0, 0.0], [7.0, 7.0, 7.0, 7.0]])
    loss = head_loss(out, labels, targets)
    assert loss.n_pos == 1
    assert float(loss.loc_sum) == pytest.approx(0.125)  # before lambda and N_pos
    assert float(loss.loc) == pytest.approx(1.25)
    assert float(loss.cls) == pytest.approx(math.log(3))
    assert float(loss.total) == pytest.approx(math.log(3) + 1.25)
    assert loss.cls.dim() == 0 and loss.loc.dim() == 0  # scalars (B12 fixed)
    # Swap: now class 2's deltas are 100 and class 1's 0. The loss follows class 2:
    # smoothL1(100 - 0.5) = 99.0, smoothL1(100 - 0) = 99.5 three times.
    deltas[0, 1] = 0.0
    deltas[0, 2] = 100.0
    wrong = head_loss(HeadOutput(torch.zeros(2, 3), deltas), labels, targets)
    assert float(wrong.loc) == pytest.approx(10 * (99.0 + 3 * 99.5))
    # lambda and beta are the loss's parameters. beta 4: smoothL1(-0.5) = 0.5 * 0.25 / 4 =
    # 0.03125 (deltas back to the first case); lambda 2: loc = 2 * 0.03125 / 1 = 0.0625.
    deltas[0, 2] = 0.0
    tuned = head_loss(
        HeadOutput(torch.zeros(2, 3), deltas),
        labels,
        targets,
        HeadLossParams(loss_lambda=2.0, smooth_l1_beta=4.0),
    )
    assert float(tuned.loc_sum) == pytest.approx(0.03125)
    assert float(tuned.loc) == pytest.approx(0.0625)
    assert float(tuned.cls) == pytest.approx(math.log(3))  # the class term does not change


def test_loss_averages_over_positives():
    # Three positives with targets (1, 0, 0, 0), (0, 2, 0, 0), (0, 0, 0, 0), zero deltas:
    # 0.5 + (2 - 0.5) + 0 = 2.0 summed, 10 * 2.0 / 3 = 6.667.
    out = HeadOutput(scores=torch.zeros(4, 2), deltas=torch.zeros(4, 2, 4))
    labels = torch.tensor([1, 1, 1, 0])
    targets = torch.tensor([[1.0, 0, 0, 0], [0, 2.0, 0, 0], [0.0, 0, 0, 0], [5.0, 5, 5, 5]])
    loss = head_loss(out, labels, targets)
    assert float(loss.loc_sum) == pytest.approx(2.0) and loss.n_pos == 3
    assert float(loss.loc) == pytest.approx(20 / 3)


def test_loss_without_positives_or_rois():
    out = HeadOutput(scores=torch.zeros(3, 2), deltas=torch.ones(3, 2, 4))
    loss = head_loss(out, torch.zeros(3, dtype=torch.int64), torch.zeros(3, 4))
    assert loss.n_pos == 0 and float(loss.loc) == 0.0
    assert float(loss.cls) == pytest.approx(math.log(2))
    empty = HeadOutput(scores=torch.zeros(0, 2), deltas=torch.zeros(0, 2, 4))
    loss = head_loss(empty, torch.zeros(0, dtype=torch.int64), torch.zeros(0, 4))
    assert float(loss.total) == 0.0 and math.isfinite(float(loss.total))


def test_b12_unreduced_loss_raises():
    out = HeadOutput(scores=torch.zeros(2, 3), deltas=torch.zeros(2, 3, 4))
    with pytest.raises(UnreducedLossError, match="backward"):
        head_loss(
            out, torch.tensor([2, 1]), torch.zeros(2, 4), HeadLossParams(bug_b12_unreduced=True)
        )


def test_b11_without_relu_the_head_is_affine():
    head = FastRCNNHead(num_classes=2, **SMALL, seed=0)
    g = torch.Generator().manual_seed(1)
    a, b = torch.randn(3, 2, 7, 7, generator=g), torch.randn(3, 2, 7, 7, generator=g)
    zero = torch.zeros_like(a)

    def gap(relu: bool) -> tuple[float, float]:
        with torch.no_grad():

            def f(x):
                scores, deltas = head(x, relu=relu)
                return torch.cat((scores, deltas.flatten(1)), dim=1)

            lhs = f(a + b) - f(zero)
            rhs = (f(a) - f(zero)) + (f(b) - f(zero))
            return float((lhs - rhs).abs().max()), float(rhs.abs().max())

    err, scale = gap(relu=False)
    assert err < 1e-5 * max(scale, 1.0)
    err, scale = gap(relu=True)
    assert err > 1e-3 * scale
    good = head_forward(a, head, HeadParams())
    bad = head_forward(a, head, HeadParams(bug_b11_no_relu=True))
    assert (good.scores - bad.scores).abs().max() > 1e-4


def test_regression_head_forward_with_zero_rois():
    # Bug found while writing these tests: FastRCNNHead.forward reshapes the delta layer's output
    # with reshape(S, -1, 4), which torch refuses for S = 0 ("-1 is ambiguous"). Zero RoIs happen
    # in practice: no proposal survives min_size, or no proposal falls in the negative IoU range
    # (e.g. roi_neg_iou_lo = 0.1 and an image without boxes). The output must be [0, C+1, 4].
    head = FastRCNNHead(num_classes=2, **SMALL, seed=0)
    out = head_forward(torch.zeros(0, 2, 7, 7), head)
    assert out.scores.shape == (0, 3)
    assert out.deltas.shape == (0, 3, 4)
    loss = head_loss(out, torch.zeros(0, dtype=torch.int64), torch.zeros(0, 4))
    assert float(loss.total.detach()) == 0.0
