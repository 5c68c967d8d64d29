"""Every page in Korean and in English (AppTest): in Korean, Hangul makes up most of the letters
of the page's text outside code and formulas (its titles, explanations, captions, messages,
widget labels and help, metrics, tabs, tables' headers and figures' titles, axes and legends);
in English there is no Hangul outside the language switch and the glossary's Korean column.

Run one page: ``.venv/bin/python -m pytest tests/test_i18n_pages.py -k "ko and rpn"``; a
failure lists the page's English-only lines, the ones to translate.
"""

from __future__ import annotations

import ast
import contextlib
import json
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

os.environ.setdefault("FRCNN_OFFLINE", "1")

from streamlit.testing.v1 import AppTest

from explorer.production import CHOICE
from frcnn_core.params import PipelineParams

ROOT = Path(__file__).resolve().parents[1]
APP = str(ROOT / "app.py")
MOBILE = "fasterrcnn_mobilenet_v3_large_fpn"
# Small inputs: the text is the same, the forwards are quicker.
SMALL = (
    PipelineParams()
    .replace("production_input.shorter_side", 320)
    .replace("production_input.longer_side", 533)
    .replace("test_proposals.post_nms", 50)
)
# The share of Hangul among the letters of a Korean page (the rest: IoU, RPN, VGG16, the English
# term in parentheses at its first use, names of files and classes).
KOREAN_SHARE = 0.5
HANGUL = re.compile(r"[\uac00-\ud7a3\u3131-\u318e]")
LATIN = re.compile(r"[A-Za-z]")
# Not language: code, formulas, links, HTML, numbers with units, file names.
NOT_TEXT = re.compile(
    r"```.*?```|`[^`]*`|\$\$.*?\$\$|\$[^$\n]*\$|\\\(.*?\\\)|https?://\S+|<[^>]*>|:material/\w+:|"
    r"[\w/.-]+\.(?:py|png|jpg|jpeg|json|zip|pt|pth|csv|txt)\b",
    re.S,
)
SWITCH_TEXT = ("Language · 언어", "한국어")


def app_pages() -> list[str]:
    """The page files in menu order, from app.py's ``*_TABLE`` lists."""
    tree = ast.parse((ROOT / "app.py").read_text(encoding="utf-8"))
    files = []
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id.endswith("_TABLE") for t in node.targets
        ):
            assert isinstance(node.value, ast.List)
            for row in node.value.elts:
                assert isinstance(row, ast.Tuple) and isinstance(row.elts[0], ast.Constant)
                files.append(row.elts[0].value)
    return files


PAGES = app_pages()


def _figure_text(spec: dict[str, Any]) -> Iterator[str]:
    layout = spec.get("layout") or {}

    def title(node: Any) -> Iterator[str]:
        if isinstance(node, dict):
            node = node.get("text")
        if isinstance(node, str):
            yield node

    yield from title(layout.get("title"))
    for key, axis in layout.items():
        if key.startswith(("xaxis", "yaxis")) and isinstance(axis, dict):
            yield from title(axis.get("title"))
    for a in layout.get("annotations") or []:
        if isinstance(a, dict) and isinstance(a.get("text"), str):
            yield a["text"]
    for trace in spec.get("data") or []:
        if isinstance(trace.get("name"), str) and trace.get("showlegend", True) is not False:
            yield trace["name"]


def page_text(at: AppTest) -> list[str]:
    """What a reader sees of the page and the sidebar, one string per element."""
    out: list[str] = []
    for kind in ("title", "header", "subheader", "markdown", "caption", "info", "warning",
                 "error", "success", "toast"):  # fmt: skip
        out += [str(e.value) for e in at.get(kind)]
    for kind in ("button", "slider", "select_slider", "selectbox", "radio", "checkbox", "toggle",
                 "number_input", "text_input", "text_area", "multiselect"):  # fmt: skip
        for w in at.get(kind):
            label = getattr(w, "label", "")
            if label in SWITCH_TEXT:
                continue
            out.append(str(label))
            if getattr(w, "help", None):
                out.append(str(w.help))
    for m in at.get("metric"):
        out.append(str(m.label))
    for t in at.get("tab"):
        out.append(str(t.label))
    for e in at.get("expandable"):
        out.append(str(getattr(e, "label", "")))
    for chart in at.get("plotly_chart"):
        spec = json.loads(chart.proto.spec) if getattr(chart, "proto", None) else {}
        out += list(_figure_text(spec))
    for table in at.get("arrow_data_frame"):
        with contextlib.suppress(Exception):  # a table AppTest cannot decode
            out += [str(c) for c in table.value.columns]
    return [s for s in out if s and s.strip()]


def letters(texts: list[str]) -> tuple[int, int]:
    joined = NOT_TEXT.sub(" ", "\n".join(texts))
    return len(HANGUL.findall(joined)), len(LATIN.findall(joined))


@pytest.fixture(scope="module")
def sessions() -> dict[str, AppTest]:
    out = {}
    for lang in ("ko", "en"):
        at = AppTest.from_file(APP, default_timeout=600)
        at.query_params["lang"] = lang
        at.run()
        assert not at.exception, at.exception
        at.session_state["params"] = SMALL
        at.session_state[CHOICE] = MOBILE
        out[lang] = at
    return out


def query(at: AppTest, name: str) -> str:
    """A query parameter as the app last set it (AppTest keeps a list or a string)."""
    value = at.query_params[name]
    return value[-1] if isinstance(value, list) else value


def open_page(at: AppTest, page: str) -> AppTest:
    at.switch_page(f"app_pages/{page}.py").run()
    assert not at.exception, [e.value for e in at.exception]
    return at


@pytest.mark.parametrize("page", PAGES)
def test_page_in_korean(sessions: dict[str, AppTest], page: str) -> None:
    at = open_page(sessions["ko"], page)
    texts = page_text(at)
    hangul, latin = letters(texts)
    english_only = [
        t for t in texts if not HANGUL.search(t) and LATIN.search(NOT_TEXT.sub(" ", t) or "")
    ]
    share = hangul / max(hangul + latin, 1)
    assert share >= KOREAN_SHARE, (
        f"{page}: Hangul is {share:.0%} of the letters; English-only text:\n"
        + "\n".join(english_only[:40])
    )
    assert query(at, "lang") == "ko"


@pytest.mark.parametrize("page", PAGES)
def test_page_in_english(sessions: dict[str, AppTest], page: str) -> None:
    at = open_page(sessions["en"], page)
    texts = page_text(at)
    if page == "glossary":  # its Korean column and examples are Korean on purpose
        texts = [t for t in texts if t != "Korean"]
    hangul, latin = letters(texts)
    korean = [t for t in texts if HANGUL.search(t)]
    assert latin > 0
    assert hangul <= 0.02 * latin or page == "glossary", korean[:10]
