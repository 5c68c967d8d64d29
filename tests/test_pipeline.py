"""The stages chained by the stage graph: stage 1's box scaling on the tutorial's image, a full
800 x 800 run with random weights, edge cases through the whole pipeline, sizes that follow from
the backbone and the settings, and the parameter overrides."""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pytest
import reference as ref
import torch

from frcnn_core.anchor_targets import AnchorTargetParams, anchor_targets
from frcnn_core.anchors import AnchorParams, generate_anchors
from frcnn_core.backbone import VGG16, BackboneSpec, run_backbone
from frcnn_core.detect import DetectParams, detect, match_detections
from frcnn_core.ground_truth import ground_truth
from frcnn_core.head import HeadLossParams, HeadParams, UnreducedLossError, head_forward
from frcnn_core.image import LoadedImage, ResizeParams, resize_image
from frcnn_core.params import ParamsError, PipelineParams, groups
from frcnn_core.pipeline import PIPELINE, DetectorHeads, UserBoxes, run, summary
from frcnn_core.proposal_targets import ProposalTargetParams
from frcnn_core.proposals import TEST_COUNTS, ProposalCounts, ProposalParams, propose
from frcnn_core.roi_pool import RoIPoolParams, pool_rois
from frcnn_core.rpn import RPNParams
from frcnn_core.train import split_backbone

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
HIDDEN = 256  # the Fast R-CNN head's width does not matter here; 4096 would be 400 MB
SPEC_BEST_IOU = torch.tensor([0.58514285, 0.5752716, 0.5255493, 0.6325869], dtype=torch.float32)
SCALE = 1 / VGG16.stride


def finite_losses(result) -> dict[str, float]:
    losses = result["losses"].floats()
    assert set(losses) == {"rpn_cls", "rpn_loc", "roi_cls", "roi_loc", "total"}
    assert all(math.isfinite(v) for v in losses.values())
    parts = losses["rpn_cls"] + losses["rpn_loc"] + losses["roi_cls"] + losses["roi_loc"]
    assert losses["total"] == pytest.approx(parts)
    return losses


# ---- stage 1 on the tutorial's image ----------------------------------------------------------


def test_stage_one_scales_the_tutorial_boxes(zebra_input):
    # 2000 x 1333 (W x H) -> 800 x 800: sx = 0.4, sy = 800 / 1333 = 0.60015, truncated:
    # [223, 782, 623, 1074] -> [89.2, 469.3, 249.2, 644.6] -> [89, 469, 249, 644] and so on.
    assert zebra_input.gt_boxes.tolist() == ZEBRA_BOXES
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


def test_stage_one_cleans_and_keeps_labels_aligned(prepare):
    pixels = np.zeros((100, 2000, 3), dtype=np.uint8)
    raw = [
        [400, 80, 100, 10],  # inverted: swapped to [100, 10, 400, 80]
        [5, 0, 6, 10],  # 1 pixel wide: 0.4 wide at 800 / 2000 -> truncated to 0 -> vanishes
        [float("nan"), 0, 10, 10],  # dropped by the cleaning
        [1900, 50, 2100, 120],  # clipped to [1900, 50, 2000, 100]
    ]
    labels = ["cat", "dog", "bird", " horse "]
    prepared = prepare(pixels, raw, labels, ResizeParams())
    assert prepared.labels == ("cat", "horse")
    assert prepared.class_names == ("cat", "horse")
    assert prepared.gt_labels.tolist() == [1, 2]
    # sx = 0.4, sy = 8: [100, 10, 400, 80] -> [40, 80, 160, 640]; [1900, 50, 2000, 100] ->
    # [760, 400, 800, 800].
    assert prepared.gt_boxes.tolist() == [[40, 80, 160, 640], [760, 400, 800, 800]]
    notes = " | ".join(prepared.notes)
    assert "swapped" in notes and "clipped" in notes and "vanished" in notes and "dog" in notes
    # The graph's stage 1 is the library's resize_image and ground_truth, nothing more.
    assert np.array_equal(prepared.image.pixels, resize_image(pixels, ResizeParams()).pixels)
    direct = ground_truth(raw, labels, (100, 2000), ResizeParams())
    assert torch.equal(prepared.gt_boxes, direct.boxes) and prepared.notes == direct.notes


# ---- the full pipeline at 800 x 800 ----------------------------------------------------------


@pytest.fixture(scope="module")
def zebra_heads(make_heads):
    return make_heads(1)


