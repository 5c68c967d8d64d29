"""Stage 10: RoI sampling and the Fast R-CNN head's targets, against the loop reference."""

from __future__ import annotations

import math

import pytest
import reference as ref
import torch

from frcnn_core.proposal_targets import ProposalTargetParams, proposal_targets

DEFAULT = ProposalTargetParams()


def random_rois(n: int, generator: torch.Generator, size: float = 320.0) -> torch.Tensor:
    xy = torch.rand(n, 2, generator=generator) * (size - 20)
    wh = 16 + torch.rand(n, 2, generator=generator) * 120
    return torch.cat((xy, (xy + wh).clamp(max=size)), dim=1)


def test_hand_case():
    # GT [0, 0, 100, 100] (class 2). RoIs:
    # r0 [0, 0, 100, 100]  IoU 1            -> positive
    # r1 [0, 0, 100, 50]   IoU 5000 / 10000 = 0.5 -> positive (>= 0.5)
    # r2 [50, 0, 150, 100] IoU 5000 / 15000 = 0.333 -> negative
    # r3 [200, 200, 260, 260] IoU 0         -> negative (0 is in [0, 0.5))
    gt = torch.tensor([[0.0, 0, 100, 100]])
    rois = torch.tensor(
        [[0.0, 0, 100, 100], [0, 0, 100, 50], [50, 0, 150, 100], [200, 200, 260, 260]]
    )
    out = proposal_targets(rois, gt, torch.tensor([2]), DEFAULT)
    assert out.max_iou.tolist() == pytest.approx([1.0, 0.5, 1 / 3, 0.0])
    assert sorted(out.pos_index.tolist()) == [0, 1]
    assert sorted(out.neg_index.tolist()) == [2, 3]
    assert out.candidates == (2, 2)
    # Positives first, labelled with their GT's class; negatives 0.
    assert out.labels.tolist() == [2, 2, 0, 0]
    pos = {i: k for k, i in enumerate(out.sample_index.tolist())}
    # r1 -> GT: centre (50, 25) -> (50, 50), size 100 x 50 -> 100 x 100:
    # dx = 0, dy = 25 / 50 = 0.5, dw = 0, dh = log 2.
    torch.testing.assert_close(out.targets[pos[1]], torch.tensor([0.0, 0.5, 0.0, math.log(2)]))
    torch.testing.assert_close(out.targets[pos[0]], torch.zeros(4))
    assert (out.targets[2:] == 0).all()
    assert torch.equal(out.rois, rois[out.sample_index])


@pytest.mark.parametrize("seed", range(4))
def test_counts_and_targets_match_loop_reference(seed):
    g = torch.Generator().manual_seed(seed)
    rois = random_rois(600, g)
    gt = random_rois(3, g)
    gt_labels = torch.tensor([1, 2, 1])
    params = (
        ProposalTargetParams(seed=seed)
        if seed < 2
        else ProposalTargetParams(
            roi_batch_size=64, roi_pos_fraction=0.5, roi_neg_iou_lo=0.1, seed=seed
        )
    )
    # Add near-copies of the GT boxes so that there are positives.
    rois = torch.cat((rois, gt.repeat(30, 1) + torch.randn(90, 4, generator=g) * 4))
    out = proposal_targets(rois, gt, gt_labels, params)
    pos, neg, max_iou, argmax = ref.proposal_target_candidates(
        rois.tolist(), gt.tolist(), params.roi_pos_iou, params.roi_neg_iou_hi, params.roi_neg_iou_lo
    )
    assert out.candidates == (len(pos), len(neg))
    # n_pos = min(#pos, batch * fraction), n_neg = min(#neg, batch - n_pos).
    n_pos = min(len(pos), int(params.roi_batch_size * params.roi_pos_fraction))
    n_neg = min(len(neg), params.roi_batch_size - n_pos)
    assert (out.pos_index.numel(), out.neg_index.numel()) == (n_pos, n_neg)
    assert set(out.pos_index.tolist()) <= set(pos)
    assert set(out.neg_index.tolist()) <= set(neg)
    assert len(set(out.sample_index.tolist())) == n_pos + n_neg
    torch.testing.assert_close(out.max_iou, torch.tensor(max_iou, dtype=torch.float32))
    for k, i in enumerate(out.pos_index.tolist()):
        assert int(out.labels[k]) == int(gt_labels[argmax[i]])
        expected = ref.encode(rois[i].tolist(), gt[argmax[i]].tolist())
        torch.testing.assert_close(out.targets[k], torch.tensor(expected), rtol=1e-4, atol=1e-5)
    assert (out.labels[n_pos:] == 0).all() and (out.targets[n_pos:] == 0).all()


def test_positive_cap_of_32():
    # 128 * 0.25 = 32 positives at most, the rest negatives: 32 + 96.
    gt = torch.tensor([[50.0, 50, 150, 150]])
    rois = torch.cat((gt.repeat(100, 1), torch.tensor([[200.0, 200, 260, 260]]).repeat(300, 1)))
    out = proposal_targets(rois, gt, torch.tensor([1]), DEFAULT)
    assert out.counts() == {
        "positive": 32,
        "negative": 96,
        "positive_candidates": 100,
        "negative_candidates": 300,
    }


def test_empty_ground_truth_all_negatives():
    g = torch.Generator().manual_seed(0)
    rois = random_rois(300, g)
    out = proposal_targets(rois, torch.zeros(0, 4), torch.zeros(0, dtype=torch.int64), DEFAULT)
    assert out.pos_index.numel() == 0
    assert out.neg_index.numel() == min(300, 128)
    assert (out.labels == 0).all() and (out.targets == 0).all()
    few = proposal_targets(rois[:50], torch.zeros(0, 4), torch.zeros(0, dtype=torch.int64), DEFAULT)
    assert few.counts()["negative"] == 50


def test_sampling_is_seeded():
    g = torch.Generator().manual_seed(0)
    rois = random_rois(500, g)
    gt = torch.tensor([[0.0, 0, 320, 320]])
    a = proposal_targets(rois, gt, torch.tensor([1]), ProposalTargetParams(seed=1))
    b = proposal_targets(rois, gt, torch.tensor([1]), ProposalTargetParams(seed=1))
    c = proposal_targets(rois, gt, torch.tensor([1]), ProposalTargetParams(seed=2))
    assert torch.equal(a.sample_index, b.sample_index)
    assert not torch.equal(a.sample_index, c.sample_index)
