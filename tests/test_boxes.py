"""Box coder and IoU (SPEC section 1) against hand-checked cases and the float64 loop reference."""

from __future__ import annotations

import math

import pytest
import reference as ref
import torch
from torchvision.ops import box_iou, nms

from frcnn_core.boxes import (
    SCALE_CLAMP,
    box_centres_sizes,
    decode,
    encode,
    nms_in_order,
    smooth_l1_sum,
)


def random_boxes(n: int, generator: torch.Generator, size: float = 400.0) -> torch.Tensor:
    """n valid float64 boxes (x1 < x2, y1 < y2) in a size x size frame, 10 to 210 pixels a side,
    so that no size ratio reaches the decode clamp of 1000 / 16 = 62.5."""
    xy = torch.rand(n, 2, generator=generator, dtype=torch.float64) * size
    wh = torch.rand(n, 2, generator=generator, dtype=torch.float64) * size / 2 + 10
    return torch.cat((xy, xy + wh), dim=1)


def test_iou_of_two_known_boxes():
    # [0, 0, 10, 10] and [5, 5, 15, 15]: overlap 5 x 5 = 25, union 100 + 100 - 25 = 175,
    # IoU 25 / 175 = 1/7 (with "+1 pixel" it would be 36 / 206 = 0.1748).
    a = [0.0, 0.0, 10.0, 10.0]
    b = [5.0, 5.0, 15.0, 15.0]
    assert ref.iou(a, b) == pytest.approx(1 / 7)
    got = box_iou(torch.tensor([a], dtype=torch.float64), torch.tensor([b], dtype=torch.float64))
    assert float(got) == pytest.approx(1 / 7, rel=1e-12)
    # Touching edges share no area; a box inside another: 4 / 100.
    assert ref.iou([0, 0, 10, 10], [10, 0, 20, 10]) == 0.0
    assert ref.iou([0, 0, 10, 10], [2, 2, 4, 4]) == pytest.approx(0.04)


def test_iou_matches_loop_reference_on_random_boxes():
    g = torch.Generator().manual_seed(0)
    a = random_boxes(60, g)
    b = random_boxes(25, g)
    expected = torch.tensor(ref.iou_matrix(a.tolist(), b.tolist()), dtype=torch.float64)
    torch.testing.assert_close(box_iou(a, b), expected, rtol=1e-12, atol=1e-12)
    assert (expected > 0).any() and (expected == 0).any()  # both cases occur


def test_centres_and_sizes():
    # [10, 20, 50, 40]: w = 40, h = 20, centre (10 + 20, 20 + 10) = (30, 30).
    cx, cy, w, h = box_centres_sizes(torch.tensor([[10.0, 20.0, 50.0, 40.0]]))
    assert (float(cx), float(cy), float(w), float(h)) == (30.0, 30.0, 40.0, 20.0)


def test_encode_known_pair():
    # anchor [0, 0, 10, 10]: centre (5, 5), size 10 x 10.
    # gt [5, 5, 25, 15]: centre (15, 10), size 20 x 10.
    # dx = (15 - 5) / 10 = 1, dy = (10 - 5) / 10 = 0.5, dw = log(20 / 10) = log 2, dh = log 1 = 0.
    anchor = torch.tensor([[0.0, 0.0, 10.0, 10.0]], dtype=torch.float64)
    gt = torch.tensor([[5.0, 5.0, 25.0, 15.0]], dtype=torch.float64)
    expected = torch.tensor([[1.0, 0.5, math.log(2.0), 0.0]], dtype=torch.float64)
    torch.testing.assert_close(encode(anchor, gt), expected)
    torch.testing.assert_close(decode(anchor, expected), gt)


def test_encode_matches_loop_reference():
    g = torch.Generator().manual_seed(1)
    a, b = random_boxes(100, g), random_boxes(100, g)
    expected = torch.tensor(
        [ref.encode(x, y) for x, y in zip(a.tolist(), b.tolist(), strict=True)],
        dtype=torch.float64,
    )
    torch.testing.assert_close(encode(a, b), expected, rtol=1e-12, atol=1e-12)


def test_decode_encode_round_trip():
    # Detectron2's invariant: decode(encode(b, a), a) == b.
    g = torch.Generator().manual_seed(2)
    anchors, boxes = random_boxes(500, g), random_boxes(500, g)
    torch.testing.assert_close(decode(anchors, encode(anchors, boxes)), boxes, rtol=0, atol=1e-9)
    # float32 as the proposal layer uses it: within a few ulps of 400-pixel coordinates.
    a32, b32 = anchors.float(), boxes.float()
    torch.testing.assert_close(decode(a32, encode(a32, b32)), b32, rtol=0, atol=1e-3)


def test_decode_matches_loop_reference_with_clamp():
    g = torch.Generator().manual_seed(3)
    anchors = random_boxes(50, g)
    deltas = torch.randn(50, 4, generator=g, dtype=torch.float64) * 3
    deltas[0, 2] = 100.0  # exp(100) overflows float32: the clamp keeps it at 1000 / 16
    expected = torch.tensor(
        [
            ref.decode(a, d, SCALE_CLAMP)
            for a, d in zip(anchors.tolist(), deltas.tolist(), strict=True)
        ],
        dtype=torch.float64,
    )
    torch.testing.assert_close(decode(anchors, deltas), expected, rtol=1e-12, atol=1e-9)
    w0 = anchors[0, 2] - anchors[0, 0]
    got = decode(anchors[:1].float(), deltas[:1].float())
    assert torch.isfinite(got).all()
    # The clamp: width = exp(log(1000/16)) * w = 62.5 * w.
    assert float(got[0, 2] - got[0, 0]) == pytest.approx(62.5 * float(w0), rel=1e-5)


