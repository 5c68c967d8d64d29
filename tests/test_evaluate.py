"""Golden tests: frcnn_core.evaluate against pycocotools run directly (COCO objects built by hand
here, the way a user of pycocotools builds them), on the cases that trip libraries up."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from frcnn_core.datasets import DetectionDataset, ImageRecord
from frcnn_core.evaluate import (
    EvaluationError,
    Prediction,
    evaluate_predictions,
    predictions_to_json,
    read_predictions_json,
)

CLASSES = ("cat", "dog", "bird")


def _record(image_id, boxes=(), labels=(), ignored=(), ignored_labels=(), size=(100, 80)):
    width, height = size
    return ImageRecord(
        image_id=image_id,
        path=Path(f"/nowhere/{image_id}.png"),
        width=width,
        height=height,
        boxes=torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
        labels=torch.tensor(labels, dtype=torch.int64),
        ignored_boxes=torch.tensor(ignored, dtype=torch.float32).reshape(-1, 4),
        ignored_labels=torch.tensor(ignored_labels, dtype=torch.int64),
    )


def _dataset(records, classes=CLASSES) -> DetectionDataset:
    return DetectionDataset(Path("/nowhere"), "kitti", classes, "val", tuple(records))


def _pred(rows=()) -> Prediction:
    """rows: (x1, y1, x2, y2, score, label)."""
    t = torch.tensor(rows, dtype=torch.float32).reshape(-1, 6)
    return Prediction(t[:, :4], t[:, 4], t[:, 5].long())


def _reference(dataset: DetectionDataset, predictions, cat_ids=None) -> np.ndarray:
    """COCOeval.stats, from COCO objects built by hand, straight from the records."""
    cats = [{"id": k + 1, "name": n} for k, n in enumerate(dataset.classes)]
    images, anns = [], []
    for i, rec in enumerate(dataset.images):
        images.append({"id": i + 1, "width": rec.width, "height": rec.height})
        for box, label in zip(rec.boxes.tolist(), rec.labels.tolist(), strict=True):
            anns.append((i + 1, label + 1, box, 0))
        for box, label in zip(rec.ignored_boxes.tolist(), rec.ignored_labels.tolist(), strict=True):
            for cat in [c["id"] for c in cats] if label < 0 else [label + 1]:
                anns.append((i + 1, cat, box, 1))
    gt_anns = [
        {
            "id": n + 1,
            "image_id": img,
            "category_id": cat,
            "bbox": [b[0], b[1], b[2] - b[0], b[3] - b[1]],
            "area": (b[2] - b[0]) * (b[3] - b[1]),
            "iscrowd": crowd,
        }
        for n, (img, cat, b, crowd) in enumerate(anns)
    ]
    results = []
    for i, p in enumerate(predictions):
        for b, s, label in zip(p.boxes.tolist(), p.scores.tolist(), p.labels.tolist(), strict=True):
            results.append(
                {
                    "image_id": i + 1,
                    "category_id": label + 1,
                    "bbox": [b[0], b[1], b[2] - b[0], b[3] - b[1]],
                    "score": s,
                }
            )
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO()
        gt.dataset = {"images": images, "annotations": gt_anns, "categories": cats}
        gt.createIndex()
        if results:
            dt = gt.loadRes(results)
        else:  # COCO.loadRes([]) raises IndexError: an empty result set is built by hand
            dt = COCO()
            dt.dataset = {"images": images, "annotations": [], "categories": cats}
            dt.createIndex()
        ev = COCOeval(gt, dt, "bbox")
        if cat_ids is not None:
            ev.params.catIds = cat_ids
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return ev.stats


def _check_against_pycocotools(dataset, predictions):
    result = evaluate_predictions(dataset, predictions)
    stats = _reference(dataset, predictions)

    def same(ours, theirs):
        if theirs == -1:
            assert ours is None
        else:
            assert ours == pytest.approx(theirs, abs=1e-6)

    same(result.map, stats[0])
    same(result.map50, stats[1])
    for k, cls in enumerate(result.per_class):
        per = _reference(dataset, predictions, cat_ids=[k + 1])
        same(cls.ap, per[0])
        same(cls.ap50, per[1])
    return result


def _random_predictions(rng, dataset, per_image=6, jitter=6.0):
    """Boxes near the ground truth (some hits, some misses) and random ones, random scores."""
    preds = []
    for rec in dataset.images:
        rows = []
        for box, label in zip(rec.boxes.tolist(), rec.labels.tolist(), strict=True):
            if rng.random() < 0.8:
                b = np.array(box) + rng.normal(0, jitter, 4)
                b = [min(b[0], b[2]), min(b[1], b[3]), max(b[0], b[2]), max(b[1], b[3])]
                wrong = rng.random() < 0.15
                rows.append([*b, rng.random(), (label + 1) % 3 if wrong else label])
        for _ in range(int(rng.integers(0, per_image))):
            x, y = rng.uniform(0, 70), rng.uniform(0, 50)
            rows.append(
                [
                    x,
                    y,
                    x + rng.uniform(5, 30),
                    y + rng.uniform(5, 30),
                    rng.random(),
                    int(rng.integers(0, 3)),
                ]
            )
        preds.append(_pred(rows))
    return preds


def _random_dataset(rng, images=8):
    records = []
    for i in range(images):
        boxes, labels = [], []
        for _ in range(int(rng.integers(0, 5))):
            x, y = rng.uniform(0, 60), rng.uniform(0, 40)
            boxes.append([x, y, x + rng.uniform(8, 40), y + rng.uniform(8, 40)])
            labels.append(int(rng.integers(0, 2)))  # class 2 ("bird") never has ground truth
        records.append(_record(f"{i:03d}", boxes, labels))
    return _dataset(records)


def test_golden_random_mix():
    rng = np.random.default_rng(0)
    dataset = _random_dataset(rng)
    result = _check_against_pycocotools(dataset, _random_predictions(rng, dataset))
    assert 0.05 < result.map50 < 0.95  # a case with something to get right
    assert result.per_class[2].ap50 is None and result.to_dict()["per_class"]["bird"] == {
        "ap50": None,
        "ap": None,
    }


def test_golden_no_predictions_at_all():
    rng = np.random.default_rng(1)
    dataset = _random_dataset(rng)
    result = _check_against_pycocotools(dataset, [Prediction.empty() for _ in dataset.images])
    assert result.map50 == 0.0 and result.map == 0.0


def test_golden_images_with_only_false_positives_and_images_without_boxes():
    dataset = _dataset(
        [
            _record("a", [[10, 10, 50, 50]], [0]),
            _record("b"),  # no boxes, only false positives
            _record("c"),  # no boxes, no detections
            _record("d", [[5, 5, 30, 40], [40, 10, 90, 70]], [1, 0]),
        ]
    )
    preds = [
        _pred([[11, 9, 50, 52, 0.9, 0]]),
        _pred([[10, 10, 40, 40, 0.95, 0], [0, 0, 20, 20, 0.3, 1]]),
        _pred(),
        _pred([[6, 5, 30, 41, 0.6, 1], [40, 12, 88, 70, 0.5, 0], [60, 0, 99, 30, 0.7, 1]]),
    ]
    result = _check_against_pycocotools(dataset, preds)
    # cat: ranked 0.95 FP, 0.9 TP, 0.5 TP -> precision 1/2, 2/3 at recall 1/2, 1; interpolated
    # precision is 2/3 at every recall point -> AP50 = 2/3. dog: 0.7 FP, 0.6 TP, 0.3 FP -> 1/2.
    assert result.per_class[0].ap50 == pytest.approx(2 / 3, abs=1e-6)
    assert result.per_class[1].ap50 == pytest.approx(1 / 2, abs=1e-6)
    assert result.map50 == pytest.approx((2 / 3 + 1 / 2) / 2, abs=1e-6)


def test_golden_only_false_positives_everywhere():
    dataset = _dataset([_record("a", [[10, 10, 50, 50]], [0]), _record("b")])
    preds = [_pred([[60, 60, 90, 79, 0.9, 0]]), _pred([[1, 1, 9, 9, 0.8, 1]])]
    result = _check_against_pycocotools(dataset, preds)
    assert result.map50 == 0.0
    assert result.per_class[1].ap50 is None  # dog: detections but no ground truth


def test_golden_no_ground_truth_at_all():
    dataset = _dataset([_record("a"), _record("b")])
    result = _check_against_pycocotools(dataset, [_pred([[1, 1, 9, 9, 0.8, 1]]), _pred()])
    assert result.map50 is None and result.map is None
    assert json.loads(json.dumps(result.to_dict()))["map50"] is None


def test_golden_ignored_boxes():
    dataset = _dataset(
        [
            _record(
                "a",
                [[10, 10, 50, 50]],
                [0],
                ignored=[[60, 10, 95, 70], [0, 55, 40, 79]],
                ignored_labels=[-1, 1],  # a DontCare region, and a crowd of dogs
            ),
            _record("b", [[20, 20, 60, 60]], [1], ignored=[[0, 0, 15, 15]], ignored_labels=[-1]),
        ]
    )
    preds = [
        _pred(
            [
                [10, 10, 50, 50, 0.5, 0],  # TP
                [65, 20, 90, 60, 0.9, 0],  # inside DontCare: neither TP nor FP
                [70, 15, 92, 65, 0.8, 1],  # inside DontCare, another class: ignored too
                [5, 58, 35, 78, 0.85, 1],  # on the dog crowd: ignored
                [5, 58, 35, 78, 0.7, 0],  # a cat on the dog crowd: a false positive
            ]
        ),
        _pred([[20, 20, 60, 60, 0.6, 1], [1, 1, 14, 14, 0.99, 2]]),
    ]
    result = _check_against_pycocotools(dataset, preds)
    # cat: 0.7 FP then 0.5 TP -> AP50 = 1/2; dog: the only counted detection is a TP -> 1.
    assert result.per_class[0].ap50 == pytest.approx(0.5, abs=1e-6)
    assert result.per_class[1].ap50 == pytest.approx(1.0, abs=1e-6)
    assert result.images[0].detection_outcome == ("tp", "ignored", "ignored", "ignored", "fp")
    assert result.images[0].box_match == (0,)
    assert result.images[1].detection_outcome == ("tp", "ignored")
    # Without the ignored boxes those detections would be false positives and misses.
    bare = _dataset([_record("a", [[10, 10, 50, 50]], [0]), _record("b", [[20, 20, 60, 60]], [1])])
    assert evaluate_predictions(bare, preds).map50 < result.map50 - 0.2


def test_per_image_outcomes_at_a_threshold():
    dataset = _dataset([_record("a", [[10, 10, 50, 50], [60, 10, 90, 40]], [0, 0])])
    preds = [
        _pred(
            [
                [12, 10, 50, 52, 0.9, 0],  # TP of box 0
                [11, 11, 49, 49, 0.8, 0],  # duplicate of box 0: FP
                [60, 10, 90, 40, 0.3, 0],  # TP of box 1, low score
                [0, 60, 30, 79, 0.6, 1],  # FP (no dog here)
            ]
        )
    ]
    result = evaluate_predictions(dataset, preds)
    matches = result.images[0]
    assert matches.detection_outcome == ("tp", "fp", "tp", "fp")
    assert matches.detection_match == (0, -1, 1, -1)
    assert matches.box_match == (0, 2)
    low = matches.at_threshold(0.0)
    assert (low.true_positives, low.false_positives, low.missed) == ((0, 2), (1, 3), ())
    high = matches.at_threshold(0.5)
    assert (high.true_positives, high.false_positives, high.missed) == ((0,), (1, 3), (1,))
    assert high.f1 == pytest.approx(2 / 5)
    # Precision-recall curve of "cat" at IoU 0.5: ranked TP, FP, TP -> (1/2 recall, 1.0), then
    # (1, 2/3): interpolated precision 1.0 up to recall 0.5, 2/3 up to 1.
    curve = result.per_class[0]
    precision = dict(zip(np.round(curve.recall, 2), curve.precision, strict=True))
    assert precision[0.5] == pytest.approx(1.0) and precision[0.51] == pytest.approx(2 / 3)
    assert precision[1.0] == pytest.approx(2 / 3)
    assert curve.scores[0] == pytest.approx(0.9) and curve.scores[-1] == pytest.approx(0.3)
    worst = result.ranked_images(0.5)[0]
    assert worst.image_id == "a"


def test_predictions_json_round_trip(tmp_path):
    rng = np.random.default_rng(2)
    dataset = _random_dataset(rng, images=5)
    preds = _random_predictions(rng, dataset)
    path = tmp_path / "pred.json"
    path.write_text(json.dumps(predictions_to_json(dataset, preds)))
    again = read_predictions_json(path, dataset)
    ours, theirs = evaluate_predictions(dataset, again), evaluate_predictions(dataset, preds)
    assert ours.map50 == pytest.approx(theirs.map50, abs=1e-6) and ours.map50 > 0.05
    assert ours.map == pytest.approx(theirs.map, abs=1e-6)
    # Numeric ids match zero-padded stems.
    data = json.loads(path.read_text())
    data[0]["image_id"] = int(data[0]["image_id"])
    path.write_text(json.dumps(data))
    assert sum(len(p.scores) for p in read_predictions_json(path, dataset)) == len(data)


@pytest.mark.parametrize(
    ("entry", "reason"),
    [
        (
            {"image_id": "zzz", "category_id": 0, "bbox": [1, 1, 2, 2], "score": 1},
            "unknown image_id",
        ),
        (
            {"image_id": "000", "category_id": 3, "bbox": [1, 1, 2, 2], "score": 1},
            "class index 0..2",
        ),
        ({"image_id": "000", "category_id": 0, "bbox": [1, 1, 2], "score": 1}, "bbox must be"),
        ({"image_id": "000", "category_id": 0, "bbox": [1, 1, 2, 2]}, "score must be a number"),
        ({"image_id": "000", "category_id": 0, "bbox": [1, 1, -2, 2], "score": 1}, "negative"),
    ],
)
def test_bad_predictions_json(tmp_path, entry, reason):
    dataset = _random_dataset(np.random.default_rng(3), images=2)
    path = tmp_path / "pred.json"
    path.write_text(json.dumps([entry]))
    with pytest.raises(EvaluationError, match=reason) as exc:
        read_predictions_json(path, dataset)
    assert "detection 0" in str(exc.value)
    path.write_text('{"not": "a list"}')
    with pytest.raises(EvaluationError, match="JSON list"):
        read_predictions_json(path, dataset)
