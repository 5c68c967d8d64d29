"""Detection metrics with pycocotools: mAP@0.5 per class (the tutorial's metric), COCO
mAP@[.5:.95], precision-recall curves, and per-image true positives, false positives and misses.

The dataset's boxes become a COCO ground truth in memory: image ids 1..N in dataset order,
category ids 1..C for the dataset's classes 0..C-1. Ignored boxes (:mod:`frcnn_core.datasets`)
become ``iscrowd=1`` annotations, which COCOeval neither counts as misses nor lets a detection on
them count as a false positive (a detection is matched to a crowd box when the box covers at
least half of the detection: COCO's crowd IoU is intersection / detection area). An ignored box
of class -1 (DontCare, or a class outside the list) is entered once per category, so that no
class may be scored on it.

Classes without ground truth: pycocotools leaves their precision at -1 and leaves them out of
its means. The JSON follows it: such a class has ``"ap50": null, "ap": null`` and does not count
in ``map50`` / ``map``; if no class has ground truth both are ``null``.

Precision at each of COCO's 101 recall points is pycocotools' interpolated precision (the
running maximum from the right), which is what AP averages. Only the 100 highest-scored
detections of each class in each image are evaluated (COCO's ``maxDets``); torchvision's models
return at most 100 per image anyway.
"""

from __future__ import annotations

import contextlib
import io
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from frcnn_core.datasets import ANY_CLASS, DetectionDataset, ImageRecord, read_json, read_pixels
from frcnn_core.i18n import _

IOU_50 = 0.5
MAX_DETECTIONS = 100  # COCOeval's maxDets[-1]
MAX_PREDICTIONS = 10_000_000


class EvaluationError(ValueError):
    """Predictions that cannot be evaluated; the message is one line for the user."""


@dataclass(frozen=True, eq=False)
class Prediction:
    """A detector's output for one image.

    Attributes:
        boxes (Tensor[M, 4]): float32 (x1, y1, x2, y2) pixels of the stored image.
        scores (Tensor[M]): float32 confidences.
        labels (Tensor[M]): int64 class indices 0..C-1 into the dataset's classes (a
            torchvision model's label ids minus one).
    """

    boxes: torch.Tensor
    scores: torch.Tensor
    labels: torch.Tensor

    @staticmethod
    def empty() -> Prediction:
        return Prediction(torch.zeros((0, 4)), torch.zeros(0), torch.zeros(0, dtype=torch.int64))


@dataclass(frozen=True)
class ClassResult:
    """Metrics of one class.

    Attributes:
        name: the class name.
        ap50: AP at IoU 0.5, or None when the class has no ground truth.
        ap: AP averaged over IoU 0.5:0.95, or None likewise.
        ground_truth: boxes of the class that count (ignored ones left out).
        detections: detections of the class (evaluated ones: top 100 per image).
        recall: COCO's 101 recall points 0, 0.01, ..., 1.
        precision: interpolated precision at IoU 0.5 at each recall point; -1 where the class
            has no ground truth (pycocotools' convention), 0 beyond the highest recall reached.
        scores: the detection score at which each recall point is reached at IoU 0.5 (0 where
            it is not reached).
    """

    name: str
    ap50: float | None
    ap: float | None
    ground_truth: int
    detections: int
    recall: tuple[float, ...]
    precision: tuple[float, ...]
    scores: tuple[float, ...]


@dataclass(frozen=True)
class ImageMatches:
    """How one image's detections and boxes were matched at IoU 0.5.

    Attributes:
        image_id: the dataset's id of the image.
        detection_outcome: per detection of the image's :class:`Prediction` (same order):
            ``"tp"`` (matched a box), ``"fp"`` (matched none), ``"ignored"`` (matched an ignored
            box: neither) or ``"unevaluated"`` (beyond the top 100 of its class).
        detection_match: per detection, the index of the box in ``ImageRecord.boxes`` it matched,
            or -1.
        box_match: per box of ``ImageRecord.boxes``, the index of the detection that matched
            it, or -1 (a miss).
        detection_scores: per detection, its score (to apply a threshold).
    """

    image_id: str
    detection_outcome: tuple[str, ...]
    detection_match: tuple[int, ...]
    box_match: tuple[int, ...]
    detection_scores: tuple[float, ...]

    def at_threshold(self, score_threshold: float = 0.0) -> ImageOutcome:
        """True positives, false positives and misses counting only detections scored at least
        ``score_threshold``. COCO matches greedily from the highest score down, so the matches
        among those detections are the same as among all of them."""
        keep = [s >= score_threshold for s in self.detection_scores]
        tp = tuple(i for i, o in enumerate(self.detection_outcome) if keep[i] and o == "tp")
        fp = tuple(i for i, o in enumerate(self.detection_outcome) if keep[i] and o == "fp")
        missed = tuple(k for k, d in enumerate(self.box_match) if d < 0 or not keep[d])
        return ImageOutcome(self.image_id, tp, fp, missed)


