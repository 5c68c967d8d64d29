"""A class at once: N simulated students on one server, over Streamlit's own websocket protocol.

Run from the repository root::

    .venv/bin/python -m benchmarks.class_load --sessions 10 30 100 --upload-share 0.3 \\
        --think 3 10 --duration 240 [--json PATH]

No browser: every student is a :class:`benchmarks.st_client.StreamlitSession` (the messages a
browser sends and receives, no rendering), so the 2 CPU cores measure the server and not the
load generator (its own CPU time is printed next to the server's).

For each N it starts a fresh ``streamlit run app.py`` on a free port on 127.0.0.1 (never another
host; ``FRCNN_OFFLINE=1``; ``--replicas K``: K of them behind nginx over Redis), opens the app
once to load the models, waits for every sample's feature map and then for the server's CPU to
settle (the server's warm-up, NMS sweep included; not measured, ``--cold`` skips both waits),
then starts the N students ``--ramp`` seconds apart at
most. Each student, thinking ``--think`` seconds (uniform)
between actions:

1. opens the app (the Image page);
2. either picks a random sample image, or (a share ``--upload-share`` of the students) uploads its
   own photo ``studNNimg.jpg`` (a random JPEG, different per student) and opens the Backbone page
   at once: *time to first feature map* is the upload's url request and PUT, its run, and the
   Backbone page's run, up to its "Forward pass" metric; then it goes back to the Image page;
3. draws two boxes labelled ``studNNlbl``: rows added to the boxes table (``st.data_editor``), the
   way the table's own editor reports them; the sidebar must then name its image and box count;
4. walks the pages in lesson order (backbone, anchors, labelling, rpn, proposals, roi, head,
   detect), moving each page's slider ``--moves`` times (``w:anchor_targets.pos_iou``,
   ``w:proposals.nms_iou``, ``w:proposal_targets.roi_batch_size``, ``w:detect.score_threshold``),
   and starts the walk again until ``--duration`` seconds have passed since the first student
   started.

Reported for each N: latency of each action (the rerun sent -> its ``script_finished``; page
opens and slider changes apart), median / p90 / p99; errors (an exception, or the page guard's
"Something went wrong" / out-of-memory message on a page; a refused request; a student's own
image or boxes missing from its sidebar); timeouts (``--action-timeout`` per action; an action cut
by ``--deadline`` counts as one); isolation violations (a message to one student holding another
student's label or image name); the server process tree's peak resident memory and CPU seconds
(from /proc, sampled every 0.5 s; CPU counted from after the warm-up); time to first feature map.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import json
import math
import os
import platform
import random
import re
import statistics
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from benchmarks.replicas import Deployment
from benchmarks.st_client import (
    ActionTimeout,
    ConnectionLost,
    LocalApp,
    RunResult,
    StreamlitClientError,
    StreamlitSession,
)

# The lesson: url paths in menu order ("" is the Image page, the default page), and the slider
# each page's student moves.
LESSON = ["backbone", "anchors", "labelling", "rpn", "proposals", "roi", "head", "detect"]
SLIDERS = {
    "labelling": "w:anchor_targets.pos_iou",
    "proposals": "w:proposals.nms_iou",
    "roi": "w:proposal_targets.roi_batch_size",
    "detect": "w:detect.score_threshold",
}
UPLOAD_WIDGET = "image_page:upload"
SAMPLE_WIDGET = "image_page:sample"
TABLE_WIDGET = "image_page:table:*"
FORWARD_METRIC = "Forward pass"
# What a page shows when it failed (explorer.widgets.page_guard).
FAILURES = ("Something went wrong", "ran out of memory")
# A student's label and image name carry its number; another number in its messages is a leak.
TOKEN = re.compile(rb"stud(\d{2,3})(lbl|img)")
CATEGORIES = ("page", "slider", "sample", "upload", "boxes")


def student_photo(seed: int, width: int, height: int) -> bytes:
    """A JPEG a phone might send: smooth colour waves plus noise, different for every seed."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width]
    phase = rng.uniform(0, 2 * np.pi, size=3)
    waves = [127 + 100 * np.sin(xx / (80 + 40 * c) + yy / 97 + phase[c]) for c in range(3)]
    pixels = np.clip(np.stack(waves, axis=2) + rng.normal(0, 12, (height, width, 3)), 0, 255)
    buf = io.BytesIO()
    Image.fromarray(pixels.astype(np.uint8)).save(buf, format="JPEG", quality=90)
    return buf.getvalue()


