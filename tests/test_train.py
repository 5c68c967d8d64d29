"""Training (frcnn_core.train): the loss goes down, detections improve, the shared heads stay
untouched, and weights files round-trip or are refused with a reason."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from torchvision.ops import box_iou

from frcnn_core.backbone import WeightsError
from frcnn_core.pipeline import DetectorHeads, PipelineParams, run_detection
from frcnn_core.proposals import propose
from frcnn_core.rpn import rpn_forward
from frcnn_core.train import (
    Trainer,
    TrainParams,
    TrainSample,
    heads_from_bytes,
    heads_to_bytes,
)
from tests.conftest import TEST_HIDDEN

# A 320 x 320 input: a 20 x 20 feature map, so an iteration takes a fraction of a second.
PARAMS = dataclasses.replace(
    PipelineParams(),
    detect=dataclasses.replace(PipelineParams().detect, score_threshold=0.0),
)


def _top_detection_iou(heads, features, prepared) -> float:
    """Mean IoU with their best GT box of the G best-scored detections (G = number of GT
    boxes): what a user sees first on the Detect page."""
    from frcnn_core.anchors import generate_anchors

    with torch.no_grad():
        grid = generate_anchors(tuple(features.shape[-2:]), prepared.image.size, PARAMS.anchors)
        rpn = rpn_forward(features, heads.rpn)
        props = propose(
            grid.anchors, rpn.locs, rpn.scores, prepared.image.size, PARAMS.proposals, False
        )
        _, dets = run_detection(features, props, heads, prepared.image.size, PARAMS)
    top = dets.boxes[: prepared.image.gt_boxes.shape[0]]  # detections are best score first
    return float(box_iou(top, prepared.image.gt_boxes).max(dim=1).values.mean())


@pytest.fixture(scope="module")
def trained(small_input, small_features):
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


def test_detections_overlap_gt_better_after_training(trained, small_input, small_features):
    heads, _, trainer = trained
    before = _top_detection_iou(heads, small_features, small_input)
    after = _top_detection_iou(trainer.frozen_heads(), small_features, small_input)
    print(f"top detections' IoU with GT: {before:.3f} before, {after:.3f} after training")
    assert after > before + 0.1, (before, after)


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
    trainer = Trainer.create(heads, [sample], PARAMS, TrainParams(iterations=30, learning_rate=1e4))
    with pytest.raises(FloatingPointError, match="lower the learning rate"):
        while not trainer.finished():
            trainer.step()


def test_no_samples_is_an_error():
    with pytest.raises(ValueError, match="no training images"):
        Trainer.create(DetectorHeads(1, hidden=8), [], PARAMS, TrainParams())
