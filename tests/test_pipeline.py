"""The stages chained: stage 1's box scaling on the tutorial's image, a full 800 x 800 run with
random weights, edge cases through the whole pipeline, and the parameter overrides."""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pytest
import reference as ref
import torch

from frcnn_core.anchor_targets import AnchorTargetParams
from frcnn_core.anchors import AnchorParams
from frcnn_core.backbone import BackboneParams
from frcnn_core.head import HeadParams, UnreducedLossError
from frcnn_core.image import ResizeParams
from frcnn_core.pipeline import (
    DetectorHeads,
    PipelineParams,
    compute_features,
    parameter_names,
    prepare_input,
    run_detection,
    run_pipeline,
    summary,
)
from frcnn_core.proposal_targets import ProposalTargetParams
from frcnn_core.proposals import propose
from frcnn_core.roi_pool import RoIPoolParams, pool_rois
from frcnn_core.rpn import RPNParams

# SPEC section 3: the zebra boxes on the 1333 x 2000 (H x W) original, and in the input frame.
ZEBRA_ORIGINAL_BOXES = [
    [223, 782, 623, 1074],
    [597, 695, 1038, 1050],
    [1088, 699, 1452, 1057],
    [1544, 771, 1914, 1063],
]
ZEBRA_BOXES = [
    [89, 469, 249, 644],
    [238, 417, 415, 630],
    [435, 419, 580, 634],
    [617, 462, 765, 637],
]
CPU = torch.device("cpu")
HIDDEN = 256  # the Fast R-CNN head's width does not matter here; 4096 would be 400 MB
SPEC_BEST_IOU = torch.tensor([0.58514285, 0.5752716, 0.5255493, 0.6325869], dtype=torch.float32)


def finite_losses(result) -> dict[str, float]:
    losses = result.losses()
    assert set(losses) == {"rpn_cls", "rpn_loc", "roi_cls", "roi_loc", "total"}
    assert all(math.isfinite(v) for v in losses.values())
    parts = losses["rpn_cls"] + losses["rpn_loc"] + losses["roi_cls"] + losses["roi_loc"]
    assert losses["total"] == pytest.approx(parts)
    return losses


# ---- stage 1 on the tutorial's image ----------------------------------------------------------


def test_prepare_input_scales_the_tutorial_boxes(zebra_input):
    # 2000 x 1333 (W x H) -> 800 x 800: sx = 0.4, sy = 800 / 1333 = 0.60015, truncated:
    # [223, 782, 623, 1074] -> [89.2, 469.3, 249.2, 644.6] -> [89, 469, 249, 644] and so on.
    assert zebra_input.image.gt_boxes.tolist() == ZEBRA_BOXES
    assert zebra_input.image.size == (800, 800)
    assert zebra_input.image.original_size == (1333, 2000)
    assert zebra_input.labels == ("zebra",) * 4
    assert zebra_input.class_names == ("zebra",)
    assert zebra_input.gt_labels.tolist() == [1, 1, 1, 1]
    assert zebra_input.notes == ()
    expected = [
        [
            math.trunc(x * 800 / 2000) if i % 2 == 0 else math.trunc(x * 800 / 1333)
            for i, x in enumerate(b)
        ]
        for b in ZEBRA_ORIGINAL_BOXES
    ]
    assert expected == ZEBRA_BOXES


def test_prepare_input_cleans_and_keeps_labels_aligned():
    pixels = np.zeros((100, 2000, 3), dtype=np.uint8)
    raw = [
        [400, 80, 100, 10],  # inverted: swapped to [100, 10, 400, 80]
        [5, 0, 6, 10],  # 1 pixel wide: 0.4 wide at 800 / 2000 -> truncated to 0 -> vanishes
        [float("nan"), 0, 10, 10],  # dropped by the cleaning
        [1900, 50, 2100, 120],  # clipped to [1900, 50, 2000, 100]
    ]
    prepared = prepare_input(pixels, raw, ["cat", "dog", "bird", " horse "], ResizeParams())
    assert prepared.labels == ("cat", "horse")
    assert prepared.class_names == ("cat", "horse")
    assert prepared.gt_labels.tolist() == [1, 2]
    # sx = 0.4, sy = 8: [100, 10, 400, 80] -> [40, 80, 160, 640]; [1900, 50, 2000, 100] ->
    # [760, 400, 800, 800].
    assert prepared.image.gt_boxes.tolist() == [[40, 80, 160, 640], [760, 400, 800, 800]]
    notes = " | ".join(prepared.notes)
    assert "swapped" in notes and "clipped" in notes and "vanished" in notes and "dog" in notes


# ---- the full pipeline at 800 x 800 ----------------------------------------------------------


