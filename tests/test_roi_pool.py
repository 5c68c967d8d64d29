"""Stage 11: RoI max pooling, by hand and against a crop + adaptive max pool reference."""

from __future__ import annotations

import math

import pytest
import reference as ref
import torch
from torchvision.ops import roi_align, roi_pool

from frcnn_core.roi_pool import SPLIT_MIN_ROIS, RoIPoolParams, pool_rois

SCALE = 1 / 16  # VGG16's: one over its stride


def ramp(hf: int, wf: int, channels: int = 1) -> torch.Tensor:
    """Features whose value at (y, x) is y * Wf + x: the max of any window is its bottom-right."""
    base = torch.arange(hf * wf, dtype=torch.float32).reshape(1, 1, hf, wf)
    return base.repeat(1, channels, 1, 1) + torch.arange(channels).view(1, -1, 1, 1) * 1000


def test_spatial_scale_hand_case():
    # Features 8 x 8, spatial scale 1/16. RoI [32, 16, 95, 63]:
    # x: round(32 / 16) = 2 .. round(95 / 16 = 5.94) = 6 -> columns 2..6 (width 5)
    # y: round(16 / 16) = 1 .. round(63 / 16 = 3.94) = 4 -> rows 1..4 (height 4)
    # 2 x 2 output: bin width 5 / 2 = 2.5 -> columns [2, 2 + ceil(2.5)) = 2..4 and
    # [2 + floor(2.5), 2 + 5) = 4..6; bin height 2 -> rows 1..2 and 3..4.
    # Max = bottom-right of each bin: (2, 4) = 20, (2, 6) = 22, (4, 4) = 36, (4, 6) = 38.
    features = ramp(8, 8)
    roi = torch.tensor([[32.0, 16, 95, 63]])
    out = pool_rois(features, roi, RoIPoolParams(output_size=2), SCALE).pooled
    assert out.shape == (1, 1, 2, 2)
    assert out[0, 0].tolist() == [[20.0, 22.0], [36.0, 38.0]]
    one = pool_rois(features, roi, RoIPoolParams(output_size=1), SCALE).pooled
    assert one.flatten().tolist() == [38.0]  # (4, 6)


def test_spatial_scale_one_eighth_hand_case():
    # A stride-8 backbone (e.g. conv4_3): features 16 x 16, spatial scale 1/8. The same RoI
    # [32, 16, 95, 63] covers twice as many cells as at 1/16:
    # x: round(32 / 8) = 4 .. round(95 / 8 = 11.875) = 12 -> columns 4..12 (width 9)
    # y: round(16 / 8) = 2 .. round(63 / 8 = 7.875) = 8 -> rows 2..8 (height 7)
    # 2 x 2 output: bin width 4.5 -> columns [4, 4 + ceil(4.5)) = 4..8 and [4 + 4, 13) = 8..12;
    # bin height 3.5 -> rows [2, 2 + 4) = 2..5 and [2 + 3, 9) = 5..8.
    # Max = bottom-right of each bin: (5, 8) = 88, (5, 12) = 92, (8, 8) = 136, (8, 12) = 140.
    features = ramp(16, 16)
    roi = torch.tensor([[32.0, 16, 95, 63]])
    out = pool_rois(features, roi, RoIPoolParams(output_size=2), 1 / 8).pooled
    assert out[0, 0].tolist() == [[88.0, 92.0], [136.0, 140.0]]
    one = pool_rois(features, roi, RoIPoolParams(output_size=1), 1 / 8).pooled
    assert one.flatten().tolist() == [8 * 16 + 12.0]
    # At 1/16 the same RoI is columns 2..6, rows 1..4 of the map: max (4, 6) = 70.
    coarse = pool_rois(features, roi, RoIPoolParams(output_size=1), 1 / 16).pooled
    assert coarse.flatten().tolist() == [4 * 16 + 6.0]


