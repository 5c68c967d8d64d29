"""Stage 14: test-time detection (per-class decode, threshold, per-class NMS) and matching."""

from __future__ import annotations

import math

import pytest
import torch

from frcnn_core.detect import Detections, DetectParams, MatchParams, detect, match_detections
from frcnn_core.head import HeadOutput


def logits(probabilities: list[list[float]]) -> torch.Tensor:
    return torch.log(torch.tensor(probabilities))


def test_detect_hand_case():
    # Three RoIs, classes 1 and 2. Zero deltas: each detection is its RoI.
    # RoI 0 [0, 0, 100, 100]     p = (0.1, 0.8, 0.1)
    # RoI 1 [10, 0, 110, 100]    p = (0.1, 0.7, 0.2)   IoU with RoI 0 = 0.818 > 0.5
    # RoI 2 [200, 200, 300, 300] p = (0.96, 0.01, 0.03)
    # Candidates: 3 RoIs x 2 classes = 6. Over 0.05: (0,1) .8, (0,2) .1, (1,1) .7, (1,2) .2.
    # Class 1: RoI 1 (0.7) is suppressed by RoI 0 (0.8). Class 2: RoI 0 (0.1) by RoI 1 (0.2).
    # Per-class NMS keeps (0, 1) 0.8 and (1, 2) 0.2.
    rois = torch.tensor([[0.0, 0, 100, 100], [10, 0, 110, 100], [200, 200, 300, 300]])
    probs = [[0.1, 0.8, 0.1], [0.1, 0.7, 0.2], [0.96, 0.01, 0.03]]
    out = HeadOutput(scores=logits(probs), deltas=torch.zeros(3, 3, 4))
    det = detect(rois, out, (400, 400), DetectParams())
    assert det.candidates == (6, 4, 2)
    assert det.labels.tolist() == [1, 2]
    assert det.scores.tolist() == pytest.approx([0.8, 0.2], rel=1e-5)
    assert det.boxes.tolist() == [[0, 0, 100, 100], [10, 0, 110, 100]]
    # At max_detections = 1 only the best remains; at threshold 0.5 only class 1's.
    assert detect(rois, out, (400, 400), DetectParams(max_detections=1)).labels.tolist() == [1]
    high = detect(rois, out, (400, 400), DetectParams(score_threshold=0.5))
    assert high.candidates == (6, 2, 1) and high.labels.tolist() == [1]


def test_detect_uses_class_specific_deltas_and_clips():
    # One RoI [10, 10, 50, 50] (centre 30, 40 x 40). Class 1 deltas (0.5, 0, 0, 0) -> shifted 20
    # right: [30, 10, 70, 50]; class 2 deltas (0, 0, log 4, 0) -> 160 wide: [-50, 10, 110, 50],
    # clipped to the 100 x 100 image: [0, 10, 100, 50].
    deltas = torch.zeros(1, 3, 4)
    deltas[0, 1] = torch.tensor([0.5, 0, 0, 0])
    deltas[0, 2] = torch.tensor([0, 0, math.log(4), 0])
    out = HeadOutput(scores=logits([[0.2, 0.5, 0.3]]), deltas=deltas)
    det = detect(torch.tensor([[10.0, 10, 50, 50]]), out, (100, 100), DetectParams())
    assert det.labels.tolist() == [1, 2]
    torch.testing.assert_close(det.boxes, torch.tensor([[30.0, 10, 70, 50], [0, 10, 100, 50]]))


def test_match_detections_greedy_by_score():
    # GT: A [0, 0, 100, 100] class 1, B [200, 0, 300, 100] class 2.
    # d0 on A class 1 (TP), d1 on A class 1 again (duplicate: FP), d2 on B with class 1 (wrong
    # class: FP), d3 on B class 2 (TP).
    gt = torch.tensor([[0.0, 0, 100, 100], [200, 0, 300, 100]])
    det = Detections(
        boxes=torch.tensor(
            [[0.0, 0, 100, 100], [5, 0, 100, 100], [200, 0, 300, 100], [200, 0, 290, 100]]
        ),
        scores=torch.tensor([0.9, 0.8, 0.7, 0.6]),
        labels=torch.tensor([1, 1, 1, 2]),
        candidates=(0, 0, 0),
    )
    m = match_detections(det, gt, torch.tensor([1, 2]), MatchParams().match_iou)
    assert m.true_positive.tolist() == [True, False, False, True]
    assert m.gt_found.tolist() == [True, True]
    assert m.best_gt.tolist() == [0, 0, 1, 1]
    assert m.best_iou.tolist() == pytest.approx([1.0, 0.95, 1.0, 0.9])
    # PASCAL VOC's 0.5 is the default; at 0.95 d3 (IoU 0.9) no longer finds B.
    assert MatchParams().match_iou == 0.5
    strict = match_detections(det, gt, torch.tensor([1, 2]), 0.95)
    assert strict.true_positive.tolist() == [True, False, False, False]
    assert strict.gt_found.tolist() == [True, False]
    none = match_detections(det, torch.zeros(0, 4), torch.zeros(0, dtype=torch.int64), 0.5)
    assert none.best_gt.tolist() == [-1] * 4 and not none.true_positive.any()


def test_detection_captions_sit_on_the_box_tops_and_stay_inside_the_image() -> None:
    """Captions along the image's bottom edge ran into each other and off the image: each now
    sits inside its box under the top edge (where the GT box's label is above)."""
    import numpy as np

    from explorer.views.detect import detections_figure

    boxes = torch.tensor([[10.0, 700.0, 200.0, 800.0], [220.0, 2.0, 400.0, 800.0]])
    dets = Detections(boxes, torch.tensor([0.9, 0.8]), torch.tensor([1, 1]), (2, 2, 2))
    gt = torch.tensor([[10.0, 700.0, 200.0, 800.0]])
    match = match_detections(dets, gt, torch.tensor([1]), 0.5)
    fig = detections_figure(
        np.zeros((800, 800, 3), np.uint8), dets, match, ("kite",), gt, ("kite",)
    )
    captions = sorted(
        (str(trace.text[0]), float(trace.x[0]), float(trace.y[0]), trace.textposition)
        for trace in fig.data
        if trace.mode == "text" and " · IoU " in str(trace.text[0])
    )
    assert [c[1:] for c in captions] == [
        (220.0, 2.0, "bottom right"),
        (10.0, 700.0, "bottom right"),
    ]
    assert captions[0][0].startswith("kite 0.80") and captions[1][0].startswith("kite 0.90")