# -- the server's process tree ----------------------------------------------------------------


def _tree(root: int | list[int]) -> list[int]:
    """``root`` (a process id or several) and its descendants (from /proc/*/stat)."""
    parents: dict[int, int] = {}
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            with contextlib.suppress(OSError, ValueError, IndexError):
                stat = Path(entry.path, "stat").read_text()
                parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    roots = [root] if isinstance(root, int) else list(root)
    tree, frontier = list(roots), list(roots)
    while frontier:
        children = [pid for pid, parent in parents.items() if parent in frontier]
        tree += children
        frontier = children
    return tree


def machine_cpu_ticks() -> list[int]:
    """The machine's CPU ticks by kind, from the first line of /proc/stat."""
    try:
        return [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    except (OSError, ValueError):
        return []


def steal_share(before: list[int], after: list[int]) -> float:
    """Of the time the machine's CPUs were busy or wanted to be, the share a virtual machine's
    host gave to others (steal): latencies measured at 20 % are not this machine's own."""
    if len(before) < 8 or len(after) < 8:
        return math.nan
    d = [b - a for a, b in zip(before, after, strict=False)]
    busy = d[0] + d[1] + d[2] + d[5] + d[6] + d[7]  # user nice system irq softirq steal
    return d[7] / busy if busy else math.nan


def tree_usage(root: int | list[int]) -> tuple[int, float]:
    """Resident bytes and CPU seconds (user + system, reaped children included) of ``root``'s
    process tree (of every replica's, for a list)."""
    ticks = os.sysconf("SC_CLK_TCK")
    page = os.sysconf("SC_PAGE_SIZE")
    rss, cpu = 0, 0.0
    for pid in _tree(root):
        with contextlib.suppress(OSError, ValueError, IndexError):
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            # fields[11..14]: utime, stime, cutime, cstime (stat fields 14-17)
            cpu += sum(int(v) for v in fields[11:15]) / ticks
            rss += int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * page
    return rss, cpu


class Sampler:
    """Samples the server tree's memory and CPU every ``period`` seconds in a thread."""

    def __init__(self, pid: int | list[int], period: float = 0.5) -> None:
        self.pid = pid
        self.period = period
        self.samples: list[tuple[float, int, float]] = []  # (monotonic, rss bytes, cpu s)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            rss, cpu = tree_usage(self.pid)
            self.samples.append((time.monotonic(), rss, cpu))
            self._stop.wait(self.period)

    def start(self) -> Sampler:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def peak_rss(self, since: float = 0.0) -> int:
        return max((rss for t, rss, _ in self.samples if t >= since), default=0)


# -- one student ------------------------------------------------------------------------------


class StopLesson(Exception):
    """The class's time is over: no new action."""


@dataclass
class Action:
    category: str  # one of CATEGORIES
    page: str
    latency_s: float | None  # None: failed or timed out
    outcome: str  # "ok", "error", "timeout"
    ended: float = field(default_factory=time.monotonic)


@dataclass
class Student:
    """One simulated student and what happened to it."""

    index: int
    uploads: bool
    rng: random.Random
    actions: list[Action] = field(default_factory=list)
    errors: int = 0
    messages: list[str] = field(default_factory=list)  # what went wrong, the first 20
    timeouts: int = 0
    violations: list[str] = field(default_factory=list)
    first_features_s: float | None = None
    in_flight: str | None = None

    @property
    def tag(self) -> str:
        return f"stud{self.index:02d}"

    @property
    def label(self) -> str:
        return f"{self.tag}lbl"

    @property
    def image_name(self) -> str:
        return f"{self.tag}img.jpg"

    def note(self, message: str, *, error: bool = True) -> None:
        """Something went wrong (``error``: counted as an error, else only told)."""
        self.errors += error
        if len(self.messages) < 20:
            self.messages.append(f"{self.tag}: {message}")

    def scan(self, raw: bytes, _msg: Any) -> None:
        """Every message to this student: another student's label or image name is a leak."""
        for match in TOKEN.finditer(raw):
            if int(match.group(1)) != self.index and len(self.violations) < 20:
                self.violations.append(f"{self.tag} was sent {match.group(0).decode()}")


@dataclass(frozen=True)
class Plan:
    """What every student does and how long the class lasts."""

    url: str
    think: tuple[float, float]
    moves: int
    end: float  # monotonic time after which no action starts
    action_timeout: float
    photos: dict[int, bytes]  # the uploading students' photos, by student number


class Lesson:
    """Drives one :class:`Student` through the lesson (see the module docstring)."""

    def __init__(self, student: Student, plan: Plan) -> None:
        self.student = student
        self.plan = plan
        self.session = StreamlitSession(
            plan.url, timeout=plan.action_timeout, on_message=student.scan, name=student.tag
        )

    async def run(self) -> None:
        s, st = self.student, self.session
        try:
            if await self.act("page", "", lambda: st.connect()) is None:
                return  # never got in (counted)
            await self.think()
            if s.uploads:
                await self.upload_and_look()
            else:
                await self.pick_sample()
            await self.think()
            await self.draw_boxes()
            while True:
                for page in LESSON:
                    await self.think()
                    opened = await self.act("page", page, lambda p=page: st.navigate(p))
                    slider = SLIDERS.get(page) if opened is not None else None
                    for _ in range(self.plan.moves if slider else 0):
                        await self.think()
                        await self.move(slider)
        except StopLesson:
            pass
        except ConnectionLost:  # counted where it happened: this student is done
            pass
        finally:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(st.close(), 10)

    def check_time(self) -> None:
        if time.monotonic() >= self.plan.end:
            raise StopLesson

    async def think(self) -> None:
        self.check_time()
        pause = self.student.rng.uniform(*self.plan.think)
        await asyncio.sleep(max(0.0, min(pause, self.plan.end - time.monotonic())))
        self.check_time()

    async def act(
        self, category: str, page: str, step: Callable[[], Awaitable[RunResult]]
    ) -> RunResult | None:
        """One action, timed and judged; None when it failed (counted, and the lesson goes on)."""
        s = self.student
        self.check_time()
        s.in_flight = category  # stays set if the deadline cancels the action
        try:
            result = await step()
        except ActionTimeout as exc:
            s.in_flight = None
            s.timeouts += 1
            s.actions.append(Action(category, page, None, "timeout"))
            s.note(f"timeout: {exc}", error=False)
            return None
        except (StreamlitClientError, ValueError) as exc:
            s.in_flight = None
            s.actions.append(Action(category, page, None, "error"))
            s.note(f"{category} /{page}: {exc}")
            if isinstance(exc, ConnectionLost):
                raise
            return None
        s.in_flight = None
        failures = [
            e.text
            for e in self.session.find(("error", "exception"))
            if e.kind == "exception" or any(f in e.text for f in FAILURES)
        ]
        if failures or result.status == "compile_error":
            s.actions.append(Action(category, page, result.latency_s, "error"))
            s.note(f"{category} /{result.page}: {(failures or ['compile error'])[0]}")
        else:
            s.actions.append(Action(category, page, result.latency_s, "ok"))
        return result

    async def upload_and_look(self) -> None:
        s, st = self.student, self.session
        photo = self.plan.photos[s.index]
        up = await self.act("upload", "", lambda: st.upload(UPLOAD_WIDGET, s.image_name, photo))
        if up is None:
            return
        # Straight to the Backbone page: the student's own image's first forward pass.
        seen = await self.act("page", "backbone", lambda: st.navigate("backbone"))
        if seen is not None and st.metric(FORWARD_METRIC) is not None:
            s.first_features_s = up.before_s + up.latency_s + seen.latency_s
        elif seen is not None:
            s.note(f"the Backbone page shows no {FORWARD_METRIC!r} metric")
        await self.think()
        await self.act("page", "", lambda: st.navigate(""))

    async def pick_sample(self) -> None:
        st = self.session
        try:
            titles = st.widget(SAMPLE_WIDGET).options
        except StreamlitClientError as exc:
            self.student.note(str(exc))
            return
        title = self.student.rng.choice(titles)
        await self.act("sample", "", lambda: st.set_value(SAMPLE_WIDGET, title))

    async def draw_boxes(self) -> None:
        s, st = self.student, self.session
        size = st.metric("Original (W x H)") or "100 x 100"
        width, height = (float(v) for v in size.split(" x "))
        before = _box_count(st)
        rows = []
        for _ in range(2):
            w, h = width * s.rng.uniform(0.1, 0.4), height * s.rng.uniform(0.1, 0.4)
            x1, y1 = s.rng.uniform(0, width - w), s.rng.uniform(0, height - h)
            rows.append(
                {"label": s.label, "x1": round(x1, 1), "y1": round(y1, 1)}
                | {"x2": round(x1 + w, 1), "y2": round(y1 + h, 1)}
            )
        done = await self.act("boxes", "", lambda: st.edit_table(TABLE_WIDGET, added_rows=rows))
        if done is None:
            return
        caption = " ".join(st.texts("caption", container="sidebar"))
        count = f"{before + 2} boxes"
        if count not in caption or (s.uploads and s.tag + "img" not in caption):
            s.note(f"own image or boxes missing from the sidebar: {caption[:120]}")

    async def move(self, key: str) -> None:
        st = self.session
        try:
            widget = st.widget(key)
        except StreamlitClientError as exc:
            self.student.note(str(exc))
            return
        low, high, step = widget.bounds
        steps = max(1, round((high - low) / step))
        current = widget.value
        for _ in range(10):
            value = low + self.student.rng.randint(0, steps) * step
            value = round(value) if isinstance(current, int) else round(value, 6)
            if value != current:
                break
        await self.act("slider", st.page, lambda: st.set_value(key, value))


def _box_count(st: StreamlitSession) -> int:
    """How many boxes the sidebar counts ("Image: **x** · 4 boxes"); 0 when it says none."""
    for text in st.texts("caption", container="sidebar"):
        found = re.search(r"· (\d+) box", text)
        if found:
            return int(found.group(1))
    return 0


# -- one class --------------------------------------------------------------------------------


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100); NaN for no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]


