"""The staged run of torchvision's Faster R-CNN: equal to ``model(images)``, and every stage right.

Every detector here has random weights saved to a file and loaded back with ``load_detector``.
Random weights give every class about 1/91 probability, below the 0.05 score threshold, so the
saved weights raise three classes' biases in the class-score layer ("bias trick"): the detections
are then many and of several classes, and the equality with ``model(images)`` means something.
Most tests use a small transform (min 128 / max 192) and 100 proposals to stay fast; one runs at
torchvision's default 800 / 1333 with 1000 proposals.
"""

from __future__ import annotations

import math

import pytest
import torch
from torchvision.ops import roi_align

from frcnn_core.detectors import MODELS, build_model, load_detector, save_checkpoint
from frcnn_core.production import (
    DISPLAY_SCORE_THRESHOLD,
    KEEP_POOLED,
    Detections,
    InputSizeError,
    StagedRun,
    _levels_by_match,
    check_input_size,
    class_candidates,
    detections_at,
    image_tensor,
    run_staged,
    top_rois,
)

MOBILE = "fasterrcnn_mobilenet_v3_large_fpn"
R50 = "fasterrcnn_resnet50_fpn"
SMALL = {
    "min_size": 128,
    "max_size": 192,
    "rpn_pre_nms_top_n_test": 300,
    "rpn_post_nms_top_n_test": 100,
}
SHAPES = {"portrait": (150, 90), "landscape": (90, 160), "small": (24, 30)}


@pytest.fixture(scope="module")
def weight_files(tmp_path_factory) -> dict[str, str]:
    """model name -> a checkpoint with seed-5 random weights and raised biases for classes 1-3."""
    folder = tmp_path_factory.mktemp("production_weights")
    files = {}
    for name in MODELS:
        torch.manual_seed(5)
        model = build_model(name, 91)
        with torch.no_grad():
            model.roi_heads.box_predictor.cls_score.bias[1:4] += torch.tensor([4.0, 3.0, 2.0])
        path = folder / f"{name}.pt"
        save_checkpoint(path, model, name, [f"c{i}" for i in range(91)])
        files[name] = str(path)
    return files


@pytest.fixture(scope="module")
def detectors_small(weight_files):
    return {
        name: load_detector(None, path, device="cpu", **SMALL)
        for name, path in weight_files.items()
    }


@pytest.fixture(scope="module")
def images(make_pixels) -> dict[str, torch.Tensor]:
    return {
        kind: image_tensor(make_pixels(h, w, seed=i))
        for i, (kind, (h, w)) in enumerate(SHAPES.items())
    }


@pytest.fixture(scope="module")
def runs(detectors_small, images) -> dict[tuple[str, str], tuple[dict, StagedRun]]:
    """(model, shape) -> (model(images)[0], run_staged(...)), each computed once."""
    out = {}
    with torch.inference_mode():
        for name, det in detectors_small.items():
            for kind, image in images.items():
                out[name, kind] = (det.model([image])[0], run_staged(det.model, image))
    return out


def assert_same_detections(expected: dict, got: Detections) -> None:
    assert torch.equal(expected["boxes"], got.boxes_original)
    assert torch.equal(expected["scores"], got.scores)
    assert torch.equal(expected["labels"], got.labels)


@pytest.mark.parametrize("kind", SHAPES)
@pytest.mark.parametrize("name", MODELS)
def test_staged_run_equals_model(runs, name, kind):
    expected, run = runs[name, kind]
    assert len(run.detections) > 10  # the equality is about real detections
    assert len(set(run.detections.labels.tolist())) >= 2
    assert_same_detections(expected, run.detections)
    assert run.input.original_size == SHAPES[kind]


def test_staged_run_equals_model_at_default_size(weight_files, make_pixels):
    det = load_detector(MOBILE, weight_files[MOBILE])  # torchvision's 800 / 1333, 1000 proposals
    image = image_tensor(make_pixels(90, 120, seed=9))
    with torch.inference_mode():
        expected = det.model([image])[0]
        run = run_staged(det.model, image)
    assert len(run.detections) > 10
    assert_same_detections(expected, run.detections)
    # 90 x 120 scaled by min(800 / 90, 1333 / 120) = 8.89: 800 x 1066, padded to 800 x 1088.
    assert run.input.input_size == (800, 1066) and run.input.padded_size == (800, 1088)
    assert run.proposals.post_nms_top_n == 1000 and run.proposals.pre_nms_top_n == 1000
    assert (run.input.min_size, run.input.max_size) == (800, 1333)


