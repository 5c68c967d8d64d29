"""A pipeline as a graph of named stages, declared once; every runner derives from the declaration.

A :class:`Stage` is a record: its name (the paper's), its function, the stages or sources it
reads, and the parameter groups it reads. A *source* is an input from outside the pipeline
(the user's photo, their boxes, the network weights), known to the graph by a key that
identifies it (the image's digest, the weights' identity).

From the declaration alone:

- :meth:`Graph.upstream` and :meth:`Graph.downstream` say what a stage depends on and what
  depends on it; :meth:`Graph.affected_by` which stages a parameter group invalidates;
- :meth:`Run.key` gives every stage a key made of its name, the values of the parameter groups
  it reads, and the keys of its inputs, recursively down to the sources' keys. Nothing writes a
  cache key by hand, so a key cannot forget an upstream setting, and a setting that a stage
  does not read (directly or upstream) is not in its key;
- :class:`Run` computes a stage when it is first asked for, at most once per run. Without a
  cache it is the eager runner (the command line, tests, benchmarks); with one (the app) every
  stage's result is shared by every run whose key is the same.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Hashable, Iterator, Mapping, MutableMapping, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

import torch

T = TypeVar("T")


@dataclass(frozen=True)
class Stage:
    """One step of the pipeline.

    Attributes:
        name: the paper's name (``"anchor_targets"``, ``"proposals"``), also the result's name.
        fn: computes the result from the inputs' values, then the parameter groups, positionally
            in the declared order: ``fn(*inputs, *params)``. Must not modify its inputs (results
            are shared between runs).
        inputs: names of the stages or sources it reads.
        params: names of the parameter groups it reads (fields of the params dataclass).
        title: what a learner calls it.
        heavy: a network forward: a runner may bound how many of these run at once.
    """

    name: str
    fn: Callable[..., Any]
    inputs: tuple[str, ...] = ()
    params: tuple[str, ...] = ()
    title: str = ""
    heavy: bool = False


class Graph:
    """Stages in an order where each reads only sources and earlier stages.

    Raises ``ValueError`` on construction for a duplicate name or an input that is neither a
    source nor an earlier stage: the declaration is checked, not trusted.
    """

    def __init__(self, sources: Sequence[str], stages: Sequence[Stage]) -> None:
        self.sources = tuple(sources)
        self.stages: dict[str, Stage] = {}
        for stage in stages:
            if stage.name in self.stages or stage.name in self.sources:
                raise ValueError(f"stage {stage.name!r} is declared twice")
            for name in stage.inputs:
                if name not in self.stages and name not in self.sources:
                    raise ValueError(f"stage {stage.name!r} reads {name!r} before it is declared")
            self.stages[stage.name] = stage

    def __iter__(self) -> Iterator[Stage]:
        return iter(self.stages.values())

    def __getitem__(self, name: str) -> Stage:
        return self.stages[name]

    def __contains__(self, name: object) -> bool:
        return name in self.stages

    def upstream(self, name: str) -> set[str]:
        """Every stage and source that ``name`` reads, directly or through others."""
        seen: set[str] = set()
        todo = list(self._inputs(name))
        while todo:
            current = todo.pop()
            if current not in seen:
                seen.add(current)
                todo.extend(self._inputs(current))
        return seen

    def downstream(self, name: str) -> set[str]:
        """Every stage that reads ``name`` (a stage or a source), directly or through others."""
        return {s.name for s in self if name in self.upstream(s.name)}

    def readers(self, group: str) -> set[str]:
        """The stages that read parameter group ``group`` themselves."""
        return {s.name for s in self if group in s.params}

    def affected_by(self, group: str) -> set[str]:
        """The stages whose result can change when parameter group ``group`` changes."""
        out = self.readers(group)
        for name in list(out):
            out |= self.downstream(name)
        return out

    def groups_of(self, name: str) -> set[str]:
        """Every parameter group that ``name``'s result depends on."""
        names = {name} | {n for n in self.upstream(name) if n in self.stages}
        return {g for n in names for g in self.stages[n].params}

    def _inputs(self, name: str) -> tuple[str, ...]:
        return self.stages[name].inputs if name in self.stages else ()


@dataclass(frozen=True)
class Source:
    """An input from outside the pipeline.

    Attributes:
        key: what identifies its value (equal keys mean equal values), e.g. a sha256.
        load: gives the value; called at most once per run, and only when a stage that must be
            computed reads it (a run whose stages all come from the cache never decodes the
            image).
    """

    key: Hashable
    load: Callable[[], Any]

    @classmethod
    def of(cls, value: Any, key: Hashable) -> Source:
        return cls(key, lambda: value)