def test_smooth_l1_sum_hand_values():
    # |x| < 1: 0.5 x^2; else |x| - 0.5.  x = 0.5 -> 0.125, x = -2 -> 1.5, x = 1 -> 0.5. Sum 2.125.
    pred = torch.tensor([[0.5, -2.0, 1.0, 0.0]])
    got = smooth_l1_sum(pred, torch.zeros(1, 4))
    assert float(got) == pytest.approx(2.125)
    assert float(got) == pytest.approx(sum(ref.smooth_l1(v) for v in pred[0].tolist()))
    assert float(smooth_l1_sum(torch.zeros(0, 4), torch.zeros(0, 4))) == 0.0


def test_nms_in_order_hand_case():
    # Visiting order by priority: c (0.9), a (0.8), b (0.7), d (0.6).
    # a = [0, 0, 10, 10] and b = [1, 0, 11, 10]: overlap 9 x 10 = 90, IoU 90 / 110 = 0.818.
    # c = [0, 0, 10, 20] holds a: IoU 100 / 200 = 0.5.  d is far away.
    boxes = torch.tensor(
        [[0, 0, 10, 10], [1, 0, 11, 10], [0, 0, 10, 20], [50, 50, 60, 60]], dtype=torch.float32
    )
    priority = torch.tensor([0.8, 0.7, 0.9, 0.6])
    # At 0.7: c kept, a kept (0.5 <= 0.7), b suppressed by a (0.818), d kept.
    assert nms_in_order(boxes, priority, 0.7, block=2).tolist() == [2, 0, 3]
    # At 0.4: a is suppressed by c (0.5 > 0.4); b overlaps c by 100 - 10 = 90 / 210 = 0.43 > 0.4.
    assert nms_in_order(boxes, priority, 0.4, block=2).tolist() == [2, 3]


@pytest.mark.parametrize("seed", range(6))
def test_nms_in_order_equals_torchvision_and_loop_reference(seed):
    # Blocks of 7 to 64 boxes on 300 boxes: many blocks, many area bins, several thresholds.
    g = torch.Generator().manual_seed(seed)
    n = 300
    xy = torch.rand(n, 2, generator=g) * 200
    wh = torch.rand(n, 2, generator=g) * 120 + 1
    if seed % 2:  # integer boxes: exact ties in IoU and in area
        xy, wh = xy.round(), wh.round()
    boxes = torch.cat((xy, xy + wh), dim=1)
    scores = torch.rand(n, generator=g)
    block = int(torch.randint(7, 65, (1,), generator=g))
    for threshold in (0.0, 0.1, 0.3, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0):
        got = nms_in_order(boxes, scores, threshold, block=block).tolist()
        assert got == nms(boxes, scores, threshold).tolist()
        assert got == ref.nms(boxes.tolist(), scores.tolist(), threshold)


def test_nms_in_order_runs_one_call_when_the_blocked_nms_is_not_allowed(monkeypatch):
    # A server with several sessions' scripts running turns the blocked NMS off: the same kept
    # boxes, from one torchvision call (no box_iou of the blocked path).
    import frcnn_core.boxes as boxes_module
    from explorer import runtime

    g = torch.Generator().manual_seed(7)
    xy = torch.rand(400, 2, generator=g) * 200
    boxes = torch.cat((xy, xy + torch.rand(400, 2, generator=g) * 120 + 1), dim=1)
    scores = torch.rand(400, generator=g)
    calls = []
    real_iou = boxes_module.box_iou
    monkeypatch.setattr(boxes_module, "box_iou", lambda a, b: calls.append(1) or real_iou(a, b))
    blocked = nms_in_order(boxes, scores, 0.7, block=32)
    assert calls and boxes_module.blocked_nms_allowed is runtime.runs_alone
    calls.clear()
    with runtime.SCRIPTS.running(), runtime.SCRIPTS.running():  # two sessions at once
        assert not runtime.runs_alone()
        one_call = nms_in_order(boxes, scores, 0.7, block=32)
    assert not calls
    assert one_call.tolist() == blocked.tolist() == nms(boxes, scores, 0.7).tolist()
    assert runtime.SCRIPTS.count == 0 and runtime.runs_alone()


def test_nms_in_order_breaks_ties_by_input_order():
    # Five identical boxes with one score: the first one is kept, the rest suppressed.
    boxes = torch.tensor([[0.0, 0.0, 10.0, 10.0]] * 5 + [[100.0, 100.0, 120.0, 120.0]] * 5)
    same = torch.full((10,), 0.5)
    assert nms_in_order(boxes, same, 0.7, block=3).tolist() == [0, 5]


def test_nms_in_order_degenerate_boxes_never_suppress():
    # Zero-area boxes have IoU 0 (or 0 / 0) with everything, so all survive, as in torchvision.
    boxes = torch.tensor([[5.0, 5.0, 5.0, 5.0]] * 4 + [[0.0, 0.0, 10.0, 10.0]])
    scores = torch.tensor([0.9, 0.8, 0.7, 0.6, 0.5])
    assert nms_in_order(boxes, scores, 0.5, block=2).tolist() == nms(boxes, scores, 0.5).tolist()
    assert nms_in_order(boxes[:0], scores[:0], 0.5).tolist() == []