def test_input_stage(detectors_small, runs, images):
    det = detectors_small["fasterrcnn_resnet50_fpn"]
    _, run = runs["fasterrcnn_resnet50_fpn", "portrait"]
    # 150 x 90: the short side goes to 128 unless the long side would pass 192 -> x 1.28 = 192.
    assert run.input.input_size == (192, 115)
    assert run.input.padded_size == (192, 128)
    assert run.input.scale == pytest.approx(192 / 150)
    with torch.inference_mode():
        batch, _ = det.model.transform([images["portrait"]])
    assert torch.equal(run.input.tensor, batch.tensors[0])
    # Padding is zeros after normalisation, to the right of the resized image.
    assert run.input.tensor[:, :, 115:].abs().max() == 0
    assert run.input.image_mean == (0.485, 0.456, 0.406)


def test_feature_maps_and_strides(runs):
    _, run = runs["fasterrcnn_resnet50_fpn_v2", "landscape"]
    # 90 x 160 -> 108 x 192, padded to 128 x 192: strides 4, 8, 16, 32 and the pooled 64.
    assert run.backbone.levels == ("0", "1", "2", "3", "pool")
    assert run.backbone.shapes() == {
        "0": [256, 32, 48],
        "1": [256, 16, 24],
        "2": [256, 8, 12],
        "3": [256, 4, 6],
        "pool": [256, 2, 3],
    }
    assert run.backbone.strides == {
        "0": (4, 4),
        "1": (8, 8),
        "2": (16, 16),
        "3": (32, 32),
        "pool": (64, 64),
    }
    _, mobile = runs[MOBILE, "landscape"]
    # MobileNetV3's FPN returns two stride-32 maps and a stride-64 "pool".
    assert mobile.backbone.strides == {"0": (32, 32), "1": (32, 32), "pool": (64, 64)}


@pytest.mark.parametrize("name", MODELS)
def test_anchors_are_the_generators(detectors_small, runs, images, name):
    det = detectors_small[name]
    _, run = runs[name, "landscape"]
    with torch.inference_mode():
        batch, _ = det.model.transform([images["landscape"]])
        features = list(det.model.backbone(batch.tensors).values())
        anchors = det.model.rpn.anchor_generator(batch, features)[0]
    per_location = det.model.rpn.anchor_generator.num_anchors_per_location()
    counts = [a * f.shape[-2] * f.shape[-1] for a, f in zip(per_location, features, strict=True)]
    assert list(run.anchors.counts().values()) == counts
    assert torch.equal(torch.cat(list(run.anchors.anchors.values())), anchors)
    for level, objectness in run.rpn.objectness.items():
        assert objectness.numel() == run.anchors.counts()[level]
    if name.startswith("fasterrcnn_resnet50"):
        assert run.anchors.sizes == {
            "0": (32,),
            "1": (64,),
            "2": (128,),
            "3": (256,),
            "pool": (512,),
        }
        # The first anchor of level "0": size 32, ratio 0.5 (h / w) centred at (0, 0):
        # w = 32 / sqrt(0.5) = 45.25 -> 45, h = 22.6 -> 23 (rounded halves: -23 / 2, 23 / 2 -> 11).
        assert run.anchors.anchors["0"][0].tolist() == [-23.0, -11.0, 23.0, 11.0]


@pytest.mark.parametrize("name", MODELS)
def test_proposal_funnel(runs, name):
    _, run = runs[name, "portrait"]
    p = run.proposals
    assert p.levels == run.backbone.levels
    for level, counts in p.funnel.items():
        steps = [counts[k] for k in ("anchors", "top_n", "after_small", "after_score", "after_nms")]
        assert steps == sorted(steps, reverse=True), (level, counts)
        assert counts["top_n"] == min(counts["anchors"], p.pre_nms_top_n)
        assert counts["final"] <= counts["after_nms"]
    assert p.pre_nms == sum(c["after_score"] for c in p.funnel.values())
    assert int(p.kept.sum()) == sum(c["after_nms"] for c in p.funnel.values())
    assert (
        p.post_nms
        == sum(c["final"] for c in p.funnel.values())
        == min(p.post_nms_top_n, int(p.kept.sum()))
    )
    # Each RoI is one of its level's NMS survivors, and the counts per level agree.
    assert p.box_levels.min() >= 0
    for i, box in enumerate(p.boxes):
        same = (p.candidates == box).all(dim=1) & p.kept
        assert bool(same[p.candidate_levels == p.box_levels[i]].any())
    per_level = torch.bincount(p.box_levels, minlength=len(p.levels)).tolist()
    assert per_level == [c["final"] for c in p.funnel.values()]
    assert torch.all(p.scores[:-1] >= p.scores[1:])  # best first


