"""Click to inspect on the Anchor labelling, Proposals & NMS, Head & losses and Detect pages,
run headless with AppTest: a click is the chart's selection in session state (what the browser
sends), and each test checks what the page then shows against the page's own figures and
tables. One session serves every test (the model and the stages are computed once)."""

from __future__ import annotations

import base64
import json
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

os.environ.setdefault("FRCNN_OFFLINE", "1")

from streamlit.testing.v1 import AppTest

APP = str(Path(__file__).resolve().parents[1] / "app.py")


@pytest.fixture(scope="module")
def at() -> Iterator[AppTest]:
    app = AppTest.from_file(APP, default_timeout=300)
    app.run()  # state.init(): the zebras sample with its four boxes
    assert app.session_state["image"].name == "zebras"
    yield app


def visit(at: AppTest, page: str) -> None:
    at.switch_page(page)
    at.run()
    clean(at)


def clean(at: AppTest) -> None:
    assert not at.exception, at.exception
    assert not at.error, [e.value for e in at.error]


def click(at: AppTest, chart: str, index: int) -> None:
    """What the browser sends when a marker whose customdata is ``index`` is clicked."""
    at.session_state[chart] = {
        "selection": {"points": [{"customdata": index, "x": 0, "y": 0, "curve_number": 0}]}
    }
    at.run()
    clean(at)


def texts(at: AppTest) -> list[str]:
    return [m.value for m in at.markdown]


def said(at: AppTest, pattern: str) -> re.Match[str]:
    for text in texts(at):
        found = re.search(pattern, text)
        if found:
            return found
    raise AssertionError(f"nothing on the page matches {pattern!r}: {texts(at)}")


def figures(at: AppTest) -> list[dict[str, Any]]:
    return [json.loads(chart.proto.spec) for chart in at.get("plotly_chart")]


def figure_titled(at: AppTest, start: str) -> dict[str, Any]:
    for fig in figures(at):
        title = ((fig.get("layout") or {}).get("title") or {}).get("text") or ""
        if title.startswith(start):
            return fig
    raise AssertionError(f"no figure titled {start!r}")


def values(data: Any) -> list[Any]:
    """A figure's array as a list: plotly sends numpy arrays as base64 typed arrays."""
    if isinstance(data, dict) and "bdata" in data:
        return np.frombuffer(base64.b64decode(data["bdata"]), dtype=data["dtype"]).tolist()
    return list(data) if isinstance(data, list | tuple) else [data]


def markers(fig: dict[str, Any]) -> dict[str, list[Any]]:
    """The clickable centre-marker trace of a figure: its indices and hover texts."""
    (trace,) = [t for t in fig["data"] if t.get("customdata") is not None]
    return {"index": [int(v) for v in values(trace["customdata"])], "text": values(trace["text"])}


def trace_names(fig: dict[str, Any]) -> list[str]:
    return [t.get("name") or "" for t in fig["data"]]


def test_labelling_click_an_anchor(at: AppTest) -> None:
    visit(at, "app_pages/labelling.py")
    picker = at.selectbox(key="labelling:anchor")
    first = picker.value
    assert picker.options[0].split(" · ")[1] == "positive"  # positives first
    said(at, r"^\*\*Positive\*\* \(label 1\): it is one of the \d+ anchors that overlap box")
    said(at, r"^\*\*Sampled\*\*: one of the 45 positives")  # SPEC: 45 ties on the zebras
    assert at.latex, "a positive anchor shows its target deltas"
    # Click a negative anchor's centre marker (one that the figure draws).
    fig = figures(at)[0]
    trace = markers(fig)
    negatives = [i for i, t in zip(trace["index"], trace["text"], strict=True) if "negative" in t]
    assert len(negatives) == 256 - 45
    click(at, "labels_fig", negatives[0])
    assert at.selectbox(key="labelling:anchor").value == negatives[0]
    iou = float(
        said(at, r"^\*\*Negative\*\* \(label 0\): its best IoU ([\d.]+) < 0\.30\.").group(1)
    )
    said(at, r"^\*\*Sampled\*\*: one of the 211 negatives")
    assert any("Only positive anchors have target deltas" in c.value for c in at.caption)
    table = at.dataframe[0].value
    assert len(table) == 4 and table["IoU"].max() == pytest.approx(iou, abs=6e-4)
    # The pick is outlined on the figure.
    assert "selected anchor" in trace_names(figures(at)[0])
    # The selectbox still works after a click, and the same click is not taken again.
    at.selectbox(key="labelling:anchor").set_value(first)
    at.run()
    clean(at)
    assert at.selectbox(key="labelling:anchor").value == first
    said(at, r"^\*\*Positive\*\*")


