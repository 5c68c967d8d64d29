"""Training (frcnn_core.train): the loss goes down, detections improve, the shared heads stay
untouched, and weights files round-trip or are refused with a reason."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from frcnn_core.backbone import WeightsError, run_backbone
from frcnn_core.detect import Detections, top_detections_iou
from frcnn_core.head import head_forward
from frcnn_core.image import LoadedImage, ResizeParams
from frcnn_core.params import PipelineParams
from frcnn_core.pipeline import DetectorHeads, UserBoxes, run
from frcnn_core.roi_pool import RoIPoolParams, pool_rois
from frcnn_core.train import (
    WEIGHTS_FORMAT,
    StandardizedInput,
    Trainer,
    TrainParams,
    TrainSample,
    detection_overlap,
    heads_from_bytes,
    heads_to_bytes,
    split_backbone,
)

# A 320 x 320 input: a 20 x 20 feature map, so an iteration takes a fraction of a second.
PARAMS = dataclasses.replace(
    PipelineParams(),
    detect=dataclasses.replace(PipelineParams().detect, score_threshold=0.0),
)


OBJECT_BOXES = [[30, 40, 150, 160], [170, 60, 330, 200], [200, 10, 300, 90]]
SCALE = 1 / 16
SMALL_FRAME = ResizeParams(height=320, width=320)
TEST_HIDDEN = 256


def sample_of(prepared, features) -> TrainSample:
    return TrainSample(prepared.image, prepared.ground_truth, prepared.classes, features)


def heads_for(prepared, seed: int = 0) -> DetectorHeads:
    return DetectorHeads.for_params(
        len(prepared.class_names), PipelineParams(), seed=seed, hidden=TEST_HIDDEN
    )


@pytest.fixture(scope="module")
def objects_pixels() -> np.ndarray:
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
    return pixels


@pytest.fixture(scope="module")
def objects_input(objects_pixels, prepare):
    return prepare(objects_pixels, OBJECT_BOXES, ["cat", "dog", "cat"], SMALL_FRAME)


@pytest.fixture(scope="module")
def objects_features(objects_input, backbone, features_of):
    return features_of(objects_input.image, backbone)


@pytest.fixture(scope="module")
def trained(objects_input, objects_features):
    small_input, small_features = objects_input, objects_features
    heads = heads_for(small_input)
    before = {k: v.clone() for k, v in heads.state_dict().items()}
    sample = sample_of(small_input, small_features)
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
    heads = heads_for(prepared)
    sample = sample_of(prepared, features)
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
    the best IoU among the 3 best-scored detections (3 GT boxes); measured 0.19 -> 0.59 with
    these seeded heads (seeds 0-4: 0.17-0.29 -> 0.59-0.88), about 2 s."""
    before, after, trainer = train_from_scratch(
        objects_input, objects_features, TrainParams(iterations=30)
    )
    first, last = first_and_last(trainer)
    assert last < 0.6 * first, (first, last)
    assert after > before + 0.3, (before, after)
    assert after > 0.55, after


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
    heads = heads_for(objects_input)
    sample = sample_of(objects_input, objects_features)
    trainer = Trainer.create(heads, [sample], PARAMS, TrainParams(iterations=3))
    for _ in range(3):
        trainer.step()
    score = trainer.heads.head.score
    assert isinstance(score, StandardizedInput)
    assert score.mean.shape == (TEST_HIDDEN,) and float(score.scale) > 0
    rois = torch.tensor([[20.0, 40, 140, 170], [0, 0, 64, 64], [150, 50, 310, 200]])
    pooled = pool_rois(objects_features, rois, PARAMS.roi_pool, SCALE).pooled
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
    heads = heads_for(small_input)
    sample = sample_of(small_input, small_features)
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


def test_sample_from_a_run(objects_pixels, objects_input, objects_features, backbone):
    # A sample is a run's stage 1 and 2, its boxes' ids in the training set's vocabulary.
    params = PipelineParams(resize=SMALL_FRAME)
    boxes = UserBoxes(tuple(map(tuple, OBJECT_BOXES)), ("cat", "dog", "cat"))
    result = run(LoadedImage(objects_pixels), boxes, backbone, params)
    sample = TrainSample.from_run(result, ("dog", "zebra", "cat"))
    assert sample.classes.class_names == ("dog", "zebra", "cat")
    assert sample.classes.gt_labels.tolist() == [3, 1, 3]
    assert sample.image is result.image and sample.ground_truth is result.ground_truth
    assert sample.features is result.backbone.features
    assert torch.equal(sample.ground_truth.boxes, objects_input.gt_boxes)
    torch.testing.assert_close(sample.features, objects_features)
    other = torch.zeros(1, 512, 20, 20)
    assert TrainSample.from_run(result, ("cat", "dog"), other).features is other
    with pytest.raises(ValueError, match="'cat'"):
        TrainSample.from_run(result, ("dog",))
    # Its run is the pipeline after the backbone: detections replace the old detect_image.
    heads = DetectorHeads.for_params(3, params, hidden=TEST_HIDDEN)
    detections = sample.run(heads, PARAMS)["detections"]
    assert detections.labels.numel() > 0 and int(detections.labels.max()) <= 3
    overlap = top_detections_iou(detections, sample.ground_truth.boxes).mean()
    assert detection_overlap(sample, heads, PARAMS) == pytest.approx(float(overlap))