def test_spatial_scale_one_eighth_matches_the_reference():
    g = torch.Generator().manual_seed(2)
    hf, wf = 24, 30  # a 192 x 240 input at stride 8
    features = torch.randn(1, 3, hf, wf, generator=g)
    rois = []
    while len(rois) < 200:
        x1, x2 = sorted((torch.rand(2, generator=g) * 8 * wf).tolist())
        y1, y2 = sorted((torch.rand(2, generator=g) * 8 * hf).tolist())
        if math.floor(x2 / 8 + 0.5) < wf and math.floor(y2 / 8 + 0.5) < hf:
            rois.append([x1, y1, x2, y2])
    got = pool_rois(features, torch.tensor(rois), RoIPoolParams(), 1 / 8).pooled
    assert torch.equal(got, ref.roi_pool(features, rois, 7, 1 / 8))
    assert not torch.equal(got, ref.roi_pool(features, rois, 7, 1 / 16))


def test_spec_docstring_example():
    # An 800 x 800 input and a 50 x 50 feature map: scale 50 / 800 = 1/16, so a RoI from x = 160
    # to x = 320 covers cells 10 to 20 (and y = 0 .. 15 covers rows 0 .. round(0.94) = 1).
    features = ramp(50, 50)
    out = pool_rois(
        features, torch.tensor([[160.0, 0, 320, 15]]), RoIPoolParams(output_size=1), SCALE
    )
    assert out.pooled.flatten().tolist() == [1 * 50 + 20]


def test_rounding_is_half_away_from_zero():
    # x1 = 40 -> 40 / 16 = 2.5 -> C round() gives 3 (Python's round(2.5) would give 2).
    # x2 = 56 -> 3.5 -> 4. So the RoI spans columns 3..4; the min over a ramp shows the start.
    features = -ramp(1, 8)  # value -x: the max is at the smallest column
    out = pool_rois(features, torch.tensor([[40.0, 0, 56, 0]]), RoIPoolParams(output_size=1), SCALE)
    assert out.pooled.flatten().tolist() == [-3.0]
    assert math.floor(2.5 + 0.5) == 3 and round(2.5) == 2