@pytest.fixture(scope="module")
def zebra_result(zebra_input, zebra_features, zebra_heads, run_stages):
    return run_stages(zebra_input, zebra_features, zebra_heads)


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
    assert s["losses"] == zebra_result["losses"].floats()


def test_full_pipeline_800_internal_consistency(zebra_result, zebra_input, zebra_features):
    r = zebra_result
    # Each stage is the library's stage function on the stage before's result.
    anchors = generate_anchors((50, 50), (800, 800), AnchorParams(), 16)
    assert torch.equal(r.anchors.anchors, anchors.anchors) and r.anchors.stride == 16
    targets = anchor_targets(
        anchors.anchors, anchors.inside_index, zebra_input.gt_boxes, AnchorTargetParams()
    )
    assert torch.equal(r.anchor_targets.labels_all, targets.labels_all)
    assert torch.equal(r.anchor_overlaps.ious, targets.ious)
    proposals = propose(
        anchors.anchors, r.rpn.locs, r.rpn.scores, (800, 800), ProposalParams(), ProposalCounts()
    )
    assert torch.equal(r.proposals.keep_index, proposals.keep_index)
    assert (r.proposals.pre_nms_n, r.proposals.post_nms_n) == (12000, 2000)
    # The proposal targets against the loop reference on the kept proposals.
    pos, neg, _, _ = ref.proposal_target_candidates(
        r.proposals.rois.tolist(), zebra_input.gt_boxes.tolist(), 0.5, 0.5, 0.0
    )
    n_pos = min(len(pos), 32)
    assert r.proposal_targets.counts()["positive"] == n_pos
    assert r.proposal_targets.counts()["negative"] == min(len(neg), 128 - n_pos)
    # RoI pooling is of the sampled RoIs, in the same order, at 1 / the backbone's stride.
    expected = pool_rois(zebra_features, r.proposal_targets.rois, RoIPoolParams(), SCALE).pooled
    assert torch.equal(r.roi_pool.pooled, expected)
    assert torch.equal(r.proposal_targets.rois, r.proposals.rois[r.proposal_targets.sample_index])
    assert r.head.scores.shape == (r.roi_pool.pooled.shape[0], 2)
    assert r.rpn.locs.shape == (22500, 4)
    # The RPN loss saw exactly the sampled anchors: 45 positives out of 256.
    assert (r.rpn_loss.n_pos, r.rpn_loss.n_sampled) == (45, 256)
    assert r.losses.floats()["total"] == pytest.approx(float(r.losses.total))


def test_detection_800(zebra_result, zebra_input, zebra_features, zebra_heads):
    r = zebra_result
    test_proposals = r["test_proposals"]
    # The test-time counts (6000 / 300), the same rules as the training proposals.
    assert (test_proposals.pre_nms_n, test_proposals.post_nms_n) == (6000, 300)
    assert test_proposals.pre_nms_index.numel() == min(6000, test_proposals.size_keep.numel())
    assert 0 < test_proposals.keep_index.numel() <= 300
    assert torch.equal(test_proposals.size_keep, r.proposals.size_keep)
    assert torch.equal(test_proposals.pre_nms_index, r.proposals.pre_nms_index[:6000])
    direct = propose(
        r.anchors.anchors, r.rpn.locs, r.rpn.scores, (800, 800), ProposalParams(), TEST_COUNTS
    )
    assert torch.equal(test_proposals.keep_index, direct.keep_index)
    head = r["test_head"]
    assert head.scores.shape == (test_proposals.keep_index.numel(), 2)
    pooled = pool_rois(zebra_features, test_proposals.rois, RoIPoolParams(), SCALE).pooled
    assert torch.equal(r["test_roi_pool"].pooled, pooled)
    with torch.no_grad():
        torch.testing.assert_close(head.scores, head_forward(pooled, zebra_heads.head).scores)
    det = r["detections"]
    assert det.boxes.shape[0] <= 100
    assert (det.scores >= 0.05).all()
    assert (det.scores[1:] <= det.scores[:-1]).all()
    assert (det.boxes[:, :2] >= 0).all() and (det.boxes[:, 2:] <= 800).all()
    assert (det.labels == 1).all()
    again = detect(test_proposals.rois, head, (800, 800), DetectParams())
    assert torch.equal(det.boxes, again.boxes) and det.candidates == again.candidates
    match = r["detection_match"]
    expected = match_detections(det, zebra_input.gt_boxes, zebra_input.gt_labels, 0.5)
    assert torch.equal(match.true_positive, expected.true_positive)
    assert match.gt_found.shape == (4,)


