"""The sample images' expensive stages, computed once when the server starts.

A class opens the app within a minute and most students start on a sample: without this, the
first students to reach the Backbone page each waited for the forwards of all six samples in
turn (one forward slot, seconds each), and everyone behind them waited longer still (measured
with ``benchmarks.class_load``: the Backbone page's median open was 17 s for 30 students).

One background thread per server process computes, for each sample with the tutorial's
settings, the backbone's feature map (every student of that image shares it, whatever their
boxes) and, with the sample's own boxes, the RPN and both proposal sets. It goes through the
same forward slots as everyone (first come, first served), so a student who is quicker still
gets their turn, and the results land in the shared stage cache under the keys a page asks
for. ``FRCNN_WARMUP=0`` turns it off (tests that count computations).

Then it computes both proposal sets at every value of the NMS threshold's slider
(:data:`SWEEP`), the slider a class moves most: a new value costs an NMS over 12000 boxes
(0.1-0.9 s alone), and 30 students moving it at once waited seconds for each other's
(``benchmarks.class_load``). The RPN is keyed by its weights alone, so a student who adds a
class of their own still finds these. Measured on 2 cores: the whole warm-up takes about a
minute and leaves about 330 MB in the stage cache.
"""

from __future__ import annotations

import logging
import os
import threading
import time

from explorer import caches, samples, state
from explorer.runner import PageRun
from frcnn_core.params import PipelineParams, parameter

log = logging.getLogger("frcnn_explorer")
WARMUP_ENV = "FRCNN_WARMUP"
# The stages computed per sample: the backbone first for every sample (it is the costly one and
# the one every student shares), then the sample-box stages.
FIRST = ("backbone",)
THEN = ("rpn", "proposals", "test_proposals")
# Then these stages at every value of this slider.
SWEEP = "proposals.nms_iou"
SWEPT = ("proposals", "test_proposals")

_started = False
_lock = threading.Lock()


def enabled() -> bool:
    return os.environ.get(WARMUP_ENV, "1").strip().lower() not in ("0", "false", "no", "off")


def start() -> None:
    """Start the warm-up once per process (later calls do nothing)."""
    global _started
    with _lock:
        if _started:
            return
        _started = True
        if enabled():
            threading.Thread(target=_warm, name="frcnn-warmup", daemon=True).start()


def _runs(
    names: tuple[str, ...] | None = None, params: PipelineParams | None = None
) -> list[PageRun]:
    params = params or PipelineParams()
    runs = []
    for sample in samples.samples().values():
        if names is not None and sample.name not in names:
            continue
        data = sample.path.read_bytes()
        choice = state.ImageChoice(sample.name, data, state.digest_of(data), True)
        boxes = state.key_of_boxes(sample.box_dicts())
        runs.append(PageRun(params, choice=choice, boxes=boxes, own=None))
    return runs


def _warm(names: tuple[str, ...] | None = None, sweep: list[float] | None = None) -> None:
    """Compute the samples' stages (``names``: only these samples; ``sweep``: these values of
    :data:`SWEEP`, default every value of its slider)."""
    started = time.perf_counter()
    try:
        runs = _runs(names)
        for stages in (FIRST, THEN):
            for run in runs:
                for stage in stages:
                    run[stage]
        default = PipelineParams().get(SWEEP)
        values = parameter(SWEEP).steps() if sweep is None else sweep
        for value in values:
            if value == default:
                continue
            for run in _runs(names, PipelineParams().replace(SWEEP, value)):
                for stage in SWEPT:
                    run[stage]
        log.info(
            "warm-up: %d sample(s) computed in %.1f s (%d stage results cached)",
            len(runs),
            time.perf_counter() - started,
            len(caches.STAGES),
        )
    except Exception:  # a missing sample or weights: pages compute on demand as before
        log.exception("warm-up of the sample images failed")
