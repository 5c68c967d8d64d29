"""AppTest checks of the Backbone and Anchors pages on the zebras sample (random weights)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

os.environ.setdefault("FRCNN_OFFLINE", "1")

from streamlit.testing.v1 import AppTest

from explorer.views.anchors import cell_anchors, cell_indices, inside_by_shape
from explorer.views.backbone import layer_table
from frcnn_core.anchors import AnchorParams, generate_anchors
from frcnn_core.backbone import load_backbone

APP = str(Path(__file__).resolve().parents[1] / "app.py")


def metrics(at: AppTest) -> dict[str, str]:
    return {m.label: m.value for m in at.metric}


def number(text: str) -> int:
    return int(text.replace(",", ""))


def markdown_with(at: AppTest, needle: str) -> str:
    found = [m.value for m in at.markdown if needle in m.value]
    assert found, f"no markdown containing {needle!r}"
    return found[0]


@pytest.fixture
def app() -> AppTest:
    at = AppTest.from_file(APP, default_timeout=180)
    at.run()
    return at


def open_page(at: AppTest, page: str) -> AppTest:
    at.switch_page(page)
    at.run()
    assert not at.exception, at.exception
    assert not at.error, [e.value for e in at.error]
    return at


def test_backbone_page_shapes_and_layer_table(app: AppTest):
    at = open_page(app, "app_pages/backbone.py")
    shown = metrics(at)
    assert shown["Input"] == "800 × 800 × 3"
    assert shown["Feature map"] == "512 × 50 × 50"
    assert shown["Stride"] == "16"
    assert shown["Parameters"] == "14.7 M"  # 14,714,688 weights in features[:30]
    table = at.dataframe[0].value
    assert len(table) == 30  # conv1_1 .. relu5_3: 13 convs, 13 ReLUs, 4 pools
    assert table["layer"].iloc[0] == "conv1_1" and table["layer"].iloc[-1] == "relu5_3"
    assert table["output shape (C × H × W)"].iloc[-1] == "512 × 50 × 50"
    assert table["output shape (C × H × W)"].iloc[4] == "64 × 400 × 400"  # after pool1
    assert table["parameters"].sum() == 14_714_688
    assert any("computed once per image" in c.value for c in at.caption)
    # Random weights in the tests: the page says so and says how to get real ones.
    assert any("Random weights" in w.value for w in at.warning)
    assert any("FRCNN_VGG16_WEIGHTS" in c.value for c in at.code)
    assert any(s.value == "Feature channels (16 of 512)" for s in at.subheader)

    at.slider(key="backbone_n_channels").set_value(8)
    at.run()
    assert any(s.value == "Feature channels (8 of 512)" for s in at.subheader)

    at.radio(key="backbone_channel_mode").set_value("chosen")
    at.run()
    at.multiselect(key="backbone_channels").set_value([3, 5])
    at.run()
    assert not at.exception
    assert any(s.value == "Feature channels (2 of 512)" for s in at.subheader)


def test_backbone_normalisation_toggle_b13(app: AppTest):
    at = open_page(app, "app_pages/backbone.py")
    max_on = metrics(at)["Max activation"]
    assert not any("B13" in i.value for i in at.info)
    at.toggle(key="w:backbone.normalize").set_value(False)
    at.run()
    assert not at.exception
    assert at.session_state["params"].backbone.normalize is False
    assert any("Bug B13 reproduced" in i.value for i in at.info)
    assert metrics(at)["Feature map"] == "512 × 50 × 50"
    # Other input, other features: recomputed, not the normalised map from the cache.
    assert metrics(at)["Max activation"] != max_on


def test_anchors_page_counts_on_zebras(app: AppTest):
    at = open_page(app, "app_pages/anchors.py")
    shown = metrics(at)
    assert shown["Feature map"] == "50 × 50"
    assert shown["Anchors per cell (A)"] == "9"
    assert number(shown["Anchors"]) == 22500
    assert number(shown["Inside"]) == 8940
    assert number(shown["Outside"]) == 22500 - 8940
    shapes = at.dataframe[1].value
    assert len(shapes) == 9 and shapes["inside at cells"].sum() == 8940


def test_anchors_page_scales_change_the_count(app: AppTest):
    at = open_page(app, "app_pages/anchors.py")
    at.multiselect(key="w:anchors.scales").set_value([8.0, 16.0])
    at.run()
    assert not at.exception
    assert at.session_state["params"].anchors.scales == (8.0, 16.0)
    shown = metrics(at)
    assert shown["Anchors per cell (A)"] == "6"
    assert number(shown["Anchors"]) == 15000  # 50 x 50 x (3 ratios x 2 scales)
    # The scale-8 and scale-16 shapes of the 9-anchor table remain (ratio 0.5, 1, 2):
    # 1672 + 1064 + 1764 + 1156 + 1672 + 1064 = 8392.
    assert number(shown["Inside"]) == 8392
    assert any("RPN head" in i.value for i in at.info)  # A changed: heads of another shape

    # An empty choice is refused with a message; the parameter keeps its last valid value.
    at.multiselect(key="w:anchors.scales").set_value([])
    at.run()
    assert any("at least one value" in e.value for e in at.error)
    assert at.multiselect(key="w:anchors.scales").value == [8.0, 16.0]  # the widget too
    assert at.session_state["params"].anchors.scales == (8.0, 16.0)

    # A page downstream of the anchors still works with A = 6.
    at = open_page(at, "app_pages/labelling.py")
    assert number(metrics(at)["Inside anchors"]) == 8392

    at = open_page(at, "app_pages/anchors.py")
    at.multiselect(key="w:anchors.ratios").set_value([1.0])
    at.run()
    assert number(metrics(at)["Anchors"]) == 5000  # 2500 cells x 1 ratio x 2 scales


def test_anchors_page_picked_cell_indices(app: AppTest):
    at = open_page(app, "app_pages/anchors.py")
    assert markdown_with(at, "so its anchors are").endswith("(1275 × 9 + a).")
    at.slider(key="anchors_iy").set_value(0)
    at.slider(key="anchors_ix").set_value(0)
    at.run()
    text = markdown_with(at, "so its anchors are")
    assert "**0 … 8**" in text
    table = at.dataframe[0].value
    assert table["index"].tolist() == list(range(9))
    assert (table["inside"] == "no").all()  # every anchor of the corner cell crosses the border
    at.slider(key="anchors_iy").set_value(2)
    at.slider(key="anchors_ix").set_value(3)
    at.run()
    # (iy * Wf + ix) * A + a = (2 * 50 + 3) * 9 + a = 927 + a
    table = at.dataframe[0].value
    assert table["index"].tolist() == list(range(927, 936))
    assert "**927 … 935**" in markdown_with(at, "so its anchors are")


def test_layer_table_arithmetic_matches_a_real_forward():
    # A 100 x 148 input through random VGG16 features[:30]: 100 -> 50 -> 25 -> 12 -> 6 and
    # 148 -> 74 -> 37 -> 18 -> 9 (each pool rounds down).
    module = load_backbone("random").features
    rows = layer_table(module, (100, 148))
    x = torch.zeros(1, 3, 100, 148)
    with torch.no_grad():
        for row, layer in zip(rows, module, strict=True):
            x = layer(x)
            assert row.shape == tuple(x.shape[1:]), row.name
    assert rows[-1].shape == (512, 6, 9) and rows[-1].stride == 16
    assert rows[-1].receptive_field == 196  # conv5_3 of VGG16


def test_anchor_views_index_order_and_inside_split():
    params = AnchorParams()
    grid = generate_anchors((50, 50), (800, 800), params, 16)
    by_shape = inside_by_shape(grid, params)
    assert by_shape.shape == (9, 50, 50) and by_shape.sum() == 8940
    assert by_shape.sum(axis=0)[0, 0] == 0 and by_shape.sum(axis=0)[25, 25] == 9
    cell = cell_anchors(grid, params, 2, 3)
    assert [c.index for c in cell] == list(range(927, 936))
    # a = ratio_index * n_scales + scale_index: a = 5 is ratio 1, scale 32 (512 x 512).
    assert (cell[5].ratio, cell[5].scale) == (1.0, 32.0)
    assert round(cell[5].width) == 512 and round(cell[5].height) == 512
    # The tutorial's x-outer order (bug B1) numbers the same cell (ix * Hf + iy) * A + a.
    assert cell_indices((50, 50), 9, 2, 3, x_outer=True)[0] == (3 * 50 + 2) * 9
    b1 = AnchorParams(bug_b1_x_outer=True)
    grid_b1 = generate_anchors((50, 50), (800, 800), b1, 16)
    assert [c.box for c in cell_anchors(grid_b1, b1, 2, 3)] == [c.box for c in cell]
    assert (inside_by_shape(grid_b1, b1) == by_shape).all()