def test_roi_pool_matches_crop_and_adaptive_max_pool():
    # The reference crops features[:, y1:y2 + 1, x1:x2 + 1] (quantised ends included) and applies
    # adaptive_max_pool2d. Both split a length L into bins [floor(i L / 7), ceil((i + 1) L / 7)).
    # roi_pool computes them in float32 as floor(i * (L / 7.0)); for every L up to the 50-cell map
    # this gives the same integers as the exact fractions (checked below), so the two agree
    # exactly. They differ only when the RoI's quantised end falls outside the feature map:
    # roi_pool lays the bins over the whole RoI and clips each bin, while a crop is clipped first
    # and re-binned. Such RoIs are left out.
    for length in range(1, 51):
        step = torch.tensor(length / 7, dtype=torch.float32)
        scaled = [float(torch.tensor(float(i), dtype=torch.float32) * step) for i in range(8)]
        # Starts use i = 0..6, ends i + 1 = 1..7 (7 * (31 / 7) is 30.999998 in float32: its floor
        # would be wrong, but only its ceiling is ever taken).
        assert [math.floor(v) for v in scaled[:7]] == [(i * length) // 7 for i in range(7)]
        assert [math.ceil(v) for v in scaled[1:]] == [-(-i * length // 7) for i in range(1, 8)]

    g = torch.Generator().manual_seed(0)
    hf, wf = 20, 25
    features = torch.randn(1, 6, hf, wf, generator=g)
    rois = []
    while len(rois) < 400:
        x1, x2 = sorted((torch.rand(2, generator=g) * 16 * wf).tolist())
        y1, y2 = sorted((torch.rand(2, generator=g) * 16 * hf).tolist())
        if len(rois) % 2:  # integer coordinates hit the x.5 rounding cases
            x1, y1, x2, y2 = (float(int(v)) for v in (x1, y1, x2, y2))
        if math.floor(x2 / 16 + 0.5) < wf and math.floor(y2 / 16 + 0.5) < hf:
            rois.append([x1, y1, x2, y2])
    got = pool_rois(features, torch.tensor(rois), RoIPoolParams(), SCALE).pooled
    expected = ref.roi_pool(features, rois, 7, 1 / 16)
    assert got.shape == (400, 6, 7, 7)
    assert torch.equal(got, expected)
    # The restriction is needed: a RoI whose quantised end is one past the map is binned as 26
    # columns by roi_pool but cropped to 25 by the reference.
    edge = [[0.0, 0.0, 16 * wf - 1, 16 * hf - 1]]  # 399 / 16 = 24.94 rounds to 25 = Wf
    got_edge = pool_rois(features, torch.tensor(edge), RoIPoolParams(), SCALE).pooled
    assert not torch.equal(got_edge, ref.roi_pool(features, edge, 7, 1 / 16))


def test_roi_align_alternative():
    features = ramp(8, 8, channels=2)
    roi = torch.tensor([[32.0, 16, 95, 63]])
    align = pool_rois(features, roi, RoIPoolParams(method="align", output_size=2), SCALE).pooled
    pool = pool_rois(features, roi, RoIPoolParams(output_size=2), SCALE).pooled
    assert align.shape == pool.shape == (1, 2, 2, 2)
    # Bilinear samples of a linear ramp average to the ramp at the bin centre: no quantisation.
    # aligned=True: x = 32/16 - 0.5 = 1.5 .. 95/16 - 0.5 = 5.44, bin 1 of 2 centred at x = 2.48.
    x_centre = 1.5 + (5.4375 - 1.5) / 4
    y_centre = 0.5 + (3.4375 - 0.5) / 4
    assert float(align[0, 0, 0, 0]) == pytest.approx(y_centre * 8 + x_centre, abs=1e-4)
    assert not torch.equal(align, pool)
    with pytest.raises(ValueError):
        RoIPoolParams(method="bilinear")


@pytest.mark.parametrize("method", ["pool", "align"])
@pytest.mark.parametrize("threads", [1, 2, 3])
def test_rois_split_across_threads_pool_exactly_as_one_call(method, threads):
    # 101 RoIs (over SPLIT_MIN_ROIS): split into `threads` chunks of unequal size, each pooled
    # on its own thread, then concatenated in order.
    g = torch.Generator().manual_seed(1)
    features = torch.randn(1, 4, 12, 15, generator=g)
    xy = torch.rand(101, 2, generator=g) * 150
    rois = torch.cat((xy, xy + torch.rand(101, 2, generator=g) * 80 + 4), dim=1)
    params = RoIPoolParams(method=method)
    if method == "align":
        expected = roi_align(features, [rois], (7, 7), 1 / 16, 2, aligned=True)
    else:
        expected = roi_pool(features, [rois], (7, 7), 1 / 16)
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        got = pool_rois(features, rois, params, SCALE).pooled
    finally:
        torch.set_num_threads(before)
    assert rois.shape[0] >= SPLIT_MIN_ROIS
    assert torch.equal(got, expected)


@pytest.mark.parametrize("grad", [True, False])
def test_split_pooling_follows_the_callers_grad_mode(grad):
    # The worker threads must record a graph exactly when the caller would (training), and
    # none under no_grad (inference), although grad mode is a per-thread setting.
    features = torch.rand(1, 2, 10, 10, requires_grad=True)
    rois = torch.tensor([[0.0, 0.0, 80.0, 80.0]] * (2 * SPLIT_MIN_ROIS))
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        with torch.set_grad_enabled(grad):
            pooled = pool_rois(features, rois, RoIPoolParams(), SCALE).pooled
    finally:
        torch.set_num_threads(before)
    assert pooled.requires_grad is grad
    if grad:
        pooled.sum().backward()
        assert features.grad is not None and float(features.grad.sum()) > 0
