"""Display settings reach the figures: presentation (larger text), the theme, the legend chip;
the canvas fits the room the browser reports; a sample pick whose callback never ran is applied.

The figure transforms are checked on real figures from :mod:`explorer.figures`; the settings'
way into what the browser receives through AppTest (the chart's spec as sent).
"""

from __future__ import annotations

import base64
import io
import json
import os
from pathlib import Path

import numpy as np
import plotly.graph_objects as go
import pytest
import torch

os.environ.setdefault("FRCNN_OFFLINE", "1")

from streamlit.testing.v1 import AppTest

from explorer import display
from explorer.display import DARK, LIGHT, Display, style
from explorer.figures import add_boxes, add_gt, image_figure
from explorer.views.image import (
    CANVAS_MARGIN,
    CANVAS_MIN_WIDTH,
    boxes_to_canvas,
    canvas_frame,
    canvas_to_boxes,
    merge_drawn,
)

APP = str(Path(__file__).resolve().parents[1] / "app.py")


def picture_figure() -> go.Figure:
    fig = image_figure(np.zeros((60, 80, 3), np.uint8), height=300, title="boxes")
    boxes = torch.tensor([[5.0, 5.0, 40.0, 30.0], [20.0, 10.0, 70.0, 50.0]])
    add_boxes(fig, boxes, "#22C55E", "positive")
    add_boxes(fig, boxes[:1], "#111827", "image border", dash="dot")
    add_boxes(fig, boxes[1:], "#FFFFFF", "selected", dash="dash")
    add_gt(fig, boxes, ["cat", "dog"])
    return fig


def curve_figure(colour: str = "#111827") -> go.Figure:
    fig = go.Figure(
        go.Scatter(x=[0, 1, 2], y=[3.0, 2.0, 1.5], name="total", line=dict(color=colour))
    )
    fig.update_layout(title=dict(text="loss"), xaxis_title="iteration", height=300)
    return fig


def test_a_picture_is_encoded_once_per_content_and_dimming() -> None:
    from PIL import Image

    from explorer import figures

    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (40, 60, 3), dtype=np.uint8)
    figures._uris.clear()
    plain = figures.image_source(pixels)
    assert figures.image_source(pixels.copy()) is plain  # equal content: the kept text
    dimmed = figures.image_source(pixels, dim=0.5)
    other = pixels.copy()
    other[:20] = 0
    assert len({plain, dimmed, figures.image_source(other)}) == 3
    assert len(figures._uris) == 3

    def decoded(uri: str) -> np.ndarray:
        data = base64.b64decode(uri.split(",", 1)[1])
        return np.asarray(Image.open(io.BytesIO(data)), dtype=np.float32)

    assert decoded(dimmed).mean() == pytest.approx(decoded(plain).mean() * 0.5, rel=0.05)
    assert image_figure(pixels, dim=0.5).layout.images[0].source is dimmed
    for i in range(figures.IMAGE_URIS + 5):  # bounded: the least recently used go
        figures.image_source(np.full((8, 8, 3), i, np.uint8))
    assert len(figures._uris) == figures.IMAGE_URIS


# -- style --------------------------------------------------------------------------------------


def test_presentation_scales_every_text_and_leaves_the_figure_alone() -> None:
    fig = picture_figure()
    before = fig.to_json()
    out = style(fig, Display(LIGHT, presentation=True))
    assert fig.to_json() == before  # a cached figure other sessions show is never changed
    k = display.PRESENT_SCALE
    assert out.layout.font.size == pytest.approx(12 * k)
    assert out.layout.title.font.size == pytest.approx(14 * k)  # image_figure's own 14
    assert out.layout.legend.font.size == pytest.approx(12 * k)
    assert out.layout.xaxis.tickfont.size == pytest.approx(12 * k)
    labels = next(t for t in out.data if t.mode == "text")
    assert labels.textfont.size == pytest.approx(13 * k)  # the GT labels' 13 px
    assert labels.textfont.color == "#FFD400"
    assert np.array_equal(out.data[1].x, fig.data[1].x, equal_nan=True)
    # Without presentation nothing is scaled.
    assert style(fig, Display(LIGHT, False)).layout.font.size is None


