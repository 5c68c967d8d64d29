"""The server's shared caches: decoded images and every stage's results.

Both are process-wide (every session of the server shares them) and thread-safe (Streamlit
runs each session's script in a thread of its own), and both are bounded by bytes as well as
by entries, least recently used out first, so memory stays bounded however many students
upload photos.

Not ``st.cache_data``: that pickles each value and hands every caller its own unpickled copy
(a 5 MB feature map copied on every slider move, 120 MB for a 40-megapixel photo). Here every
session shares one read-only result, and a result that two sessions ask for at once is
computed once: the second waits for the first (a class opening the same sample costs one
backbone forward, not thirty).
"""

from __future__ import annotations

import dataclasses
import math
import threading
import time
from collections import Counter, OrderedDict
from collections.abc import Callable, Hashable
from typing import Any, TypeVar

import numpy as np
import torch

from explorer.runtime import env_int
from frcnn_core.image import LoadedImage, load_image

T = TypeVar("T")
MB = 2**20
# A result's cost is counted in steps of this (and at least one): cheap results tie, and go
# least recently used first.
MIN_COST_S = 0.01
# Decoded originals are the large entries: a 40-megapixel upload (frcnn_core.image's limit) is
# 120 MB of RGB, so a count alone allows 64 x 120 MB; the byte budget keeps them to this many MB
# (four such photos, or a dozen 12-megapixel ones, or all 64 entries of a class's small photos).
IMAGE_CACHE_ENTRIES = 64
IMAGE_CACHE_MB = 512
IMAGE_CACHE_MB_ENV = "FRCNN_IMAGE_CACHE_MB"
# One image's whole pipeline is about 60 MB (its feature map 5 MB, the pooled RoIs 13 MB at
# training time and 30 MB at test time): 1 GB keeps a class's samples and recent uploads.
STAGE_CACHE_ENTRIES = 2000
STAGE_CACHE_MB = 1024
STAGE_CACHE_MB_ENV = "FRCNN_STAGE_CACHE_MB"


class DecodedImages:
    """Decoded images by digest, bounded by count and by bytes; least recently used out first.

    Every session shares one read-only array per image.
    """

    def __init__(self, max_entries: int, max_bytes: int) -> None:
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self._items: OrderedDict[str, LoadedImage] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._items)

    @property
    def nbytes(self) -> int:
        """Bytes of pixels held."""
        return self._bytes

    def get(self, digest: str, data: bytes) -> LoadedImage:
        """The decoded image of ``data`` (whose sha256 is ``digest``); raises ``ImageError``."""
        with self._lock:
            hit = self._items.get(digest)
            if hit is not None:
                self._items.move_to_end(digest)
                return hit
        # Decoded outside the lock, so one session's large photo never stalls the others.
        loaded = load_image(data)
        loaded.pixels.setflags(write=False)  # shared by every session that shows this image
        self._keep(digest, loaded)
        return loaded

    def _keep(self, digest: str, loaded: LoadedImage) -> None:
        size = loaded.pixels.nbytes
        if size > self.max_bytes:
            return  # larger than the whole budget: used by this run, not kept
        with self._lock:
            previous = self._items.pop(digest, None)  # decoded twice at once: keep one
            if previous is not None:
                self._bytes -= previous.pixels.nbytes
            self._items[digest] = loaded
            self._bytes += size
            while len(self._items) > self.max_entries or self._bytes > self.max_bytes:
                _, dropped = self._items.popitem(last=False)
                self._bytes -= dropped.pixels.nbytes

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
            self._bytes = 0


def nbytes(value: Any) -> int:
    """Bytes of the tensors and arrays reachable from ``value`` through dataclass fields,
    tuples, lists and dicts (a storage shared by several tensors counted once)."""
    seen: set[int] = set()
    total = 0
    todo = [value]
    while todo:
        item = todo.pop()
        if isinstance(item, torch.Tensor):
            storage = item.untyped_storage()
            if storage.data_ptr() not in seen:
                seen.add(storage.data_ptr())
                total += storage.nbytes()
        elif isinstance(item, np.ndarray):
            base = item if item.base is None else item.base
            if id(base) not in seen and isinstance(base, np.ndarray):
                seen.add(id(base))
                total += base.nbytes
        elif dataclasses.is_dataclass(item) and not isinstance(item, type):
            todo.extend(getattr(item, f.name) for f in dataclasses.fields(item))
        elif isinstance(item, (tuple, list)):
            todo.extend(item)
        elif isinstance(item, dict):
            todo.extend(item.values())
    return total


class _Pending:
    """A result being computed by one thread, which others wait for."""

    def __init__(self) -> None:
        self.done = threading.Event()
        self.value: Any = None
        self.failed = False