class Cache(Protocol):
    """What a :class:`Run` needs of a shared cache."""

    def get_or_compute(self, key: Hashable, compute: Callable[[], T]) -> T: ...


class Run:
    """One run of the pipeline: stages computed on demand, each at most once.

    ``run["proposals"]`` (or ``run.proposals``) computes ``proposals`` and whatever it reads
    that is not computed yet. With a ``cache``, a stage whose key is in it is taken from there,
    inputs and all, without computing anything upstream.

    Args:
        graph: the declaration.
        sources: a :class:`Source` for each of the graph's sources that the run reads (the
            mapping is kept, not copied: it may build its sources when first asked).
        params: the settings; a stage reads ``getattr(params, group)`` for each of its groups.
        cache: shared results by key, or None (eager).
        given: results supplied by the caller instead of computed (e.g. a training sample's
            precomputed features as ``"backbone"``); such a run must not use a cache.
        grad: compute with autograd on (training); otherwise under ``torch.no_grad``.
        around: a context for each stage's computation (e.g. a forward slot for heavy ones).

    Attributes:
        computed: how many times each stage was computed in this run (0 or 1: a cache hit or a
            stage nobody asked for is not counted).
        timings: seconds each computed stage took, inputs excluded.
    """

    def __init__(
        self,
        graph: Graph,
        sources: MutableMapping[str, Source],
        params: Any,
        cache: Cache | None = None,
        given: Mapping[str, Any] | None = None,
        grad: bool = False,
        around: Callable[[Stage], AbstractContextManager[Any]] | None = None,
    ) -> None:
        if given and cache is not None:
            raise ValueError("a run with given results must not share a cache")
        self.graph = graph
        self.sources = sources
        self.params = params
        self.cache = cache
        self.grad = grad
        self.around = around
        self.computed: Counter[str] = Counter()
        self.timings: dict[str, float] = {}
        self._values: dict[str, Any] = dict(given or {})
        self._errors: dict[str, Exception] = {}
        self._keys: dict[str, Hashable] = {}

    # -- keys ------------------------------------------------------------------------------

    def key(self, name: str) -> Hashable:
        """The stage's (or source's) key: equal keys mean equal results."""
        if name not in self._keys:
            if name in self.graph.sources:
                self._keys[name] = ("source", name, self._source(name).key)
            else:
                stage = self.graph[name]
                self._keys[name] = (
                    name,
                    tuple(getattr(self.params, g) for g in stage.params),
                    tuple(self.key(i) for i in stage.inputs),
                )
        return self._keys[name]

    # -- values ----------------------------------------------------------------------------

    def __getitem__(self, name: str) -> Any:
        if name in self._errors:
            raise self._errors[name]
        if name not in self._values:
            try:
                if name in self.graph.sources:
                    self._values[name] = self._source(name).load()
                elif self.cache is not None:
                    self._values[name] = self.cache.get_or_compute(
                        self.key(name), lambda: self.compute(name)
                    )
                else:
                    self._values[name] = self.compute(name)
            except Exception as exc:
                # A stage that fails (e.g. a tutorial bug's variant that cannot run) fails once
                # per run: asking again, directly or through a later stage, raises the same.
                self._errors[name] = exc
                raise
        return self._values[name]

    def __getattr__(self, name: str) -> Any:
        graph = self.__dict__.get("graph")
        if graph is not None and (name in graph.stages or name in graph.sources):
            return self[name]
        raise AttributeError(name)

    def _source(self, name: str) -> Source:
        try:
            return self.sources[name]
        except KeyError:
            raise KeyError(f"this run has no {name!r} source") from None

    def has(self, name: str) -> bool:
        """True once ``name``'s value is in this run (computed, cached, loaded or given)."""
        return name in self._values

    def compute(self, name: str) -> Any:
        """Compute stage ``name`` itself (its inputs as usual, from this run or the cache)."""
        stage = self.graph[name]
        inputs = [self[i] for i in stage.inputs]
        groups = [getattr(self.params, g) for g in stage.params]
        context = self.around(stage) if self.around is not None else nullcontext()
        with context, torch.set_grad_enabled(self.grad):
            started = time.perf_counter()
            value = stage.fn(*inputs, *groups)
            self.timings[name] = time.perf_counter() - started
        self.computed[name] += 1
        return value

    def all(self, names: Sequence[str] | None = None) -> dict[str, Any]:
        """``{name: value}`` of ``names`` (default: every stage), computing what is needed."""
        return {n: self[n] for n in (names or list(self.graph.stages))}
