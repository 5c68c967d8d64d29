"""Stages 3 and 4: base anchors, anchor order, the inside filter, and bug B1."""

from __future__ import annotations

import math

import pytest
import reference as ref
import torch

from frcnn_core.anchors import AnchorParams, base_anchors, cell_centres, generate_anchors
from frcnn_core.backbone import VGG16

STRIDE = VGG16.stride  # 16: anchors are spaced by the backbone's stride


def centre_of(box: torch.Tensor) -> tuple[float, float]:
    x1, y1, x2, y2 = box.tolist()
    return (x1 + x2) / 2, (y1 + y2) / 2


def test_base_anchors_hand_values():
    base = base_anchors(AnchorParams(), STRIDE)
    assert base.shape == (9, 4) and base.dtype == torch.float64
    # a = ratio_index * 3 + scale_index. Ratio 0.5, scale 8 (a = 0):
    # h = 16 * 8 * sqrt(0.5) = 90.51, w = 16 * 8 / sqrt(0.5) = 181.02 (a wide box: r = h / w).
    h, w = 128 * math.sqrt(0.5), 128 / math.sqrt(0.5)
    assert h == pytest.approx(90.50967) and w == pytest.approx(181.01934)
    torch.testing.assert_close(base[0], torch.tensor([-w / 2, -h / 2, w / 2, h / 2]).double())
    # Ratio 1, scale 8 (a = 3): 128 x 128.
    torch.testing.assert_close(base[3], torch.tensor([-64.0, -64.0, 64.0, 64.0]).double())
    # Ratio 2, scale 32 (a = 8): h = 16 * 32 * sqrt 2 = 724.08, w = 512 / sqrt 2 = 362.04.
    assert float(base[8, 3] - base[8, 1]) == pytest.approx(724.0773)
    assert float(base[8, 2] - base[8, 0]) == pytest.approx(362.0387)
    # Ratio 0.5, scale 16 (a = 1): h = 181.02, w = 362.04.
    assert float(base[1, 3] - base[1, 1]) == pytest.approx(181.01934)


def test_cell_centres_row_major():
    # Centres 16 * i + 8; y outer: cell 1 is (ix=1, iy=0) = (24, 8); cell Wf is (8, 24).
    c = cell_centres((2, 3), 16)
    assert c.tolist() == [[8, 8], [24, 8], [40, 8], [8, 24], [24, 24], [40, 24]]


@pytest.mark.parametrize(
    ("feature_size", "image_size"),
    [((50, 50), (800, 800)), ((30, 40), (480, 640)), ((3, 5), (48, 80))],
)
def test_anchors_match_loop_reference(feature_size, image_size):
    result = generate_anchors(feature_size, image_size, AnchorParams(), STRIDE)
    expected = torch.tensor(ref.anchors(feature_size), dtype=torch.float64)
    assert result.total == feature_size[0] * feature_size[1] * 9
    # Not bit-identical: torch's vectorised float64 sqrt (SLEEF, 0.5 ulp bound, not correctly
    # rounded) gives sqrt(0.5) = 0.7071067811865475, math.sqrt 0.7071067811865476. One ulp in a
    # few anchors; the SPEC's tie counts come out the same either way (test_anchor_targets).
    torch.testing.assert_close(result.anchors, expected, rtol=0, atol=1e-12)
    assert result.inside_index.tolist() == ref.inside(expected.tolist(), image_size)


def test_spec_anchor_counts_800():
    # SPEC section 3: 50 x 50 x 9 = 22500 anchors, 8940 wholly inside the 800 x 800 frame.
    result = generate_anchors((50, 50), (800, 800), AnchorParams(), STRIDE)
    assert result.total == 22500
    assert result.inside == 8940
    inside = result.inside_anchors
    assert (inside[:, :2] >= 0).all() and (inside[:, 2:] <= 800).all()


def test_non_square_anchor_counts():
    # A 480 x 640 (H x W) frame: feature map 30 x 40, 30 * 40 * 9 = 10800 anchors.
    result = generate_anchors((30, 40), (480, 640), AnchorParams(), STRIDE)
    assert result.total == 10800
    assert result.inside == len(ref.inside(ref.anchors((30, 40)), (480, 640)))
    # The last cell is (iy=29, ix=39), centred at (16 * 39 + 8, 16 * 29 + 8) = (632, 472).
    last = result.anchors[-9:]
    assert ((last[:, 0] + last[:, 2]) / 2).tolist() == [632.0] * 9
    assert ((last[:, 1] + last[:, 3]) / 2).tolist() == [472.0] * 9