def test_b1_pairs_anchors_with_the_wrong_predictions(
    zebra_input, zebra_features, zebra_heads, zebra_result, run_stages
):
    good = zebra_result
    params = PipelineParams(anchors=AnchorParams(bug_b1_x_outer=True))
    bad = run_stages(zebra_input, zebra_features, zebra_heads, params)
    # The labelling is the same set of anchors in another order: same counts ...
    assert bad.anchor_targets.counts() == good.anchor_targets.counts()
    # ... but each label now meets the RPN output of the mirrored cell.
    assert not torch.equal(bad.anchor_targets.labels_all, good.anchor_targets.labels_all)
    assert bad.rpn_loss.loc_sum != pytest.approx(float(good.rpn_loss.loc_sum), rel=1e-6)
    # The RPN's outputs themselves do not depend on the anchors' order.
    assert torch.equal(bad.rpn.locs, good.rpn.locs)


# ---- smaller inputs ---------------------------------------------------------------------------


def test_empty_ground_truth_through_the_pipeline(
    small_input, small_features, small_heads, run_stages
):
    result = run_stages(small_input.without_boxes(), small_features, small_heads)
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
    assert result.detection_match.gt_found.shape == (0,)
    assert not result.detection_match.true_positive.any()


def test_regression_no_sampled_rois_through_the_pipeline(
    small_input, small_features, small_heads, run_stages
):
    # No GT and negatives required at IoU >= 0.1: every proposal has IoU 0, so none is sampled.
    # The RoI terms must then be 0 (see test_head.test_regression_head_forward_with_zero_rois).
    params = PipelineParams(proposal_targets=ProposalTargetParams(roi_neg_iou_lo=0.1))
    result = run_stages(small_input.without_boxes(), small_features, small_heads, params)
    assert result.proposal_targets.counts()["negative"] == 0
    assert result.roi_pool.pooled.shape == (0, 512, 7, 7)
    losses = finite_losses(result)
    assert losses["roi_cls"] == 0.0 and losses["roi_loc"] == 0.0


def test_small_pipeline_counts_match_reference(
    small_input, small_features, small_heads, run_stages
):
    result = run_stages(small_input, small_features, small_heads)
    assert small_input.class_names == ("cat", "dog")
    assert result.head.scores.shape[1] == 3
    labels, _, best = ref.label_anchors(
        result.anchors.inside_anchors.tolist(), small_input.gt_boxes.tolist()
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
    zebra_input, zebra_features, zebra_heads, zebra_result, run_stages
):
    args = (zebra_input, zebra_features, zebra_heads)
    again = run_stages(*args, PipelineParams())
    assert again.losses.floats() == zebra_result.losses.floats()
    assert torch.equal(again.anchor_targets.labels, zebra_result.anchor_targets.labels)
    # Another seed samples other negatives (211 of 7469), in the same numbers.
    other = run_stages(*args, PipelineParams().with_seed(7))
    assert other.anchor_targets.counts() == zebra_result.anchor_targets.counts()
    assert not torch.equal(other.anchor_targets.labels, zebra_result.anchor_targets.labels)


def test_training_step_back_propagates(small_input, small_features, small_heads, run_stages):
    result = run_stages(small_input, small_features, small_heads, grad=True)
    total = result.losses.total
    assert total.dim() == 0 and total.requires_grad
    small_heads.zero_grad()
    total.backward()
    for param in (small_heads.rpn.conv.weight, small_heads.head.fc6.weight):
        assert param.grad is not None and param.grad.abs().sum() > 0
    # Without grad (the default) nothing records a graph.
    assert not run_stages(small_input, small_features, small_heads).losses.total.requires_grad


def test_bug_flags_through_the_pipeline(small_input, small_features, small_heads, run_stages):
    args = (small_input, small_features, small_heads)
    good = run_stages(*args, PipelineParams())
    b6 = run_stages(*args, PipelineParams(rpn=RPNParams(bug_b6_no_relu=True)))
    assert (b6.rpn.scores - good.rpn.scores).abs().max() > 1e-4
    b11 = run_stages(*args, PipelineParams(head=HeadParams(bug_b11_no_relu=True)))
    assert torch.equal(b11.roi_pool.pooled, good.roi_pool.pooled)
    assert (b11.head.scores - good.head.scores).abs().max() > 1e-5
    b12 = run_stages(*args, PipelineParams(head_loss=HeadLossParams(bug_b12_unreduced=True)))
    # B12 breaks the head's loss only: the stages before it run as usual.
    assert torch.equal(b12.head.scores, good.head.scores)
    assert float(b12.rpn_loss.total) == float(good.rpn_loss.total)
    with pytest.raises(UnreducedLossError):
        b12["losses"]
    b3 = run_stages(*args, PipelineParams(anchor_targets=AnchorTargetParams(bug_b3_neg_count=True)))
    n_neg = b3.anchor_targets.counts()["negative"]
    assert b3.anchor_targets.counts()["sampled_negative"] == n_neg  # all of them
    assert b3.rpn_loss.n_sampled == n_neg + b3.anchor_targets.counts()["sampled_positive"]


