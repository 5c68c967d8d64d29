"""Stage 9: the proposal layer, NMS against a loop reference, and bugs B7 and B8."""

from __future__ import annotations

import dataclasses

import pytest
import reference as ref
import torch
from torchvision.ops import nms

from frcnn_core.anchors import AnchorParams, generate_anchors
from frcnn_core.boxes import SCALE_CLAMP
from frcnn_core.params import PipelineParams
from frcnn_core.proposals import TEST_COUNTS, ProposalCounts, ProposalParams, propose

STRIDE = 16
TRAIN = ProposalCounts()  # 12000 / 2000
# Small counts, so that the caps bite on a 10 x 10 or 20 x 20 feature map.
SMALL_TRAIN = ProposalCounts(pre_nms=400, post_nms=100)
SMALL_TEST = ProposalCounts(pre_nms=200, post_nms=30)


def logits_for(probabilities: list[float]) -> torch.Tensor:
    """(background, object) logits whose softmax object probability is ``p``: (0, logit(p))."""
    p = torch.tensor(probabilities, dtype=torch.float64)
    return torch.stack((torch.zeros_like(p), torch.log(p / (1 - p))), dim=1).float()


def test_three_boxes_nms_drops_one():
    # A = [0, 0, 100, 100], B = [10, 0, 110, 100], C = [200, 200, 300, 300], zero deltas.
    # IoU(A, B) = 90 * 100 / (10000 + 10000 - 9000) = 9000 / 11000 = 0.818 > 0.7; C is apart.
    anchors = torch.tensor([[0, 0, 100, 100], [10, 0, 110, 100], [200, 200, 300, 300]]).double()
    locs = torch.zeros(3, 4)
    params = ProposalParams()
    # A is more likely than B: B is suppressed; kept in score order: A (0.9), C (0.6).
    out = propose(anchors, locs, logits_for([0.9, 0.8, 0.6]), (400, 400), params, TRAIN)
    assert out.keep_index.tolist() == [0, 2]
    assert out.rois.tolist() == [[0, 0, 100, 100], [200, 200, 300, 300]]
    assert out.scores.tolist() == pytest.approx([0.9, 0.6])
    assert out.counts() == {
        "decoded": 3,
        "after_min_size": 3,
        "pre_nms": 3,
        "after_nms": 2,
        "kept": 2,
    }
    # B more likely than A: now A is suppressed.
    out = propose(anchors, locs, logits_for([0.8, 0.9, 0.6]), (400, 400), params, TRAIN)
    assert out.keep_index.tolist() == [1, 2]
    # At an NMS threshold of 0.85 the pair (0.818) survives.
    loose = dataclasses.replace(params, nms_iou=0.85)
    out = propose(anchors, locs, logits_for([0.9, 0.8, 0.6]), (400, 400), loose, TRAIN)
    assert out.keep_index.tolist() == [0, 1, 2]


def test_decode_clip_and_min_size_hand_case():
    anchors = torch.tensor([[-20, -20, 40, 40], [100, 100, 110, 110], [50, 50, 90, 90]]).double()
    # Anchor 0: clipped to [0, 0, 40, 40]. Anchor 1 is 10 x 10 < 16: dropped.
    # Anchor 2: centre (70, 70), 40 x 40; dx = 0.5 moves it 20 right, dw = log 2 doubles its width:
    # centre (90, 70), 80 x 40 -> [50, 50, 130, 90].
    locs = torch.tensor([[0, 0, 0, 0], [0, 0, 0, 0], [0.5, 0, 0.693147180, 0]])
    out = propose(anchors, locs, logits_for([0.5, 0.9, 0.7]), (200, 200), ProposalParams(), TRAIN)
    assert out.size_keep.tolist() == [0, 2]
    torch.testing.assert_close(out.clipped[0], torch.tensor([0.0, 0, 40, 40]))
    torch.testing.assert_close(out.decoded[2], torch.tensor([50.0, 50, 130, 90]))
    assert out.keep_index.tolist() == [2, 0]  # by probability: 0.7 then 0.5


