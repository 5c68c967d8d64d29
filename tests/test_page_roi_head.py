"""The RoI sampling & pooling page (7) and the Head & losses page (8), run headless with AppTest,
and their figure and table functions called directly.

The sampling counts asserted here hold for any proposals: with the tutorial's zebras there are
far more than 128 negative candidates among the ~2000 proposals, so a batch is always full."""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from torchvision.ops import roi_pool

os.environ.setdefault("FRCNN_OFFLINE", "1")

from streamlit.testing.v1 import AppTest

from explorer.views.head import (
    architecture_table,
    class_columns,
    class_names_with_background,
    losses_figure,
    roi_table,
)
from explorer.views.roi import (
    clicked_rois,
    crop_figure,
    crop_window,
    pool_both,
    quantise_roi,
    roi_descriptions,
    rois_figure,
)
from frcnn_core.head import FastRCNNHead, HeadLossParams, HeadOutput, head_loss
from frcnn_core.proposal_targets import ProposalTargetParams, proposal_targets
from frcnn_core.roi_pool import RoIPoolParams

APP = str(Path(__file__).resolve().parents[1] / "app.py")
ROI_PAGE = "app_pages/roi.py"
HEAD_PAGE = "app_pages/head.py"
LOSSES = ("rpn_cls", "rpn_loc", "roi_cls", "roi_loc", "total")


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


def sampled(at: AppTest) -> tuple[int, int, int]:
    m = metrics(at)
    return (
        int(number(m["Sampled positive"])),
        int(number(m["Sampled negative"])),
        int(number(m["Sampled RoIs"])),
    )


def compute_caption(at: AppTest) -> str:
    return next(c.value for c in at.caption if c.value.startswith("Server compute"))


# --- page 7 ---------------------------------------------------------------------------------


def test_roi_page_batch_size_and_positive_cap() -> None:
    at = open_page(ROI_PAGE)
    pos, neg, total = sampled(at)
    assert number(metrics(at)["Negative candidates"]) >= 128
    assert (pos + neg, total) == (128, 128)
    assert pos <= int(128 * 0.25)
    # Positives are capped, never padded: all candidates are taken when fewer than the cap.
    assert pos == min(int(number(metrics(at)["Positive candidates"])), 32)

    at.slider(key="w:proposal_targets.roi_batch_size").set_value(64)
    at.run()
    assert not at.exception
    pos, neg, total = sampled(at)
    assert (pos + neg, total) == (64, 64)
    assert pos <= int(64 * 0.25)

    at.slider(key="w:proposal_targets.roi_pos_fraction").set_value(0.05)
    at.run()
    pos, neg, total = sampled(at)
    assert pos <= int(64 * 0.05) == 3
    assert pos + neg == 64

    # The RoI page samples and pools one RoI; the Fast R-CNN head (fc6 is 25088 x 4096) and
    # stage 11 on the whole batch are left to the Head page.
    caption = compute_caption(at)
    assert "Proposal targets (RoI sampling)" in caption
    assert "Fast R-CNN head" not in caption and "RoI pooling" not in caption


def test_roi_page_resample_changes_the_sample_not_the_counts() -> None:
    at = open_page(ROI_PAGE)
    before = sampled(at)
    options = list(at.selectbox(key="roi:pick").options)
    resample = next(b for b in at.sidebar.button if b.label == "Resample")
    resample.click()
    at.run()
    assert not at.exception
    assert at.session_state["params"].proposal_targets.seed >= 1
    assert sampled(at) == before
    # Same number of negatives, but another draw of them (1856 candidates for 99 places).
    assert list(at.selectbox(key="roi:pick").options) != options


def test_roi_page_align_vs_pool() -> None:
    at = open_page(ROI_PAGE)
    assert at.radio(key="w:roi_pool.method").value == "pool"
    assert any("**RoI Pool** (used by the pipeline)" in m.value for m in at.markdown)

    at.radio(key="w:roi_pool.method").set_value("align")
    at.run()
    assert not at.exception
    assert at.session_state["params"].roi_pool.method == "align"
    assert any("**RoI Align** (used by the pipeline)" in m.value for m in at.markdown)
    assert any("with **RoI Align**" in c.value for c in at.caption)
    assert not any("**RoI Pool** (used by the pipeline)" in m.value for m in at.markdown)