@dataclass(frozen=True)
class ImageOutcome:
    """Indices of one image's true positives and false positives (into its prediction) and of
    its missed boxes (into ``ImageRecord.boxes``), at one score threshold."""

    image_id: str
    true_positives: tuple[int, ...]
    false_positives: tuple[int, ...]
    missed: tuple[int, ...]

    @property
    def f1(self) -> float:
        """2 TP / (2 TP + FP + misses); 1.0 for an image with nothing to find and nothing found."""
        tp = len(self.true_positives)
        total = 2 * tp + len(self.false_positives) + len(self.missed)
        return 1.0 if total == 0 else 2 * tp / total


@dataclass(frozen=True, eq=False)
class EvaluationResult:
    """Metrics of a set of predictions on a dataset.

    Attributes:
        map50: mean AP at IoU 0.5 over the classes with ground truth (None if none has).
        map: COCO mAP@[.5:.95] likewise.
        per_class: one :class:`ClassResult` per dataset class, in class order.
        images: one :class:`ImageMatches` per dataset image, in dataset order.
        predictions: the evaluated :class:`Prediction` per dataset image (to draw them).
    """

    map50: float | None
    map: float | None
    per_class: tuple[ClassResult, ...]
    images: tuple[ImageMatches, ...]
    predictions: tuple[Prediction, ...] = ()

    def to_dict(self, curves: bool = False) -> dict:
        """``{"map50", "map", "per_class": {name: {"ap50", "ap"}}}``, with ``null`` for
        undefined values; ``curves=True`` adds each class's recall / precision / scores."""
        per_class = {}
        for c in self.per_class:
            entry: dict = {"ap50": c.ap50, "ap": c.ap}
            if curves:
                entry.update(
                    ground_truth=c.ground_truth,
                    detections=c.detections,
                    recall=list(c.recall),
                    precision=list(c.precision),
                    scores=list(c.scores),
                )
            per_class[c.name] = entry
        return {"map50": self.map50, "map": self.map, "per_class": per_class}

    def ranked_images(self, score_threshold: float = 0.5) -> list[ImageOutcome]:
        """Every image's outcome at ``score_threshold``, worst first (lowest F1, then most
        errors), for the results page's best and worst images."""
        outcomes = [m.at_threshold(score_threshold) for m in self.images]
        return sorted(
            outcomes,
            key=lambda o: (o.f1, -(len(o.false_positives) + len(o.missed)), o.image_id),
        )


# -- building the COCO objects -------------------------------------------------------------------


def _quiet():
    """pycocotools prints progress on stdout, which carries the CLI's JSON."""
    return contextlib.redirect_stdout(io.StringIO())


def _xywh(box: Sequence[float]) -> list[float]:
    x1, y1, x2, y2 = (float(v) for v in box)
    return [x1, y1, x2 - x1, y2 - y1]


def ground_truth_coco(dataset: DetectionDataset) -> tuple[COCO, dict[int, tuple[int, int]]]:
    """The dataset as a pycocotools ``COCO`` object.

    Returns:
        coco: images 1..N, categories 1..C, boxes as annotations (ignored ones with
            ``iscrowd=1``; class -1 ignored boxes once per category).
        box_of_annotation: annotation id -> (image index, box index into ``boxes``) for the
            boxes that count (ignored ones are not in it).
    """
    categories = [{"id": k + 1, "name": name} for k, name in enumerate(dataset.classes)]
    images, annotations = [], []
    box_of: dict[int, tuple[int, int]] = {}
    for i, rec in enumerate(dataset.images):
        images.append({"id": i + 1, "width": rec.width, "height": rec.height})
        for k, (box, label) in enumerate(zip(rec.boxes.tolist(), rec.labels.tolist(), strict=True)):
            ann_id = len(annotations) + 1
            annotations.append(_annotation(ann_id, i + 1, label + 1, box, crowd=0))
            box_of[ann_id] = (i, k)
        for box, label in zip(rec.ignored_boxes.tolist(), rec.ignored_labels.tolist(), strict=True):
            cats = range(1, len(categories) + 1) if label == ANY_CLASS else (label + 1,)
            for cat in cats:
                annotations.append(_annotation(len(annotations) + 1, i + 1, cat, box, crowd=1))
    coco = COCO()
    coco.dataset = {"images": images, "annotations": annotations, "categories": categories}
    with _quiet():
        coco.createIndex()
    return coco, box_of