def test_levels_by_match_fallback():
    # Used only if filter_proposals' output ever differs from the traced funnel: each final box
    # takes the level of the first identical candidate, -1 when none matches.
    candidates = torch.tensor([[0, 0, 10, 10], [5, 5, 20, 20], [0, 0, 10, 10.0]])
    levels = torch.tensor([2, 0, 1])
    final = torch.tensor([[5, 5, 20, 20], [0, 0, 10, 10], [1, 1, 2, 2.0]])
    assert _levels_by_match(final, candidates, levels).tolist() == [0, 2, -1]


def test_roi_levels_follow_the_fpn_rule(runs):
    _, run = runs["fasterrcnn_resnet50_fpn", "landscape"]
    roi = run.roi
    assert roi.level_names == ("0", "1", "2", "3")
    assert (roi.canonical_scale, roi.canonical_level, roi.k_min, roi.k_max) == (224, 4, 2, 5)
    assert roi.scales == (1 / 4, 1 / 8, 1 / 16, 1 / 32)
    boxes = run.proposals.boxes.double()
    side = ((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])).sqrt()
    checked = 0
    for s, level in zip(side.tolist(), roi.levels.tolist(), strict=True):
        k = 4 + math.log2(s / 224)
        if abs(k - round(k)) < 1e-4:
            continue  # on a level boundary float32 and float64 may round apart
        assert level == min(max(math.floor(k), 2), 5) - 2
        checked += 1
    assert checked > 50
    assert sum(roi.counts().values()) == run.proposals.post_nms
    _, mobile = runs[MOBILE, "landscape"]
    # Both pooled MobileNet levels have stride 32: k_min = k_max = 5, every RoI from "0".
    assert mobile.roi.k_min == mobile.roi.k_max == 5
    assert mobile.roi.counts() == {"0": mobile.proposals.post_nms, "1": 0}


def test_pooled_features_are_roi_align_on_the_assigned_level(runs):
    _, run = runs["fasterrcnn_resnet50_fpn_v2", "portrait"]
    roi = run.roi
    assert roi.pooled.shape == (KEEP_POOLED, 256, 7, 7)
    for i in range(KEEP_POOLED):
        level = int(roi.levels[i])
        feature = run.backbone.features[roi.level_names[level]]
        box = run.proposals.boxes[i : i + 1]
        expected = roi_align(
            feature, [box], (7, 7), spatial_scale=roi.scales[level], sampling_ratio=2
        )
        torch.testing.assert_close(roi.pooled[i], expected[0], rtol=0, atol=1e-6)


def test_head_outputs(runs):
    _, run = runs["fasterrcnn_resnet50_fpn", "small"]
    p = run.proposals.post_nms
    assert run.head.class_logits.shape == (p, 91)
    assert run.head.box_regression.shape == (p, 91 * 4)
    assert run.head.bbox_weights == (10.0, 10.0, 5.0, 5.0)
    probabilities = run.head.probabilities()
    torch.testing.assert_close(probabilities.sum(dim=1), torch.ones(p))
    index, top = top_rois(run, k=5)
    assert top.shape == (5, 91)
    best = probabilities[:, 1:].max(dim=1).values
    assert torch.equal(top[:, 1:].max(dim=1).values, best.sort(descending=True).values[:5])
    assert torch.equal(probabilities[index], top)


def test_detections_are_in_both_frames(runs):
    _, run = runs["fasterrcnn_resnet50_fpn", "portrait"]
    d = run.detections
    ratio = torch.tensor([90 / 115, 150 / 192, 90 / 115, 150 / 192])
    torch.testing.assert_close(d.boxes_original, d.boxes * ratio)
    assert torch.all(d.scores[:-1] >= d.scores[1:])
    assert d.labels.min() >= 1 and d.threshold == 0.05
    assert len(d) <= run.detections_per_img


@pytest.fixture(scope="module")
def detector_at(weight_files):
    """A detector from the same file with another box_score_thresh."""
    cache = {}

    def get(name: str, threshold: float):
        if (name, threshold) not in cache:
            cache[name, threshold] = load_detector(
                None, weight_files[name], box_score_thresh=threshold, **SMALL
            )
        return cache[name, threshold]

    return get


@pytest.mark.parametrize("name", MODELS)
def test_candidates_at_the_models_threshold_are_its_detections(runs, detectors_small, name):
    _, run = runs[name, "portrait"]
    candidates = class_candidates(run, detectors_small[name].model)
    p = run.proposals.post_nms
    assert candidates.boxes.shape == (p * 90, 4) and candidates.labels.unique().tolist() == list(
        range(1, 91)
    )
    again = candidates.at(run.detections.threshold)
    for field in ("boxes", "boxes_original", "scores", "labels"):
        assert torch.equal(getattr(again, field), getattr(run.detections, field)), field