def test_roi_page_pick_a_negative_and_a_channel() -> None:
    at = open_page(ROI_PAGE)
    _, _, total = sampled(at)
    at.selectbox(key="roi:pick").set_value(total - 1)
    at.run()
    assert not at.exception
    assert any(m.value.startswith("**background**") for m in at.markdown)
    assert any(h.value == f"RoI {total - 1} pooled to 7 × 7" for h in at.main.subheader)

    at.radio(key="roi:show").set_value("one channel")
    at.run()
    at.number_input(key="roi:channel").set_value(511)
    at.run()
    assert not at.exception and not at.error

    # A smaller batch leaves the old pick out of range: the page falls back to RoI 0.
    at.slider(key="w:proposal_targets.roi_batch_size").set_value(16)
    at.run()
    assert not at.exception
    assert at.selectbox(key="roi:pick").value == 0


def test_roi_page_empty_negative_range_and_no_boxes() -> None:
    at = open_page(ROI_PAGE)
    at.slider(key="w:proposal_targets.roi_neg_iou_lo").set_value(0.5)
    at.run()
    assert not at.exception
    assert any("negative range [0.50, 0.50) is empty" in w.value for w in at.warning)
    pos, neg, _ = sampled(at)
    assert neg == 0 and pos > 0

    # Nothing in either range: no RoI at all, on this page and on the Head page.
    at.slider(key="w:proposal_targets.roi_pos_iou").set_value(1.0)
    at.run()
    assert not at.exception
    assert any("No RoI was sampled" in w.value for w in at.warning)
    at.switch_page(HEAD_PAGE)
    at.run()
    assert not at.exception and not at.error
    assert any("No RoI was sampled" in w.value for w in at.warning)
    at.switch_page(ROI_PAGE)
    at.run()  # the parameters outlive the page switch
    assert at.slider(key="w:proposal_targets.roi_pos_iou").value == 1.0
    at.slider(key="w:proposal_targets.roi_pos_iou").set_value(0.5)
    at.run()

    at.session_state["boxes"] = []
    at.run()
    assert not at.exception
    assert any("No ground-truth boxes" in i.value for i in at.info)
    assert number(metrics(at)["Positive candidates"]) == 0


# --- page 8 ---------------------------------------------------------------------------------


def losses(at: AppTest) -> dict[str, float]:
    m = metrics(at)
    return {name: float(m[name]) for name in LOSSES}


def test_head_page_losses_add_up() -> None:
    at = open_page(HEAD_PAGE)
    values = losses(at)
    assert all(math.isfinite(v) and v >= 0 for v in values.values())
    parts = values["rpn_cls"] + values["rpn_loc"] + values["roi_cls"] + values["roi_loc"]
    assert values["total"] == pytest.approx(parts, abs=3e-4)  # each shown to 4 decimals
    # An untrained 2-way classifier: close to log(2) for the RPN and the head.
    assert values["rpn_cls"] == pytest.approx(math.log(2), abs=0.05)
    assert values["roi_cls"] == pytest.approx(math.log(2), abs=0.05)
    table = next(d.value for d in at.dataframe if "true class" in d.value.columns)
    assert len(table) == 128
    assert list(table.columns[:3]) == ["RoI", "true class", "best IoU"]
    assert table["P(0: background)"].add(table["P(1: zebra)"]).sub(1).abs().max() < 1e-5

    # lambda scales the box terms and nothing else.
    at.slider(key="w:head_loss.loss_lambda").set_value(5.0)
    at.run()
    halved = losses(at)
    assert halved["roi_loc"] == pytest.approx(values["roi_loc"] / 2, abs=2e-4)
    assert halved["roi_cls"] == values["roi_cls"]
    assert halved["rpn_loc"] == values["rpn_loc"]
    at.slider(key="w:rpn_loss.loss_lambda").set_value(0.0)
    at.run()
    assert losses(at)["rpn_loc"] == 0.0