def _annotation(ann_id: int, image_id: int, category_id: int, box, crowd: int) -> dict:
    xywh = _xywh(box)
    return {
        "id": ann_id,
        "image_id": image_id,
        "category_id": category_id,
        "bbox": xywh,
        "area": xywh[2] * xywh[3],
        "iscrowd": crowd,
    }


def detections_coco(
    gt: COCO, predictions: Sequence[Prediction]
) -> tuple[COCO, dict[int, tuple[int, int]]]:
    """Predictions as a ``COCO`` results object, built as ``COCO.loadRes`` builds one for boxes
    (``loadRes`` fails on an empty list, which "no predictions at all" needs).

    Returns:
        coco: the detections; det_of_annotation: annotation id -> (image index, detection index).
    """
    annotations = []
    det_of: dict[int, tuple[int, int]] = {}
    for i, pred in enumerate(predictions):
        for k, (box, score, label) in enumerate(
            zip(pred.boxes.tolist(), pred.scores.tolist(), pred.labels.tolist(), strict=True)
        ):
            ann_id = len(annotations) + 1
            ann = _annotation(ann_id, i + 1, label + 1, box, crowd=0)
            ann["score"] = float(score)
            annotations.append(ann)
            det_of[ann_id] = (i, k)
    coco = COCO()
    coco.dataset = {
        "images": list(gt.dataset["images"]),
        "categories": list(gt.dataset["categories"]),
        "annotations": annotations,
    }
    with _quiet():
        coco.createIndex()
    return coco, det_of


def _check_predictions(dataset: DetectionDataset, predictions: Sequence[Prediction]) -> None:
    if len(predictions) != len(dataset):
        raise EvaluationError(
            _("{n} predictions for a dataset of {images} images").format(
                n=len(predictions), images=len(dataset)
            )
        )
    num = len(dataset.classes)
    for rec, pred in zip(dataset.images, predictions, strict=True):
        m = len(pred.scores)
        if pred.boxes.shape != (m, 4) or pred.labels.shape != (m,):
            raise EvaluationError(
                _("image {id}: boxes, scores and labels differ in size").format(id=rec.image_id)
            )
        if m and (int(pred.labels.min()) < 0 or int(pred.labels.max()) >= num):
            raise EvaluationError(
                _("image {id}: a label outside 0..{last} (the dataset's classes)").format(
                    id=rec.image_id, last=num - 1
                )
            )
        if m and not (torch.isfinite(pred.boxes).all() and torch.isfinite(pred.scores).all()):
            raise EvaluationError(
                _("image {id}: a box or score is not finite").format(id=rec.image_id)
            )


def evaluate_predictions(
    dataset: DetectionDataset, predictions: Sequence[Prediction]
) -> EvaluationResult:
    """COCO evaluation of one prediction per dataset image (see the module docstring).

    Raises:
        EvaluationError: predictions that do not fit the dataset.
    """
    _check_predictions(dataset, predictions)
    gt, box_of = ground_truth_coco(dataset)
    dt, det_of = detections_coco(gt, predictions)
    ev = COCOeval(gt, dt, "bbox")
    with _quiet():
        ev.evaluate()
        ev.accumulate()
    precision = ev.eval["precision"]  # [T=10 IoUs, R=101 recalls, K classes, A=4 areas, M=3]
    scores = ev.eval["scores"]
    t50 = int(np.argmin(np.abs(ev.params.iouThrs - IOU_50)))
    per_class = []
    for k, name in enumerate(dataset.classes):
        p_all = precision[:, :, k, 0, -1]
        p50 = precision[t50, :, k, 0, -1]
        defined = bool((p_all > -1).any())
        ground = sum(int((rec.labels == k).sum()) for rec in dataset.images)
        dets = sum(min(int((p.labels == k).sum()), MAX_DETECTIONS) for p in predictions)
        per_class.append(
            ClassResult(
                name=name,
                ap50=float(np.mean(p50[p50 > -1])) if defined else None,
                ap=float(np.mean(p_all[p_all > -1])) if defined else None,
                ground_truth=ground,
                detections=dets,
                recall=tuple(float(r) for r in ev.params.recThrs),
                precision=tuple(float(v) for v in p50),
                scores=tuple(float(v) for v in scores[t50, :, k, 0, -1]),
            )
        )
    # The means over every defined entry, as COCOeval.summarize takes them (stats[0], stats[1]).
    valid50 = precision[t50, :, :, 0, -1]
    valid = precision[:, :, :, 0, -1]
    map50 = float(np.mean(valid50[valid50 > -1])) if (valid50 > -1).any() else None
    map_ = float(np.mean(valid[valid > -1])) if (valid > -1).any() else None
    images = _image_matches(dataset, predictions, ev, box_of, det_of, t50)
    return EvaluationResult(map50, map_, tuple(per_class), images, tuple(predictions))


