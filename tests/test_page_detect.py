"""The Detect page (stage 14): its sliders re-run only the cheap tail, not the head."""

from __future__ import annotations

import pytest
from streamlit.testing.v1 import AppTest

import explorer.compute as compute

APP = "../app.py"


def test_stage14_sliders_reuse_the_heads_outputs(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []
    forward = compute.head_forward

    def counted(*args, **kwargs):
        calls.append(1)
        return forward(*args, **kwargs)

    monkeypatch.setattr(compute, "head_forward", counted)
    compute.head_outputs.clear()
    at = AppTest.from_file(APP, default_timeout=300)
    at.run()
    at.switch_page("pages/11_detect.py").run()
    assert not at.exception, at.exception
    assert len(calls) == 1  # the head on the 300 test proposals, once

    def above() -> int:
        return int(
            next(m for m in at.metric if m.label == "Above threshold").value.replace(",", "")
        )

    at_default = above()  # score threshold 0.05
    for key, value in (("w:detect.score_threshold", 0.9), ("w:detect.class_nms_iou", 0.3)):
        at.slider(key=key).set_value(value).run()
        assert not at.exception, at.exception
    assert len(calls) == 1  # stage 14's own settings: no new head run
    assert above() < at_default  # ...but the tail did re-run: fewer scores pass 0.9
    # A setting upstream of the head (the test proposals) runs it again.
    at.slider(key="w:proposals.post_nms_test").set_value(200).run()
    assert not at.exception, at.exception
    assert len(calls) == 2
    assert next(m for m in at.metric if m.label == "Proposals").value == "200"
