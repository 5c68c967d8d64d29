"""The production detector's stage graph: a resize that never touches the shared model, a cached
run a sixth of the size that still draws every stage, a score threshold that needs no forward,
the user's boxes matched to COCO names and graded, and training targets and losses equal to
torchvision's own ``model.train()`` forward.

MobileNetV3 with random weights saved to a file, the biases of three classes raised so that
there are detections (the "bias trick" of tests/test_production.py), at a 160 / 240 input.
"""

from __future__ import annotations

import copy
from collections import Counter

import pytest
import torch
from torchvision.models.detection.transform import resize_boxes

import frcnn_core.production_graph as production_graph
from explorer.caches import nbytes
from frcnn_core.detectors import COCO_CLASS_NAMES, build_model, load_detector, save_checkpoint
from frcnn_core.graph import Run, Source
from frcnn_core.image import LoadedImage
from frcnn_core.params import PipelineParams
from frcnn_core.pipeline import UserBoxes
from frcnn_core.production import (
    Detections,
    InputSizeError,
    image_tensor,
    run_staged,
)
from frcnn_core.production_graph import (
    PRODUCTION,
    SAMPLING_SEED,
    grade,
    label_boxes,
    threshold_detections,
    trim,
    with_input_size,
)
from frcnn_core.render_production import input_pixels

MOBILE = "fasterrcnn_mobilenet_v3_large_fpn"
ZEBRA, PERSON, CAT = 24, 1, 17  # COCO ids
SIZE = (160, 240)
PARAMS = (
    PipelineParams()
    .replace("production_input.shorter_side", SIZE[0])
    .replace("production_input.longer_side", SIZE[1])
)
BOXES = ((10.0, 10.0, 80.0, 70.0), (90.0, 30.0, 170.0, 110.0), (5.0, 5.0, 40.0, 40.0))
LABELS = ("Zebra", "person", "thing")


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> str:
    torch.manual_seed(3)
    model = build_model(MOBILE, len(COCO_CLASS_NAMES))
    with torch.no_grad():
        bias = model.roi_heads.box_predictor.cls_score.bias
        bias[[PERSON, ZEBRA, CAT]] += torch.tensor([4.0, 5.0, 3.0])
    path = tmp_path_factory.mktemp("production_graph") / "mobile.pt"
    save_checkpoint(path, model, MOBILE, COCO_CLASS_NAMES)
    return str(path)


@pytest.fixture(scope="module")
def detector(checkpoint):
    return load_detector(None, checkpoint, device="cpu")


@pytest.fixture(scope="module")
def pixels(make_pixels):
    return make_pixels(120, 180, seed=3)


def graph_run(detector, pixels, params=PARAMS, cache=None, boxes=BOXES, labels=LABELS) -> Run:
    sources = {
        "photo": Source.of(LoadedImage(pixels), "photo"),
        "detector": Source.of(detector, "detector"),
        "user_boxes": Source.of(UserBoxes(boxes, labels), (boxes, labels)),
    }
    return Run(PRODUCTION, sources, params, cache=cache)


@pytest.fixture(scope="module")
def run(detector, pixels) -> Run:
    return graph_run(detector, pixels)


class DictCache(dict):
    def get_or_compute(self, key, compute):
        if key not in self:
            self[key] = compute()
        return self[key]


def test_a_resize_of_its_own_leaves_the_shared_model_alone(checkpoint, detector, pixels):
    model = detector.model
    resized = with_input_size(model, *SIZE)
    assert model.transform.min_size == (800,) and model.transform.max_size == 1333
    assert resized.transform.min_size == (160,) and resized.transform.max_size == 240
    assert resized.backbone is model.backbone and resized.roi_heads is model.roi_heads
    assert with_input_size(model, 800, 1333) is model
    built = load_detector(None, checkpoint, min_size=SIZE[0], max_size=SIZE[1]).model
    image = image_tensor(pixels)
    with torch.inference_mode():
        got, expected = resized([image])[0], built([image])[0]
    assert len(expected["boxes"]) > 10
    for key in ("boxes", "scores", "labels"):
        assert torch.equal(got[key], expected[key])


