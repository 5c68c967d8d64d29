"""Click to inspect in a real browser: on the Anchor labelling, Proposals & NMS, Head & losses
and Detect pages, the mouse clicks a box's centre marker where plotly drew it (its pixel
position read from the chart's own axes), and the page shows that box's details.

Run: ``.venv/bin/python -m pytest tests/e2e/test_inspect.py -m browser``. Screenshots of each
page after its click go to ``test-output/e2e/inspect-*.png``.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from tests.e2e.conftest import StreamlitPage

CHROMIUM = "/usr/bin/chromium"  # as in conftest.py
pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(
        not Path(CHROMIUM).exists(),
        reason=f"browser tests need Debian's Chromium at {CHROMIUM} (apt-get install chromium)",
    ),
]
pytest.importorskip("playwright.sync_api", reason="playwright (requirements-dev.txt) is missing")

from playwright.sync_api import expect  # noqa: E402

# Every clickable marker of a chart: its index (customdata), hover text, and where it
# is on the screen (plotly's own data-to-pixel maps: each axis's l2p plus its offset, which
# is not the plot margin when an image's equal aspect shrinks the axis's domain).
MARKERS_JS = """(root) => {
  const gd = root.querySelector('.js-plotly-plot');
  const layout = gd._fullLayout;
  const rect = gd.getBoundingClientRect();
  const out = [];
  for (const trace of gd._fullData) {
    if (!trace.customdata || trace.mode !== 'markers') continue;
    for (let k = 0; k < trace.customdata.length; k++) {
      out.push({
        index: Number(trace.customdata[k]),
        text: trace.text ? trace.text[k] : '',
        px: rect.left + layout.xaxis._offset + layout.xaxis.l2p(trace.x[k]),
        py: rect.top + layout.yaxis._offset + layout.yaxis.l2p(trace.y[k]),
      });
    }
  }
  return out;
}"""


def chart(app: StreamlitPage, key: str) -> Any:
    """The chart element of ``st.plotly_chart(key=key)`` (Streamlit's class for the key)."""
    return app.page.locator(f".st-key-{re.sub(r'[^a-zA-Z0-9_-]', '-', key)}")


def chart_markers(app: StreamlitPage, key: str) -> list[dict[str, Any]]:
    """The chart's markers once it has stopped moving (charts mount and resize after a run)."""
    element = chart(app, key)
    element.locator(".js-plotly-plot").wait_for(state="visible")
    previous = None
    for _ in range(20):
        element.scroll_into_view_if_needed()
        markers = list(element.evaluate(MARKERS_JS))
        if markers and markers == previous:
            return markers
        previous = markers
        app.page.wait_for_timeout(250)
    raise AssertionError(f"the chart {key!r} kept moving (or has no markers)")


def alone(markers: list[dict[str, Any]], wanted: list[dict[str, Any]]) -> dict[str, Any]:
    """The first of ``wanted`` with no other marker within 8 px (a click hits it alone)."""
    for m in wanted:
        if all(o is m or abs(o["px"] - m["px"]) + abs(o["py"] - m["py"]) > 8 for o in markers):
            return m
    raise AssertionError("every candidate marker is crowded by another")


def click(app: StreamlitPage, marker: dict[str, Any], *texts: str | re.Pattern[str]) -> None:
    app.act(lambda: app.page.mouse.click(marker["px"], marker["py"]), *texts)
    errors = app.errors()
    assert not errors, errors


def picker(app: StreamlitPage, label: str) -> Any:
    """The main area's selectbox whose label starts with ``label`` (its input holds the value)."""
    return app.main().get_by_role("combobox", name=re.compile("^" + re.escape(label)))


def test_labelling_click_an_anchor(app: StreamlitPage) -> None:
    app.open("labelling", "Inspect an anchor")
    markers = chart_markers(app, "labels_fig")
    negative = alone(markers, [m for m in markers if "negative" in m["text"]])
    number = re.search(r"anchor #(\d+)", negative["text"]).group(1)
    click(app, negative, re.compile(r"Negative \(label 0\): its best IoU [\d.]+ < 0\.30"))
    expect(picker(app, "Anchor (or click")).to_have_value(
        re.compile(f"^anchor #{number} · negative")
    )
    app.screenshot("inspect-labelling")


def test_proposals_click_a_suppressed_box(app: StreamlitPage) -> None:
    app.open("proposals", "Inspect a box")
    markers = chart_markers(app, "proposals_before")
    red = alone(markers, [m for m in markers if "removed: suppressed" in m["text"]])
    number = re.search(r"anchor #(\d+)", red["text"]).group(1)
    click(app, red, f"Anchor #{number}:")
    value = app.main().locator('[data-testid="stNumberInput"] input')
    expect(value).to_have_value(str(red["index"]))
    app.wait_texts((re.compile(r"Suppressed by NMS: the box of anchor #\d+ .* > 0\.7"),))
    app.screenshot("inspect-proposals")


def test_head_click_a_sampled_roi(app: StreamlitPage) -> None:
    app.open("head", "Inspect a sampled RoI")
    markers = chart_markers(app, "head:rois")
    roi = alone(markers, [m for m in markers if m["index"] > 0])
    click(app, roi, f"RoI {roi['index']}: softmax", "True class")
    expect(picker(app, "RoI (or click")).to_have_value(re.compile(f"^RoI {roi['index']} · "))
    app.screenshot("inspect-head")


def test_detect_click_a_detection(app: StreamlitPage) -> None:
    app.open("detect", "Inspect a detection")
    markers = chart_markers(app, "detections")
    detection = alone(markers, markers)
    click(app, detection, "Source RoI", "Its RoI's class probabilities")
    expect(picker(app, "Detection (or click")).to_have_value(
        re.compile(f"^#{detection['index'] + 1} · ")
    )
    app.screenshot("inspect-detect")