def test_anchor_order_matches_rpn_flattening():
    # SPEC section 1: anchor index = (iy * Wf + ix) * A + a, which is the order
    # x.permute(0, 2, 3, 1).reshape(1, -1, 4) gives for an RPN output x of shape (1, A*4, Hf, Wf).
    hf, wf = 3, 5
    params = AnchorParams()
    result = generate_anchors((hf, wf), (48, 80), params, STRIDE)
    base = base_anchors(params, STRIDE)
    a = params.per_cell
    grid = torch.zeros(1, a * 4, hf, wf, dtype=torch.float64)  # what the RPN head would emit
    for iy in range(hf):
        for ix in range(wf):
            centre = torch.tensor([16 * ix + 8, 16 * iy + 8] * 2, dtype=torch.float64)
            grid[0, :, iy, ix] = (base + centre).reshape(-1)
    flat = grid.permute(0, 2, 3, 1).reshape(1, -1, 4)[0]
    assert torch.equal(result.anchors, flat)
    # Spot check index (iy=2, ix=1, a=4): centre (24, 40), ratio 1 scale 16: 256 x 256.
    assert result.anchors[(2 * wf + 1) * a + 4].tolist() == [24 - 128, 40 - 128, 24 + 128, 40 + 128]


def test_b1_x_outer_order_is_the_transpose():
    # Bug B1: the tutorial's loops put x outer, index (ix * Hf + iy) * A + a.
    hf, wf = 3, 5
    good = generate_anchors((hf, wf), (48, 80), AnchorParams(), STRIDE)
    bad = generate_anchors((hf, wf), (48, 80), AnchorParams(bug_b1_x_outer=True), STRIDE)
    a = 9
    transposed = good.anchors.reshape(hf, wf, a, 4).transpose(0, 1).reshape(-1, 4)
    assert torch.equal(bad.anchors, transposed)
    assert not torch.equal(bad.anchors, good.anchors)
    # The same set of boxes, paired with different RPN cells: index 9 (cell 1) is the
    # tutorial's (ix=0, iy=1) at (8, 24) instead of (ix=1, iy=0) at (24, 8).
    assert centre_of(bad.anchors[9]) == pytest.approx((8.0, 24.0), abs=1e-9)
    assert centre_of(good.anchors[9]) == pytest.approx((24.0, 8.0), abs=1e-9)
    assert sorted(map(tuple, bad.anchors.tolist())) == sorted(map(tuple, good.anchors.tolist()))
    assert bad.inside == good.inside
    # Square maps pair (iy, ix) with the mirrored cell (ix, iy): only the diagonal agrees.
    g50 = generate_anchors((50, 50), (800, 800), AnchorParams(), STRIDE)
    b50 = generate_anchors((50, 50), (800, 800), AnchorParams(bug_b1_x_outer=True), STRIDE)
    same_cells = (g50.anchors == b50.anchors).all(dim=1).reshape(50, 50, 9).all(dim=2)
    assert same_cells.sum() == 50 and torch.equal(same_cells, torch.eye(50, dtype=torch.bool))


def test_the_stride_is_the_backbones_argument():
    # At stride 8 (a backbone that stops one pool earlier, e.g. conv4_3) every size halves:
    # ratio 1, scale 8 is 8 * 8 = 64 pixels a side, and cells are centred at 8 * i + 4.
    base = base_anchors(AnchorParams(), 8)
    torch.testing.assert_close(base[3], torch.tensor([-32.0, -32.0, 32.0, 32.0]).double())
    torch.testing.assert_close(base, base_anchors(AnchorParams(), 16) / 2, rtol=0, atol=0)
    assert cell_centres((1, 3), 8).tolist() == [[4, 4], [12, 4], [20, 4]]
    result = generate_anchors((40, 40), (320, 320), AnchorParams(), 8)
    assert result.stride == 8 and result.feature_size == (40, 40)
    assert result.image_size == (320, 320)
    assert result.total == 40 * 40 * 9
    expected = torch.tensor(ref.anchors((40, 40), stride=8), dtype=torch.float64)
    torch.testing.assert_close(result.anchors, expected, rtol=0, atol=1e-12)
    assert result.inside_index.tolist() == ref.inside(expected.tolist(), (320, 320))
    # The same frame at stride 16 has a quarter of the cells and other anchors.
    coarse = generate_anchors((20, 20), (320, 320), AnchorParams(), STRIDE)
    assert coarse.stride == 16 and coarse.total == result.total // 4
    assert coarse.inside != result.inside