def test_sample_through_the_conv5_block(objects_input, objects_features, backbone):
    # train_last_block: the sample holds conv4_3's features (stride 8, 40 x 40) and every run
    # passes them through the conv5 block first, back to conv5_3's 20 x 20.
    conv4, conv5 = split_backbone(backbone.features)
    conv4_3 = run_backbone(torch.from_numpy(objects_input.image.pixels), conv4).features
    assert conv4_3.shape == (1, 512, 40, 40)
    heads = heads_for(objects_input)
    through = TrainSample(
        objects_input.image, objects_input.ground_truth, objects_input.classes, conv4_3
    ).run(heads, PARAMS, conv5)
    direct = sample_of(objects_input, objects_features).run(heads, PARAMS)
    assert through.backbone.features.shape == (1, 512, 20, 20)
    torch.testing.assert_close(through.backbone.features, objects_features, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(through.rpn.scores, direct.rpn.scores, rtol=1e-4, atol=1e-5)
    assert through.anchor_targets.counts() == direct.anchor_targets.counts()


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
    heads = heads_for(small_input)
    fc6 = heads.head.fc6.weight.clone()
    sample = sample_of(small_input, small_features)
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
    heads = heads_for(small_input, seed=5)
    sample = sample_of(small_input, small_features)
    trainer = Trainer.create(heads, [sample], PARAMS, TrainParams(iterations=1))
    trainer.step()
    data = heads_to_bytes(trainer.frozen_heads(), small_input.class_names)
    loaded = heads_from_bytes(data)
    assert torch.equal(loaded.heads.head.fc6.weight, heads.head.fc6.weight)
    assert torch.equal(loaded.heads.rpn.conv.weight, trainer.heads.rpn.conv.weight)


def test_weights_carry_the_heads_sizes(small_input, small_features, run_stages):
    # Heads for RoIs pooled to 5 x 5 and 6 anchors per cell: a file rebuilds them at that size.
    params = PipelineParams(
        anchors=dataclasses.replace(PipelineParams().anchors, scales=(8.0, 16.0)),
        roi_pool=RoIPoolParams(output_size=5),
    )
    heads = DetectorHeads.for_params(2, params, seed=3, hidden=TEST_HIDDEN)
    loaded = heads_from_bytes(heads_to_bytes(heads, small_input.class_names)).heads
    assert (loaded.pooled_size, loaded.anchors_per_cell, loaded.seed) == (5, 6, 3)
    assert loaded.head.fc6.in_features == 512 * 5 * 5 and loaded.rpn.conv.in_channels == 512
    assert loaded.fits(params) and not loaded.fits(PipelineParams())
    for key, value in heads.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key
    result = run_stages(small_input, small_features, loaded, params)
    assert result.head.scores.shape[1] == 3 and result.roi_pool.pooled.shape[-1] == 5


def test_weights_files_from_before_the_sizes_load_as_vgg16_7x7(small_input):
    import io

    heads = DetectorHeads.for_params(2, PipelineParams(), seed=1, hidden=TEST_HIDDEN)
    payload = torch.load(io.BytesIO(heads_to_bytes(heads, small_input.class_names)))
    assert payload["format"] == WEIGHTS_FORMAT
    assert (payload["in_channels"], payload["pooled_size"]) == (512, 7)
    del payload["in_channels"], payload["pooled_size"]
    buf = io.BytesIO()
    torch.save(payload, buf)
    loaded = heads_from_bytes(buf.getvalue()).heads
    assert loaded.pooled_size == 7 and loaded.head.fc6.in_features == 512 * 7 * 7
    assert torch.equal(loaded.head.score.weight, heads.head.score.weight)
    for key, value in (("pooled_size", 11), ("in_channels", 256)):
        bad = dict(payload, **{key: value})
        buf = io.BytesIO()
        torch.save(bad, buf)
        with pytest.raises(WeightsError, match="impossible model"):
            heads_from_bytes(buf.getvalue())


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
    heads = heads_for(small_input)
    sample = sample_of(small_input, small_features)
    # Without the gradient clipping's safety net, which keeps even this rate finite for a while.
    settings = TrainParams(iterations=30, learning_rate=1e4, max_grad_norm=0.0)
    trainer = Trainer.create(heads, [sample], PARAMS, settings)
    with pytest.raises(FloatingPointError, match="lower the learning rate"):
        while not trainer.finished():
            trainer.step()


def test_no_samples_is_an_error():
    with pytest.raises(ValueError, match="no training images"):
        Trainer.create(DetectorHeads(1, 9, 512, 7, hidden=8), [], PARAMS, TrainParams())