def _image_matches(dataset, predictions, ev: COCOeval, box_of, det_of, t50: int):
    outcome = [["unevaluated"] * len(p.scores) for p in predictions]
    det_match = [[-1] * len(p.scores) for p in predictions]
    box_match = [[-1] * len(rec.boxes) for rec in dataset.images]
    all_range = ev.params.areaRng[0]
    for e in ev.evalImgs:
        if e is None or e["aRng"] != all_range or e["maxDet"] != ev.params.maxDets[-1]:
            continue
        for d, dt_id in enumerate(e["dtIds"]):
            i, k = det_of[dt_id]
            matched = int(e["dtMatches"][t50, d])
            if e["dtIgnore"][t50, d]:
                outcome[i][k] = "ignored"
            elif matched:
                outcome[i][k] = "tp"
                _, box = box_of[matched]
                det_match[i][k] = box
                box_match[i][box] = k
            else:
                outcome[i][k] = "fp"
    return tuple(
        ImageMatches(
            image_id=rec.image_id,
            detection_outcome=tuple(outcome[i]),
            detection_match=tuple(det_match[i]),
            box_match=tuple(box_match[i]),
            detection_scores=tuple(float(s) for s in predictions[i].scores.tolist()),
        )
        for i, rec in enumerate(dataset.images)
    )


# -- predictions from files and models -------------------------------------------------------


def read_predictions_json(
    path: str | os.PathLike[str], dataset: DetectionDataset
) -> list[Prediction]:
    """Read detections in COCO results format: a list of ``{"image_id": the image's file name
    without extension, "category_id": the class's index in the dataset's class list, "bbox":
    [x, y, w, h] pixels, "score"}``. A numeric ``image_id`` matches an id with the same number
    (``68`` matches ``000068``) when exactly one does.

    Returns:
        One :class:`Prediction` per dataset image (empty where none is listed).

    Raises:
        EvaluationError: not such a list, or an entry naming an unknown image or class.
    """
    from frcnn_core.datasets import DatasetError

    try:
        data = read_json(Path(path))
    except DatasetError as exc:
        raise EvaluationError(str(exc)) from None
    if not isinstance(data, list):
        raise EvaluationError(
            _("{path}: COCO results are a JSON list of detections").format(path=path)
        )
    if len(data) > MAX_PREDICTIONS:
        raise EvaluationError(
            _("{path}: more than {n} detections").format(path=path, n=MAX_PREDICTIONS)
        )
    by_number: dict[int, list[int]] = {}
    for i, rec in enumerate(dataset.images):
        if rec.image_id.isdigit():
            by_number.setdefault(int(rec.image_id), []).append(i)
    num = len(dataset.classes)
    rows: list[list[tuple[list[float], float, int]]] = [[] for _ in dataset.images]
    for n, det in enumerate(data):
        where = _("{path}: detection {n}").format(path=path, n=n)
        if not isinstance(det, dict):
            raise EvaluationError(_("{where} is not an object").format(where=where))
        image_id = det.get("image_id")
        if isinstance(image_id, str):
            try:
                index = dataset.index(image_id)
            except KeyError:
                raise EvaluationError(
                    _("{where}: unknown image_id {id!r}").format(where=where, id=image_id)
                ) from None
        elif isinstance(image_id, int) and not isinstance(image_id, bool):
            hits = by_number.get(image_id, [])
            if len(hits) != 1:
                raise EvaluationError(
                    _("{where}: unknown image_id {id!r}").format(where=where, id=image_id)
                )
            index = hits[0]
        else:
            raise EvaluationError(
                _("{where}: image_id must be the image's file name stem").format(where=where)
            )
        cat = det.get("category_id")
        if not isinstance(cat, int) or isinstance(cat, bool) or not 0 <= cat < num:
            raise EvaluationError(
                _("{where}: category_id {id!r} is not a class index 0..{last}").format(
                    where=where, id=cat, last=num - 1
                )
            )
        bbox, score = det.get("bbox"), det.get("score")
        if (
            not isinstance(bbox, list)
            or len(bbox) != 4
            or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in bbox)
            or not all(math.isfinite(v) for v in bbox)
        ):
            raise EvaluationError(
                _("{where}: bbox must be [x, y, width, height] numbers").format(where=where)
            )
        if (
            not isinstance(score, (int, float))
            or isinstance(score, bool)
            or not math.isfinite(score)
        ):
            raise EvaluationError(_("{where}: score must be a number").format(where=where))
        x, y, w, h = (float(v) for v in bbox)
        if w < 0 or h < 0:
            raise EvaluationError(
                _("{where}: bbox has a negative width or height").format(where=where)
            )
        rows[index].append(([x, y, x + w, y + h], float(score), cat))
    out = []
    for row in rows:
        if not row:
            out.append(Prediction.empty())
            continue
        boxes, scores, labels = zip(*row, strict=True)
        out.append(
            Prediction(
                torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
                torch.tensor(scores, dtype=torch.float32),
                torch.tensor(labels, dtype=torch.int64),
            )
        )
    return out


