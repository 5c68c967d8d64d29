"""The app's runner (``explorer.runner.PageRun``) against the stage graph's declaration and the
eager runner.

- Every setting of the registry, changed on its own, recomputes exactly the stages downstream
  of it (and of the model, when the setting changes which heads fit) and reuses every other
  stage: counted on a cache shared by the runs, as the server's is.
- The app's runner and the eager runner (the command line's) give identical results.

The runs use the zebra sample at a 352 x 352 input frame (and fewer RoIs than the tutorial),
random VGG16 weights and the shared seeded heads, outside any browser session (``PageRun``
takes its image, boxes and model as arguments).
"""

from __future__ import annotations

import os
from collections import Counter, OrderedDict
from collections.abc import Callable, Hashable
from typing import Any, TypeVar

os.environ.setdefault("FRCNN_OFFLINE", "1")

import pytest
import torch

from explorer import caches, models, state
from explorer.caches import StageCache
from explorer.runner import PageRun
from explorer.samples import samples
from frcnn_core.graph import Run
from frcnn_core.head import UnreducedLossError
from frcnn_core.image import ResizeParams
from frcnn_core.params import PARAMETERS, Parameter, PipelineParams, validate
from frcnn_core.pipeline import PIPELINE, UserBoxes, run, summary

T = TypeVar("T")
# A small frame, and fewer RoIs through the 4096-wide head, keep the 50 runs below quick.
BASE = (
    PipelineParams(resize=ResizeParams(height=352, width=352))
    .replace("proposal_targets.roi_batch_size", 32)
    .replace("test_proposals.post_nms", 60)
)


class CountingCache(StageCache):
    """A stage cache that counts every computation it asks for, failed ones included."""

    def __init__(self, items: OrderedDict | None = None) -> None:
        super().__init__(max_entries=100_000, max_bytes=2**40)
        self.attempts: Counter[str] = Counter()
        if items:
            self._items.update(items)

    def get_or_compute(self, key: Hashable, compute: Callable[[], T]) -> T:
        def counted() -> T:
            self.attempts[str(key[0])] += 1  # type: ignore[index]
            return compute()

        return super().get_or_compute(key, counted)


@pytest.fixture(scope="module")
def zebras() -> tuple[state.ImageChoice, state.BoxesKey]:
    sample = samples()["zebras"]
    data = sample.path.read_bytes()
    choice = state.ImageChoice("zebras", data, state.digest_of(data), True)
    return choice, state.key_of_boxes(sample.box_dicts())


def page_run(zebras, params: PipelineParams, cache: StageCache) -> PageRun:
    choice, boxes = zebras
    return PageRun(params, choice=choice, boxes=boxes, own=None, cache=cache)


def request_all(run: PageRun) -> dict[str, Any]:
    """Every stage's value (or the exception it raised: B4 and B12 fail by design)."""
    out: dict[str, Any] = {}
    for name in PIPELINE.stages:
        try:
            out[name] = run[name]
        except Exception as exc:
            out[name] = exc
    return out


@pytest.fixture(scope="module")
def warm(zebras) -> OrderedDict:
    """The cache's entries after one run of every stage with the base settings."""
    cache = CountingCache()
    values = request_all(page_run(zebras, BASE, cache))
    assert not [n for n, v in values.items() if isinstance(v, Exception)]
    assert set(cache.attempts) == set(PIPELINE.stages)  # each once
    assert set(cache.attempts.values()) == {1}
    return OrderedDict(cache._items)


def other_value(entry: Parameter, value: Any) -> Any:
    """A valid value different from ``value``: one step down (up at the bottom of the range),
    the other toggle or choice, one number fewer (or more), the next seed."""
    if entry.kind == "bool":
        return not value
    if entry.kind == "choice":
        return next(o for o in entry.options if o != value)
    if entry.kind == "seed":
        return value + 1
    if entry.kind == "numbers":
        if len(value) > 1:
            return value[1:]
        return tuple(sorted({*value, next(s for s in entry.suggestions if s not in value)}))
    down = value - entry.step
    out = down if down >= entry.low else value + entry.step
    return int(out) if entry.kind == "int" else round(out, 6)


# The tutorial's settings; the production detector's groups are read by its own graph
# (tests/test_production_graph.py).
TUTORIAL_PARAMETERS = [p for p in PARAMETERS if PIPELINE.affected_by(p.group)]


@pytest.mark.parametrize("entry", TUTORIAL_PARAMETERS, ids=lambda p: p.path)
def test_a_setting_recomputes_exactly_the_stages_downstream_of_it(zebras, warm, entry) -> None:
    params = validate(BASE.replace(entry.path, other_value(entry, BASE.get(entry.path))))
    base_run = page_run(zebras, BASE, CountingCache(warm))
    cache = CountingCache(warm)
    changed = page_run(zebras, params, cache)
    request_all(changed)
    # What the declaration says depends on it: the stages that read its group, and everything
    # downstream of them; plus, when the setting changes which heads fit (anchors per cell, the
    # pooled size), everything downstream of the heads.
    expected = PIPELINE.affected_by(entry.group)
    for source in PIPELINE.sources:
        if changed.key(source) != base_run.key(source):
            expected |= PIPELINE.downstream(source)
    assert set(cache.attempts) == expected, entry.path
    assert set(cache.attempts.values()) <= {1}  # and each of them once
    assert expected  # every setting is read by some stage


