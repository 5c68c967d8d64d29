"""Stages 5 and 6: anchor labelling and sampling, SPEC section 3's numbers, bugs B2 to B5, and the
edge cases, each against the loop reference in ``reference.py``."""

from __future__ import annotations

import dataclasses

import pytest
import reference as ref
import torch
from torchvision.ops import box_iou

from frcnn_core.anchor_targets import (
    AnchorTargetParams,
    TutorialBugError,
    anchor_overlaps,
    anchor_targets,
    label_anchors,
    sample_anchors,
)
from frcnn_core.anchors import AnchorParams, generate_anchors
from frcnn_core.backbone import VGG16
from frcnn_core.boxes import smooth_l1_sum
from frcnn_core.rpn import RPNOutput, rpn_loss

DEFAULT = AnchorTargetParams()
STRIDE = VGG16.stride


@pytest.fixture(scope="module")
def anchors_800():
    return generate_anchors((50, 50), (800, 800), AnchorParams(), STRIDE)


def run_targets(anchors, gt, params=DEFAULT):
    gt = torch.tensor(gt, dtype=torch.float32).reshape(-1, 4)
    return anchor_targets(anchors.anchors, anchors.inside_index, gt, params)


def reference_counts(anchors, gt, negatives_last=False, pos_iou=0.7, neg_iou=0.3):
    """(positive, negative, ignored, sampled positive, sampled negative) by the loop reference,
    on the same inside anchors as the vectorised code."""
    labels, _, _ = ref.label_anchors(
        anchors.inside_anchors.tolist(), gt, pos_iou, neg_iou, negatives_last
    )
    n_pos, n_neg = labels.count(1), labels.count(0)
    return (n_pos, n_neg, labels.count(-1), *ref.sample_counts(n_pos, n_neg))


def counts_tuple(result):
    c = result.counts()
    return (
        c["positive"],
        c["negative"],
        c["ignored"],
        c["sampled_positive"],
        c["sampled_negative"],
    )


# ---- SPEC section 3 ------------------------------------------------------------------------


def test_spec_section3_labelling(anchors_800, zebra_boxes):
    result = anchor_targets(anchors_800.anchors, anchors_800.inside_index, zebra_boxes, DEFAULT)
    assert (anchors_800.total, anchors_800.inside) == (22500, 8940)
    expected_best = torch.tensor([0.58514285, 0.5752716, 0.5255493, 0.6325869], dtype=torch.float32)
    assert result.gt_best_iou.dtype == torch.float32
    assert torch.equal(result.gt_best_iou, expected_best)
    c = result.counts()
    # No anchor reaches 0.7: all 45 positives are best-IoU ties.
    assert c["positive_from_threshold"] == 0
    assert c["ties"] == 45
    assert (c["positive"], c["negative"], c["ignored"]) == (45, 7469, 1426)
    assert 45 + 7469 + 1426 == 8940
    assert (c["sampled_positive"], c["sampled_negative"]) == (45, 211)  # 256 - 45 = 211
    # Outside anchors are ignored; the full-length labels hold the same 45 / 211.
    assert int((result.labels_all == 1).sum()) == 45
    assert int((result.labels_all == 0).sum()) == 211
    outside = torch.ones(22500, dtype=torch.bool)
    outside[anchors_800.inside_index] = False
    assert (result.labels_all[outside] == -1).all()


def test_spec_section3_matches_loop_reference(anchors_800, zebra_boxes):
    # The definition, run on the loop reference's own anchors (correctly rounded sqrt) and on the
    # vectorised code's anchors: both give the SPEC's numbers.
    own = ref.anchors((50, 50))
    own_inside = [own[i] for i in ref.inside(own, (800, 800))]
    for inside_anchors in (own_inside, anchors_800.inside_anchors.tolist()):
        labels, _, best = ref.label_anchors(inside_anchors, zebra_boxes.tolist())
        assert (labels.count(1), labels.count(0), labels.count(-1)) == (45, 7469, 1426)
        assert best == [ref.to_float32(v) for v in (0.58514285, 0.5752716, 0.5255493, 0.6325869)]