def latency_summary(values: list[float]) -> dict[str, float]:
    return {
        "count": len(values),
        "median": statistics.median(values) if values else math.nan,
        "p90": percentile(values, 90),
        "p99": percentile(values, 99),
        "max": max(values) if values else math.nan,
    }


async def run_class(n: int, args: argparse.Namespace, url: str) -> dict[str, Any]:
    """``n`` students against the app at ``url``; the figures of :func:`main`'s table."""
    rng = random.Random(args.seed * 1000 + n)
    uploaders = set(rng.sample(range(1, n + 1), round(n * args.upload_share)))
    # Made before the class starts: encoding a photo would stall every session's messages.
    photos = {i: student_photo(1000 + i, *args.photo_size) for i in uploaders}
    load_at_start = os.getloadavg()[0]
    cpu_at_start = machine_cpu_ticks()
    started = time.monotonic()
    plan = Plan(
        url=url,
        think=(args.think[0], args.think[1]),
        moves=args.moves,
        end=started + args.duration,
        action_timeout=args.action_timeout,
        photos=photos,
    )
    students = [
        Student(i, i in uploaders, random.Random(rng.getrandbits(32))) for i in range(1, n + 1)
    ]

    async def join(student: Student, delay: float) -> None:
        await asyncio.sleep(delay)
        await Lesson(student, plan).run()

    tasks = [
        asyncio.create_task(join(s, rng.uniform(0, min(args.ramp, args.duration))))
        for s in students
    ]
    deadline = started + args.deadline
    _, late = await asyncio.wait(tasks, timeout=max(0.0, deadline - time.monotonic()))
    for task in late:
        task.cancel()
    await asyncio.gather(*late, return_exceptions=True)
    for s in students:
        if s.in_flight is not None:  # cut by the deadline: counted as a timeout
            s.timeouts += 1
            s.actions.append(Action(s.in_flight, "", None, "timeout"))
    wall = time.monotonic() - started
    by_category = {
        c: [a.latency_s for s in students for a in s.actions if a.category == c and a.latency_s]
        for c in CATEGORIES
    }
    return {
        "sessions": n,
        "uploaders": len(uploaders),
        "load_average_1min_at_start": load_at_start,
        "load_average_1min_at_end": os.getloadavg()[0],
        "steal_share": steal_share(cpu_at_start, machine_cpu_ticks()),
        "wall_s": wall,
        "actions": sum(len(s.actions) for s in students),
        "latency": {c: latency_summary(v) for c, v in by_category.items()},
        "page_open_by_page": {
            page or "image": latency_summary(
                [
                    a.latency_s
                    for s in students
                    for a in s.actions
                    if a.category == "page" and a.page == page and a.latency_s
                ]
            )
            for page in ["", *LESSON]
        },
        "slider_by_page": {
            page: latency_summary(
                [
                    a.latency_s
                    for s in students
                    for a in s.actions
                    if a.category == "slider" and a.page == page and a.latency_s
                ]
            )
            for page in SLIDERS
        },
        # Every timed action: (seconds since the first student started, category, page, s).
        "timeline": sorted(
            (round(a.ended - a.latency_s - started, 2), a.category, a.page, round(a.latency_s, 3))
            for s in students
            for a in s.actions
            if a.latency_s
        ),
        "errors": sum(s.errors for s in students),
        "timeouts": sum(s.timeouts for s in students),
        "isolation_violations": sum(len(s.violations) for s in students),
        "first_features_s": [s.first_features_s for s in students if s.first_features_s],
        "error_examples": [m for s in students for m in s.messages][:20],
        "violation_examples": [v for s in students for v in s.violations][:20],
    }