def test_the_heads_follow_the_settings_that_size_them(zebras) -> None:
    base = page_run(zebras, BASE, CountingCache())
    fewer = page_run(zebras, BASE.replace("anchors.scales", (16.0, 32.0)), CountingCache())
    pooled = page_run(zebras, BASE.replace("roi_pool.output_size", 5), CountingCache())
    b1 = page_run(zebras, BASE.replace("anchors.bug_b1_x_outer", True), CountingCache())
    assert base.heads.anchors_per_cell == 9 and fewer.heads.anchors_per_cell == 6
    assert pooled.heads.pooled_size == 5 and pooled.heads.head.fc6.in_features == 512 * 5 * 5
    assert fewer.key("heads") != base.key("heads") != pooled.key("heads")
    assert b1.key("heads") == base.key("heads")  # B1 changes the anchor order, not the heads


def test_a_student_who_adds_a_class_shares_the_samples_rpn_and_proposals(zebras) -> None:
    choice, boxes = zebras
    cache = CountingCache()
    sample = PageRun(BASE, choice=choice, boxes=boxes, own=None, cache=cache)
    mine = (*boxes, ((40.0, 40.0, 300.0, 260.0), "my own class"))
    student = PageRun(BASE, choice=choice, boxes=mine, own=None, cache=cache)
    assert sample.heads.head.num_classes == 1 and student.heads.head.num_classes == 2
    assert student.key("heads") != sample.key("heads")  # their heads' output layers differ
    assert student.key("rpn_net") == sample.key("rpn_net")
    # Sound only because the seeded RPNs are the same weights whatever the class count.
    mine_rpn, their_rpn = student.heads.rpn.state_dict(), sample.heads.rpn.state_dict()
    assert mine_rpn.keys() == their_rpn.keys()
    assert all(torch.equal(mine_rpn[k], their_rpn[k]) for k in mine_rpn)
    for stage in ("rpn", "proposals", "test_proposals"):
        assert student.key(stage) == sample.key(stage), stage
        sample[stage]
        student[stage]
        assert cache.attempts[stage] == 1, stage  # computed once, for both
    assert student.key("proposal_targets") != sample.key("proposal_targets")


PARAMETER_SETS = {
    "tutorial": BASE,
    "B1 + B3 + B5": BASE.replace("anchors.bug_b1_x_outer", True)
    .replace("anchor_targets.bug_b3_neg_count", True)
    .replace("anchor_targets.bug_b5_width_assign", True),
    "B6 + B7 + B8 + B11": BASE.replace("rpn.bug_b6_no_relu", True)
    .replace("proposals.bug_b7_logit_rank", True)
    .replace("proposals.bug_b8_index_order", True)
    .replace("head.bug_b11_no_relu", True),
    "B2 + B13, thresholds": BASE.replace("anchor_targets.bug_b2_negatives_last", True)
    .replace("backbone.normalize", False)
    .replace("anchor_targets.pos_iou", 0.5)
    .replace("anchor_targets.neg_iou", 0.4),
    "NMS and counts": BASE.replace("proposals.nms_iou", 0.5)
    .replace("proposals.min_size", 32.0)
    .replace("train_proposals.pre_nms", 3000)
    .replace("train_proposals.post_nms", 500)
    .replace("test_proposals.post_nms", 40)
    .replace("detect.score_threshold", 0.0),
    "RoI Align 5 x 5, two scales": BASE.replace("roi_pool.method", "align")
    .replace("roi_pool.output_size", 5)
    .replace("anchors.scales", (8.0, 16.0))
    .replace("proposal_targets.roi_batch_size", 16),
}


def eager_twin(zebras, app: PageRun) -> Run:
    """The command line's eager run on the same image, boxes, settings, weights and heads."""
    choice, boxes = zebras
    return run(
        caches.decode(choice.digest, choice.data),
        UserBoxes(tuple(b for b, _ in boxes), tuple(label for _, label in boxes)),
        models.backbone(),
        app.params,
        heads=app.heads,
        vocabulary=app.model.vocabulary,
    )


def test_b12_fails_the_same_way_in_both_runners(zebras) -> None:
    params = BASE.replace("head_loss.bug_b12_unreduced", True)
    app = page_run(zebras, params, CountingCache())
    with pytest.raises(UnreducedLossError):
        app["losses"]
    eager = eager_twin(zebras, app)
    with pytest.raises(UnreducedLossError):
        eager["losses"]


@pytest.mark.parametrize("name", PARAMETER_SETS)
def test_the_app_runner_and_the_eager_runner_agree(zebras, name: str) -> None:
    params = validate(PARAMETER_SETS[name])
    app = page_run(zebras, params, CountingCache())
    eager = eager_twin(zebras, app)
    assert summary(app, "w") == summary(eager, "w")
    for stage, fields in {
        "proposals": ("rois", "scores", "keep_index"),
        "proposal_targets": ("rois", "labels", "targets"),
        "roi_pool": ("pooled",),
        "head": ("scores", "deltas"),
        "test_proposals": ("rois",),
        "detections": ("boxes", "scores", "labels"),
        "detection_match": ("true_positive", "gt_found"),
    }.items():
        for field in fields:
            a, b = getattr(app[stage], field), getattr(eager[stage], field)
            assert torch.equal(a, b), f"{name}: {stage}.{field}"
    assert summary(app, "w")["anchor_labels"]["positive"] > 0
    if name == "NMS and counts":
        assert app["detections"].boxes.shape[0] > 0  # threshold 0: the comparison has rows
