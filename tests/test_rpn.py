"""Stages 7 and 8: the RPN head's output order, its initialisation, bug B6 and the RPN loss."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from frcnn_core.rpn import RPNHead, RPNLossParams, RPNOutput, RPNParams, rpn_forward, rpn_loss

A = 9


def small_head(seed: int = 0, random_bias: bool = True) -> RPNHead:
    head = RPNHead(in_channels=8, anchors_per_cell=A, mid_channels=16, seed=seed)
    if random_bias:  # non-zero biases, so that f(0) != 0 and the linearity check means something
        g = torch.Generator().manual_seed(seed + 100)
        with torch.no_grad():
            for layer in (head.conv, head.loc, head.score):
                layer.bias.copy_(torch.randn(layer.bias.shape, generator=g) * 0.1)
    return head


def test_output_order_is_row_major_per_anchor():
    # locs[(iy * Wf + ix) * A + a] is the (dx, dy, dw, dh) at channels 4a..4a+3 of cell (iy, ix).
    head = small_head()
    hf, wf = 3, 5
    x = torch.randn(1, 8, hf, wf, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        locs, scores = head(x)
        mid = F.relu(head.conv(x))
        loc_map, score_map = head.loc(mid)[0], head.score(mid)[0]  # [A*4, Hf, Wf], [A*2, Hf, Wf]
    assert locs.shape == (hf * wf * A, 4) and scores.shape == (hf * wf * A, 2)
    for iy, ix, a in [(0, 0, 0), (0, 1, 0), (1, 0, 0), (2, 4, 8), (1, 3, 5)]:
        n = (iy * wf + ix) * A + a
        torch.testing.assert_close(locs[n], loc_map[4 * a : 4 * a + 4, iy, ix])
        torch.testing.assert_close(scores[n], score_map[2 * a : 2 * a + 2, iy, ix])


def test_initialisation_normal_001_zero_bias():
    head = RPNHead(seed=0)
    with torch.no_grad():
        for layer in (head.conv, head.loc, head.score):
            assert (layer.bias == 0).all()
            assert float(layer.weight.mean()) == pytest.approx(0.0, abs=1e-3)
        # 512 * 512 * 9 = 2.4M draws: the sample std is within 1% of 0.01.
        assert float(head.conv.weight.std()) == pytest.approx(0.01, rel=0.01)
    assert head.loc.weight.shape == (36, 512, 1, 1) and head.score.weight.shape == (18, 512, 1, 1)
    again, other = RPNHead(seed=0), RPNHead(seed=1)
    assert torch.equal(again.conv.weight, head.conv.weight)
    assert not torch.equal(other.conv.weight, head.conv.weight)


def test_b6_without_relu_the_head_is_one_linear_map():
    # Without the ReLU, conv3x3 then conv1x1 is affine:
    # f(a + b) - f(0) = (f(a) - f(0)) + (f(b) - f(0)).
    head = small_head()
    g = torch.Generator().manual_seed(1)
    a = torch.randn(1, 8, 4, 6, generator=g)
    b = torch.randn(1, 8, 4, 6, generator=g)
    zero = torch.zeros_like(a)

    def gap(relu: bool) -> float:
        with torch.no_grad():
            f = lambda x: torch.cat(head(x, relu=relu), dim=1)  # noqa: E731
            lhs = f(a + b) - f(zero)
            rhs = (f(a) - f(zero)) + (f(b) - f(zero))
            return float((lhs - rhs).abs().max()), float(rhs.abs().max())

    err, scale = gap(relu=False)
    assert err < 1e-6 * max(scale, 1.0)
    err, scale = gap(relu=True)
    assert err > 1e-3 * scale  # the ReLU breaks linearity


def test_b6_flag_changes_the_outputs(small_features):
    head = RPNHead(seed=0)
    good = rpn_forward(small_features, head, RPNParams())
    bad = rpn_forward(small_features, head, RPNParams(bug_b6_no_relu=True))
    assert good.locs.shape == bad.locs.shape == (20 * 20 * 9, 4)
    assert (good.locs - bad.locs).abs().max() > 1e-4
    assert (good.scores - bad.scores).abs().max() > 1e-4


def test_objectness_is_softmax_object_probability():
    out = RPNOutput(
        locs=torch.zeros(3, 4), scores=torch.tensor([[0.0, 0.0], [0.0, 2.0], [1.0, -1.0]])
    )
    # p = e^s1 / (e^s0 + e^s1) = sigmoid(s1 - s0): 0.5, sigmoid(2) = 0.8808, sigmoid(-2) = 0.1192.
    assert out.objectness.tolist() == pytest.approx([0.5, 0.880797, 0.119203], abs=1e-6)


def test_rpn_loss_hand_case():
    # Anchors: positive, negative, ignored. Equal logits -> CE = log 2 over the 2 sampled anchors.
    # Loc: only the positive, smoothL1(0.5 - 0) + smoothL1(2 - 0) = 0.125 + 1.5 = 1.625 summed;
    # loc = lambda * 1.625 / N_pos = 10 * 1.625 / 1 = 16.25.
    out = RPNOutput(
        locs=torch.tensor([[0.5, 2.0, 0.0, 0.0], [9.0, 9.0, 9.0, 9.0], [9.0, 9.0, 9.0, 9.0]]),
        scores=torch.zeros(3, 2),
    )
    labels = torch.tensor([1, 0, -1])
    loss = rpn_loss(out, labels, torch.zeros(3, 4))
    assert (loss.n_sampled, loss.n_pos) == (2, 1)
    assert float(loss.cls) == pytest.approx(math.log(2))
    assert float(loss.loc_sum) == pytest.approx(1.625)
    assert float(loss.loc) == pytest.approx(16.25)
    assert float(loss.total) == pytest.approx(math.log(2) + 16.25)
    # lambda and beta are parameters.
    params = RPNLossParams(loss_lambda=1.0, smooth_l1_beta=4.0)
    half = rpn_loss(out, labels, torch.zeros(3, 4), params)
    # beta 4: 0.5 * 0.25 / 4 + 0.5 * 4 / 4 = 0.03125 + 0.5 = 0.53125.
    assert float(half.loc_sum) == pytest.approx(0.53125)
    assert float(half.loc) == pytest.approx(0.53125)
    assert float(half.cls) == pytest.approx(math.log(2))


def test_rpn_loss_cross_entropy_matches_definition():
    g = torch.Generator().manual_seed(0)
    scores = torch.randn(50, 2, generator=g)
    labels = torch.randint(-1, 2, (50,), generator=g)
    loss = rpn_loss(RPNOutput(torch.zeros(50, 4), scores), labels, torch.zeros(50, 4))
    rows, targets = scores.tolist(), labels.tolist()
    sampled = [i for i in range(50) if targets[i] >= 0]
    # -log softmax of the labelled class, averaged over the sampled anchors.
    expected = sum(
        -math.log(math.exp(rows[i][targets[i]]) / sum(math.exp(v) for v in rows[i]))
        for i in sampled
    ) / len(sampled)
    assert float(loss.cls) == pytest.approx(expected, rel=1e-5)


def test_rpn_loss_with_nothing_sampled_is_zero_and_differentiable():
    scores = torch.randn(4, 2, requires_grad=True)
    out = RPNOutput(locs=torch.zeros(4, 4, requires_grad=True), scores=scores)
    loss = rpn_loss(out, torch.full((4,), -1), torch.zeros(4, 4))
    assert float(loss.total.detach()) == 0.0 and loss.n_sampled == 0
    loss.total.backward()
    assert scores.grad is not None and (scores.grad == 0).all()
