"""The stage graph itself (``frcnn_core.graph``): a declaration that is checked, keys derived
from it, and runs that compute each stage once, on demand, with or without a shared cache."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from frcnn_core.graph import Graph, Run, Source, Stage
from frcnn_core.pipeline import PIPELINE


@dataclass(frozen=True)
class P:
    scale: float = 2.0
    offset: float = 1.0


@dataclass(frozen=True)
class Params:
    a: P = P()
    b: P = P(3.0, 0.0)


calls: list[str] = []


def stage(name: str, fn):
    def counted(*args):
        calls.append(name)
        return fn(*args)

    return counted


# x -> double (reads a) -> shifted (reads b); x -> side (reads nothing)
GRAPH = Graph(
    ["x"],
    [
        Stage("double", stage("double", lambda x, a: x * a.scale + a.offset), ("x",), ("a",)),
        Stage(
            "shifted", stage("shifted", lambda d, b: d * b.scale + b.offset), ("double",), ("b",)
        ),
        Stage("side", stage("side", lambda x: -x), ("x",)),
    ],
)


class DictCache:
    def __init__(self) -> None:
        self.items: dict = {}

    def get_or_compute(self, key, compute):
        if key not in self.items:
            self.items[key] = compute()
        return self.items[key]


def test_the_declaration_is_checked() -> None:
    with pytest.raises(ValueError, match="before it is declared"):
        Graph(["x"], [Stage("b", lambda a: a, ("a",)), Stage("a", lambda x: x, ("x",))])
    with pytest.raises(ValueError, match="twice"):
        Graph(["x"], [Stage("a", lambda x: x, ("x",)), Stage("a", lambda x: x, ("x",))])


def test_upstream_downstream_and_what_a_group_affects() -> None:
    assert GRAPH.upstream("shifted") == {"double", "x"}
    assert GRAPH.downstream("double") == {"shifted"}
    assert GRAPH.downstream("x") == {"double", "shifted", "side"}
    assert GRAPH.affected_by("a") == {"double", "shifted"}
    assert GRAPH.affected_by("b") == {"shifted"}
    assert GRAPH.groups_of("shifted") == {"a", "b"}


def test_an_eager_run_computes_on_demand_and_once() -> None:
    calls.clear()
    r = Run(GRAPH, {"x": Source.of(5.0, "five")}, Params())
    assert r["double"] == 11.0  # 5 * 2 + 1
    assert calls == ["double"]
    assert r.shifted == 33.0  # 11 * 3 + 0
    assert r["shifted"] == 33.0
    assert calls == ["double", "shifted"]  # double is not computed again
    assert r.computed == {"double": 1, "shifted": 1}
    assert not r.has("side")


def test_keys_hold_exactly_the_upstream_settings_and_sources() -> None:
    base = Run(GRAPH, {"x": Source.of(5.0, "five")}, Params())
    other_b = Run(GRAPH, {"x": Source.of(5.0, "five")}, Params(b=P(4.0, 0.0)))
    other_x = Run(GRAPH, {"x": Source.of(6.0, "six")}, Params())
    assert base.key("double") == other_b.key("double")  # b is downstream of double
    assert base.key("shifted") != other_b.key("shifted")
    assert base.key("side") == other_b.key("side")  # side reads no setting
    assert base.key("side") != other_x.key("side")  # but it reads x


def test_a_shared_cache_reuses_results_across_runs() -> None:
    calls.clear()
    cache = DictCache()
    first = Run(GRAPH, {"x": Source.of(5.0, "five")}, Params(), cache=cache)
    assert first["shifted"] == 33.0
    second = Run(GRAPH, {"x": Source.of(5.0, "five")}, Params(b=P(1.0, 1.0)), cache=cache)
    assert second["shifted"] == 12.0
    assert calls == ["double", "shifted", "shifted"]  # double came from the cache


def test_a_source_is_loaded_only_when_something_must_be_computed() -> None:
    loads: list[int] = []
    cache = DictCache()

    def load() -> float:
        loads.append(1)
        return 5.0

    Run(GRAPH, {"x": Source("five", load)}, Params(), cache=cache)["shifted"]
    Run(GRAPH, {"x": Source("five", load)}, Params(), cache=cache)["shifted"]
    assert loads == [1]  # the second run found everything in the cache


def test_given_results_stand_in_for_stages_and_forbid_a_cache() -> None:
    calls.clear()
    r = Run(GRAPH, {}, Params(), given={"double": 10.0})
    assert r["shifted"] == 30.0
    assert calls == ["shifted"]
    with pytest.raises(ValueError, match="must not share a cache"):
        Run(GRAPH, {}, Params(), cache=DictCache(), given={"double": 10.0})
    with pytest.raises(KeyError, match="no 'x' source"):
        r["side"]


def test_a_failing_stage_fails_once_per_run() -> None:
    attempts: list[int] = []

    def broken(x):
        attempts.append(1)
        raise ArithmeticError("no")

    graph = Graph(["x"], [Stage("bad", broken, ("x",)), Stage("after", lambda b: b, ("bad",))])
    r = Run(graph, {"x": Source.of(1, 1)}, Params())
    for name in ("bad", "after", "bad"):
        with pytest.raises(ArithmeticError):
            r[name]
    assert attempts == [1]


def test_the_pipeline_declares_the_papers_stages_in_order() -> None:
    names = list(PIPELINE.stages)
    paper = ["image", "backbone", "anchors", "anchor_targets", "rpn", "rpn_loss", "proposals"]
    paper += ["proposal_targets", "roi_pool", "head", "head_loss", "detections"]
    assert [n for n in names if n in paper] == paper
    assert PIPELINE.upstream("head_loss") >= {"backbone", "rpn", "proposals", "roi_pool"}
    # Stage 14 is part of the same graph: its head reads the test-time proposals.
    assert "test_proposals" in PIPELINE.upstream("detections")
    assert "proposal_targets" not in PIPELINE.upstream("detections")
    # A loss weight never re-runs a network forward.
    assert not PIPELINE.affected_by("rpn_loss") & {"rpn", "head", "test_head"}
    assert not PIPELINE.affected_by("head_loss") & {"rpn", "head", "test_head"}
    # Moving a box never re-runs the backbone.
    assert "backbone" not in PIPELINE.downstream("user_boxes")