def test_an_image_legend_sits_on_a_chip_and_a_black_line_gets_a_grey_entry() -> None:
    for theme in (LIGHT, DARK):
        out = style(picture_figure(), Display(theme, False))
        assert out.layout.legend.bgcolor == display.LEGEND_CHIP["bgcolor"]
        assert out.layout.legend.font.color == display.LEGEND_CHIP["font"]["color"]
        border = [t for t in out.data if t.name == "image border"]
        entry = next(t for t in border if t.showlegend is not False)
        line = next(t for t in border if t.showlegend is False)
        assert entry.line.color == display.LEGEND_PROXY_COLOUR and entry.line.dash == "dot"
        assert line.line.color == "#111827"  # drawn as it was, on the picture's grey margin
        assert entry.legendgroup == line.legendgroup  # one click hides both
        # A white line stays white: on the chip its legend entry reads.
        assert next(t for t in out.data if t.name == "selected").line.color == "#FFFFFF"


def test_a_curve_on_the_page_follows_the_theme() -> None:
    fig = curve_figure("#111827")
    assert style(fig, Display(LIGHT, False)) is fig  # nothing to change: the same object
    assert style(fig, Display(DARK, False)).data[0].line.color == display.LIGHT_INK
    white = curve_figure("#FFFFFF")
    assert style(white, Display(LIGHT, False)).data[0].line.color == display.DARK_INK
    assert style(white, Display(DARK, False)) is white
    mid = curve_figure("#2563EB")  # a colour that reads on both is kept
    assert style(mid, Display(DARK, False)) is mid


def test_anything_but_a_figure_passes_through() -> None:
    spec = {"data": [], "layout": {}}
    assert style(spec, Display(DARK, True)) is spec


# -- through Streamlit ------------------------------------------------------------------------


def theme_page() -> None:
    import plotly.graph_objects as go
    import streamlit as st

    from explorer import display

    display.install()
    fig = go.Figure(go.Scatter(x=[0, 1], y=[1, 0], name="total", line=dict(color="#111827")))
    st.plotly_chart(fig, key="main")
    st.columns(2)[1].plotly_chart(fig, key="column")  # a container's own plotly_chart too


def chart_specs(at: AppTest) -> list[dict]:
    return [json.loads(chart.proto.spec) for chart in at.get("plotly_chart")]


def test_the_theme_the_browser_reports_reaches_every_chart() -> None:
    for theme, colour in ((DARK, display.LIGHT_INK), (LIGHT, "#111827")):
        at = AppTest.from_function(theme_page, default_timeout=60)
        at.context["theme"] = theme
        at.run()
        assert not at.exception, at.exception
        specs = chart_specs(at)
        assert len(specs) == 2
        assert [s["data"][0]["line"]["color"] for s in specs] == [colour, colour], theme


def test_the_presentation_toggle_reaches_the_image_page_charts_and_tables() -> None:
    at = AppTest.from_file(APP, default_timeout=180)
    at.run()
    assert not at.exception, at.exception
    spec = chart_specs(at)[0]  # the input frame with its boxes
    assert spec["layout"]["legend"]["bgcolor"] == display.LEGEND_CHIP["bgcolor"]
    assert "size" not in spec["layout"].get("font", {})
    assert not any("zoom: 1.3" in h.proto.body for h in at.get("html"))
    at.toggle(key=display.PRESENT).set_value(True).run()
    assert not at.exception, at.exception
    spec = chart_specs(at)[0]
    assert spec["layout"]["font"]["size"] == pytest.approx(12 * display.PRESENT_SCALE)
    assert spec["layout"]["xaxis"]["tickfont"]["size"] == pytest.approx(12 * display.PRESENT_SCALE)
    assert any("zoom: 1.3" in h.proto.body for h in at.get("html"))  # larger table text
    # The setting stays with the session on another page.
    at.switch_page("app_pages/backbone.py").run()
    assert not at.exception, at.exception
    sizes = [s["layout"].get("font", {}).get("size") for s in chart_specs(at)]
    assert sizes and all(v == pytest.approx(12 * display.PRESENT_SCALE) for v in sizes), sizes


def numbers_page() -> None:
    import streamlit as st

    from explorer import display

    display.install()
    left, right = st.columns(2)
    left.metric("Anchors", 22500)
    right.metric("Positive", 45)
    st.metric("Share", "39.7 %")
    st.dataframe(
        {"anchor": [11475, 11476], "inside": [1672, 7], "w": [181, 362]},
        column_config={"w": st.column_config.NumberColumn(format="%d px")},
    )


def test_counts_are_written_one_way_in_metrics_and_tables() -> None:
    at = AppTest.from_function(numbers_page, default_timeout=60)
    at.run()
    assert not at.exception, at.exception
    assert [m.value for m in at.metric] == ["22,500", "45", "39.7 %"]
    config = json.loads(at.dataframe[0].proto.columns)
    formats = {name: c.get("type_config", {}).get("format") for name, c in config.items()}
    assert formats["anchor"] == formats["inside"] == "localized"  # 11,475 and 1,672
    assert formats["w"] == "%d px"  # the page's own format wins


