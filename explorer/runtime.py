"""The server's runtime settings: the device, and how many heavy forwards may run at once.

- ``FRCNN_DEVICE`` picks the device (:func:`frcnn_core.device.default_device`).
- ``FRCNN_FORWARD_SLOTS``: how many backbone, RPN or head forwards (and training steps) run at
  once in this process, whatever the number of sessions (:data:`FORWARDS`).
- ``FRCNN_SWITCH_INTERVAL_MS``: how long a thread may keep the interpreter while another waits
  for it (:func:`tune_switch_interval`).
"""

from __future__ import annotations

import collections
import contextlib
import ctypes
import os
import sys
import threading
import time
from collections.abc import Callable, Iterator

import torch

from frcnn_core import boxes
from frcnn_core.device import default_device, device_name
from frcnn_core.i18n import ngettext

CPU = torch.device("cpu")
# Raised by the CUDA (and, in recent torch, any) allocator; torch.OutOfMemoryError since 2.5.
OUT_OF_MEMORY: type[Exception] = torch.cuda.OutOfMemoryError
FORWARD_SLOTS_ENV = "FRCNN_FORWARD_SLOTS"


def env_int(name: str, default: int) -> int:
    """A positive integer setting from the environment; unset or not one: ``default``."""
    try:
        value = int(os.environ.get(name, ""))
    except ValueError:
        return default
    return value if value >= 1 else default


def device() -> torch.device:
    return default_device()


# glibc's mallopt parameters (malloc.h).
_M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD_BYTES = 1 << 20


