"""Training (frcnn_core.train): the loss goes down, detections improve, the shared heads stay
untouched, and weights files round-trip or are refused with a reason."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from frcnn_core.backbone import BackboneParams, WeightsError
from frcnn_core.detect import Detections, top_detections_iou
from frcnn_core.head import head_forward
from frcnn_core.image import ResizeParams
from frcnn_core.pipeline import DetectorHeads, PipelineParams, compute_features, prepare_input
from frcnn_core.roi_pool import pool_rois
from frcnn_core.train import (
    StandardizedInput,
    Trainer,
    TrainParams,
    TrainSample,
    detection_overlap,
    heads_from_bytes,
    heads_to_bytes,
)
from tests.conftest import TEST_HIDDEN

# A 320 x 320 input: a 20 x 20 feature map, so an iteration takes a fraction of a second.
PARAMS = dataclasses.replace(
    PipelineParams(),
    detect=dataclasses.replace(PipelineParams().detect, score_threshold=0.0),
)


OBJECT_BOXES = [[30, 40, 150, 160], [170, 60, 330, 200], [200, 10, 300, 90]]


@pytest.fixture(scope="module")
def objects_input():
    """A noisy 360 x 240 image with three striped objects in its GT boxes: something an RPN can
    learn to find (the suite's smooth synthetic images have no objects at all)."""
    rng = np.random.default_rng(0)
    pixels = rng.normal(110, 25, (240, 360, 3)).clip(0, 255).astype(np.uint8)
    yy, xx = np.mgrid[0:240, 0:360]
    stripes = (xx // 8) % 2 == 0
    for (x1, y1, x2, y2), colour in zip(
        OBJECT_BOXES, [(230, 60, 40), (40, 90, 230), (230, 60, 40)], strict=True
    ):
        inside = (xx >= x1) & (xx < x2) & (yy >= y1) & (yy < y2)
        pixels[inside & stripes] = colour
        pixels[inside & ~stripes] = (250, 250, 250)
    return prepare_input(
        pixels, OBJECT_BOXES, ["cat", "dog", "cat"], ResizeParams(height=320, width=320)
    )


@pytest.fixture(scope="module")
def objects_features(objects_input, backbone):
    features, _ = compute_features(
        objects_input.image, backbone, BackboneParams(), torch.device("cpu")
    )
    return features


@pytest.fixture(scope="module")
def trained(objects_input, objects_features):
    small_input, small_features = objects_input, objects_features
    heads = DetectorHeads(len(small_input.class_names), seed=0, hidden=TEST_HIDDEN)
    before = {k: v.clone() for k, v in heads.state_dict().items()}
    sample = TrainSample(small_input.image, small_input.gt_labels, small_features)
    trainer = Trainer.create(
        heads, [sample], PARAMS, TrainParams(iterations=40, learning_rate=0.003, train_fc=True)
    )
    while not trainer.finished():
        trainer.step()
    return heads, before, trainer


def test_loss_decreases(trained):
    _, _, trainer = trained
    totals = [h["total"] for h in trainer.history]
    assert len(totals) == 40
    # Averages of the first and last five iterations: sampling noise cannot explain a 30% drop.
    first, last = sum(totals[:5]) / 5, sum(totals[-5:]) / 5
    assert last < 0.7 * first, (first, last)
    assert all(h["seconds"] > 0 for h in trainer.history)


def train_from_scratch(prepared, features, settings: TrainParams):
    """Seeded heads trained on one image; their detection overlap before and after, and the
    trainer."""
    heads = DetectorHeads(len(prepared.class_names), seed=0, hidden=TEST_HIDDEN)
    sample = TrainSample(prepared.image, prepared.gt_labels, features)
    before = detection_overlap(sample, heads, PipelineParams())
    trainer = Trainer.create(heads, [sample], PipelineParams(), settings)
    while not trainer.finished():
        trainer.step()
    after = detection_overlap(sample, trainer.frozen_heads(), PipelineParams())
    return before, after, trainer


def first_and_last(trainer: Trainer, n: int = 5) -> tuple[float, float]:
    totals = [h["total"] for h in trainer.history]
    return sum(totals[:n]) / n, sum(totals[-n:]) / n


def test_training_moves_the_detections_onto_the_objects(objects_input, objects_features):
    """The issue's acceptance test: a few iterations with the default settings lower the loss
    and the best-scored detections then sit on the objects. Overlap = mean over the GT boxes of
    the best IoU among the 3 best-scored detections (3 GT boxes); measured 0.23 -> 0.86 (loss
    3.07 -> 1.24, about 2 s)."""
    before, after, trainer = train_from_scratch(
        objects_input, objects_features, TrainParams(iterations=30)
    )
    first, last = first_and_last(trainer)
    assert last < 0.6 * first, (first, last)
    assert after > before + 0.3, (before, after)
    assert after > 0.6, after


def test_raw_fc7_lowers_the_loss_but_misses_the_objects(objects_input, objects_features):
    """Why the head trains on standardised fc7 (frcnn_core.train's docstring): on raw fc7, with
    one learning rate, as the tutorial, the loss falls too but the head learns the share of
    background RoIs, not where the objects are. Measured 0.23 -> 0.004 (loss 3.17 -> 2.39)."""
    before, after, trainer = train_from_scratch(
        objects_input,
        objects_features,
        TrainParams(iterations=30, standardize_fc7=False, warmup_iterations=0),
    )
    first, last = first_and_last(trainer)
    assert last < 0.85 * first, (first, last)
    assert after < before, (before, after)


def test_the_standardisation_folds_into_plain_layers(objects_input, objects_features):
    heads = DetectorHeads(len(objects_input.class_names), seed=0, hidden=TEST_HIDDEN)
    sample = TrainSample(objects_input.image, objects_input.gt_labels, objects_features)
    trainer = Trainer.create(heads, [sample], PARAMS, TrainParams(iterations=3))
    for _ in range(3):
        trainer.step()
    score = trainer.heads.head.score
    assert isinstance(score, StandardizedInput)
    assert score.mean.shape == (TEST_HIDDEN,) and float(score.scale) > 0
    rois = torch.tensor([[20.0, 40, 140, 170], [0, 0, 64, 64], [150, 50, 310, 200]])
    pooled = pool_rois(objects_features, rois, PARAMS.roi_pool).pooled
    with torch.no_grad():
        wrapped = head_forward(pooled, trainer.heads.head)
        plain = trainer.frozen_heads()
        folded = head_forward(pooled, plain.head)
    assert type(plain.head.score) is torch.nn.Linear and type(plain.head.loc) is torch.nn.Linear
    torch.testing.assert_close(folded.scores, wrapped.scores, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(folded.deltas, wrapped.deltas, rtol=1e-5, atol=1e-6)
    assert trainer.frozen_heads() is plain  # folded once: a second call changes nothing
    with pytest.raises(RuntimeError, match="has ended"):
        trainer.step()


def test_learning_rates_per_part_and_warm_up(small_input, small_features):
    heads = DetectorHeads(len(small_input.class_names), seed=0, hidden=TEST_HIDDEN)
    sample = TrainSample(small_input.image, small_input.gt_labels, small_features)
    settings = TrainParams(learning_rate=0.002, head_learning_rate=0.5, warmup_iterations=4)
    trainer = Trainer.create(heads, [sample], PARAMS, settings)
    # RPN; class scores; box deltas at head rate / lambda (10).
    assert trainer.base_rates == pytest.approx([0.002, 0.5, 0.05])
    rates = []
    for _ in range(5):
        trainer.step()
        rates.append([g["lr"] for g in trainer.optimizer.param_groups])
    assert rates[0] == pytest.approx([0.0005, 0.125, 0.0125])  # 1/4 of each
    assert rates[3] == rates[4] == pytest.approx([0.002, 0.5, 0.05])
    raw = Trainer.create(
        heads, [sample], PARAMS, dataclasses.replace(settings, standardize_fc7=False)
    )
    assert raw.base_rates == pytest.approx([0.002] * 3)
    assert type(raw.heads.head.score) is torch.nn.Linear


def test_top_detections_iou_takes_the_best_scored_g():
    gt = torch.tensor([[0.0, 0, 10, 10], [20, 20, 30, 30]])
    # Best score first: one exact hit, then a 10 x 5 box inside GT 0 (IoU 50 / 100 = 0.5),
    # then an exact hit on GT 1 that comes third, outside the G = 2 best.
    boxes = torch.tensor([[0.0, 0, 10, 10], [0, 0, 10, 5], [20, 20, 30, 30]])
    dets = Detections(
        boxes, torch.tensor([0.9, 0.8, 0.7]), torch.ones(3, dtype=torch.int64), (3, 3, 3)
    )
    assert top_detections_iou(dets, gt).tolist() == [1.0, 0.0]
    none = Detections(
        torch.zeros(0, 4), torch.zeros(0), torch.zeros(0, dtype=torch.int64), (0, 0, 0)
    )
    assert top_detections_iou(none, gt).tolist() == [0.0, 0.0]


def test_initial_heads_are_never_modified(trained):
    heads, before, trainer = trained
    assert trainer.heads is not heads
    for key, value in heads.state_dict().items():
        assert torch.equal(value, before[key]), key


def test_frozen_fc_layers_are_shared_not_copied(small_input, small_features):
    heads = DetectorHeads(len(small_input.class_names), seed=0, hidden=TEST_HIDDEN)
    fc6 = heads.head.fc6.weight.clone()
    sample = TrainSample(small_input.image, small_input.gt_labels, small_features)
    trainer = Trainer.create(heads, [sample], PARAMS, TrainParams(iterations=2))
    trainer.step()
    trainer.step()
    assert trainer.heads.head.fc6 is heads.head.fc6
    assert torch.equal(heads.head.fc6.weight, fc6)
    assert not torch.equal(trainer.heads.rpn.conv.weight, heads.rpn.conv.weight)


def test_weights_round_trip(trained, small_input):
    _, _, trainer = trained
    data = heads_to_bytes(trainer.frozen_heads(), small_input.class_names)
    loaded = heads_from_bytes(data)
    assert loaded.class_names == small_input.class_names
    for key, value in trainer.heads.state_dict().items():
        assert torch.equal(loaded.heads.state_dict()[key], value.cpu()), key


def test_weights_without_fc_rebuild_them_from_the_seed(small_input, small_features):
    heads = DetectorHeads(len(small_input.class_names), seed=5, hidden=TEST_HIDDEN)
    sample = TrainSample(small_input.image, small_input.gt_labels, small_features)
    trainer = Trainer.create(heads, [sample], PARAMS, TrainParams(iterations=1))
    trainer.step()
    data = heads_to_bytes(trainer.frozen_heads(), small_input.class_names)
    loaded = heads_from_bytes(data)
    assert torch.equal(loaded.heads.head.fc6.weight, heads.head.fc6.weight)
    assert torch.equal(loaded.heads.rpn.conv.weight, trainer.heads.rpn.conv.weight)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "empty"),
        (b"this is not a weights file", "not a readable"),
    ],
)
def test_non_weights_files_are_refused(data, message):
    with pytest.raises(WeightsError, match=message):
        heads_from_bytes(data)