def predictions_to_json(dataset: DetectionDataset, predictions: Sequence[Prediction]) -> list[dict]:
    """The inverse of :func:`read_predictions_json`: COCO results, ``image_id`` = file stem."""
    out = []
    for rec, pred in zip(dataset.images, predictions, strict=True):
        for box, score, label in zip(
            pred.boxes.tolist(), pred.scores.tolist(), pred.labels.tolist(), strict=True
        ):
            out.append(
                {
                    "image_id": rec.image_id,
                    "category_id": int(label),
                    "bbox": _xywh(box),
                    "score": float(score),
                }
            )
    return out


def image_tensor(record: ImageRecord) -> torch.Tensor:
    """Tensor[3, H, W] float32 in 0..1, the input a torchvision detector takes."""
    pixels = read_pixels(record)
    return torch.from_numpy(pixels).permute(2, 0, 1).float().div_(255.0)


@torch.no_grad()
def predict(
    model: torch.nn.Module,
    dataset: DetectionDataset,
    indices: Sequence[int] | None = None,
    device: torch.device | str = "cpu",
) -> list[Prediction]:
    """Run a torchvision detector (label ids 1..C) on dataset images, one image at a time (a
    batch would pad images to a common size and change results at the borders).

    Args:
        model: a torchvision ``FasterRCNN`` for the dataset's classes; put in eval mode here.
        indices: which images (default: all), in the order the predictions are returned.

    Returns:
        One :class:`Prediction` per index, on the CPU, labels 0..C-1.
    """
    device = torch.device(device)
    was_training = model.training
    model.eval()
    out = []
    try:
        for i in range(len(dataset)) if indices is None else indices:
            result = model([image_tensor(dataset.images[i]).to(device)])[0]
            out.append(
                Prediction(
                    result["boxes"].float().cpu(),
                    result["scores"].float().cpu(),
                    (result["labels"] - 1).cpu(),
                )
            )
    finally:
        model.train(was_training)
    return out


def evaluate_checkpoint(
    path: str | os.PathLike[str],
    dataset: DetectionDataset,
    device: torch.device | str | None = None,
) -> EvaluationResult:
    """Load a detector checkpoint as ``detect --weights`` does
    (:func:`frcnn_core.detectors.load_detector`), predict every dataset image and evaluate.

    Raises:
        EvaluationError: the checkpoint cannot be loaded, or its classes are not the dataset's.
    """
    from frcnn_core.detectors import DetectorWeightsError, DeviceError, load_detector

    try:
        detector = load_detector(weights=str(path), device=device)
    except (DetectorWeightsError, DeviceError) as exc:
        raise EvaluationError(str(exc)) from None
    if tuple(detector.class_names[1:]) != tuple(dataset.classes):
        detected = ", ".join(detector.class_names[1:][:8])
        if len(detector.class_names) > 9:
            detected += " ..."
        raise EvaluationError(
            _(
                "{name} detects {detected}; the dataset's classes are {classes} (pass --classes "
                "in the checkpoint's order)"
            ).format(name=Path(path).name, detected=detected, classes=", ".join(dataset.classes))
        )
    return evaluate_predictions(dataset, predict(detector.model, dataset, device=detector.device))
