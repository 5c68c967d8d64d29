"""Click to inspect: the pipeline facts a click shows (which box suppressed another in NMS, why
an anchor has its label, where a detection came from and why it is or is not a true positive),
each against a plain loop or a hand-worked case, and the clickable figures' markers."""

from __future__ import annotations

import dataclasses

import pytest
import reference as ref
import torch

from explorer.views.inspect import centre_markers, clicked_indices, take_click
from frcnn_core.anchor_targets import AnchorTargetParams, anchor_targets, label_reason
from frcnn_core.anchors import AnchorParams, anchor_position, generate_anchors
from frcnn_core.boxes import nms_in_order, nms_suppressors
from frcnn_core.detect import (
    Detections,
    DetectParams,
    detect,
    explain_match,
    match_detections,
)
from frcnn_core.head import HeadOutput
from frcnn_core.proposals import ProposalCounts, ProposalParams, box_fate, propose


def suppressors_by_loop(
    boxes: list[list[float]], priority: list[float], threshold: float
) -> dict[int, int]:
    """Greedy NMS written out: each removed box -> the first kept box that overlaps it."""
    order = sorted(range(len(boxes)), key=lambda i: (-priority[i], i))
    kept: list[int] = []
    removed: dict[int, int] = {}
    for i in order:
        over = [j for j in kept if ref.iou(boxes[i], boxes[j]) > threshold]
        if over:
            removed[i] = over[0]
        else:
            kept.append(i)
    return removed


def random_boxes(seed: int, n: int, integer: bool) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    xy = torch.rand(n, 2, generator=g) * 100
    wh = torch.rand(n, 2, generator=g) * 60 + 1
    if integer:  # exact ties in IoU
        xy, wh = xy.round(), wh.round()
    return torch.cat((xy, xy + wh), dim=1), torch.rand(n, generator=g)


# --- NMS: which kept box removed a box ----------------------------------------------------


def test_nms_suppressor_hand_case() -> None:
    # Visiting order c (0.9), a (0.8), b (0.7), d (0.6). a = [0, 0, 10, 10], b = [1, 0, 11, 10]:
    # IoU 90 / 110 = 0.818; c = [0, 0, 10, 20] holds a (IoU 0.5) and b (90 / 210 = 0.43).
    boxes = torch.tensor(
        [[0, 0, 10, 10], [1, 0, 11, 10], [0, 0, 10, 20], [50, 50, 60, 60]], dtype=torch.float32
    )
    priority = torch.tensor([0.8, 0.7, 0.9, 0.6])
    everyone = torch.arange(4)
    # At 0.7 NMS keeps c, a, d: b was removed by a (not by c, which overlaps it by only 0.43).
    keep = nms_in_order(boxes, priority, 0.7)
    by, iou = nms_suppressors(boxes, priority, keep, 0.7, everyone)
    assert by.tolist() == [-1, 0, -1, -1]
    assert iou.tolist() == pytest.approx([0, 90 / 110, 0, 0])
    # At 0.4 both a and b overlap c by more: c removed both (c is visited first).
    keep = nms_in_order(boxes, priority, 0.4)
    by, iou = nms_suppressors(boxes, priority, keep, 0.4, everyone)
    assert by.tolist() == [2, 2, -1, -1]
    assert iou.tolist() == pytest.approx([0.5, 90 / 210, 0, 0])


@pytest.mark.parametrize("seed", range(4))
def test_nms_suppressors_equal_a_loop_reference(seed: int) -> None:
    boxes, priority = random_boxes(seed, 200, integer=bool(seed % 2))
    for threshold in (0.1, 0.3, 0.5, 0.7, 0.9):
        keep = nms_in_order(boxes, priority, threshold, block=37)
        by, iou = nms_suppressors(boxes, priority, keep, threshold, torch.arange(200))
        expected = suppressors_by_loop(boxes.tolist(), priority.tolist(), threshold)
        assert {i: s for i, s in enumerate(by.tolist()) if s >= 0} == expected
        for i, s in expected.items():
            assert float(iou[i]) == pytest.approx(ref.iou(boxes[i].tolist(), boxes[s].tolist()))
            assert float(iou[i]) > threshold