def test_head_page_bug_toggles() -> None:
    at = open_page(HEAD_PAGE)
    before = losses(at)

    at.toggle(key="w:head_loss.bug_b12_unreduced").set_value(True)
    at.run()
    assert not at.exception
    errors = " ".join(e.value for e in at.error)
    assert "grad can be implicitly created only for scalar outputs" in errors
    m = metrics(at)
    assert m["roi_loc"] == "matrix" and m["total"] == "matrix"
    assert float(m["rpn_cls"]) == before["rpn_cls"]
    assert float(m["roi_cls"]) == before["roi_cls"]

    at.toggle(key="w:head_loss.bug_b12_unreduced").set_value(False)
    at.toggle(key="w:head.bug_b11_no_relu").set_value(True)
    at.run()
    assert not at.exception and not at.error
    assert any("B11 is on" in w.value for w in at.warning)
    after = losses(at)
    assert after["rpn_cls"] == before["rpn_cls"]
    assert after["total"] == pytest.approx(sum(after[n] for n in LOSSES[:4]), abs=3e-4)


def test_head_page_two_classes_then_no_boxes() -> None:
    at = open_page(HEAD_PAGE)
    boxes = [dict(b) for b in at.session_state["boxes"]]
    boxes[3]["label"] = "horse"
    at.session_state["boxes"] = boxes
    at.run()
    assert not at.exception and not at.error
    assert any("**C = 2** object classes (zebra, horse)" in m.value for m in at.markdown)
    table = next(d.value for d in at.dataframe if "true class" in d.value.columns)
    assert {"P(0: background)", "P(1: zebra)", "P(2: horse)"} <= set(table.columns)
    assert set(table["true class"]) <= {"background", "zebra", "horse"}
    assert losses(at)["roi_cls"] == pytest.approx(math.log(3), abs=0.05)

    at.session_state["boxes"] = []
    at.run()
    assert not at.exception and not at.error
    assert any("No ground-truth boxes" in i.value for i in at.info)
    assert losses(at)["roi_loc"] == 0.0 and losses(at)["rpn_loc"] == 0.0


# --- figures and tables ---------------------------------------------------------------------


def _manual_roi_pool(features: torch.Tensor, roi: list[float], params: RoIPoolParams):
    q = quantise_roi(roi, params, tuple(features.shape[-2:]), 16)
    out = torch.zeros(features.shape[1], params.output_size, params.output_size)
    for i, (ya, yb) in enumerate(q.y_bins):
        for j, (xa, xb) in enumerate(q.x_bins):
            if yb > ya and xb > xa:
                out[:, i, j] = features[0, :, ya:yb, xa:xb].amax(dim=(1, 2))
    return out


def test_quantised_bins_are_the_ones_roi_pool_uses() -> None:
    """The grid drawn over the crop is torchvision's: a max over each drawn bin gives its output
    (rounding x1 / 16 half away from zero, the end cell included)."""
    gen = torch.Generator().manual_seed(0)
    features = torch.randn(1, 3, 50, 50, generator=gen)
    params = RoIPoolParams()
    rois = [[8.0, 8.0, 24.0, 24.0], [0.0, 0.0, 799.0, 799.0], [160.0, 160.0, 320.0, 320.0]]
    for _ in range(200):
        x1, y1 = (torch.rand(2, generator=gen) * 760).tolist()
        w, h = (torch.rand(2, generator=gen) * 400 + 1).tolist()
        rois.append([x1, y1, min(x1 + w, 800.0), min(y1 + h, 800.0)])
    for roi in rois:
        expected = roi_pool(features, [torch.tensor([roi])], (7, 7), 1 / 16)[0]
        torch.testing.assert_close(_manual_roi_pool(features, roi, params), expected)
    # SPEC's example: x from 160 to 320 covers cells 10 to 20 (11 cells, the end included).
    q = quantise_roi([160.0, 160.0, 320.0, 320.0], params, (50, 50), 16)
    assert (q.x_start, q.x_end) == (10, 20)
    assert q.x_bins[0] == (10, 12) and q.x_bins[-1] == (19, 21)