def tune_allocator() -> bool:
    """Give freed megabytes back to the system (Linux with glibc; elsewhere nothing).

    Each session's script runs in its own thread, and glibc serves a thread from its own arena:
    a buffer of a few MB freed there (a heads file read or written, an image decoded) stays in
    the process, because glibc raises its threshold for mapping allocations of their own up to
    32 MB after the first one is freed. Fixing the threshold at 1 MB maps every larger
    allocation on its own and unmaps it when freed; measured with
    ``python -m benchmarks.bench_heads_memory`` (README). Returns whether it was set.
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        return bool(libc.mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES))
    except (OSError, AttributeError):  # not glibc (musl, say): its own policy stands
        return False


# How long one thread may hold the interpreter lock while another waits for it.
SWITCH_INTERVAL_ENV = "FRCNN_SWITCH_INTERVAL_MS"
SWITCH_INTERVAL_MS = 0.5


def tune_switch_interval() -> float:
    """Shorten the interpreter's switch interval (``sys.setswitchinterval``) from Python's 5 ms
    to ``FRCNN_SWITCH_INTERVAL_MS`` (default 0.5); returns the interval now in force, seconds.

    Every session's script runs in its own thread of this process, and torch releases the
    interpreter lock around each operation. A page computing with many small operations (the
    blocked NMS, a RoI batch's row lookups) gives the lock away at every one of them; while other
    sessions' threads run Python (building figures), it gets it back only when the holder is
    forced to let go, after the switch interval. Under a class's load each of its operations
    then waits up to 5 ms per busy thread, and a page of a few hundred of them takes seconds.
    ``python -m benchmarks.switch_interval`` measures both sides (README): with four threads
    running Python, 300 small operations took 7.1 s at 5 ms and 0.2 s at 0.5 ms, while those
    threads lost a few percent of their speed.
    """
    raw = os.environ.get(SWITCH_INTERVAL_ENV, "")
    try:
        ms = float(raw) if raw.strip() else SWITCH_INTERVAL_MS
    except ValueError:
        ms = SWITCH_INTERVAL_MS
    if not 0.01 <= ms <= 100:  # outside: not a sensible setting
        ms = SWITCH_INTERVAL_MS
    sys.setswitchinterval(ms / 1000)
    return sys.getswitchinterval()


def device_label() -> str:
    """The device in the session's language: "CPU (2 threads)", or the GPU's model."""
    where = device()
    if where.type == "cpu":
        n = torch.get_num_threads()
        return ngettext("CPU ({n} thread)", "CPU ({n} threads)", n).format(n=n)
    return device_name(where)


def replica_name() -> str | None:
    """This server's name among several replicas (``FRCNN_REPLICA``), shown in the sidebar."""
    return os.environ.get("FRCNN_REPLICA") or None


def release_accelerator_memory() -> None:
    """Return the allocator's cached blocks to the GPU (nothing to do where CUDA is unused)."""
    torch.cuda.empty_cache()


def default_forward_slots() -> int:
    """How many forwards may run at once: the cores divided by torch's intra-op threads.

    One forward already keeps ``torch.get_num_threads()`` cores busy; a second one at the same
    time only time-slices those cores (both finish later than one after the other, and the
    threads thrash each other's caches). 2 cores, 2 threads: 1 slot; 16 cores, 8 threads: 2.
    """
    return max(1, (os.cpu_count() or 1) // max(torch.get_num_threads(), 1))


# While a forward waits for a slot, how often it tells its page how many are ahead (and so
# also notices, at that write, a rerun the student asked for meanwhile and gives up its place).
WAIT_REPORT_S = 0.5


class ForwardSlots:
    """At most ``slots`` heavy torch forwards at once in this process, whatever the sessions,
    served first come, first served.

    Streamlit runs each session's script in its own thread; a session whose forward finds every
    slot taken joins a queue and waits its turn. ``hold(on_wait)`` calls ``on_wait(ahead)``
    on the waiting thread (at once, then every :data:`WAIT_REPORT_S` seconds): ``ahead`` is
    the number of forwards running or queued before this one, for a page to show "2 ahead of
    you". If ``on_wait`` raises (Streamlit stops a script that way when its student has moved
    on), the waiter leaves the queue and the exception goes on.

    Deadlock-free by construction: a slot is held only around plain torch code (never around a
    cache lookup or anything else that waits), and a thread that already holds a slot passes
    through a nested ``hold()`` without taking a second one.
    """

    def __init__(self, slots: int) -> None:
        self.slots = slots
        self._changed = threading.Condition()
        self._running = 0
        self._queue: collections.deque[object] = collections.deque()
        self._depth = threading.local()

    def held(self) -> bool:
        """True inside ``hold()`` on this thread."""
        return getattr(self._depth, "n", 0) > 0

    def load(self) -> tuple[int, int]:
        """(forwards running, forwards waiting) right now."""
        with self._changed:
            return self._running, len(self._queue)

    @contextlib.contextmanager
    def hold(self, on_wait: Callable[[int], None] | None = None) -> Iterator[None]:
        depth = getattr(self._depth, "n", 0)
        if depth == 0:
            self._acquire(on_wait)
        self._depth.n = depth + 1
        try:
            yield
        finally:
            self._depth.n = depth
            if depth == 0:
                with self._changed:
                    self._running -= 1
                    self._changed.notify_all()

    def _acquire(self, on_wait: Callable[[int], None] | None) -> None:
        ticket = object()
        with self._changed:
            if self._running < self.slots and not self._queue:
                self._running += 1
                return
            self._queue.append(ticket)
        told: tuple[int, float] | None = None  # (ahead, when) last reported
        try:
            while True:
                with self._changed:
                    place = self._queue.index(ticket)
                    if place == 0 and self._running < self.slots:
                        self._queue.popleft()
                        self._running += 1
                        # The next in line may have a free slot too (several slots).
                        self._changed.notify_all()
                        return
                    ahead = self._running + place
                now = time.monotonic()
                due = told is None or ahead != told[0] or now - told[1] >= WAIT_REPORT_S
                if on_wait is not None and due:
                    told = (ahead, now)
                    on_wait(ahead)  # outside the lock: it talks to the browser
                with self._changed:
                    if self._queue[0] is not ticket or self._running >= self.slots:
                        self._changed.wait(WAIT_REPORT_S)
        except BaseException:
            with self._changed:
                if ticket in self._queue:
                    self._queue.remove(ticket)
                self._changed.notify_all()
            raise


FORWARDS = ForwardSlots(env_int(FORWARD_SLOTS_ENV, default_forward_slots()))


class RunningScripts:
    """How many sessions' scripts are running in this process right now (``app.py`` counts
    each page run)."""

    def __init__(self) -> None:
        self._n = 0
        self._lock = threading.Lock()

    @property
    def count(self) -> int:
        return self._n

    @contextlib.contextmanager
    def running(self) -> Iterator[None]:
        with self._lock:
            self._n += 1
        try:
            yield
        finally:
            with self._lock:
                self._n -= 1


SCRIPTS = RunningScripts()


def runs_alone() -> bool:
    """True while at most one session's script runs: then nothing else wants the interpreter."""
    return SCRIPTS.count <= 1


# The blocked NMS only while a script runs alone; with a class, torchvision's NMS in one call
# (``python -m benchmarks.switch_interval``: under three threads running Python, 0.17 s of
# blocked NMS took 18 s, one call 0.25 s).
boxes.blocked_nms_allowed = runs_alone


# Once per server process, before any session allocates.
ALLOCATOR_TUNED = tune_allocator()
SWITCH_INTERVAL_S = tune_switch_interval()