@pytest.fixture(scope="module")
def zebra_heads():
    return DetectorHeads(num_classes=1, seed=0, hidden=HIDDEN)


@pytest.fixture(scope="module")
def zebra_result(zebra_input, zebra_features, zebra_heads):
    return run_pipeline(
        zebra_input.image, zebra_input.gt_labels, zebra_features, zebra_heads, PipelineParams()
    )


def test_full_pipeline_800_summary(zebra_result, backbone):
    s = summary(zebra_result, backbone.weights)
    json.dumps(s)  # plain JSON types only
    assert s["input_size"] == [800, 800]
    assert s["gt_boxes"] == ZEBRA_BOXES
    assert s["feature_map"] == [512, 50, 50]
    assert s["weights"] == "random"
    assert s["anchors"] == {"total": 22500, "inside": 8940}
    labels = s["anchor_labels"]
    # SPEC section 3: independent of the pixels and the weights.
    assert (labels["positive"], labels["negative"], labels["ignored"]) == (45, 7469, 1426)
    assert (labels["sampled_positive"], labels["sampled_negative"]) == (45, 211)
    assert labels["gt_best_iou"] == SPEC_BEST_IOU.tolist()
    p = s["proposals"]
    assert p["decoded"] == 22500
    assert 0 < p["after_min_size"] <= 22500
    assert p["pre_nms"] == min(12000, p["after_min_size"])
    assert 0 < p["after_nms"] <= p["pre_nms"]
    assert p["kept"] == min(2000, p["after_nms"])
    roi = s["roi_targets"]
    n_rois = roi["positive"] + roi["negative"]
    assert roi["positive"] <= 32 and 0 < n_rois <= 128
    assert s["roi_pool"] == [n_rois, 512, 7, 7]
    finite_losses(zebra_result)
    assert s["losses"] == zebra_result.losses()


def test_full_pipeline_800_internal_consistency(zebra_result, zebra_input, zebra_features):
    r = zebra_result
    # The proposal targets against the loop reference on the kept proposals.
    pos, neg, _, _ = ref.proposal_target_candidates(
        r.proposals.rois.tolist(), zebra_input.image.gt_boxes.tolist(), 0.5, 0.5, 0.0
    )
    n_pos = min(len(pos), 32)
    assert r.proposal_targets.counts()["positive"] == n_pos
    assert r.proposal_targets.counts()["negative"] == min(len(neg), 128 - n_pos)
    # RoI pooling is of the sampled RoIs, in the same order.
    expected = pool_rois(zebra_features, r.proposal_targets.rois, RoIPoolParams()).pooled
    assert torch.equal(r.roi_pool.pooled, expected)
    assert torch.equal(r.proposal_targets.rois, r.proposals.rois[r.proposal_targets.sample_index])
    assert r.head.scores.shape == (r.roi_pool.pooled.shape[0], 2)
    assert r.rpn.locs.shape == (22500, 4)
    # The RPN loss saw exactly the sampled anchors: 45 positives out of 256.
    assert (r.rpn_loss.n_pos, r.rpn_loss.n_sampled) == (45, 256)


def test_detection_800(zebra_input, zebra_features, zebra_heads, zebra_result):
    params = PipelineParams(training=False)
    test_proposals = propose(
        zebra_result.anchors.anchors,
        zebra_result.rpn.locs,
        zebra_result.rpn.scores,
        (800, 800),
        params.proposals,
        training=False,
    )
    assert test_proposals.pre_nms_index.numel() == min(6000, test_proposals.size_keep.numel())
    assert 0 < test_proposals.keep_index.numel() <= 300
    head, det = run_detection(zebra_features, test_proposals, zebra_heads, (800, 800), params)
    assert head.scores.shape == (test_proposals.keep_index.numel(), 2)
    assert det.boxes.shape[0] <= 100
    assert (det.scores >= 0.05).all()
    assert (det.scores[1:] <= det.scores[:-1]).all()
    assert (det.boxes[:, :2] >= 0).all() and (det.boxes[:, 2:] <= 800).all()
    assert (det.labels == 1).all()


def test_b1_pairs_anchors_with_the_wrong_predictions(zebra_input, zebra_features, zebra_heads):
    good = run_pipeline(
        zebra_input.image, zebra_input.gt_labels, zebra_features, zebra_heads, PipelineParams()
    )
    params = PipelineParams(anchors=AnchorParams(bug_b1_x_outer=True))
    bad = run_pipeline(
        zebra_input.image, zebra_input.gt_labels, zebra_features, zebra_heads, params
    )
    # The labelling is the same set of anchors in another order: same counts ...
    assert bad.anchor_targets.counts() == good.anchor_targets.counts()
    # ... but each label now meets the RPN output of the mirrored cell.
    assert not torch.equal(bad.anchor_targets.labels_all, good.anchor_targets.labels_all)
    assert bad.rpn_loss.loc_sum != pytest.approx(float(good.rpn_loss.loc_sum), rel=1e-6)