def test_crop_window_holds_both_regions() -> None:
    params = RoIPoolParams()
    roi = [250.0, 373.0, 500.0, 622.0]
    x0, x1, y0, y1 = crop_window(roi, params, (50, 50), 16)
    q = quantise_roi(roi, params, (50, 50), 16)
    assert x0 <= q.x_start and q.x_end < x1 and y0 <= q.y_start and q.y_end < y1
    assert x0 <= roi[0] / 16 - 0.5 and roi[2] / 16 - 0.5 <= x1
    plane = np.arange(2500, dtype=np.float32).reshape(50, 50)
    fig = crop_figure(plane, roi, "pool", params, 16)
    heat = fig.data[0]
    # [y, x] slicing (the tutorial's B9 swapped them): row r of the crop is feature row y0 + r.
    assert heat.z[0][0] == plane[y0, x0] and heat.z[1][0] == plane[y0 + 1, x0]
    assert list(heat.x) == list(range(x0, x1)) and list(heat.y) == list(range(y0, y1))
    align = crop_figure(plane, roi, "align", params, 16)
    samples = next(t for t in align.data if getattr(t, "mode", None) == "markers")
    assert len(samples.x) == (7 * params.sampling_ratio) ** 2


def test_pool_both_and_rois_figure() -> None:
    gen = torch.Generator().manual_seed(1)
    features = torch.rand(1, 8, 50, 50, generator=gen)
    roi = torch.tensor([100.0, 120.0, 300.0, 260.0])
    both = pool_both(features, roi, RoIPoolParams(), 16)
    assert set(both) == {"pool", "align"}
    assert both["pool"].shape == both["align"].shape == (8, 7, 7)
    assert (both["pool"] >= both["align"] - 1e-6).mean() > 0.9  # a max vs an average

    xy = torch.rand(300, 2, generator=gen) * 600
    rois = torch.cat((xy, xy + 40 + torch.rand(300, 2, generator=gen) * 150), dim=1)
    gt = torch.tensor([[100.0, 100.0, 260.0, 260.0], [400.0, 300.0, 600.0, 500.0]])
    targets = proposal_targets(rois, gt, torch.tensor([1, 2]), ProposalTargetParams())
    names = ("cat", "dog")
    text = roi_descriptions(targets, names)
    n_pos = targets.pos_index.numel()
    assert len(text) == targets.rois.shape[0]
    assert all("positive" in t for t in text[:n_pos]) and "negative" in text[-1]
    pixels = np.zeros((800, 800, 3), dtype=np.uint8)
    fig = rois_figure(pixels, targets, gt, names, names, selected=0)
    markers = next(t for t in fig.data if getattr(t, "mode", None) == "markers")
    assert list(markers.customdata) == list(range(len(text)))
    # Labels are the user's: plotly must not read tags in them.
    odd = ("<b>cat</b>", "dog")
    fig = rois_figure(pixels, targets, gt, odd, odd, selected=0)
    markers = next(t for t in fig.data if getattr(t, "mode", None) == "markers")
    assert any("&lt;b&gt;cat&lt;/b&gt;" in t for t in markers.text[:n_pos])
    assert not any("<b>" in t for t in markers.text)
    labels = next(t for t in fig.data if getattr(t, "mode", None) == "text")
    assert list(labels.text) == ["&lt;b&gt;cat&lt;/b&gt;", "dog"]
    # Box outlines are SVG lines (one trace each), not WebGL: see ``_outlines``.
    assert all(t.type == "scatter" for t in fig.data if getattr(t, "mode", None) == "lines")