async def warm_up(url: str, timeout: float, samples: bool = True) -> float:
    """Open the app once (loads VGG16 and the initial heads) and, with ``samples``, wait until
    every sample's feature map is computed (the server's own warm-up computes them at start:
    this opens each sample's Backbone page, which waits for it in the shared cache), as when a
    lecturer starts the server before the class; seconds it took."""
    started = time.monotonic()
    async with StreamlitSession(url, timeout=timeout, name="warm-up") as st:
        if samples:
            for title in st.widget(SAMPLE_WIDGET).options:
                await st.set_value(SAMPLE_WIDGET, title)
                await st.navigate("backbone")
                await st.navigate("")
    return time.monotonic() - started


def settle(pids: list[int], timeout: float, window: float = 2.0, busy: float = 0.2) -> float:
    """Wait until the server's processes use under ``busy`` of a core over ``window`` seconds
    (its background warm-up is done), at most ``timeout`` seconds; seconds waited."""
    started = time.monotonic()
    _, before = tree_usage(pids)
    while time.monotonic() - started < timeout:
        time.sleep(window)
        _, now = tree_usage(pids)
        if now - before < busy * window:
            break
        before = now
    return time.monotonic() - started


def measure(n: int, args: argparse.Namespace) -> dict[str, Any]:
    """A fresh server (or replicas behind nginx), a warm-up, ``n`` students; everything
    stopped in every case."""
    server: LocalApp | Deployment
    if args.replicas > 1:
        folder = Path(tempfile.mkdtemp(prefix=f"class_load_{n}_", dir=args.log_dir))
        names = tuple(f"r{i}" for i in range(1, args.replicas + 1))
        server = Deployment(folder, names, args=args.server_arg, start_s=args.action_timeout)
        server.start()
        url, pids = server.url, server.pids
    else:
        log = Path(args.log_dir) / f"class_load_{n}.log"
        server = LocalApp(log_path=log, args=args.server_arg)
        server.start(timeout=args.action_timeout)
        url, pids = server.url, [server.pid or 0]
    sampler = Sampler(pids).start()
    try:
        warm = asyncio.run(warm_up(url, args.action_timeout, not args.cold))
        if not args.cold:
            warm += settle(pids, args.action_timeout)
        rss0, cpu0 = tree_usage(pids)
        own0 = time.process_time()
        since = time.monotonic()
        result = asyncio.run(run_class(n, args, url))
        rss1, cpu1 = tree_usage(pids)
        result |= {
            "warm_up_s": warm,
            "rss_after_warm_up_mib": rss0 / 2**20,
            "peak_rss_mib": sampler.peak_rss(since) / 2**20,
            "end_rss_mib": rss1 / 2**20,
            "server_cpu_s": cpu1 - cpu0,
            "generator_cpu_s": time.process_time() - own0,
            "rss_timeline_mib": [
                (round(t - since, 1), round(rss / 2**20)) for t, rss, _ in sampler.samples[::4]
            ],
        }
        return result
    finally:
        sampler.stop()
        server.stop()