def test_the_cached_run_is_small_and_keeps_what_the_pages_draw(detector, pixels, run):
    with torch.inference_mode():
        full = run_staged(with_input_size(detector.model, *SIZE), image_tensor(pixels))
    cached = run["staged_run"]
    assert cached.run.input.tensor.numel() == 0 and not cached.run.backbone.features
    assert (cached.frame == input_pixels(full)).all()
    assert cached.run.input.input_size == (160, 240)
    for name, feature in full.backbone.features.items():
        level = cached.levels[name]
        fmap = feature[0]
        assert level.shape == tuple(fmap.shape)
        assert level.stride == full.backbone.strides[name]
        means = fmap.mean(dim=(1, 2))
        # The tiles are the most active channels, best first.
        assert means[list(level.channels)].tolist() == sorted(means.tolist(), reverse=True)[:16]
        assert torch.equal(level.tiles, fmap[list(level.channels)].half())
        assert torch.allclose(level.mean, fmap.mean(dim=0))
    assert torch.equal(cached.run.detections.boxes_original, full.detections.boxes_original)
    assert cached.run.anchors.counts() == full.anchors.counts()


def test_the_fpn_channels_are_what_trimming_drops(make_pixels):
    """ResNet-50 FPN (random weights) at 320 x 480: 256 channels on five levels are most of a
    run; the cached run keeps 16 of them at half precision."""
    model = build_model("fasterrcnn_resnet50_fpn", len(COCO_CLASS_NAMES), min_size=320)
    with torch.inference_mode():
        full = run_staged(model, image_tensor(make_pixels(200, 300)))
    cached = trim(full)
    features = nbytes(full.backbone.features) + nbytes(full.input.tensor)
    assert features > nbytes(full) / 2
    assert nbytes(cached) < nbytes(full) / 3
    assert nbytes(cached.levels) < nbytes(full.backbone.features) / 10


def test_a_score_threshold_is_a_new_key_for_the_tail_only(detector, pixels, monkeypatch):
    assert PRODUCTION.affected_by("production") == {"production_detections", "production_match"}
    assert "staged_run" in PRODUCTION.affected_by("production_input")
    assert "staged_run" not in PRODUCTION.affected_by("match")
    forwards = Counter()
    forward = production_graph.run_staged

    def counted(*args, **kwargs):
        forwards["run_staged"] += 1
        return forward(*args, **kwargs)

    monkeypatch.setattr(production_graph, "run_staged", counted)
    cache = DictCache()
    found = {}
    for t in (0.05, 0.1, 0.3):
        params = PARAMS.replace("production.box_score_thresh", t)
        found[t] = graph_run(detector, pixels, params, cache)["production_detections"].counts
    assert forwards["run_staged"] == 1
    # (The random weights give every RoI about the same probabilities: 0.48 zebra, 0.18 person,
    # 0.07 cat, so each threshold passes whole classes.)
    assert found[0.05]["above"] > found[0.1]["above"] > found[0.3]["above"] > 0
    bigger = PARAMS.replace("production_input.shorter_side", 192)
    graph_run(detector, pixels, bigger, cache)["production_detections"]
    assert forwards["run_staged"] == 2


@pytest.mark.parametrize("threshold", [0.05, 0.1, 0.3])
def test_detections_at_a_threshold_are_the_models(detector, pixels, run, threshold):
    model = copy.deepcopy(with_input_size(detector.model, *SIZE))  # this test's own copy
    model.roi_heads.score_thresh = threshold
    with torch.inference_mode():
        expected = model([image_tensor(pixels)])[0]
    got = threshold_detections(run["class_candidates"], threshold)
    assert len(expected["boxes"]) > 0
    assert torch.equal(got.detections.boxes_original, expected["boxes"])
    assert torch.equal(got.detections.scores, expected["scores"])
    assert torch.equal(got.detections.labels, expected["labels"])
    c = got.counts
    assert c["candidates"] == run["staged_run"].run.proposals.post_nms * 90
    assert c["candidates"] >= c["above"] >= c["after_small"] >= c["after_nms"] >= c["kept"]
    assert c["kept"] == len(expected["boxes"]) == min(c["after_nms"], 100)