def test_metric_value_formats_whole_numbers_only() -> None:
    assert display.metric_value(7469) == "7,469"
    assert display.metric_value(np.int64(12000)) == "12,000"
    assert display.metric_value(-1500) == "-1,500"
    for kept in (True, 0.6931, "1272", "800 x 800", None):
        assert display.metric_value(kept) == kept


# -- the canvas fits its column ------------------------------------------------------------------


def test_the_canvas_takes_the_room_the_browser_reports() -> None:
    assert canvas_frame((1333, 2000)) == canvas_frame((1333, 2000), None)
    full = canvas_frame((1333, 2000))
    assert (full.width, full.height) == (760, 507)
    assert full.canvas_size == (760 + 2 * CANVAS_MARGIN, 507 + 2 * CANVAS_MARGIN)
    fitted = canvas_frame((1333, 2000), 500 + 2 * CANVAS_MARGIN)  # 150 % zoom of 1280 px
    assert (fitted.width, fitted.height) == (500, 333)
    assert fitted.canvas_size == (532, 365)
    assert fitted.fx == pytest.approx(2000 / 500) and fitted.fy == pytest.approx(1333 / 333)
    assert canvas_frame((1333, 2000), 2000).width == 760  # never larger than at 100 %
    assert canvas_frame((1333, 2000), 100).width == CANVAS_MIN_WIDTH
    tall = canvas_frame((4000, 500), 300)  # the height limit still decides for a tall image
    assert tall.height == 620 and tall.width == 78


def test_a_box_drawn_into_the_margin_ends_at_the_picture_edge() -> None:
    frame = canvas_frame((480, 640), 532)  # picture 500 x 375, 1.28 original px per canvas px
    m = frame.margin
    # Dragged from inside past the bottom-right corner, into the grey margin.
    drawn = canvas_to_boxes(
        [{"label": "car", "left": m + 100, "top": m + 50, "width": 500, "height": 400}], frame
    )
    assert drawn[0]["box"] == pytest.approx([128.0, 64.0, 768.0, 576.0])  # past the picture
    merged = merge_drawn([], drawn, frame.clip)
    assert merged[0]["box"] == [128.0, 64.0, 640.0, 480.0]  # cut at the picture's edge
    # Left through the bottom margin 3 canvas px before the right edge: it still reaches it.
    near = {"label": "car", "left": m + 100, "top": m + 50, "width": 397, "height": 400}
    snapped = merge_drawn([], canvas_to_boxes([near], frame), frame.clip)
    assert snapped[0]["box"] == [128.0, 64.0, 640.0, 480.0]
    # An edge placed 20 canvas px inside stays where it was drawn.
    inside = {"label": "car", "left": m + 20, "top": m + 20, "width": 100, "height": 100}
    kept = merge_drawn([], canvas_to_boxes([inside], frame), frame.clip)
    assert kept[0]["box"] == pytest.approx([25.6, 25.6, 153.6, 153.6])
    # A box typed past the edge and not touched on the canvas keeps its values.
    typed = {"box": [600.0, 400.0, 700.0, 500.0], "label": "bus"}
    back = canvas_to_boxes(boxes_to_canvas([typed], frame), frame)
    assert merge_drawn([typed], back, frame.clip) == [typed]


def test_without_a_browser_the_canvas_keeps_its_largest_size() -> None:
    at = AppTest.from_file(APP, default_timeout=180)
    at.run()
    shown = at.session_state["image_page:shown"]
    assert (shown["frame"].width, shown["frame"].height) == (760, 507)
    assert shown["frame"].margin == CANVAS_MARGIN
    assert ":760x507:" in shown["key"]


# -- a sample pick whose callback was stopped --------------------------------------------------


def test_a_sample_pick_whose_callback_never_ran_is_applied_by_the_page() -> None:
    at = AppTest.from_file(APP, default_timeout=180)
    at.run()
    # The selector holds a new pick, but its callback did not run (AppTest runs none for state
    # set this way; in a browser a newer rerun can stop it half-way): the page applies it.
    at.session_state["image_page:sample"] = "chelsea"
    at.run()
    assert not at.exception, at.exception
    assert at.session_state["image"].name == "chelsea"
    labels = {b["label"] for b in at.session_state["boxes"]}
    assert labels and "zebra" not in labels
    assert any("chelsea" in c.value for c in at.sidebar.caption)  # drawn again after the pick