# -- the report -------------------------------------------------------------------------------


def _s(value: float) -> str:
    return "-" if value is None or math.isnan(value) else f"{value:.2f}"


def print_table(results: list[dict[str, Any]], args: argparse.Namespace) -> None:
    mix = f"{args.upload_share:.0%} own uploads" if args.upload_share else "samples only"
    servers = f"{args.replicas} replicas behind nginx" if args.replicas > 1 else "one server"
    print(
        f"\nClass load ({servers}): {mix}, think {args.think[0]:g}-{args.think[1]:g} s, "
        f"{args.duration:g} s, {os.cpu_count()} CPUs ({platform.machine()}); "
        "latency = rerun sent -> script finished, seconds"
    )
    head = (
        f"{'N':>4} {'actions':>7} | {'page open med/p90/p99':>22} | "
        f"{'slider med/p90/p99':>20} | {'err':>3} {'t/o':>3} {'iso':>3} | "
        f"{'peak RSS':>8} {'end RSS':>7} | {'srv CPU s':>9} {'/action':>7} {'cores':>5} | "
        f"{'1st features med/max':>20} | {'gen CPU':>7}"
    )
    print(head)
    print("-" * len(head))
    for r in results:
        page, slider = r["latency"]["page"], r["latency"]["slider"]
        ff = r["first_features_s"]
        first = f"{_s(statistics.median(ff))}/{_s(max(ff))}" if ff else "-"
        per_action = r["server_cpu_s"] / r["actions"] if r["actions"] else math.nan
        cores = r["server_cpu_s"] / r["wall_s"]  # well under the CPU count: the server was starved
        print(
            f"{r['sessions']:>4} {r['actions']:>7} | "
            f"{_s(page['median']):>6} {_s(page['p90']):>7} {_s(page['p99']):>7} | "
            f"{_s(slider['median']):>6} {_s(slider['p90']):>6} {_s(slider['p99']):>6} | "
            f"{r['errors']:>3} {r['timeouts']:>3} {r['isolation_violations']:>3} | "
            f"{r['peak_rss_mib']:>6.0f}Mi {r['end_rss_mib']:>5.0f}Mi | "
            f"{r['server_cpu_s']:>9.0f} {_s(per_action):>7} {cores:>5.2f} | {first:>20} | "
            f"{r['generator_cpu_s']:>6.0f}s"
        )
    print("\nOther actions (median / p90 s, count):")
    for r in results:
        parts = [
            f"{c} {_s(r['latency'][c]['median'])}/{_s(r['latency'][c]['p90'])} "
            f"({r['latency'][c]['count']})"
            for c in ("sample", "upload", "boxes")
        ]
        print(
            f"  N={r['sessions']}: " + ", ".join(parts) + f"; wall {r['wall_s']:.0f} s, "
            f"machine load average {r['load_average_1min_at_start']:.1f} at the start, "
            f"{r['load_average_1min_at_end']:.1f} at the end; CPU time taken by the "
            f"hypervisor (steal) {r.get('steal_share', math.nan):.0%} of the busy time"
        )
        pages = [
            f"{page} {_s(v['median'])}/{_s(v['max'])} ({v['count']})"
            for page, v in r["page_open_by_page"].items()
            if v["count"]
        ]
        print("    page opens, median/max s (count): " + ", ".join(pages))
        sliders = [
            f"{page} {_s(v['median'])}/{_s(v['max'])} ({v['count']})"
            for page, v in r.get("slider_by_page", {}).items()
            if v["count"]
        ]
        if sliders:
            print("    slider changes, median/max s (count): " + ", ".join(sliders))
        for example in r["error_examples"][:5] + r["violation_examples"][:5]:
            print(f"    {example}")


