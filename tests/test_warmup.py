"""The server's warm-up: the samples' feature maps (and, with their own boxes, RPN and
proposals) computed once in the background, under the very keys a page then asks for."""

from __future__ import annotations

import logging
from pathlib import Path

from streamlit.testing.v1 import AppTest

from explorer import caches, samples, warmup
from frcnn_core.params import parameter

APP = str(Path(__file__).resolve().parents[1] / "app.py")


def test_the_warm_up_fills_the_cache_a_page_then_hits(monkeypatch) -> None:
    logging.getLogger("streamlit.runtime.scriptrunner_utils.script_run_context").setLevel(
        logging.ERROR
    )
    caches.STAGES.clear()
    names = ("zebras", "coins")  # of the six, to keep the test short
    assert set(names) <= set(samples.samples())
    # What the background thread runs, on every sample and every value of the NMS slider.
    warmup._warm(names, sweep=[0.6, 0.7, 0.8])
    n = len(names)
    for stage in ("backbone", "rpn"):
        assert caches.STAGES.misses[stage] == n, stage
    for stage in warmup.SWEPT:  # the tutorial's 0.7, then 0.6 and 0.8
        assert caches.STAGES.misses[stage] == 3 * n, stage

    # A student on a sample with its own boxes: the proposals page computes none of them again.
    at = AppTest.from_file(APP, default_timeout=300)
    at.run()
    for page in ("backbone", "proposals"):
        at.switch_page(f"app_pages/{page}.py").run()
        assert not at.exception, at.exception
    for stage in ("backbone", "rpn"):
        assert caches.STAGES.misses[stage] == n, stage  # nothing computed again
    assert caches.STAGES.misses["proposals"] == 3 * n
    assert caches.STAGES.hits["backbone"] >= 1 and caches.STAGES.hits["proposals"] >= 1
    # The slider moved as a browser's arithmetic sends it: 0.8 with binary noise.
    hits = caches.STAGES.hits["proposals"]
    at.slider(key="w:proposals.nms_iou").set_value(0.8000000000000002).run()
    assert not at.exception, at.exception
    assert at.session_state["params"].proposals.nms_iou == 0.8
    assert caches.STAGES.misses["proposals"] == 3 * n  # the warm-up's result
    assert caches.STAGES.hits["proposals"] > hits


def test_the_sweep_covers_every_value_of_the_nms_slider() -> None:
    entry = parameter(warmup.SWEEP)
    assert entry.steps() == [round(0.05 * k, 2) for k in range(21)]
    assert entry.on_step(0.35000000000000003) == 0.35
    assert entry.on_step(0.7) == 0.7 and entry.on_step(0.349) == 0.35
    assert parameter("proposal_targets.roi_batch_size").steps()[:3] == [8, 16, 24]


def test_off_by_the_environment_and_started_once(monkeypatch) -> None:
    monkeypatch.setenv(warmup.WARMUP_ENV, "0")
    assert not warmup.enabled()
    monkeypatch.setenv(warmup.WARMUP_ENV, "1")
    assert warmup.enabled()