def test_foreign_and_wrong_shape_weights_are_refused(tmp_path, small_input, trained):
    import io

    buf = io.BytesIO()
    torch.save({"conv.weight": torch.zeros(3)}, buf)
    with pytest.raises(WeightsError, match="not an explorer weights file"):
        heads_from_bytes(buf.getvalue())

    _, _, trainer = trained
    data = heads_to_bytes(trainer.frozen_heads(), small_input.class_names)
    payload = torch.load(io.BytesIO(data), weights_only=True)
    payload["heads"]["rpn.conv.weight"] = torch.zeros(4, 4)
    buf = io.BytesIO()
    torch.save(payload, buf)
    with pytest.raises(WeightsError, match=r"rpn.conv.weight has shape \(4, 4\)"):
        heads_from_bytes(buf.getvalue())


def test_divergence_is_reported(small_input, small_features):
    heads = DetectorHeads(len(small_input.class_names), seed=0, hidden=TEST_HIDDEN)
    sample = TrainSample(small_input.image, small_input.gt_labels, small_features)
    # Without the gradient clipping's safety net, which keeps even this rate finite for a while.
    settings = TrainParams(iterations=30, learning_rate=1e4, max_grad_norm=0.0)
    trainer = Trainer.create(heads, [sample], PARAMS, settings)
    with pytest.raises(FloatingPointError, match="lower the learning rate"):
        while not trainer.finished():
            trainer.step()


def test_no_samples_is_an_error():
    with pytest.raises(ValueError, match="no training images"):
        Trainer.create(DetectorHeads(1, hidden=8), [], PARAMS, TrainParams())