def test_head_tables_and_figure() -> None:
    head = FastRCNNHead(num_classes=2, in_features=25088, hidden=64, seed=0)
    arch = architecture_table(head, (16, 512, 7, 7))
    assert list(arch["weights"]) == [0, 25088 * 64 + 64, 64 * 64 + 64, 64 * 3 + 3, 64 * 12 + 12]
    assert list(arch["layer"])[1:3] == ["fc6 + ReLU", "fc7 + ReLU"]
    assert arch["output shape"][0] == "[16, 512, 7, 7] → [16, 25088]"
    # The table follows the settings: B11 drops the ReLUs, a pooled size of 5 narrows the input.
    small = FastRCNNHead(num_classes=2, in_features=512 * 5 * 5, hidden=64, seed=0)
    arch = architecture_table(small, (16, 512, 5, 5), relu=False)
    assert list(arch["layer"])[1:3] == ["fc6 (no ReLU: B11)", "fc7 (no ReLU: B11)"]
    assert arch["output shape"][0] == "[16, 512, 5, 5] → [16, 12800]"
    assert class_names_with_background(("cat",), 3) == ("background", "cat", "class 2")
    assert class_columns(("background", "cat")) == ["P(0: background)", "P(1: cat)"]

    gen = torch.Generator().manual_seed(2)
    rois = torch.tensor([[10.0, 10.0, 100.0, 100.0], [200.0, 200.0, 300.0, 300.0]] * 4)
    rois = rois + torch.rand(8, 4, generator=gen) * 10
    gt = torch.tensor([[12.0, 12.0, 98.0, 104.0]])
    targets = proposal_targets(rois, gt, torch.tensor([2]), ProposalTargetParams())
    scores = torch.randn(8, 3, generator=gen)
    deltas = torch.randn(8, 3, 4, generator=gen)
    out = HeadOutput(scores, deltas)
    table = roi_table(targets, out, ("cat", "dog"))
    labels = targets.labels
    assert list(table["true class"]) == ["dog" if v == 2 else "background" for v in labels]
    positive = (labels > 0).numpy()
    assert table.loc[positive, "target dx"].notna().all()
    assert table.loc[~positive, "target dx"].isna().all()
    np.testing.assert_allclose(table["dw"], deltas[torch.arange(8), labels, 2].numpy(), rtol=1e-6)

    # The formula's pieces give the loss: lambda * sum / N_pos.
    loss = head_loss(out, labels, targets.targets, HeadLossParams(loss_lambda=10.0))
    n_pos = int(positive.sum())
    assert float(loss.loc) == pytest.approx(10.0 * float(loss.loc_sum) / n_pos, rel=1e-5)

    values = {"rpn_cls": 0.7, "rpn_loc": 1.0, "roi_cls": 0.69, "roi_loc": 0.5, "total": 2.89}
    fig = losses_figure(values)
    assert list(fig.data[0].x) == list(values) and list(fig.data[0].y) == list(values.values())


def test_clicked_rois_reads_the_selection_event() -> None:
    assert clicked_rois(None) == []
    assert clicked_rois({"selection": {"points": []}}) == []
    event = {
        "selection": {
            "points": [
                {"curve_number": 0, "point_index": 3},  # an outline: no customdata
                {"curve_number": 4, "point_index": 7, "customdata": 7},
                {"curve_number": 4, "point_index": 9, "customdata": [9]},
            ]
        }
    }
    assert clicked_rois(event) == [7, 9]


def test_quantised_roi_is_clamped_to_the_map() -> None:
    """A RoI to the image's bottom edge rounds to row 50 of a 50-row map; RoI Pool's bins stop
    at row 49, so the RoI covers rows 3..49 (47 rows), not 3..50 (48)."""
    params = RoIPoolParams()
    roi = [0.0, 48.0, 800.0, 800.0]  # 48 / 16 = 3, 800 / 16 = 50
    q = quantise_roi(roi, params, (50, 50), 16)
    assert (q.x_start, q.x_end, q.y_start, q.y_end) == (0, 49, 3, 49)
    assert q.rounded == (0, 3, 50, 50) and q.clamped
    assert max(b for _, b in q.y_bins) == 50  # one past the last cell, 49
    # The cells pooled are exactly those: the rows 3..49 give roi_pool's output.
    features = torch.arange(50.0).reshape(1, 1, 50, 1).expand(1, 1, 50, 50).contiguous()
    pooled = roi_pool(features, [torch.tensor([roi])], (7, 7), 1 / 16)[0, 0]
    assert float(pooled.max()) == 49.0 and float(pooled.min()) > 3.0
    torch.testing.assert_close(_manual_roi_pool(features, roi, params), pooled[None])
    inside = quantise_roi([160.0, 160.0, 320.0, 320.0], params, (50, 50), 16)
    assert not inside.clamped