def test_train_and_test_counts():
    g = torch.Generator().manual_seed(0)
    anchors = generate_anchors((10, 10), (160, 160), AnchorParams(), STRIDE).anchors
    locs = torch.randn(900, 4, generator=g) * 0.1
    scores = torch.randn(900, 2, generator=g)
    params = ProposalParams()
    train = propose(anchors, locs, scores, (160, 160), params, SMALL_TRAIN)
    test = propose(anchors, locs, scores, (160, 160), params, SMALL_TEST)
    assert train.pre_nms_index.numel() == min(400, train.size_keep.numel())
    assert test.pre_nms_index.numel() == min(200, test.size_keep.numel())
    assert train.keep_index.numel() == min(100, train.nms_keep.numel())
    assert test.keep_index.numel() == min(30, test.nms_keep.numel())
    assert (train.pre_nms_n, train.post_nms_n) == (400, 100)
    assert (test.pre_nms_n, test.post_nms_n) == (200, 30)
    # The counts are the only difference: the same boxes pass min_size, and the 200 that enter
    # NMS at test time are the first 200 of the same ranking.
    assert torch.equal(train.size_keep, test.size_keep)
    assert torch.equal(test.pre_nms_index, train.pre_nms_index[:200])
    # The tutorial's counts: 12000 / 2000 when training, 6000 / 300 at test time.
    assert (ProposalCounts().pre_nms, ProposalCounts().post_nms) == (12000, 2000)
    assert (TEST_COUNTS.pre_nms, TEST_COUNTS.post_nms) == (6000, 300)
    defaults = PipelineParams()
    assert defaults.train_proposals == ProposalCounts(12000, 2000)
    assert defaults.test_proposals == TEST_COUNTS == ProposalCounts(6000, 300)


@pytest.mark.parametrize("seed", range(3))
def test_proposals_match_loop_reference(seed):
    g = torch.Generator().manual_seed(seed)
    anchors = generate_anchors((10, 10), (160, 160), AnchorParams(), STRIDE).anchors
    locs = torch.randn(900, 4, generator=g) * 0.3
    scores = torch.randn(900, 2, generator=g) * 2
    out = propose(anchors, locs, scores, (160, 160), ProposalParams(), SMALL_TRAIN)
    expected = ref.propose(
        anchors.float().tolist(),  # the proposal layer works in float32
        locs.tolist(),
        scores.tolist(),
        (160, 160),
        SCALE_CLAMP,
        16.0,
        400,
        100,
        0.7,
    )
    assert out.keep_index.tolist() == expected
    assert 0 < len(expected) <= 100


def test_loop_nms_matches_torchvision():
    g = torch.Generator().manual_seed(0)
    xy = torch.rand(300, 2, generator=g) * 200
    boxes = torch.cat((xy, xy + 20 + torch.rand(300, 2, generator=g) * 60), dim=1)
    scores = torch.rand(300, generator=g)
    for threshold in (0.3, 0.5, 0.7):
        expected = ref.nms(boxes.tolist(), scores.tolist(), threshold)
        assert nms(boxes, scores, threshold).tolist() == expected
        assert 0 < len(expected) < 300


def test_nms_keep_of_propose_equals_torchvision_and_reference(small_features):
    from frcnn_core.rpn import RPNHead

    head = RPNHead(seed=0)
    with torch.no_grad():
        locs, scores = head(small_features)
    anchors = generate_anchors((20, 20), (320, 320), AnchorParams(), STRIDE).anchors
    counts = dataclasses.replace(SMALL_TRAIN, pre_nms=600)
    out = propose(anchors, locs, scores, (320, 320), ProposalParams(), counts)
    boxes = out.clipped[out.pre_nms_index]
    probs = out.rank_scores[out.pre_nms_index]
    assert out.nms_keep.tolist() == nms(boxes, probs, 0.7).tolist()
    assert out.nms_keep.tolist() == ref.nms(boxes.tolist(), probs.tolist(), 0.7)
    # pre_nms_index is sorted by object probability, best first.
    assert (probs[1:] <= probs[:-1]).all()