def test_proposals_click_a_suppressed_box(at: AppTest) -> None:
    visit(at, "app_pages/proposals.py")
    assert at.radio(key="proposals:step").value == "NMS"
    assert any("Click a box's centre dot on either image" in c.value for c in at.caption)
    before = figure_titled(at, "before NMS")
    # The NMS step draws the boxes it removed in red (its caption says so).
    assert any(name.startswith("suppressed: ") for name in trace_names(before))
    trace = markers(before)
    red = [i for i, t in zip(trace["index"], trace["text"], strict=True) if "removed" in t]
    assert len(red) == 50  # the 50 best-scored of the removed boxes (50 boxes drawn per view)
    assert red, "no suppressed box drawn"
    click(at, "proposals_before", red[0])
    assert at.number_input(key="proposals:pick").value == red[0]
    said(at, rf"^\*\*Anchor #{red[0]}\*\*: cell \(iy \d+, ix \d+\), shape a = \d")
    found = said(
        at,
        r"^\*\*Suppressed by NMS\*\*: the box of anchor #([\d,]+) .* IoU \*\*([\d.]+)\*\* > 0\.7",
    )
    suppressor, iou = int(found.group(1).replace(",", "")), float(found.group(2))
    assert 0.7 < iou <= 1.0 and suppressor != red[0]
    before = figure_titled(at, "before NMS")
    assert f"suppressed it: anchor #{suppressor}" in trace_names(before)
    assert f"picked box: anchor #{red[0]}" in trace_names(before)
    # After NMS only its suppressor is left.
    after = trace_names(figure_titled(at, "after NMS"))
    assert f"suppressed it: anchor #{suppressor}" in after
    assert f"picked box: anchor #{red[0]}" not in after
    # Keyboard users type the index: the suppressor itself survived NMS.
    at.number_input(key="proposals:pick").set_value(suppressor)
    at.run()
    clean(at)
    said(at, r"^\*\*(Kept\*\*: proposal \d+ of [\d,]+|Cut after NMS\*\*)")


def test_head_click_a_sampled_roi(at: AppTest) -> None:
    visit(at, "app_pages/head.py")
    assert at.selectbox(key="head:pick").value == 0
    click(at, "head:rois", 3)
    assert at.selectbox(key="head:pick").value == 3
    said(at, r"^\*\*True class\*\*: 1 \(zebra\), a positive RoI")  # positives come first
    p_true = float(said(at, r"p\(true class\) = ([\d.]+)").group(1))
    # The bar chart shows the same probabilities as the table of sampled RoIs (row 3).
    bars = figure_titled(at, "RoI 3: softmax")["data"][0]
    rois = next(d.value for d in at.dataframe if "P(0: background)" in d.value.columns)
    row = rois[rois["RoI"] == 3].iloc[0]
    assert bars["y"] == pytest.approx([row["P(0: background)"], row["P(1: zebra)"]], abs=1e-6)
    assert bars["y"][1] == pytest.approx(p_true, abs=6e-4)
    # Its deltas for each class, then the target; the true class's row matches the table.
    deltas = next(
        d.value for d in at.dataframe if "dx" in d.value.columns and "" in d.value.columns
    )
    assert list(deltas[""]) == [
        "predicted for 0: background",
        "predicted for 1: zebra (true class: in the loss)",
        "target (to its GT box, class 1)",
    ]
    assert deltas["dx"].iloc[1] == pytest.approx(row["dx"], abs=1e-4)
    assert deltas["dx"].iloc[2] == pytest.approx(row["target dx"], abs=1e-4)
    # A background RoI (the last one) has no target row.
    last = len(rois) - 1
    click(at, "head:rois", last)
    said(at, r"^\*\*True class\*\*: 0 \(background\), a background \(negative\) RoI")
    deltas = next(
        d.value for d in at.dataframe if "dx" in d.value.columns and "" in d.value.columns
    )
    assert len(deltas) == 2


def test_detect_click_a_detection(at: AppTest) -> None:
    visit(at, "app_pages/detect.py")
    assert at.selectbox(key="detect:pick").value is None
    table = at.dataframe[0].value
    assert len(table) > 1
    click(at, "detections", 1)
    assert at.selectbox(key="detect:pick").value == 1
    roi = int(said(at, r"^\*\*Source RoI\*\*: test proposal (\d+) of 300").group(1))
    assert 0 <= roi < 300
    score = float(said(at, r"class score \*\*([\d.]+)\*\*").group(1))
    assert score == pytest.approx(table["score"].iloc[1], abs=1e-4)
    # The RoI's probability of the detected class is the detection's score.
    bars = figure_titled(at, "Its RoI's class probabilities")["data"][0]
    assert bars["y"][1] == pytest.approx(score, abs=1e-4)
    result = table["result"].iloc[1]
    verdict = said(at, r"^\*\*(True positive|False positive[^*]*)\*\*").group(1)
    assert verdict.startswith("True" if result == "TP" else "False")
    names = [name for fig in figures(at) for name in trace_names(fig)]
    assert "picked detection" in names and "its RoI" in names


def test_a_shared_link_carries_the_inspected_box_roi_and_detection() -> None:
    link = AppTest.from_file(APP, default_timeout=300)
    for key, value in {
        "sample": "zebras",
        "box": "12756",
        "head_roi": "4",
        "detection": "2",
    }.items():
        link.query_params[key] = value
    link.run()
    clean(link)
    visit(link, "app_pages/proposals.py")
    assert link.number_input(key="proposals:pick").value == 12756
    said(link, r"^\*\*Anchor #12756\*\*: cell \(iy 28, ix 17\), shape a = 3")
    said(link, r"^\*\*(Kept|Suppressed by NMS|Cut after NMS|Cut before NMS|Removed at min size)")
    # The page's "Share this view" link names the box again.
    next(b for b in link.sidebar.button if b.label == "Share this view").click().run()
    assert "box=12756" in link.sidebar.code[0].value
    visit(link, "app_pages/head.py")
    assert link.selectbox(key="head:pick").value == 4
    visit(link, "app_pages/detect.py")
    assert link.selectbox(key="detect:pick").value == 2
    said(link, r"^\*\*Source RoI\*\*")