def test_non_square_input_frame(backbone, make_pixels):
    # The eager runner from the photo: stage 1, the backbone, and fresh heads for the classes
    # of the boxes, all from the graph.
    pixels = make_pixels(600, 900, seed=2)
    boxes = UserBoxes(((90, 120, 420, 540), (500, 60, 880, 330)), ("a", "b"))
    params = PipelineParams(resize=ResizeParams(height=480, width=640))
    result = run(LoadedImage(pixels), boxes, backbone, params, hidden=HIDDEN)
    # sx = 640 / 900, sy = 480 / 600 = 0.8: [64, 96, 298, 432], [355, 48, 625, 264].
    gt = result.ground_truth
    assert gt.boxes.tolist() == [[64, 96, 298, 432], [355, 48, 625, 264]]
    assert result.backbone.features.shape == (1, 512, 30, 40)  # 480 / 16 x 640 / 16
    assert result.vocabulary == ("a", "b") and result.classes.gt_labels.tolist() == [1, 2]
    heads = result.heads
    assert heads.num_classes == 2 and heads.head.fc7.out_features == HIDDEN
    assert result.anchors.total == 30 * 40 * 9 == 10800
    assert result.rpn.locs.shape == (10800, 4)
    assert result.anchors.inside == len(ref.inside(ref.anchors((30, 40)), (480, 640)))
    labels, _, _ = ref.label_anchors(result.anchors.inside_anchors.tolist(), gt.boxes.tolist())
    c = result.anchor_targets.counts()
    assert (c["positive"], c["negative"]) == (labels.count(1), labels.count(0))
    assert (result.proposals.rois[:, 2] <= 640).all() and (result.proposals.rois[:, 3] <= 480).all()
    finite_losses(result)
    assert result.head.scores.shape[1] == 3


def test_run_with_a_models_vocabulary(backbone, small_input, make_heads, make_pixels):
    # Given heads and their vocabulary, class ids follow the vocabulary, not the boxes' order.
    pixels = make_pixels(240, 360, seed=1)
    boxes = UserBoxes(((30, 40, 150, 160), (170, 60, 330, 200)), ("dog", "cat"))
    params = PipelineParams(resize=ResizeParams(height=320, width=320))
    heads = make_heads(3)
    result = run(LoadedImage(pixels), boxes, backbone, params, heads, ("cat", "zebra", "dog"))
    assert result.classes.gt_labels.tolist() == [3, 1]
    assert result.heads is heads and result.head.scores.shape[1] == 4
    np.testing.assert_array_equal(result.image.pixels, small_input.image.pixels)


# ---- sizes that follow from the backbone and the settings --------------------------------


def test_a_stride_8_backbone_through_the_graph(small_input, backbone, make_heads, run_stages):
    # conv4_3 (the frozen part when conv5 is trained) has stride 8: 320 / 8 = 40 cells a side.
    # The anchors, the inside filter and the RoI pooling scale all follow from the spec.
    conv4, _ = split_backbone(backbone.features)
    image = torch.from_numpy(small_input.image.pixels)
    features = run_backbone(image, conv4).features
    assert features.shape == (1, 512, 40, 40)
    spec = BackboneSpec("VGG16 to conv4_3", channels=512, pools=3)
    result = run_stages(small_input, features, make_heads(2), spec=spec)
    assert result.anchors.stride == 8 and result.anchors.feature_size == (40, 40)
    assert result.anchors.total == 40 * 40 * 9 and result.rpn.locs.shape == (14400, 4)
    expected = ref.anchors((40, 40), stride=8)
    assert result.anchors.inside == len(ref.inside(expected, (320, 320)))
    rois = result.proposal_targets.rois
    assert torch.equal(
        result.roi_pool.pooled, pool_rois(features, rois, RoIPoolParams(), 1 / 8).pooled
    )
    assert not torch.equal(
        result.roi_pool.pooled, pool_rois(features, rois, RoIPoolParams(), 1 / 16).pooled
    )
    finite_losses(result)


