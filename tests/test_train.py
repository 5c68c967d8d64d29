"""Training (frcnn_core.train): the loss goes down, detections improve, the shared heads stay
untouched, and weights files round-trip or are refused with a reason."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from frcnn_core.backbone import BackboneParams, WeightsError
from frcnn_core.image import ResizeParams
from frcnn_core.pipeline import DetectorHeads, PipelineParams, compute_features, prepare_input
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