class StageCache:
    """Results by key, shared by every session; bounded by entries and bytes.

    Eviction weighs what a result cost against the memory it takes (GreedyDual-Size, Cao and
    Irani 1997): each result has a credit ``L + seconds / megabytes``, where ``seconds`` is
    what computing it took (at least :data:`MIN_COST_S`, in steps of it, so cheap results tie)
    and ``L`` the credit of the last result evicted; a hit renews the credit; the result with
    the least credit goes first, the least recently used among equals (plain LRU when costs
    are alike). A class's many large but cheap RoI batches therefore go before the few
    backbone feature maps that every student of a sample shares and that take seconds to
    compute again (with plain LRU, 30 students evicted them and paid the forward again and
    again).

    A key computed by one thread while another asks for it is computed once: the second waits
    and takes the first's result (if the first fails, the second computes it itself and meets
    the same error, on its own page). Results must be treated as read-only.

    Attributes:
        misses: computations per stage name (a key's first item), for tests and benchmarks.
        hits: lookups served from the cache, per stage name.
    """

    def __init__(self, max_entries: int, max_bytes: int) -> None:
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self.misses: Counter[str] = Counter()
        self.hits: Counter[str] = Counter()
        # key -> (value, bytes, worth (seconds per MB), credit); least recently used first.
        self._items: OrderedDict[Hashable, tuple[Any, int, float, float]] = OrderedDict()
        self._pending: dict[Hashable, _Pending] = {}
        self._bytes = 0
        self._inflation = 0.0  # L: the credit of the last result evicted
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, key: Hashable) -> bool:
        with self._lock:
            return key in self._items

    @property
    def nbytes(self) -> int:
        return self._bytes

    def get_or_compute(self, key: Hashable, compute: Callable[[], T]) -> T:
        name = _name(key)
        while True:
            with self._lock:
                hit = self._items.get(key)
                if hit is not None:
                    value, size, worth, _credit = hit
                    self._items[key] = (value, size, worth, self._inflation + worth)
                    self._items.move_to_end(key)
                    self.hits[name] += 1
                    return value
                pending = self._pending.get(key)
                if pending is None:
                    pending = self._pending[key] = _Pending()
                    break
            pending.done.wait()
            if not pending.failed:
                with self._lock:
                    self.hits[name] += 1
                return pending.value
            # The other thread failed: compute it here (and meet its error, if it persists).
            with self._lock:
                if self._pending.get(key) is pending:
                    del self._pending[key]
        started = time.perf_counter()
        try:
            value = compute()
        except BaseException:
            with self._lock:
                self._pending.pop(key, None)
            pending.failed = True
            pending.done.set()
            raise
        seconds = time.perf_counter() - started
        size = nbytes(value)
        worth = math.ceil(seconds / MIN_COST_S) * MIN_COST_S / (max(size, 1024) / MB)
        with self._lock:
            self.misses[name] += 1
            self._pending.pop(key, None)
            if size <= self.max_bytes:
                self._items[key] = (value, size, worth, self._inflation + worth)
                self._bytes += size
                while len(self._items) > self.max_entries or self._bytes > self.max_bytes:
                    self._evict()
        pending.value = value
        pending.done.set()
        return value

    def _evict(self) -> None:
        """Drop the result with the least credit (the least recently used among equals)."""
        victim, least = None, math.inf
        for key, (_value, _size, _worth, credit) in self._items.items():
            if credit < least:
                victim, least = key, credit
        _value, size, _worth, credit = self._items.pop(victim)
        self._bytes -= size
        self._inflation = credit

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
            self._bytes = 0
            self._inflation = 0.0
            self.misses.clear()
            self.hits.clear()


def _name(key: Hashable) -> str:
    return str(key[0]) if isinstance(key, tuple) and key else str(key)


DECODED = DecodedImages(IMAGE_CACHE_ENTRIES, env_int(IMAGE_CACHE_MB_ENV, IMAGE_CACHE_MB) * MB)
STAGES = StageCache(STAGE_CACHE_ENTRIES, env_int(STAGE_CACHE_MB_ENV, STAGE_CACHE_MB) * MB)


def decode(digest: str, data: bytes) -> LoadedImage:
    """Decode image bytes once per digest (raises ``ImageError`` for a bad file). The pixels
    are read-only: every session showing this image shares them."""
    return DECODED.get(digest, data)


# -- fc6 rows ---------------------------------------------------------------------------------

# fc6 (25088 -> 4096) is 86 % of the head's arithmetic, and its rows repeat across a class: the
# same RoI on the same feature map pools to the same bytes, whoever asks. Each cached row is
# 4096 floats (16 KB); the budget holds this many MB of them.
FC6_ROWS_MB = 128
FC6_ROWS_MB_ENV = "FRCNN_FC6_CACHE_MB"


