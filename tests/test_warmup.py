"""The server's warm-up: the samples' feature maps (and, with their own boxes, RPN and
proposals) computed once in the background, under the very keys a page then asks for."""

from __future__ import annotations

import logging
from pathlib import Path

from streamlit.testing.v1 import AppTest

from explorer import caches, samples, warmup

APP = str(Path(__file__).resolve().parents[1] / "app.py")


def test_the_warm_up_fills_the_cache_a_page_then_hits(monkeypatch) -> None:
    logging.getLogger("streamlit.runtime.scriptrunner_utils.script_run_context").setLevel(
        logging.ERROR
    )
    caches.STAGES.clear()
    names = ("zebras", "coins")  # of the six, to keep the test short
    assert set(names) <= set(samples.samples())
    warmup._warm(names)  # what the background thread runs (on every sample)
    n = len(names)
    for stage in ("backbone", "rpn", "proposals", "test_proposals"):
        assert caches.STAGES.misses[stage] == n, stage

    # A student on a sample with its own boxes: the proposals page computes none of them again.
    at = AppTest.from_file(APP, default_timeout=300)
    at.run()
    for page in ("backbone", "proposals"):
        at.switch_page(f"app_pages/{page}.py").run()
        assert not at.exception, at.exception
    for stage in ("backbone", "rpn", "proposals"):
        assert caches.STAGES.misses[stage] == n, stage  # nothing computed again
    assert caches.STAGES.hits["backbone"] >= 1 and caches.STAGES.hits["proposals"] >= 1


def test_off_by_the_environment_and_started_once(monkeypatch) -> None:
    monkeypatch.setenv(warmup.WARMUP_ENV, "0")
    assert not warmup.enabled()
    monkeypatch.setenv(warmup.WARMUP_ENV, "1")
    assert warmup.enabled()