@pytest.mark.parametrize("where", [0.2, 0.6, "display"])
def test_threshold_moved_without_forward_equals_model(runs, images, detector_at, where):
    _, run = runs[R50, "landscape"]
    scores = run.detections.scores
    if where == "display":
        threshold = DISPLAY_SCORE_THRESHOLD
    else:  # between two detections' scores, a fraction of the way down the list
        k = int(where * len(scores))
        while scores[k] == scores[k + 1]:
            k += 1
        threshold = float(scores[k] + scores[k + 1]) / 2
    model = detector_at(R50, run.detections.threshold).model
    moved = detections_at(run, threshold, model)
    with torch.inference_mode():
        expected = detector_at(R50, threshold).model([images["landscape"]])[0]
    assert_same_detections(expected, moved)
    assert moved.threshold == threshold and bool((moved.scores > threshold).all())
    if where != "display":
        assert len(moved) == k + 1
        # The plain filter agrees where no scores tie.
        assert_same_detections(expected, run.detections.above(threshold))


def test_threshold_moved_with_tied_scores_equals_model(runs, images, detector_at):
    # Random MobileNet features are nearly constant: many detections share one score exactly.
    _, run = runs[MOBILE, "landscape"]
    assert len(run.detections.scores.unique()) < len(run.detections) / 2
    candidates = class_candidates(run, detector_at(MOBILE, 0.05).model)
    for threshold in (0.1, 0.3):
        with torch.inference_mode():
            expected = detector_at(MOBILE, threshold).model([images["landscape"]])[0]
        assert_same_detections(expected, candidates.at(threshold))


def test_threshold_below_the_models_reruns_the_postprocess(images, detector_at):
    det = detector_at(R50, 0.2)
    with torch.inference_mode():
        run = run_staged(det.model, images["portrait"])
        expected = detector_at(R50, 0.06).model([images["portrait"]])[0]
    assert run.detections.threshold == 0.2
    lower = detections_at(run, 0.06, det.model)
    assert len(lower) > len(run.detections)
    assert_same_detections(expected, lower)
    assert det.model.roi_heads.score_thresh == 0.2  # the shared model is left alone


def test_run_to_device_copies_every_tensor(runs):
    _, run = runs[MOBILE, "small"]
    moved = run.to("cpu")
    assert moved.backbone.features["0"].device.type == "cpu"
    assert torch.equal(moved.anchors.anchors["pool"], run.anchors.anchors["pool"])
    assert moved.proposals.funnel == run.proposals.funnel


def test_input_size_is_predicted_and_thin_images_refused(runs, detectors_small):
    for (name, kind), (_, run) in runs.items():
        transform = detectors_small[name].model.transform
        assert check_input_size(transform, *SHAPES[kind]) == run.input.input_size, (name, kind)
    model = detectors_small[MOBILE].model
    strip = torch.rand(3, 1, 400)  # 1 x 400: x 192 / 400 leaves 0.48 pixel rows
    with torch.inference_mode(), pytest.raises(RuntimeError):
        model([strip])  # torchvision's own message is about interpolate's output size
    with pytest.raises(InputSizeError, match="a 400 x 1 image is too thin") as info:
        run_staged(model, strip)
    assert "\n" not in str(info.value)
    assert run_staged(model, torch.rand(3, 1, 10)).input.input_size == (19, 192)


def test_bad_inputs_are_refused(detectors_small):
    model = detectors_small[MOBILE].model
    with pytest.raises(ValueError, match=r"\[3, H, W\]"):
        run_staged(model, torch.zeros(1, 3, 32, 32))
    with pytest.raises(ValueError, match="H x W x 3"):
        image_tensor(torch.zeros(32, 32, 4, dtype=torch.uint8))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("name", MODELS)
def test_staged_run_equals_model_on_cuda(weight_files, images, name):
    det = load_detector(None, weight_files[name], device="cuda", **SMALL)
    image = images["landscape"].cuda()
    with torch.inference_mode():
        expected = det.model([image])[0]
        run = run_staged(det.model, image, sync=True)
    assert len(run.detections) > 10
    assert_same_detections(expected, run.detections)
    assert run.to("cpu").backbone.features["0"].device.type == "cpu"


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_half_precision_on_cuda_runs_every_stage(weight_files, images):
    det = load_detector(None, weight_files["fasterrcnn_resnet50_fpn_v2"], device="cuda", half=True)
    image = image_tensor(images["landscape"].permute(1, 2, 0).mul(255).byte(), "cuda", det.dtype)
    with torch.inference_mode():
        expected = det.model([image])[0]
        run = run_staged(det.model, image)
    assert run.backbone.features["0"].dtype == torch.float16
    assert len(run.detections) > 10
    assert_same_detections(expected, run.detections)