def test_labels_are_matched_to_class_names():
    raw = [
        [10, 20, 110, 220],
        [300, 300, 200, 200],  # inverted: swapped
        ["a", 1, 2, 3],  # not four numbers: dropped
        [0, 0, 50, 50],
        [0, 0, 60, 60],
    ]
    labels = ["Zebra ", "CAT", "zebra", "N/A", "thing"]
    out = label_boxes(raw, labels, COCO_CLASS_NAMES, (400, 600), (200, 300))
    assert out.labels == ("zebra", "cat")
    assert out.ids.tolist() == [ZEBRA, CAT]
    assert out.boxes.tolist() == [[10, 20, 110, 220], [200, 200, 300, 300]]
    # Half size: (10, 20, 110, 220) -> (5, 10, 55, 110).
    assert out.input_boxes[0].tolist() == [5, 10, 55, 110]
    assert out.unknown == ("N/A", "thing")  # COCO's unused ids are no class
    assert len(out.all_labels) == 4 and out.graded
    assert any("box 3 dropped" in note for note in out.notes)
    assert not label_boxes([[0, 0, 5, 5]], ["coin"], COCO_CLASS_NAMES, (9, 9), (9, 9)).graded


def test_grading_is_greedy_by_score_one_detection_per_box():
    boxes = torch.tensor(
        [[0, 0, 10, 10], [0, 0, 10, 10], [20, 20, 30, 30], [50, 50, 60, 60]], dtype=torch.float32
    )
    found = Detections(
        boxes,
        boxes,
        torch.tensor([0.9, 0.8, 0.7, 0.6]),
        torch.tensor([ZEBRA, ZEBRA, CAT, ZEBRA]),
        0.3,
    )
    truth = label_boxes(
        [[0, 0, 10, 10], [51, 51, 60, 60], [100, 100, 120, 120]],
        ["zebra", "zebra", "cat"],
        COCO_CLASS_NAMES,
        (200, 200),
        (200, 200),
    )
    match = grade(found, truth, 0.5)
    # 1: the first zebra; 2: a duplicate; 3: no cat there; 4: IoU 81 / 100 with the 2nd zebra.
    assert match.true_positive.tolist() == [True, False, False, True]
    assert match.gt_found.tolist() == [True, True, False]  # the cat is missed
    assert grade(found, truth, 0.9).true_positive.tolist() == [True, False, False, False]


def test_targets_and_losses_are_torchvisions_training_forward(detector, pixels, run):
    targets = run["production_targets"]
    head = run["production_head_loss"]
    truth = run["labelled_boxes"]
    assert truth.labels == ("zebra", "person") and truth.unknown == ("thing",)
    # torchvision itself in training mode, on a copy: the same fixed resize (the transform in
    # eval mode draws no random size) and the test-time proposal counts the cached run used.
    model = copy.deepcopy(with_input_size(detector.model, *SIZE))
    model.train()
    model.transform.eval()
    model.rpn._pre_nms_top_n = dict(model.rpn._pre_nms_top_n, training=1000)
    model.rpn._post_nms_top_n = dict(model.rpn._post_nms_top_n, training=1000)
    target = {"boxes": truth.boxes, "labels": truth.ids}
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(SAMPLING_SEED)
        losses = {k: v.detach() for k, v in model([image_tensor(pixels)], [target]).items()}
    assert targets.rpn_objectness_loss == pytest.approx(float(losses["loss_objectness"]), 1e-5)
    assert targets.rpn_box_loss == pytest.approx(float(losses["loss_rpn_box_reg"]), 1e-5)
    assert head.classifier == pytest.approx(float(losses["loss_classifier"]), 1e-5)
    assert head.box_reg == pytest.approx(float(losses["loss_box_reg"]), 1e-5)
    assert head.box_reg > 0 and targets.rpn_box_loss > 0
    counts = targets.anchor_counts()
    assert sum(counts.values()) == run["staged_run"].run.anchors.total
    assert targets.rpn_sampled_positive == min(counts["positive"], 128)
    assert targets.rpn_sampled_positive + targets.rpn_sampled_negative == 256
    assert targets.roi_candidates == run["staged_run"].run.proposals.post_nms + 2
    assert head.rois == len(targets.roi_labels) <= 512 and head.positive <= 128
    # The ground-truth boxes joined the proposals: each is a positive RoI of its own class.
    assert set(targets.roi_labels.tolist()) >= {ZEBRA, PERSON, 0}
    assert targets.rpn_thresholds == (0.7, 0.3) and targets.roi_thresholds == (0.5, 0.5)
    input_boxes = resize_boxes(truth.boxes, [120, 180], [160, 240])
    assert torch.equal(truth.input_boxes, input_boxes)


def test_a_thin_image_is_one_line(detector, make_pixels):
    thin = graph_run(detector, make_pixels(1, 600))
    with pytest.raises(InputSizeError, match="too thin"):
        thin["staged_run"]