def test_spec_section3_precision_matters(anchors_800, zebra_boxes):
    # SPEC: pure float32 gives 30 ties and float64 gives 24; float64 stored as float32 gives 45.
    inside = anchors_800.inside_anchors
    gt = zebra_boxes.double()

    def ties(iou):
        best = iou.max(dim=0).values
        return int(((iou == best) & (best > 0)).any(dim=1).sum())

    assert ties(box_iou(inside, gt).float()) == 45
    assert ties(box_iou(inside, gt)) == 24
    assert ties(box_iou(inside.float(), gt.float())) == 30


def test_spec_section3_smooth_l1_sum(anchors_800, zebra_boxes):
    # Smooth-L1 summed over the 45 positives' targets when the predictions are all zero.
    result = anchor_targets(anchors_800.anchors, anchors_800.inside_index, zebra_boxes, DEFAULT)
    pos = result.labels == 1
    total = smooth_l1_sum(torch.zeros(int(pos.sum()), 4), result.targets[pos])
    assert float(total) == pytest.approx(5.199, abs=1e-3)
    # The same through the RPN loss with zero predictions: loc = 10 * 5.199 / 45.
    zeros = RPNOutput(locs=torch.zeros(22500, 4), scores=torch.zeros(22500, 2))
    loss = rpn_loss(zeros, result.labels_all, result.targets_all)
    assert float(loss.loc_sum) == pytest.approx(5.199, abs=1e-3)
    assert float(loss.loc) == pytest.approx(10 * float(total) / 45, rel=1e-6)
    assert (loss.n_pos, loss.n_sampled) == (45, 256)
    # Equal logits: cross-entropy log 2 per sampled anchor.
    assert float(loss.cls) == pytest.approx(0.693147, abs=1e-6)
    # And against the loop reference: targets of each positive to its best GT box.
    inside = anchors_800.inside_anchors.tolist()
    gts = zebra_boxes.tolist()
    expected = 0.0
    for k in torch.nonzero(pos).squeeze(1).tolist():
        row = [ref.iou(inside[k], g) for g in gts]
        target = ref.encode(inside[k], gts[row.index(max(row))])
        expected += sum(ref.smooth_l1(v) for v in target)
    assert float(total) == pytest.approx(expected, rel=1e-5)


def test_b5_width_assignment_smooth_l1(anchors_800, zebra_boxes):
    # B5: width = x2 := x1, so the anchor's width is x1 and its centre 1.5 * x1.
    params = AnchorTargetParams(bug_b5_width_assign=True)
    result = anchor_targets(anchors_800.anchors, anchors_800.inside_index, zebra_boxes, params)
    pos = result.labels == 1
    assert int(pos.sum()) == 45  # the labels do not change, only the targets
    total = smooth_l1_sum(torch.zeros(45, 4), result.targets[pos])
    assert float(total) == pytest.approx(16.17, abs=1e-2)
    # Hand check of one target: anchor [x1, y1, x2, y2] with w' = x1, cx' = 1.5 x1.
    k = int(torch.nonzero(pos)[0])
    x1 = float(anchors_800.inside_anchors[k, 0])
    g = zebra_boxes[int(result.argmax_gt[k])].tolist()
    expected_dx = ((g[0] + g[2]) / 2 - 1.5 * x1) / x1
    assert float(result.targets[k, 0]) == pytest.approx(expected_dx, rel=1e-5)
    good = anchor_targets(anchors_800.anchors, anchors_800.inside_index, zebra_boxes, DEFAULT)
    torch.testing.assert_close(result.targets[:, 1::2], good.targets[:, 1::2])  # dy, dh same