def test_heads_follow_the_settings(small_input, small_features, run_stages):
    # 2 scales x 3 ratios = 6 anchors per cell, RoIs pooled to 5 x 5: the heads are sized for
    # them, and every stage's shapes follow.
    params = PipelineParams(
        anchors=AnchorParams(scales=(8.0, 16.0)), roi_pool=RoIPoolParams(output_size=5)
    )
    heads = DetectorHeads.for_params(2, params, seed=0, hidden=HIDDEN)
    assert heads.anchors_per_cell == 6 and heads.pooled_size == 5
    assert heads.head.fc6.in_features == 512 * 5 * 5
    assert heads.fits(params) and not heads.fits(PipelineParams())
    same = DetectorHeads(2, 6, 512, 5, seed=0, hidden=HIDDEN)
    for key, value in heads.state_dict().items():
        assert torch.equal(same.state_dict()[key], value), key
    result = run_stages(small_input, small_features, heads, params)
    assert result.anchors.total == 20 * 20 * 6 and result.rpn.locs.shape == (2400, 4)
    s = result.proposal_targets.labels.numel()
    assert result.roi_pool.pooled.shape == (s, 512, 5, 5)
    assert result.head.scores.shape == (s, 3)
    finite_losses(result)
    default = DetectorHeads.for_params(2, PipelineParams(), hidden=HIDDEN)
    assert default.anchors_per_cell == 9 and default.head.fc6.in_features == 512 * 7 * 7


# ---- parameters -------------------------------------------------------------------------------


def test_overrides_by_unique_and_qualified_name():
    p = PipelineParams().with_overrides(
        {
            "roi_pos_iou": "0.6",
            "scales": "4,8",
            "test_proposals.post_nms": "100",
            "anchor_targets.seed": "5",
            "method": "align",
            "batch_size": "128",
        }
    )
    assert p.proposal_targets.roi_pos_iou == 0.6
    assert p.anchors.scales == (4.0, 8.0)
    assert p.test_proposals == ProposalCounts(6000, 100)
    assert p.train_proposals == ProposalCounts(12000, 2000)
    assert p.anchor_targets.seed == 5 and p.proposal_targets.seed == 0
    assert p.roi_pool.method == "align"
    assert p.anchor_targets.batch_size == 128
    assert PipelineParams() == PipelineParams()  # untouched; frozen and comparable
    assert hash(p) == hash(dataclasses.replace(p))
    assert p.get("proposal_targets.roi_pos_iou") == 0.6
    assert PipelineParams().replace("proposals.nms_iou", 0.6).proposals.nms_iou == 0.6


@pytest.mark.parametrize(
    "overrides",
    [
        {"no_such_thing": "1"},
        {"seed": "3"},  # ambiguous: anchor_targets.seed or proposal_targets.seed
        {"pre_nms": "100"},  # ambiguous: train_proposals.pre_nms or test_proposals.pre_nms
        {"batch_size": "many"},
        {"training": "false"},  # gone: the counts are train_proposals and test_proposals
        {"detect.no_such_field": "1"},
        {"method": "bilinear"},
        {"stride": "8"},  # derived from the backbone, not a setting
        {"roi_pool.spatial_scale": "0.125"},
        {"nms_iou": "1.5"},  # out of range
    ],
)
def test_bad_overrides_raise(overrides):
    with pytest.raises(ParamsError) as caught:
        PipelineParams().with_overrides(overrides)
    assert isinstance(caught.value, ValueError)
    assert "\n" not in str(caught.value)


def test_every_group_is_read_by_a_stage():
    # The settings' groups are the names the stages read them by: none is left unread, and no
    # stage reads a group that does not exist.
    from frcnn_core.production_graph import PRODUCTION

    read = {group for graph in (PIPELINE, PRODUCTION) for stage in graph for group in stage.params}
    assert read == set(groups())
    for stage in ("resize", "backbone", "anchors", "anchor_targets", "rpn", "proposals"):
        assert stage in groups()
    assert PIPELINE["proposals"].params == ("proposals", "train_proposals")
    assert PIPELINE["test_proposals"].params == ("proposals", "test_proposals")


def test_with_seed_sets_both_sampling_seeds():
    p = PipelineParams().with_seed(11)
    assert p.anchor_targets.seed == 11 and p.proposal_targets.seed == 11
