"""A widget's default is the value the session holds.

The browser mounts a widget from the value the server pushed in that run, else from the
element's default, and sends that back in the next rerun as if the user had chosen it. On a
busy server a fresh session's first run can be replaced by the next before the browser keeps
the pushed values; with the slider's minimum as its default, the Image page's input frame then
came back as 160 x 160 with "truncate" off (about one browser test in four). These tests read
the elements the server sends on a later run, when nothing is pushed.
"""

from __future__ import annotations

from typing import Any

import pytest
from streamlit.testing.v1 import AppTest

APP = "../app.py"
PAGES = ["image", "anchors", "labelling", "proposals", "roi", "head", "detect"]


def _defaults_shown(at: AppTest) -> list[tuple[str, Any, Any]]:
    """(key, value, default) of every pipeline setting's widget on the page."""
    seen = []
    for slider in at.slider:
        if slider.key and slider.key.startswith("w:"):
            default = list(slider.proto.default)
            value = slider.value if isinstance(slider.value, tuple) else [slider.value]
            seen.append((slider.key, [float(v) for v in value], default))
    for toggle in at.toggle:
        if toggle.key and toggle.key.startswith("w:"):
            seen.append((toggle.key, toggle.value, toggle.proto.default))
    for radio in at.radio:
        if radio.key and radio.key.startswith("w:"):
            seen.append((radio.key, radio.index, radio.proto.default))
    for select in at.multiselect:
        if select.key and select.key.startswith("w:"):
            chosen = [select.options.index(v) for v in select.proto.raw_values] or list(
                select.indices
            )
            seen.append((select.key, sorted(chosen), sorted(select.proto.default)))
    return seen


@pytest.fixture(scope="module")
def at() -> AppTest:
    app = AppTest.from_file(APP, default_timeout=300)
    app.run()
    assert not app.exception, app.exception
    return app


def test_every_setting_widget_defaults_to_the_sessions_value(at: AppTest) -> None:
    checked = 0
    for page in PAGES:
        at.switch_page(f"app_pages/{page}.py").run()
        at.run()  # a later run: the values are no longer pushed, only the defaults are sent
        assert not at.exception, (page, at.exception)
        for key, value, default in _defaults_shown(at):
            assert default == value, f"/{page}: {key} defaults to {default}, holds {value}"
            checked += 1
    assert checked >= 20, checked  # the lesson pages' sidebars, not an empty walk


def test_a_changed_setting_becomes_its_widgets_default(at: AppTest) -> None:
    at.switch_page("app_pages/image.py").run()
    at.slider(key="w:resize.width").set_value(640).run()
    at.toggle(key="w:resize.truncate_boxes").set_value(False).run()
    at.run()
    width = at.slider(key="w:resize.width")
    assert (width.value, list(width.proto.default)) == (640, [640.0])
    assert list(at.slider(key="w:resize.height").proto.default) == [800.0]
    truncate = at.toggle(key="w:resize.truncate_boxes")
    assert (truncate.value, truncate.proto.default) == (False, False)
    # The minimum (160), which the browser showed and sent back before, is no default here.
    assert 160.0 not in list(width.proto.default)