def test_anchor_overlaps_equal_the_loop_reference(anchors_800, zebra_boxes):
    # Stage 5's threshold-free half: IoU computed in float64 and stored as float32, exactly the
    # reference's values, and the best matches both ways.
    overlaps = anchor_overlaps(anchors_800.inside_anchors, zebra_boxes)
    inside, gts = anchors_800.inside_anchors.tolist(), zebra_boxes.tolist()
    expected = [[ref.to_float32(v) for v in row] for row in ref.iou_matrix(inside, gts)]
    assert overlaps.ious.shape == (8940, 4) and overlaps.ious.dtype == torch.float32
    assert overlaps.ious.tolist() == expected
    assert overlaps.max_iou.tolist() == [max(row) for row in expected]
    assert overlaps.argmax_gt.tolist() == [row.index(max(row)) for row in expected]
    _, _, best = ref.label_anchors(inside, gts)
    assert overlaps.gt_best_iou.tolist() == best
    assert overlaps.tie_index.numel() == 45  # SPEC section 3


def test_anchor_targets_reuse_given_overlaps(anchors_800, zebra_boxes):
    # The graph computes the overlaps once (they do not depend on any threshold) and hands them
    # to anchor_targets: the result is the one anchor_targets computes on its own.
    overlaps = anchor_overlaps(anchors_800.inside_anchors, zebra_boxes)
    params = AnchorTargetParams(pos_iou=0.5, neg_iou=0.2, seed=3)
    given = anchor_targets(
        anchors_800.anchors, anchors_800.inside_index, zebra_boxes, params, overlaps
    )
    own = anchor_targets(anchors_800.anchors, anchors_800.inside_index, zebra_boxes, params)
    for field in dataclasses.fields(own):
        a, b = getattr(given, field.name), getattr(own, field.name)
        assert torch.equal(a, b) if isinstance(a, torch.Tensor) else a == b, field.name
    assert given.ious is overlaps.ious  # taken over, not recomputed
    assert given.counts()["positive_from_threshold"] == int((overlaps.max_iou >= 0.5).sum()) > 0


def test_anchor_overlaps_without_boxes_or_anchors():
    anchors = generate_anchors((3, 5), (48, 80), AnchorParams(), STRIDE).anchors[:7]
    none = anchor_overlaps(anchors, torch.zeros(0, 4))
    assert none.ious.shape == (7, 0)
    assert none.max_iou.tolist() == [0.0] * 7 and none.argmax_gt.tolist() == [0] * 7
    assert none.gt_best_iou.shape == (0,) and none.tie_index.shape == (0,)
    nothing = anchor_overlaps(anchors[:0], torch.tensor([[0.0, 0, 10, 10]]))
    assert nothing.ious.shape == (0, 1) and nothing.gt_best_iou.tolist() == [0.0]
    assert nothing.tie_index.numel() == 0
    labels, n_threshold = label_anchors(none, DEFAULT)
    assert labels.tolist() == [0] * 7 and int(n_threshold) == 0  # IoU 0 < 0.3: background


# ---- vectorised vs loop reference ---------------------------------------------------------