# ---- smaller inputs ---------------------------------------------------------------------------


def test_empty_ground_truth_through_the_pipeline(small_input, small_features, small_heads):
    image = dataclasses.replace(small_input.image, gt_boxes=torch.zeros(0, 4))
    result = run_pipeline(
        image, torch.zeros(0, dtype=torch.int64), small_features, small_heads, PipelineParams()
    )
    inside = result.anchors.inside
    assert inside == len(ref.inside(ref.anchors((20, 20)), (320, 320))) == 384
    c = result.anchor_targets.counts()
    # Every inside anchor has max IoU 0 -> negative; 256 of the 384 are sampled.
    assert (c["positive"], c["negative"], c["ignored"]) == (0, inside, 0)
    assert (
        (c["sampled_positive"], c["sampled_negative"]) == ref.sample_counts(0, inside) == (0, 256)
    )
    kept = result.proposals.keep_index.numel()
    assert result.proposal_targets.counts()["positive"] == 0
    assert result.proposal_targets.counts()["negative"] == min(kept, 128)
    assert (result.proposal_targets.labels == 0).all()
    losses = finite_losses(result)
    assert losses["rpn_loc"] == 0.0 and losses["roi_loc"] == 0.0


def test_regression_no_sampled_rois_through_the_pipeline(small_input, small_features, small_heads):
    # No GT and negatives required at IoU >= 0.1: every proposal has IoU 0, so none is sampled.
    # The RoI terms must then be 0 (see test_head.test_regression_head_forward_with_zero_rois).
    image = dataclasses.replace(small_input.image, gt_boxes=torch.zeros(0, 4))
    params = PipelineParams(proposal_targets=ProposalTargetParams(roi_neg_iou_lo=0.1))
    result = run_pipeline(
        image, torch.zeros(0, dtype=torch.int64), small_features, small_heads, params
    )
    assert result.proposal_targets.counts()["negative"] == 0
    assert result.roi_pool.pooled.shape == (0, 512, 7, 7)
    losses = finite_losses(result)
    assert losses["roi_cls"] == 0.0 and losses["roi_loc"] == 0.0


def test_small_pipeline_counts_match_reference(small_input, small_features, small_heads):
    result = run_pipeline(
        small_input.image, small_input.gt_labels, small_features, small_heads, PipelineParams()
    )
    assert small_input.class_names == ("cat", "dog")
    assert result.head.scores.shape[1] == 3
    labels, _, best = ref.label_anchors(
        result.anchors.inside_anchors.tolist(), small_input.image.gt_boxes.tolist()
    )
    c = result.anchor_targets.counts()
    assert (c["positive"], c["negative"], c["ignored"]) == (
        labels.count(1),
        labels.count(0),
        labels.count(-1),
    )
    assert result.anchor_targets.gt_best_iou.tolist() == best
    # Positive RoIs carry their GT box's class.
    t = result.proposal_targets
    n_pos = t.pos_index.numel()
    assert (t.labels[:n_pos] == small_input.gt_labels[t.gt_assignment[t.pos_index]]).all()
    finite_losses(result)


def test_pipeline_is_deterministic_and_seeded(
    zebra_input, zebra_features, zebra_heads, zebra_result
):
    args = (zebra_input.image, zebra_input.gt_labels, zebra_features, zebra_heads)
    again = run_pipeline(*args, PipelineParams())
    assert again.losses() == zebra_result.losses()
    assert torch.equal(again.anchor_targets.labels, zebra_result.anchor_targets.labels)
    # Another seed samples other negatives (211 of 7469), in the same numbers.
    other = run_pipeline(*args, PipelineParams().with_seed(7))
    assert other.anchor_targets.counts() == zebra_result.anchor_targets.counts()
    assert not torch.equal(other.anchor_targets.labels, zebra_result.anchor_targets.labels)


def test_training_step_back_propagates(small_input, small_features, small_heads):
    result = run_pipeline(
        small_input.image,
        small_input.gt_labels,
        small_features,
        small_heads,
        PipelineParams(),
        grad=True,
    )
    total = result.rpn_loss.total + result.head_loss.total
    assert total.dim() == 0 and total.requires_grad
    small_heads.zero_grad()
    total.backward()
    for param in (small_heads.rpn.conv.weight, small_heads.head.fc6.weight):
        assert param.grad is not None and param.grad.abs().sum() > 0