# --- the proposal layer: what happened to one anchor's box ---------------------------------


def logits_for(probabilities: list[float]) -> torch.Tensor:
    p = torch.tensor(probabilities, dtype=torch.float64)
    return torch.stack((torch.zeros_like(p), torch.log(p / (1 - p))), dim=1).float()


def test_box_fate_hand_case() -> None:
    # A = [0, 0, 100, 100] (0.9), B = [10, 0, 110, 100] (0.8, IoU 0.818 with A), C far (0.6),
    # D = 10 x 10 (under min size 16), E far (0.5) and F far (0.4): post-NMS N = 3 keeps A, C, E.
    anchors = torch.tensor(
        [
            [0, 0, 100, 100],
            [10, 0, 110, 100],
            [200, 200, 300, 300],
            [150, 150, 160, 160],
            [0, 200, 100, 300],
            [200, 0, 300, 100],
        ]
    ).double()
    scores = logits_for([0.9, 0.8, 0.6, 0.95, 0.5, 0.4])
    counts = ProposalCounts(pre_nms=4, post_nms=3)
    params = ProposalParams()
    out = propose(anchors, torch.zeros(6, 4), scores, (400, 400), params, counts)
    # Pre-NMS: the 4 best of A, B, C, E, F by score: A, B, C, E (F cut).
    fates = {i: box_fate(out, params, i) for i in range(6)}
    assert fates[0].removed_at == "" and fates[0].proposal == 0 and fates[0].pre_nms_rank == 0
    assert fates[1].removed_at == "NMS" and fates[1].suppressor == 0
    assert fates[1].suppressor_iou == pytest.approx(9000 / 11000)
    assert fates[2].proposal == 1 and fates[4].proposal == 2
    assert fates[3].removed_at == "min size" and fates[3].pre_nms_rank == -1
    assert fates[5].removed_at == "pre-NMS top-N"
    assert fates[3].score == pytest.approx(0.95) and fates[5].score == pytest.approx(0.4)
    assert all(f.suppressor == -1 for i, f in fates.items() if i != 1)
    # Post-NMS N = 2: E (third survivor) is cut after NMS.
    small = propose(anchors, torch.zeros(6, 4), scores, (400, 400), params, ProposalCounts(4, 2))
    assert box_fate(small, params, 4).removed_at == "post-NMS top-N"
    with pytest.raises(ValueError):
        box_fate(out, params, 6)


@pytest.mark.parametrize("bug_b8", [False, True])
def test_box_fate_names_the_suppressor_the_loop_finds(bug_b8: bool) -> None:
    g = torch.Generator().manual_seed(3)
    anchors = generate_anchors((8, 8), (128, 128), AnchorParams(), 16).anchors
    locs = torch.randn(anchors.shape[0], 4, generator=g) * 0.2
    scores = torch.randn(anchors.shape[0], 2, generator=g)
    params = ProposalParams(nms_iou=0.5, bug_b8_index_order=bug_b8)
    out = propose(anchors, locs, scores, (128, 128), params, ProposalCounts(300, 60))
    pre = out.pre_nms_index
    priority = pre.float() if bug_b8 else out.rank_scores[pre]
    expected = suppressors_by_loop(out.clipped[pre].tolist(), priority.tolist(), 0.5)
    assert expected  # the case has NMS removals
    for rank, anchor in enumerate(pre.tolist()):
        fate = box_fate(out, params, anchor)
        assert fate.pre_nms_rank == rank
        if rank in expected:
            assert fate.removed_at == "NMS"
            assert fate.suppressor == int(pre[expected[rank]])
        else:
            assert fate.removed_at in ("", "post-NMS top-N") and fate.suppressor == -1
            if fate.removed_at == "":
                assert int(out.keep_index[fate.proposal]) == anchor


