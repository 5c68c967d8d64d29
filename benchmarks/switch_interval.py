"""The interpreter's switch interval under a class's load: what a page's torch work waits.

Run from the repository root::

    .venv/bin/python -m benchmarks.switch_interval [--busy 3] [--intervals 5 1 0.5]

The app serves every session's script in a thread of one process. torch releases the
interpreter lock around each operation, and a thread that gave it away gets it back only when
the thread holding it lets go, which a thread running Python does after the switch interval
(Python's default: 5 ms). So under load each small operation of one page can wait a whole
interval per busy thread.

For each interval, ``--busy`` threads run pure Python (standing in for the other students'
figure building) while the main thread runs real pieces of a page, each timed alone first
(the reference, the same run):

- ``nms blocked``: the proposal layer's blocked NMS (``frcnn_core.boxes.nms_in_order``) on
  6000 seeded boxes at IoU 0.7: hundreds of small operations;
- ``nms 1 call``: the same NMS as one ``torchvision.ops.nms`` call (the same kept boxes), what
  the app's server runs while more than one session's script runs;
- ``fc6 rows``: a head's 128 RoIs looked up in the shared fc6's row cache
  (``explorer.caches.RowCachedLinear``, every row already kept), as on the Head page.

It prints, for each interval, each time and its ratio to the time alone, and the busy
threads' Python throughput as a share of the first (longest) interval's: what the other
students lose.
The app's interval is ``FRCNN_SWITCH_INTERVAL_MS`` (default 0.5; ``explorer.runtime``). At 5 ms
the blocked NMS under load can take minutes: the default intervals are 5, 1 and 0.5 ms with
three busy threads, about three minutes in all on 2 cores.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import threading
import time
from collections.abc import Callable

import torch
from torchvision.ops import nms

from explorer.caches import RowCachedLinear
from frcnn_core.boxes import nms_in_order

BOXES = 6000
ROWS = 128
IN_FEATURES, OUT_FEATURES = 25088, 4096


def nms_works() -> dict[str, Callable[[], object]]:
    gen = torch.Generator().manual_seed(0)
    xy = torch.rand(BOXES, 2, generator=gen) * 800
    wh = torch.exp(torch.randn(BOXES, 2, generator=gen) * 0.8 + 4.5)
    boxes = torch.cat([xy, xy + wh], dim=1).clamp(0, 800)
    scores = torch.rand(BOXES, generator=gen)
    if not torch.equal(nms_in_order(boxes, scores, 0.7), nms(boxes, scores, 0.7)):
        raise SystemExit("the blocked NMS and torchvision's disagree")
    return {
        "nms blocked": lambda: nms_in_order(boxes, scores, 0.7),
        "nms 1 call": lambda: nms(boxes, scores, 0.7),
    }


def fc6_work() -> Callable[[], object]:
    gen = torch.Generator().manual_seed(1)
    layer = torch.nn.Linear(IN_FEATURES, OUT_FEATURES)
    with torch.no_grad():
        layer.weight.normal_(0.0, 0.01, generator=gen)
    cached = RowCachedLinear(layer, 256 << 20)
    rows = torch.rand(ROWS, IN_FEATURES, generator=gen)
    with torch.no_grad():
        cached(rows)  # every row kept from here on

    def run() -> object:
        with torch.no_grad():
            return cached(rows)

    return run


class Busy:
    """``n`` threads running pure Python until stopped; counts their loops."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.loops = 0
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._spin, daemon=True) for _ in range(n)]

    def _spin(self) -> None:
        while not self._stop.is_set():
            x = 0
            for i in range(2000):
                x += i * i
            self.loops += 1

    def __enter__(self) -> Busy:
        for t in self._threads:
            t.start()
        time.sleep(0.05)
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for t in self._threads:
            t.join()


def timed(work: Callable[[], object], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        work()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def throughput(n: int, seconds: float) -> float:
    """Loops per second of ``n`` busy threads with nothing else running."""
    with Busy(n) as busy:
        start = busy.loops
        time.sleep(seconds)
        return (busy.loops - start) / seconds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--busy", type=int, default=3, help="threads running Python")
    parser.add_argument(
        "--intervals", type=float, nargs="+", default=[5, 1, 0.5], help="milliseconds"
    )
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)
    original = sys.getswitchinterval()
    works = nms_works() | {"fc6 rows": fc6_work()}
    alone = {name: timed(work, args.repeat) for name, work in works.items()}
    print(
        f"{platform.machine()}, {torch.get_num_threads()} torch threads, Python "
        f"{platform.python_version()}; {args.busy} busy Python threads; alone: median of "
        f"{args.repeat}, under load: once"
    )
    print("alone: " + ", ".join(f"{name} {s * 1000:.1f} ms" for name, s in alone.items()))
    cells = [f"{name + ' s':>10} {'x alone':>8}" for name in works]
    header = f"{'interval':>9} | " + " | ".join(cells)
    print(header + " | busy Python (share of the first row)")
    print("-" * len(header) + "-" * 22)
    reference = None
    try:
        for ms in sorted(args.intervals, reverse=True):
            sys.setswitchinterval(ms / 1000)
            rate = throughput(args.busy, 1.0)
            reference = reference if reference is not None else rate
            cells = []
            for name, work in works.items():
                with Busy(args.busy):
                    s = timed(work, 1)  # once: at 5 ms the NMS alone can take a minute
                cells.append(f"{s:10.3f} {s / alone[name]:8.0f}")
            print(f"{ms:7.2f}ms | " + " | ".join(cells) + f" | {rate / reference:6.0%}")
    finally:
        sys.setswitchinterval(original)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