def random_int_boxes(n, height, width, generator, min_side=8):
    """Integer-valued boxes, which make exact best-IoU ties common."""
    boxes = []
    for _ in range(n):
        w = int(torch.randint(min_side, width // 2 + 1, (1,), generator=generator))
        h = int(torch.randint(min_side, height // 2 + 1, (1,), generator=generator))
        x = int(torch.randint(0, width - w + 1, (1,), generator=generator))
        y = int(torch.randint(0, height - h + 1, (1,), generator=generator))
        boxes.append([x, y, x + w, y + h])
    return boxes


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("negatives_last", [False, True])
def test_labelling_matches_loop_reference(seed, negatives_last):
    g = torch.Generator().manual_seed(seed)
    height, width = (320, 320) if seed % 2 == 0 else (288, 400)
    anchors = generate_anchors((height // 16, width // 16), (height, width), AnchorParams(), STRIDE)
    gt = random_int_boxes(1 + seed % 5, height, width, g)
    # Half the seeds use other thresholds, so that both rules fire with several boxes.
    pos_iou, neg_iou = (0.7, 0.3) if seed < 3 else (0.5, 0.4)
    params = AnchorTargetParams(
        pos_iou=pos_iou, neg_iou=neg_iou, bug_b2_negatives_last=negatives_last
    )
    inside = anchors.inside_anchors
    overlaps = anchor_overlaps(inside, torch.tensor(gt, dtype=torch.float32))
    labels, n_threshold = label_anchors(overlaps, params)
    ious, max_iou, gt_best, ties = (
        overlaps.ious,
        overlaps.max_iou,
        overlaps.gt_best_iou,
        overlaps.tie_index,
    )
    exp_labels, exp_max, exp_best = ref.label_anchors(
        inside.tolist(), gt, pos_iou, neg_iou, negatives_last
    )
    assert labels.tolist() == exp_labels
    assert max_iou.tolist() == exp_max
    assert gt_best.tolist() == exp_best
    expected_iou = [[ref.to_float32(v) for v in row] for row in ref.iou_matrix(inside.tolist(), gt)]
    assert ious.tolist() == expected_iou
    # Ties: every anchor equal to some GT's best (including several per GT).
    expected_ties = [
        k
        for k, row in enumerate(expected_iou)
        if any(b > 0 and v == b for v, b in zip(row, exp_best, strict=True))
    ]
    assert ties.tolist() == expected_ties
    assert int(n_threshold) == sum(v >= pos_iou for v in exp_max)


def test_best_iou_ties_all_become_positive():
    # One 32 x 32 box at [104, 104, 136, 136]. Every scale-8 anchor has area 128^2, so each one
    # that contains the box has IoU 32^2 / 128^2 = 1/16, the best any anchor reaches:
    # - 128 x 128 (ratio 1): centre in [72, 168] on both axes, cells 4..10: 7 x 7 = 49;
    # - 181.02 x 90.51 (ratio 0.5): x1 >= 0 and contains the box: cx in 104..184 (6 cells),
    #   cy in 104..136 (3 cells): 18; ratio 2 is the mirror image: 18.
    # 49 + 18 + 18 = 85 ties in float32. In float64 the non-square anchors' area is a hair under
    # 128^2 (their IoU is 0.06250000000000001) and only those 36 tie: SPEC section 3's lesson.
    anchors = generate_anchors((20, 20), (320, 320), AnchorParams(), STRIDE)
    result = run_targets(anchors, [[104, 104, 136, 136]])
    assert result.gt_best_iou.tolist() == [0.0625]
    assert result.counts()["ties"] == 85
    assert result.counts()["positive"] == 85
    assert reference_counts(anchors, [[104, 104, 136, 136]])[0] == 85
    iou64 = box_iou(anchors.inside_anchors, torch.tensor([[104.0, 104, 136, 136]]).double())
    assert int((iou64 == iou64.max()).sum()) == 36


def test_targets_match_loop_reference(anchors_800, zebra_boxes):
    result = anchor_targets(anchors_800.anchors, anchors_800.inside_index, zebra_boxes, DEFAULT)
    inside = anchors_800.inside_anchors.tolist()
    gts = zebra_boxes.tolist()
    idx = torch.nonzero(result.labels_unsampled >= 0).squeeze(1)[::97].tolist()
    expected = [ref.encode(inside[k], gts[int(result.argmax_gt[k])]) for k in idx]
    torch.testing.assert_close(result.targets[idx], torch.tensor(expected), rtol=1e-5, atol=1e-6)
    # argmax_gt really is the best GT box.
    for k in idx:
        row = [ref.to_float32(ref.iou(inside[k], g)) for g in gts]
        assert row[int(result.argmax_gt[k])] == max(row)


# ---- sampling ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("n_pos", "n_neg"), [(0, 0), (0, 1000), (45, 7469), (128, 500), (129, 500), (300, 50), (10, 20)]
)
def test_sampling_counts(n_pos, n_neg):
    # n_pos' = min(#pos, 128), n_neg' = min(#neg, 256 - n_pos').
    labels = torch.cat(
        (
            torch.ones(n_pos, dtype=torch.int64),
            torch.zeros(n_neg, dtype=torch.int64),
            torch.full((77,), -1, dtype=torch.int64),
        )
    )
    labels = labels[torch.randperm(labels.numel(), generator=torch.Generator().manual_seed(5))]
    before = labels.clone()
    sampled = sample_anchors(labels, DEFAULT)
    assert torch.equal(labels, before)  # a new tensor; the input is not modified
    exp_pos, exp_neg = ref.sample_counts(n_pos, n_neg)
    assert int((sampled == 1).sum()) == exp_pos
    assert int((sampled == 0).sum()) == exp_neg
    # Sampling only removes labels; it never changes 1 into 0 or the reverse.
    assert ((sampled == labels) | (sampled == -1)).all()


def test_sampling_is_seeded():
    labels = torch.cat((torch.ones(300, dtype=torch.int64), torch.zeros(3000, dtype=torch.int64)))
    a = sample_anchors(labels, AnchorTargetParams(seed=1))
    b = sample_anchors(labels, AnchorTargetParams(seed=1))
    c = sample_anchors(labels, AnchorTargetParams(seed=2))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
    assert int((c == 1).sum()) == 128 and int((c == 0).sum()) == 128


def test_sampling_respects_batch_size_and_fraction():
    labels = torch.cat((torch.ones(100, dtype=torch.int64), torch.zeros(100, dtype=torch.int64)))
    params = AnchorTargetParams(batch_size=64, pos_fraction=0.25)
    sampled = sample_anchors(labels, params)
    # n_pos = min(100, 16) = 16, n_neg = min(100, 64 - 16) = 48.
    assert (int((sampled == 1).sum()), int((sampled == 0).sum())) == (16, 48)


# ---- bugs B2, B3, B4 -------------------------------------------------------------------------


def test_b2_small_box_loses_its_positives(anchors_800):
    # A 40 x 30 box: its best anchor (128 x 128 containing it) has IoU 1200 / 16384 = 0.073 < 0.3.
    box = [[400, 400, 440, 430]]
    good = run_targets(anchors_800, box)
    bad = run_targets(anchors_800, box, AnchorTargetParams(bug_b2_negatives_last=True))
    assert good.gt_best_iou.tolist() == [pytest.approx(1200 / 16384)]
    assert good.counts()["positive"] >= 1
    assert bad.counts()["positive"] == 0
    assert counts_tuple(good) == reference_counts(anchors_800, box)
    assert counts_tuple(bad) == reference_counts(anchors_800, box, negatives_last=True)
    # Every tie turned negative under B2.
    assert (bad.labels_unsampled[good.tie_index] == 0).all()


def test_b2_does_not_change_the_zebra_counts(anchors_800, zebra_boxes):
    # The zebra boxes' best anchors are all above 0.3, so B2 changes nothing there.
    bad = run_targets(
        anchors_800, zebra_boxes.tolist(), AnchorTargetParams(bug_b2_negatives_last=True)
    )
    assert counts_tuple(bad) == (45, 7469, 1426, 45, 211)


def test_b3_keeps_all_negatives(anchors_800, zebra_boxes):
    # B3: n_neg = 256 * 45 = 11520 > 7469, so every negative enters the loss.
    bad = run_targets(anchors_800, zebra_boxes.tolist(), AnchorTargetParams(bug_b3_neg_count=True))
    assert bad.counts()["sampled_negative"] == 7469
    assert bad.counts()["sampled_positive"] == 45


GRID_CENTRES = (136, 264, 392, 520, 648)  # 16 * i + 8: cell centres, so anchors align with boxes
# 25 boxes of 256 x 256, each matched at IoU >= 0.7 by several 256 x 256 anchors: 276 positives.
MANY_BOXES = [
    [cx - 128, cy - 128, cx + 128, cy + 128] for cy in GRID_CENTRES for cx in GRID_CENTRES
]


def test_b4_float_npos_fails_over_128_positives(anchors_800, zebra_boxes):
    params = AnchorTargetParams(bug_b4_float_npos=True)
    with pytest.raises(TutorialBugError):
        run_targets(anchors_800, MANY_BOXES, params)
    # 45 positives (<= 128): the tutorial's code runs.
    ok = run_targets(anchors_800, zebra_boxes.tolist(), params)
    assert counts_tuple(ok) == (45, 7469, 1426, 45, 211)


# ---- edge cases ----------------------------------------------------------------------------


def test_more_than_128_positives_samples_exactly_128(anchors_800):
    result = run_targets(anchors_800, MANY_BOXES)
    expected = reference_counts(anchors_800, MANY_BOXES)
    assert counts_tuple(result) == expected
    assert expected[0] > 128
    assert result.counts()["positive_from_threshold"] > 128
    assert result.counts()["sampled_positive"] == 128
    assert result.counts()["sampled_negative"] == 128


def test_one_huge_box_gives_many_tie_positives(anchors_800):
    # [8, 8, 792, 792]: no anchor reaches 0.7, but every 512 x 512 anchor inside ties at
    # 512^2 / 784^2 = 0.4265: 532 positives from ties alone, sampled down to 128.
    result = run_targets(anchors_800, [[8, 8, 792, 792]])
    assert result.gt_best_iou.tolist() == [pytest.approx(512**2 / 784**2)]
    assert counts_tuple(result) == reference_counts(anchors_800, [[8, 8, 792, 792]])
    assert result.counts()["positive"] == 532
    assert result.counts()["sampled_positive"] == 128


def test_empty_ground_truth(anchors_800):
    result = run_targets(anchors_800, [])
    # No GT: every inside anchor has max IoU 0 < 0.3 -> negative; 256 of them are sampled.
    assert result.max_iou.shape == (8940,) and (result.max_iou == 0).all()
    assert result.gt_best_iou.shape == (0,)
    assert counts_tuple(result) == (0, 8940, 0, 0, 256)
    assert counts_tuple(result) == reference_counts(anchors_800, [])
    assert (result.targets == 0).all()
    loss = rpn_loss(
        RPNOutput(locs=torch.randn(22500, 4), scores=torch.randn(22500, 2)),
        result.labels_all,
        result.targets_all,
    )
    assert torch.isfinite(loss.cls) and float(loss.loc) == 0.0 and loss.n_pos == 0


def test_box_touching_the_image_edges(anchors_800):
    boxes = [[0, 0, 200, 150], [600, 650, 800, 800]]
    result = run_targets(anchors_800, boxes)
    assert counts_tuple(result) == reference_counts(anchors_800, boxes)
    assert result.counts()["positive"] >= 2  # each box gets its best anchors
    assert (result.gt_best_iou > 0).all()


def test_no_anchor_inside_a_tiny_frame():
    # A 48 x 80 frame: the smallest anchor is 90 x 181 or 128 x 128, none fits.
    anchors = generate_anchors((3, 5), (48, 80), AnchorParams(), STRIDE)
    assert anchors.inside == 0
    result = run_targets(anchors, [[10, 10, 40, 30]])
    assert counts_tuple(result) == (0, 0, 0, 0, 0)
    assert result.gt_best_iou.tolist() == [0.0]
    assert (result.labels_all == -1).all() and result.labels_all.shape == (135,)


def test_non_square_frame_matches_reference():
    anchors = generate_anchors((30, 40), (480, 640), AnchorParams(), STRIDE)
    boxes = [[50, 60, 210, 300], [400, 100, 620, 260]]
    result = run_targets(anchors, boxes)
    assert anchors.total == 30 * 40 * 9
    assert counts_tuple(result) == reference_counts(anchors, boxes)


def test_params_are_frozen_and_hashable():
    with pytest.raises(dataclasses.FrozenInstanceError):
        DEFAULT.seed = 3  # type: ignore[misc]
    assert hash(AnchorTargetParams()) == hash(AnchorTargetParams())