def test_anchor_position_inverts_the_index() -> None:
    params = AnchorParams(scales=(8.0, 16.0), ratios=(0.5, 1.0, 2.0))  # A = 6
    # Cell (iy 2, ix 3) of a 4 x 5 map, shape a = 4: (2 * 5 + 3) * 6 + 4 = 82.
    assert anchor_position(82, (4, 5), params) == (2, 3, 4)
    # The tutorial's x-outer order: (ix * Hf + iy) * A + a = (3 * 4 + 2) * 6 + 4 = 88.
    b1 = dataclasses.replace(params, bug_b1_x_outer=True)
    assert anchor_position(88, (4, 5), b1) == (2, 3, 4)
    grid = generate_anchors((4, 5), (64, 80), params, 16)
    for index in (0, 82, 119):
        iy, ix, _ = anchor_position(index, (4, 5), params)
        centre = (grid.anchors[index, :2] + grid.anchors[index, 2:]) / 2
        assert centre.tolist() == pytest.approx([16 * ix + 8, 16 * iy + 8])
    with pytest.raises(ValueError):
        anchor_position(120, (4, 5), params)


# --- anchor labelling: why an anchor has its label ----------------------------------------


@pytest.mark.parametrize("negatives_last", [False, True])
def test_label_reason_explains_every_label(negatives_last: bool) -> None:
    grid = generate_anchors((10, 10), (160, 160), AnchorParams(scales=(2.0, 4.0, 8.0)), 16)
    gt = torch.tensor([[20.0, 30.0, 90.0, 100.0], [100.0, 40.0, 150.0, 70.0]])
    params = AnchorTargetParams(batch_size=64, bug_b2_negatives_last=negatives_last)
    targets = anchor_targets(grid.anchors, grid.inside_index, gt, params)
    expected, max_iou, best = ref.label_anchors(
        grid.inside_anchors.tolist(), gt.tolist(), negatives_last=negatives_last
    )
    seen = set()
    for i in range(grid.inside):
        why = label_reason(targets, params, i)
        assert why.label == expected[i] == int(targets.labels_unsampled[i])
        assert why.max_iou == pytest.approx(max_iou[i])
        assert why.best_for == tuple(
            j for j in range(2) if best[j] > 0 and targets.ious[i, j] == best[j]
        )
        # The label follows from the reasons, in the order the rules ran.
        positive = why.reaches_positive or bool(why.best_for)
        if negatives_last:
            rebuilt = 0 if why.under_negative else (1 if positive else -1)
        else:
            rebuilt = 1 if positive else (0 if why.under_negative else -1)
        assert rebuilt == why.label
        assert why.sampled == (why.label != -1 and int(targets.labels[i]) == why.label)
        seen.add((why.label, why.sampled, bool(why.best_for), why.reaches_positive))
    # The case shows each kind of reason: threshold and tie positives, sampled and left out.
    assert {(1, True), (0, True), (0, False), (-1, False)} <= {(s[0], s[1]) for s in seen}
    if not negatives_last:
        assert any(s[0] == 1 and s[2] and not s[3] for s in seen)  # a tie under the threshold


# --- detection: its RoI and its verdict ---------------------------------------------------


