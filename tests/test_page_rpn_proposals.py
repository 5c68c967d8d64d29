"""The RPN outputs page (5) and the Proposals & NMS page (6), run headless with AppTest, and
their figure functions called directly.

The counts asserted here (45 positives, 256 sampled anchors, 22500 decoded boxes, 12000 / 6000
pre-NMS) do not depend on the image's pixels or on the random weights (SPEC section 3)."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import numpy as np
import pytest
import torch

os.environ.setdefault("FRCNN_OFFLINE", "1")

from streamlit.testing.v1 import AppTest

from explorer.models import SESSION_MODEL, SessionModel
from explorer.views.anchors import shape_names
from explorer.views.labelling import iou_heatmaps
from explorer.views.proposals import (
    STEPS,
    funnel_figure,
    funnel_stages,
    step_figures,
    step_view,
)
from explorer.views.rpn import (
    objectness_heatmaps,
    objectness_maps,
    top_boxes,
)
from frcnn_core.anchors import AnchorParams, generate_anchors
from frcnn_core.pipeline import DetectorHeads
from frcnn_core.proposals import ProposalCounts, ProposalParams, propose
from frcnn_core.rpn import RPNHead, rpn_forward

APP = str(Path(__file__).resolve().parents[1] / "app.py")
RPN_PAGE = "app_pages/rpn.py"
PROPOSALS_PAGE = "app_pages/proposals.py"


def metrics(at: AppTest) -> dict[str, str]:
    return {m.label: m.value for m in at.metric}


def number(text: str) -> float:
    return float(text.replace(",", ""))


def open_page(page: str) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=180)
    at.run()  # state.init(): the zebras sample with its four boxes
    assert at.session_state["image"].name == "zebras"
    at.switch_page(page)
    at.run()
    assert not at.exception, at.exception
    assert not at.error, [e.value for e in at.error]
    return at


def test_rpn_page_loss_numbers() -> None:
    at = open_page(RPN_PAGE)
    m = metrics(at)
    assert number(m["N_pos (positive anchors)"]) == 45
    assert number(m["N_cls (sampled anchors)"]) == 256
    assert number(m["Anchors scored"]) == 22500
    total = number(m["RPN loss"])
    cls = number(m["Objectness loss (CE)"])
    assert math.isfinite(total)
    # A fresh head says p(object) ~ 0.5 everywhere: cross-entropy ~ ln 2.
    assert abs(cls - math.log(2)) < 0.05
    assert 0.4 < number(m["Lowest p(object)"]) <= number(m["Highest p(object)"]) < 0.6
    loc = number(m["Box loss"])
    loc_sum = number(m["ΣsmoothL1 over positives"])
    assert loc == pytest.approx(10 * loc_sum / 45, abs=1e-3)
    assert any("N(0, 0.01)" in i.value for i in at.info)
    assert any(r"\frac{10}{45}" in x.value for x in at.latex)

    at.slider(key="w:rpn_loss.loss_lambda").set_value(5.0)
    at.run()
    assert not at.exception
    halved = metrics(at)
    assert number(halved["Box loss"]) == pytest.approx(loc / 2, abs=1e-3)
    assert number(halved["Objectness loss (CE)"]) == pytest.approx(cls)


def test_rpn_page_with_trained_heads() -> None:
    at = AppTest.from_file(APP, default_timeout=180)
    at.run()
    # What the Train page stores (explorer.models.SessionModel); a small head suffices.
    heads = DetectorHeads(1, 9, 512, 7, seed=5, hidden=64).eval()
    at.session_state[SESSION_MODEL] = SessionModel(heads, ("zebra",))
    at.switch_page(RPN_PAGE)
    at.run()
    assert not at.exception, at.exception
    assert any("trained heads" in s.value for s in at.success)
    assert number(metrics(at)["N_pos (positive anchors)"]) == 45


def test_proposals_page_counts_and_modes() -> None:
    at = open_page(PROPOSALS_PAGE)
    m = metrics(at)
    assert number(m["Decoded"]) == 22500
    assert number(m["Pre-NMS"]) == 12000
    assert number(m["Kept"]) <= 2000
    assert number(m["Sampled RoIs"]) == 128
    after_07 = number(m["After NMS"])

    at.slider(key="w:proposals.nms_iou").set_value(0.3)
    at.run()
    assert not at.exception
    after_03 = number(metrics(at)["After NMS"])
    assert 0 < after_03 < after_07
    kept_train = number(metrics(at)["Kept"])

    at.radio(key="proposals:mode").set_value(False)
    at.run()
    assert not at.exception
    m = metrics(at)
    assert number(m["Decoded"]) == 22500
    assert number(m["Pre-NMS"]) == 6000
    assert number(m["Kept"]) <= 300
    assert m["Sampled RoIs"] == "—"
    assert at.slider(key="w:test_proposals.pre_nms").value == 6000
    # Which proposals the page shows is a view, not a setting: the RoI page still samples from
    # the training-time ones.
    at.switch_page("app_pages/roi.py").run()
    assert not at.exception
    assert number(metrics(at)["Proposals"]) == kept_train


def test_proposals_page_empty_cases_and_steps() -> None:
    at = open_page(PROPOSALS_PAGE)
    for step in STEPS:
        at.radio(key="proposals:step").set_value(step)
        at.run()
        assert not at.exception, step
        assert not at.error, step

    at.slider(key="w:proposals.nms_iou").set_value(0.0)
    at.run()
    assert not at.exception
    assert number(metrics(at)["Kept"]) < 50
    assert any("proposal(s) survive" in i.value for i in at.info)

    at.slider(key="w:proposals.min_size").set_value(800.0)
    at.run()
    assert not at.exception and not at.error
    m = metrics(at)
    assert number(m["Pre-NMS"]) == 0
    assert number(m["Kept"]) == 0
    assert any("No box is at least 800" in w.value for w in at.warning)


def test_bug_toggles_change_the_proposals() -> None:
    at = open_page(PROPOSALS_PAGE)
    at.toggle(key="w:proposals.bug_b8_index_order").set_value(True)
    at.run()
    assert not at.exception
    assert any("B8" in w.value for w in at.warning)
    assert at.session_state["params"].proposals.bug_b8_index_order


# Figure functions, without a browser, on a small 320 x 320 frame (20 x 20 cells).


@pytest.fixture(scope="module")
def small_rpn():
    params = AnchorParams()
    grid = generate_anchors((20, 20), (320, 320), params, 16)
    features = torch.randn(1, 512, 20, 20, generator=torch.Generator().manual_seed(0)).relu()
    with torch.no_grad():
        out = rpn_forward(features, RPNHead(seed=0))
    return grid, out, params


def test_objectness_maps_follow_the_anchor_order(small_rpn) -> None:
    _, out, params = small_rpn
    maps = objectness_maps(out.objectness, (20, 20), params.per_cell)
    assert maps.shape == (9, 20, 20)
    # index = (iy * Wf + ix) * A + a
    iy, ix, a = 3, 7, 5
    assert maps[a, iy, ix] == pytest.approx(float(out.objectness[(iy * 20 + ix) * 9 + a]))
    fig = objectness_heatmaps(maps, params, 16, stretch=True)
    assert len(fig.data) == 9


def test_the_iou_maps_are_nine_grids_of_the_whole_feature_map() -> None:
    params = AnchorParams()
    maps = np.random.default_rng(0).random((9, 50, 50)).astype(np.float32)
    maps[:, :, :4] = np.nan  # outside the image
    fig = iou_heatmaps(maps, params, 16, "IoU")
    names = shape_names(params, 16)
    assert [t.type for t in fig.data] == ["heatmap"] * 9
    assert [a.text for a in fig.layout.annotations] == names
    for k, trace in enumerate(fig.data):
        suffix = "" if k == 0 else str(k + 1)
        assert (trace.xaxis, trace.yaxis) == (f"x{suffix}", f"y{suffix}")
        assert np.array_equal(trace.z, maps[k], equal_nan=True)
        assert trace.hovertemplate.startswith(names[k])
        assert (trace.zmin, trace.zmax) == (0.0, 1.0)
        assert fig.layout[f"xaxis{suffix}"].range == (-0.5, 49.5)
        assert fig.layout[f"yaxis{suffix}"].range == (49.5, -0.5)  # row 0 at the top
    assert [t.showscale for t in fig.data].count(True) == 1
    assert fig.layout.plot_bgcolor == "#E5E7EB"  # what NaN cells show
    # Nine axes side by side, rows of three: the domains do not overlap.
    x0 = [fig.layout[f"xaxis{'' if k == 0 else k + 1}"].domain for k in range(3)]
    assert x0[0][1] < x0[1][0] and x0[1][1] < x0[2][0]
    assert json.loads(fig.to_json())["layout"]["title"]["text"] == "IoU"


def test_top_boxes_are_the_best_scored(small_rpn) -> None:
    grid, out, _ = small_rpn
    top = top_boxes(grid.anchors, out, out.objectness, (320, 320), 25, ProposalParams().scale_clamp)
    assert top.boxes.shape == (25, 4)
    assert torch.all(top.scores[:-1] >= top.scores[1:])
    assert float(top.scores[0]) == pytest.approx(float(out.objectness.max()))
    assert float(top.boxes.min()) >= 0 and float(top.boxes.max()) <= 320


def test_step_views_account_for_every_box(small_rpn) -> None:
    grid, out, _ = small_rpn
    params = ProposalParams(min_size=40.0)
    counts = ProposalCounts(pre_nms=1500, post_nms=100)
    result = propose(grid.anchors, out.locs, out.scores, (320, 320), params, counts)
    counts = result.counts()
    for step in STEPS:
        view = step_view(result, grid.anchors, params, step, 50)
        assert view.n_before - view.n_removed == view.n_after, step
        assert view.before.shape[0] <= 50 and view.after.shape[0] <= 50
        before, after = step_figures(
            torch.zeros((320, 320, 3), dtype=torch.uint8).numpy(),
            view,
            torch.tensor([[10.0, 10.0, 100.0, 100.0]]),
            ("cat",),
        )
        assert before.data and after.data
    assert step_view(result, grid.anchors, params, "NMS", 50).n_after == counts["after_nms"]
    stages = funnel_stages(result, grid.total, grid.inside, params, sampled_rois=64)
    assert [s.count for s in stages] == [
        grid.total,
        grid.inside,
        counts["decoded"],
        counts["after_min_size"],
        counts["pre_nms"],
        counts["after_nms"],
        counts["kept"],
        64,
    ]
    assert len(funnel_figure(stages).data) == 1