_HASHABLE = (torch.float32, torch.float64)


def row_keys(rows: torch.Tensor) -> list[tuple[str, int, float]]:
    """A key per row of a 2-D CPU tensor, by its content: (dtype, the interpreter's keyed
    64-bit hash of the row's bytes, the row's sum).

    Rows are equal exactly when their bytes are; two different rows share a key only if both
    the 64-bit hash (SipHash, keyed with a secret drawn per process) and their sums agree.
    Every row is hashed without giving the interpreter lock away: SHA-1 did (``hashlib`` lets
    go of it for every buffer over 2 kB), and under a class's load each of a RoI batch's 128
    hand-overs waited for another thread's turn to end (``benchmarks.switch_interval``)."""
    values = rows.numpy()
    flat = values.view(np.uint8).reshape(rows.shape[0], -1)
    # numpy sums each row on its own (torch may split a lone row's sum across threads, in
    # another order): the same row always gives the same sum, wherever it sits in a batch.
    sums = values.sum(axis=1, dtype=np.float64).tolist()
    tag = str(rows.dtype)
    return [(tag, hash(row.tobytes()), total) for row, total in zip(flat, sums, strict=True)]


class RowCachedLinear(torch.nn.Linear):
    """A frozen ``nn.Linear`` (the same weight and bias tensors, the same state_dict keys) that
    remembers its output row for each input row it has seen, by the row's content.

    The shared seeded fc6 is one: each student's head runs on its own RoIs (its boxes, its
    sliders), but most of those RoIs are other students' too (the same sample, the same top
    proposals), so only the rows nobody asked for yet are multiplied. Used only where no
    gradient is needed and on the CPU (a GPU multiplies faster than rows can be hashed there);
    otherwise, and after the weights changed in place, it is a plain ``nn.Linear``. A copy
    (``copy.deepcopy``, e.g. to train fc6) is a plain ``nn.Linear`` of its own.
    """

    def __init__(self, linear: torch.nn.Linear, budget_bytes: int) -> None:
        torch.nn.Module.__init__(self)
        self.in_features, self.out_features = linear.in_features, linear.out_features
        self.weight, self.bias = linear.weight, linear.bias
        self.budget = budget_bytes
        self._rows: OrderedDict[tuple[str, int, float], torch.Tensor] = OrderedDict()
        self._version: tuple[int, int] = self._weights_version()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def _weights_version(self) -> tuple[int, int]:
        bias = self.bias._version if self.bias is not None else 0
        return (self.weight._version, bias)

    def __deepcopy__(self, memo: dict[int, Any]) -> torch.nn.Linear:
        plain = torch.nn.Linear(
            self.in_features, self.out_features, self.bias is not None, device="meta"
        )
        plain.weight = torch.nn.Parameter(
            self.weight.detach().clone(), requires_grad=self.weight.requires_grad
        )
        if self.bias is not None:
            plain.bias = torch.nn.Parameter(
                self.bias.detach().clone(), requires_grad=self.bias.requires_grad
            )
        memo[id(self)] = plain
        return plain

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        needs_grad = torch.is_grad_enabled() and (x.requires_grad or self.weight.requires_grad)
        plain = x.device.type != "cpu" or x.dim() != 2 or x.dtype not in _HASHABLE
        if needs_grad or plain or self.budget <= 0:
            return super().forward(x)
        rows = x.detach().contiguous()
        keys = row_keys(rows)
        out: list[torch.Tensor | None] = [None] * len(keys)
        with self._lock:
            if self._weights_version() != self._version:  # trained in place: start again
                self._rows.clear()
                self._version = self._weights_version()
            for i, key in enumerate(keys):
                found = self._rows.get(key)
                if found is not None:
                    self._rows.move_to_end(key)
                    out[i] = found
        missing = [i for i, row in enumerate(out) if row is None]
        if missing:
            computed = super().forward(rows[missing])
            with self._lock:
                for i, row in zip(missing, computed, strict=True):
                    out[i] = row
                    self._rows[keys[i]] = row.clone()
                    self._rows.move_to_end(keys[i])
                row_bytes = computed.shape[1] * computed.element_size()
                while self._rows and len(self._rows) * row_bytes > self.budget:
                    self._rows.popitem(last=False)
        with self._lock:
            self.hits += len(keys) - len(missing)
            self.misses += len(missing)
        if not out:
            return super().forward(rows)
        return torch.stack(out)  # type: ignore[arg-type]

    def clear(self) -> None:
        with self._lock:
            self._rows.clear()
            self.hits = self.misses = 0