def test_detections_know_their_roi_and_why_they_are_false() -> None:
    # RoIs 0 [0, 0, 100, 100] and 1 [10, 0, 110, 100] (IoU 0.818), RoI 2 [200, 200, 300, 300].
    # Per-class NMS: class 1 keeps RoI 0 (0.8; RoI 1's 0.7 suppressed), class 2 keeps RoI 2
    # (0.75) and RoI 1 (0.2; RoI 0's 0.1 suppressed). RoI 2's class 1 (0.03) is under 0.05.
    rois = torch.tensor([[0.0, 0, 100, 100], [10, 0, 110, 100], [200, 200, 300, 300]])
    probs = [[0.1, 0.8, 0.1], [0.1, 0.7, 0.2], [0.22, 0.03, 0.75]]
    out = HeadOutput(scores=torch.log(torch.tensor(probs)), deltas=torch.zeros(3, 3, 4))
    det = detect(rois, out, (400, 400), DetectParams())
    assert det.labels.tolist() == [1, 2, 2]
    assert det.roi_index.tolist() == [0, 2, 1]
    assert det.scores.tolist() == pytest.approx([probs[r][c] for r, c in ((0, 1), (2, 2), (1, 2))])
    # GT: A = RoI 0's box, class 1; B = [200, 200, 290, 300], class 2 (IoU 0.9 with RoI 2).
    gt = torch.tensor([[0.0, 0, 100, 100], [200, 200, 290, 300]])
    labels = torch.tensor([1, 2])
    m = match_detections(det, gt, labels, 0.5)
    assert m.matched_gt.tolist() == [0, 1, -1]
    verdicts = [explain_match(det, m, gt, labels, 0.5, i) for i in range(3)]
    assert [v.kind for v in verdicts] == ["true positive", "true positive", "IoU too low"]
    assert verdicts[1].gt == 1 and verdicts[1].iou == pytest.approx(0.9)
    # Detection 2 (class 2 on RoI 1) overlaps A well, but A is class 1; B of its class not at all.
    # Half on B (class 2): [245, 200, 335, 300] overlaps B [200, 200, 290, 300] by 45 / 135.
    half = dataclasses.replace(det, boxes=det.boxes.clone())
    half.boxes[2] = torch.tensor([245.0, 200, 335, 300])
    m_half = match_detections(half, gt, labels, 0.5)
    v = explain_match(half, m_half, gt, labels, 0.5, 2)
    assert (v.kind, v.gt) == ("IoU too low", 1) and v.iou == pytest.approx(45 / 135)
    assert verdicts[2].gt == -1 and verdicts[2].iou == 0.0
    # Give the third detection class 1: now it duplicates detection 1 on A.
    dup = dataclasses.replace(det, labels=torch.tensor([1, 2, 1]))
    m = match_detections(dup, gt, labels, 0.5)
    v = explain_match(dup, m, gt, labels, 0.5, 2)
    assert (v.kind, v.gt, v.taken_by) == ("duplicate", 0, 0)
    assert v.iou == pytest.approx(9000 / 11000)
    # Only class-1 ground truth: the class-2 detections have no box of their class.
    m = match_detections(det, gt[:1], labels[:1], 0.5)
    assert explain_match(det, m, gt[:1], labels[:1], 0.5, 1).kind == "no box of its class"
    empty = torch.zeros(0, 4)
    m = match_detections(det, empty, labels[:0], 0.5)
    assert m.matched_gt.tolist() == [-1, -1, -1]
    assert explain_match(det, m, empty, labels[:0], 0.5, 0).kind == "no ground truth"
    assert Detections(det.boxes, det.scores, det.labels, (0, 0, 0)).roi_index is None


# --- the clickable markers and the click -> pick rule --------------------------------------


def test_centre_markers_and_a_click_taken_once() -> None:
    boxes = torch.tensor([[0.0, 0, 10, 20], [100, 100, 140, 120], [50, 0, 60, 10]])
    trace = centre_markers(boxes, [7, 3, 9], ["a", "<b>", "c"], ["#F00", "#0F0", "#F00"], "dots")
    assert list(trace.x) == [5, 120, 55] and list(trace.y) == [10, 110, 5]
    assert list(trace.customdata) == [7, 3, 9]
    assert "<b>" not in trace.text[1]  # user text is made inert
    # Colours travel as codes into a scale of the colours used: each code lands on its colour.
    scale = dict(
        (round(v * (len(trace.marker.colorscale) - 1)), c) for v, c in trace.marker.colorscale
    )
    assert [scale[int(c)] for c in trace.marker.color] == ["#F00", "#0F0", "#F00"]
    assert centre_markers(boxes, [1, 2, 3], ["", "", ""], "#F00", "dots").marker.color == "#F00"

    def event(*indices: int) -> dict:
        return {"selection": {"points": [{"customdata": i} for i in indices] + [{"x": 1}]}}

    assert clicked_indices(event(4, 5)) == [4, 5] and clicked_indices(None) == []
    state: dict = {"fig_a": event(4)}
    assert take_click(state, ("fig_a", "fig_b"), "pick") and state["pick"] == 4
    state["pick"] = 8  # the picker changed it: the same click is not taken again
    assert not take_click(state, ("fig_a", "fig_b"), "pick") and state["pick"] == 8
    state["fig_b"] = event(6)  # a new click on the other figure
    assert take_click(state, ("fig_a", "fig_b"), "pick") and state["pick"] == 6
