"""Text from users and files shown as literal text on every page: labels, class names from a
weights file, upload names. Markdown images and links, KaTeX, colour directives, HTML,
right-to-left overrides and 10 000 characters must all arrive as inert, bounded, visible text:
in messages (escaped markdown), in figures (escaped HTML) and in tables (one bounded line).

The browser side (nothing fetched, the literal text on screen) is tests/e2e/test_hostile.py.
"""

from __future__ import annotations

import json
import os
import re

os.environ.setdefault("FRCNN_OFFLINE", "1")

import pytest
from streamlit.testing.v1 import AppTest

from explorer.models import SESSION_MODEL
from explorer.text import shown
from frcnn_core.ground_truth import MAX_LABEL_CHARS
from frcnn_core.pipeline import DetectorHeads
from frcnn_core.train import heads_to_bytes

APP = "../app.py"
HOSTILE = {
    "image link": "![x](http://127.0.0.1:9/p.png)",
    "katex and colour": ":red[alarm] $x^2$ $$\\frac{1}{2}$$",
    "html": "<b>bold</b><script>alert(1)</script><img src=x>",
    "right to left": "cat\u202egnp.exe",
    "long": "overlong-" * 1200,  # 10 800 characters
}
PAGES = ["image", "labelling", "rpn", "proposals", "roi", "head", "detect", "bugs", "train"]
# Markdown that would act if it reached the renderer unescaped.
ACTIVE = re.compile(r"(?<!\\)(!\[|\]\(http|:red\[|\$x|<script|<b>|<img)")
TOO_LONG = "overlong-" * 5  # more than a label may hold
TEXT_KINDS = ("markdown", "caption", "info", "warning", "error", "success")


def texts(at: AppTest) -> list[str]:
    return [el.value for kind in TEXT_KINDS for el in getattr(at, kind)]


def unescaped(at: AppTest) -> str:
    return "\n".join(re.sub(r"\\(.)", r"\1", t) for t in texts(at))


def assert_inert(at: AppTest, where: str) -> None:
    assert not at.exception, f"{where}: {at.exception}"
    for text in texts(at):
        assert not ACTIVE.search(text), f"{where}: {text[:200]}"
        assert "\u202e" not in text, f"{where}: a direction override reached the page"
        assert len(text) < 3000, f"{where}: {len(text)} characters"
    for formula in at.latex:  # the page's own formulas: never a user's text
        assert "alarm" not in formula.value and "overlong" not in formula.value, where
    for chart in at.get("plotly_chart"):
        spec = chart.proto.spec
        assert "<script" not in spec and "<b>bold" not in spec, where
        assert TOO_LONG not in spec, where
    for frame in at.dataframe:
        cells = json.dumps(frame.value.astype(str).values.tolist())
        assert TOO_LONG not in cells, where
        assert "\u202e" not in cells, where


def set_boxes(at: AppTest, boxes: list[dict]) -> None:
    """What the Image page does when boxes are imported (``state.set_boxes``): the boxes, and a
    new version so the page's table takes them instead of keeping its own rows."""
    at.session_state["boxes"] = boxes
    at.session_state["boxes_version"] = at.session_state["boxes_version"] + 1


@pytest.fixture(scope="module")
def at() -> AppTest:
    app = AppTest.from_file(APP, default_timeout=300)
    app.run()
    return app


@pytest.mark.parametrize("case", list(HOSTILE))
def test_hostile_labels_are_inert_on_every_page(at: AppTest, case: str) -> None:
    label = HOSTILE[case]
    set_boxes(
        at,
        [
            {"box": [223, 782, 623, 1074], "label": label},
            {"box": [597, 695, 1038, 1050], "label": "zebra"},
        ],
    )
    for page in PAGES:
        at.switch_page(f"app_pages/{page}.py").run()
        assert_inert(at, f"{case} on {page}")
    # The label is shown, not dropped: cleaned to one visible bounded line.
    cleaned = shown(label, MAX_LABEL_CHARS)
    at.switch_page("app_pages/image.py").run()
    table = at.dataframe[-1].value  # the boxes as the network sees them
    assert cleaned in table["label"].tolist(), table["label"].tolist()
    if case == "long":
        assert cleaned.endswith("…") and len(cleaned) == MAX_LABEL_CHARS
    if case == "right to left":
        assert cleaned == "cat<U+202E>gnp.exe"


def test_class_names_from_a_weights_file_are_inert(at: AppTest) -> None:
    heads = DetectorHeads(2, 9, 512, 7, seed=0, hidden=16)
    names = (HOSTILE["image link"], HOSTILE["long"])
    data = heads_to_bytes(heads, names)
    at.switch_page("app_pages/train.py").run()
    at.file_uploader(key="train:upload").set_value(
        (HOSTILE["html"] + ".pt", data, "application/octet-stream")
    )
    at.run()
    assert_inert(at, "train page after the upload")
    model = at.session_state[SESSION_MODEL]
    assert model.class_names == tuple(shown(n, MAX_LABEL_CHARS) for n in names)
    said = unescaped(at)
    assert shown(HOSTILE["image link"], MAX_LABEL_CHARS) in said  # shown as literal text
    set_boxes(at, [{"box": [223, 782, 623, 1074], "label": model.class_names[0]}])
    for page in ("head", "detect"):
        at.switch_page(f"app_pages/{page}.py").run()
        assert_inert(at, f"{page} with the file's classes")
    del at.session_state[SESSION_MODEL]


def test_an_upload_name_is_inert_in_the_sidebar_and_messages(at: AppTest) -> None:
    at.switch_page("app_pages/image.py").run()
    name = HOSTILE["katex and colour"] + HOSTILE["long"] + ".png"
    at.file_uploader(key="image_page:upload").set_value((name, b"not an image", "image/png"))
    at.run()
    assert_inert(at, "a bad upload's message")
    assert any("cannot" in w or "not an image" in w for w in unescaped(at).splitlines())
