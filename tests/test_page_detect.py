"""The Detect page (stage 14): its sliders re-run only the cheap tail, not the head."""

from __future__ import annotations

import pytest
from streamlit.testing.v1 import AppTest

import frcnn_core.pipeline as pipeline
from explorer import caches

APP = "../app.py"


def test_stage14_sliders_reuse_the_heads_outputs(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []
    forward = pipeline.head_forward

    def counted(*args, **kwargs):
        calls.append(1)
        return forward(*args, **kwargs)

    monkeypatch.setattr(pipeline, "head_forward", counted)
    caches.STAGES.clear()
    at = AppTest.from_file(APP, default_timeout=300)
    at.run()
    at.switch_page("app_pages/detect.py").run()
    assert not at.exception, at.exception
    assert len(calls) == 1  # the head on the 300 test proposals, once

    def above() -> int:
        return int(
            next(m for m in at.metric if m.label == "Above threshold").value.replace(",", "")
        )

    at_default = above()  # score threshold 0.05
    for key, value in (
        ("w:detect.score_threshold", 0.9),
        ("w:detect.class_nms_iou", 0.3),
        ("w:match.match_iou", 0.7),
    ):
        at.slider(key=key).set_value(value).run()
        assert not at.exception, at.exception
    assert len(calls) == 1  # stage 14's own settings: no new head run
    assert above() < at_default  # ...but the tail did re-run: fewer scores pass 0.9
    # A setting upstream of the head (the test proposals) runs it again.
    at.slider(key="w:test_proposals.post_nms").set_value(200).run()
    assert not at.exception, at.exception
    assert len(calls) == 2
    assert next(m for m in at.metric if m.label == "Proposals").value == "200"
    # The training-time proposals are another stage: the RoI page does not run the test head.
    at.switch_page("app_pages/head.py").run()
    assert not at.exception, at.exception
    assert len(calls) == 3  # the head on the 128 sampled RoIs