def valid_proposals(out, image_size, params, counts):
    height, width = image_size
    rois = out.rois
    assert out.post_nms_n == counts.post_nms
    assert rois.shape[0] <= counts.post_nms
    assert (rois[:, 0] >= 0).all() and (rois[:, 1] >= 0).all()
    assert (rois[:, 2] <= width).all() and (rois[:, 3] <= height).all()
    assert ((rois[:, 2] - rois[:, 0]) >= params.min_size).all()
    assert ((rois[:, 3] - rois[:, 1]) >= params.min_size).all()
    assert len(set(out.keep_index.tolist())) == out.keep_index.numel()
    # NMS property: no two kept proposals overlap by more than the threshold.
    iou = torch.tensor(ref.iou_matrix(rois.tolist(), rois.tolist()))
    iou.fill_diagonal_(0)
    assert (iou <= params.nms_iou + 1e-6).all()


def test_b7_logit_rank_differs_from_softmax_rank():
    # Logits (3, 2) and (0, 1): raw object logit ranks the first higher (2 > 1), but its object
    # probability is sigmoid(2 - 3) = 0.27 against sigmoid(1 - 0) = 0.73.
    anchors = torch.tensor([[0, 0, 50, 50], [100, 100, 150, 150]]).double()
    scores = torch.tensor([[3.0, 2.0], [0.0, 1.0]])
    good = propose(anchors, torch.zeros(2, 4), scores, (200, 200), ProposalParams(), TRAIN)
    bad = propose(
        anchors,
        torch.zeros(2, 4),
        scores,
        (200, 200),
        ProposalParams(bug_b7_logit_rank=True),
        TRAIN,
    )
    assert good.keep_index.tolist() == [1, 0]
    assert bad.keep_index.tolist() == [0, 1]
    assert bad.scores.tolist() == [2.0, 1.0]


def test_b7_on_an_rpn_output(small_features):
    from frcnn_core.rpn import RPNHead

    head = RPNHead(seed=0)
    with torch.no_grad():
        locs, scores = head(small_features)
    anchors = generate_anchors((20, 20), (320, 320), AnchorParams(), STRIDE).anchors
    params = ProposalParams(bug_b7_logit_rank=True)
    good = propose(anchors, locs, scores, (320, 320), ProposalParams(), TRAIN)
    bad = propose(anchors, locs, scores, (320, 320), params, TRAIN)
    assert not torch.equal(good.pre_nms_index, bad.pre_nms_index)  # the rank differs ...
    assert bad.rank_scores.tolist() == scores[:, 1].tolist()
    valid_proposals(bad, (320, 320), params, TRAIN)  # ... but the proposals are still valid
    valid_proposals(good, (320, 320), ProposalParams(), TRAIN)


def test_b8_index_order_nms_differs_from_correct_nms():
    # Clusters of overlapping boxes with random scores: visiting by anchor index keeps other boxes.
    g = torch.Generator().manual_seed(0)
    centres = torch.rand(20, 2, generator=g) * 600 + 100
    jitter = torch.randn(20, 10, 2, generator=g) * 6
    c = (centres[:, None, :] + jitter).reshape(-1, 2).double()
    anchors = torch.cat((c - 40, c + 40), dim=1)  # 200 boxes of 80 x 80
    scores = torch.randn(200, 2, generator=g)
    locs = torch.zeros(200, 4)
    good = propose(anchors, locs, scores, (800, 800), ProposalParams(), TRAIN)
    bad = propose(anchors, locs, scores, (800, 800), ProposalParams(bug_b8_index_order=True), TRAIN)
    boxes = anchors.float().tolist()
    prob = torch.softmax(scores, dim=1)[:, 1].tolist()
    assert good.keep_index.tolist() == ref.nms(boxes, prob, 0.7)
    # The tutorial's NMS: the same greedy loop with priority = anchor index.
    assert bad.keep_index.tolist() == ref.nms(boxes, list(range(200)), 0.7)
    assert set(good.keep_index.tolist()) != set(bad.keep_index.tolist())
    valid_proposals(bad, (800, 800), ProposalParams(), TRAIN)