def _finite(value: Any) -> Any:
    """``value`` with NaN as None (valid JSON)."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.class_load", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--sessions", type=int, nargs="+", default=[10], help="N, one run each")
    parser.add_argument(
        "--upload-share", type=float, default=0.0, help="share of students uploading a photo"
    )
    parser.add_argument("--think", type=float, nargs=2, default=[3.0, 10.0], metavar=("MIN", "MAX"))
    parser.add_argument("--duration", type=float, default=240.0, help="seconds of class per N")
    parser.add_argument("--ramp", type=float, default=10.0, help="students join within this")
    parser.add_argument("--moves", type=int, default=2, help="slider moves per page visit")
    parser.add_argument("--action-timeout", type=float, default=120.0)
    parser.add_argument(
        "--deadline", type=float, default=None, help="hard stop per N (default duration + 150 s)"
    )
    parser.add_argument("--photo-size", type=int, nargs=2, default=[1600, 1200], metavar=("W", "H"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--cold",
        action="store_true",
        help="start the class as soon as the server answers (default: once every sample's "
        "feature map is computed, as for a server started before class)",
    )
    parser.add_argument(
        "--replicas",
        type=int,
        default=1,
        help="app processes behind nginx with a Redis store (benchmarks/replicas.py); 1: one "
        "server, no proxy",
    )
    parser.add_argument(
        "--server-arg",
        action="append",
        default=[],
        help="extra streamlit option, e.g. --server-arg=--server.disconnectedSessionTTL=30",
    )
    parser.add_argument("--log-dir", default="/tmp", help="where each server's log goes")
    parser.add_argument("--json", type=Path, help="write the figures here")
    args = parser.parse_args(argv)
    if args.deadline is None:
        args.deadline = args.duration + args.action_timeout + 30
    if not 0 <= args.upload_share <= 1 or args.think[0] > args.think[1] or min(args.sessions) < 1:
        parser.error("--upload-share in [0, 1], --think MIN <= MAX, --sessions >= 1")
    if args.replicas < 1:
        parser.error("--replicas >= 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    results = []
    for n in args.sessions:
        print(f"N = {n}: starting a server and {n} students …", flush=True)
        results.append(measure(n, args))
        if args.json:  # after every N, so a later failure keeps the earlier figures
            config = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}
            report = _finite({"config": config, "results": results})
            args.json.write_text(json.dumps(report, indent=1))
    print_table(results, args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