def test_bug_flags_through_the_pipeline(small_input, small_features, small_heads):
    args = (small_input.image, small_input.gt_labels, small_features, small_heads)
    good = run_pipeline(*args, PipelineParams())
    b6 = run_pipeline(*args, PipelineParams(rpn=RPNParams(bug_b6_no_relu=True)))
    assert (b6.rpn.scores - good.rpn.scores).abs().max() > 1e-4
    b11 = run_pipeline(*args, PipelineParams(head=HeadParams(bug_b11_no_relu=True)))
    assert torch.equal(b11.roi_pool.pooled, good.roi_pool.pooled)
    assert (b11.head.scores - good.head.scores).abs().max() > 1e-5
    with pytest.raises(UnreducedLossError):
        run_pipeline(*args, PipelineParams(head=HeadParams(bug_b12_unreduced=True)))
    b3 = run_pipeline(
        *args, PipelineParams(anchor_targets=AnchorTargetParams(bug_b3_neg_count=True))
    )
    n_neg = b3.anchor_targets.counts()["negative"]
    assert b3.anchor_targets.counts()["sampled_negative"] == n_neg  # all of them
    assert b3.rpn_loss.n_sampled == n_neg + b3.anchor_targets.counts()["sampled_positive"]


def test_non_square_input_frame(backbone, make_pixels):
    pixels = make_pixels(600, 900, seed=2)
    boxes = [[90, 120, 420, 540], [500, 60, 880, 330]]
    prepared = prepare_input(pixels, boxes, ["a", "b"], ResizeParams(height=480, width=640))
    # sx = 640 / 900, sy = 480 / 600 = 0.8: [64, 96, 298, 432], [355, 48, 625, 264].
    assert prepared.image.gt_boxes.tolist() == [[64, 96, 298, 432], [355, 48, 625, 264]]
    features, _ = compute_features(prepared.image, backbone, BackboneParams(), CPU)
    assert features.shape == (1, 512, 30, 40)  # 480 / 16 x 640 / 16
    heads = DetectorHeads(2, seed=0, hidden=HIDDEN)
    result = run_pipeline(prepared.image, prepared.gt_labels, features, heads, PipelineParams())
    assert result.anchors.total == 30 * 40 * 9 == 10800
    assert result.rpn.locs.shape == (10800, 4)
    assert result.anchors.inside == len(ref.inside(ref.anchors((30, 40)), (480, 640)))
    labels, _, _ = ref.label_anchors(
        result.anchors.inside_anchors.tolist(), prepared.image.gt_boxes.tolist()
    )
    c = result.anchor_targets.counts()
    assert (c["positive"], c["negative"]) == (labels.count(1), labels.count(0))
    assert (result.proposals.rois[:, 2] <= 640).all() and (result.proposals.rois[:, 3] <= 480).all()
    finite_losses(result)


# ---- parameters -------------------------------------------------------------------------------


def test_overrides_by_unique_and_qualified_name():
    p = PipelineParams().with_overrides(
        {
            "roi_pos_iou": "0.6",
            "scales": "4,8",
            "training": "false",
            "anchor_targets.seed": "5",
            "method": "align",
            "batch_size": "128",
        }
    )
    assert p.proposal_targets.roi_pos_iou == 0.6
    assert p.anchors.scales == (4.0, 8.0)
    assert p.training is False
    assert p.anchor_targets.seed == 5 and p.proposal_targets.seed == 0
    assert p.roi_pool.method == "align"
    assert p.anchor_targets.batch_size == 128
    assert PipelineParams() == PipelineParams()  # untouched; frozen and comparable
    assert hash(p) == hash(dataclasses.replace(p))


@pytest.mark.parametrize(
    "overrides",
    [
        {"no_such_thing": "1"},
        {"seed": "3"},  # ambiguous: anchor_targets.seed or proposal_targets.seed
        {"batch_size": "many"},
        {"training": "maybe"},
        {"detect.no_such_field": "1"},
        {"method": "bilinear"},
    ],
)
def test_bad_overrides_raise(overrides):
    with pytest.raises(ValueError):
        PipelineParams().with_overrides(overrides)


def test_parameter_names_cover_every_stage():
    names = parameter_names()
    assert names[""] == ["training"]
    for stage in ("resize", "backbone", "anchors", "anchor_targets", "rpn", "proposals"):
        assert stage in names
    assert "pos_iou" in names["anchor_targets"] and "nms_iou" in names["proposals"]


def test_with_seed_sets_both_sampling_seeds():
    p = PipelineParams().with_seed(11)
    assert p.anchor_targets.seed == 11 and p.proposal_targets.seed == 11
