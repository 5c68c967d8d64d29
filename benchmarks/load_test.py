"""Many students at once: N concurrent browser sessions against one local server.

Run from the repository root (needs Debian's Chromium at /usr/bin/chromium and Playwright)::

    .venv/bin/python -m benchmarks.load_test [--sessions 10 30] [--moves 4] [--deadline 540]
        [--json PATH]

For each N it starts a fresh ``streamlit run app.py`` on a free port on 127.0.0.1 (never any
other host), loads the app once to warm it up (VGG16 and the initial heads load on the first
page), then runs N Playwright contexts in one headless Chromium, started ``--ramp`` seconds
apart. Each context is one Streamlit session and does what a student does:

1. open the app, upload its **own** random photo (``student07.jpg``, a different image per
   session) and wait for the sidebar to name it;
2. type its own label (``label07q``) and **draw a box** on the canvas with the mouse;
3. check that the Image page shows its own label and image name and nothing of another
   session's (every label and file name on the page is read: figure text, table cells, captions);
4. open **Anchor labelling** and move the "Positive IoU ≥" slider ``--moves`` times;
5. open **Proposals & NMS** (its image's first backbone forward) and move the "NMS IoU
   threshold" slider ``--moves`` times;
6. check the sidebar still names only its own image and box count.

A slider change is timed from the key press to the first moment the app is idle again and the
page shows the number for the new value ("page"), and to the last websocket message the server
sent for that rerun ("server reply"), both in the page's own clock. Every action has a timeout
(``--action-timeout``) and each N a deadline (``--deadline``); what did not finish is counted as a
timeout, not dropped. Pages showing an exception or the page guard's "Something went wrong" count
as errors.

Memory: the server's resident set (VmRSS of the streamlit process and its children, from
/proc) is sampled every 0.5 s; the table shows its peak and the kernel's high-water mark
(VmHWM). The browsers run on the same 2 cores as the server, so the page times include the
browsers' own rendering; the server's CPU seconds are printed next to the wall time.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import platform
import re
import statistics
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks.bench_latency import random_photo
from tests.e2e.conftest import (
    CHROMIUM,
    CHROMIUM_ARGS,
    INSTRUMENT_JS,
    ROOT,
    AppServer,
)

# Records when the last websocket message from the server arrived (after INSTRUMENT_JS, which
# records what the browser sends and when a run finishes).
RECEIVE_JS = """
(() => {
  if (window.__stRecv) return;
  window.__stRecv = true;
  const Patched = window.WebSocket;
  window.WebSocket = class extends Patched {
    constructor(...args) {
      super(...args);
      this.addEventListener('message', () => {
        if (window.__st) { window.__st.lastRecv = performance.now(); }
      });
    }
  };
})();
"""

# A run has finished after the last rerun request when the server reported ``script_finished``
# after it (INSTRUMENT_JS reads the websocket) or the app turned ``notRunning`` after it; as a
# last resort, when a message arrived after the request and the server has then been silent for
# a second with the app notRunning (counted as "inferred").
FINISHED_JS = """
const reported = (st) => (st.lastFinished || 0) > st.lastSend || st.lastDone > st.lastSend;
const finished = (st, now) => reported(st)
  || (st.lastRecv > st.lastSend && now - st.lastRecv >= 1000);
"""

# True when the app is idle after page time ``after``: a rerun requested since then finished
# and nothing was sent or received for ``quiet`` ms.
IDLE_AFTER_JS = (
    """
([after, quiet]) => {
"""
    + FINISHED_JS
    + """
  const st = window.__st;
  if (!st) return false;
  const now = performance.now();
  const app = document.querySelector('[data-testid="stApp"]');
  if (!app || app.getAttribute('data-test-script-state') !== 'notRunning') return false;
  if (!(st.lastSend > after) || !finished(st, now)) return false;
  const last = Math.max(st.lastDone, st.lastRecv || 0, st.lastSend);
  return now - last >= quiet;
}
"""
)

# ms from ``start`` (the key press, page clock) to the first poll where the app is idle after a
# rerun sent since then and an element matching ``selector`` shows ``marker`` and ``expected``
# (when the finish was only inferred from the server's silence, to its last message: the page
# already shows the new value then); ``recv_ms``: to the last message the server sent.
DONE_AFTER_JS = (
    """
([selector, marker, expected, start]) => {
"""
    + FINISHED_JS
    + """
  const st = window.__st;
  if (!st) return false;
  const now = performance.now();
  const app = document.querySelector('[data-testid="stApp"]');
  if (!app || app.getAttribute('data-test-script-state') !== 'notRunning') return false;
  if (!(st.lastSend > start) || !finished(st, now)) return false;
  let found = false;
  for (const el of document.querySelectorAll(selector)) {
    const text = el.textContent || '';
    if (text.includes(marker) && text.includes(expected)) { found = true; break; }
  }
  if (!found) return false;
  const seen = reported(st);
  const recv = (st.lastRecv || now) - start;
  return {ms: seen ? now - start : recv, recv_ms: recv, inferred: !seen};
}
"""
)

ERRORS_JS = """
() => {
  const found = [];
  for (const el of document.querySelectorAll(
      '[data-testid="stException"], [data-testid="stAlertContentError"]')) {
    found.push((el.textContent || '').slice(0, 300));
  }
  if ((document.body.textContent || '').includes('Something went wrong')) {
    found.push("'Something went wrong' is on the page");
  }
  return found;
}
"""

SIDEBAR_CAPTION = '[data-testid="stSidebar"] [data-testid="stCaptionContainer"]'
LABEL_RE = re.compile(r"label\d{2}q")
NAME_RE = re.compile(r"student\d{2}\.jpg")
QUIET_MS = 300


def label_of(i: int) -> str:
    return f"label{i:02d}q"


def name_of(i: int) -> str:
    return f"student{i:02d}.jpg"


# -- server memory from /proc ----------------------------------------------------------------


def proc_status(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM of ``pid`` in kB (empty when the process is gone)."""
    out: dict[str, int] = {}
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith(("VmRSS:", "VmHWM:")):
                    key, value = line.split(":", 1)
                    out[key] = int(value.split()[0])
    except OSError:
        pass
    return out


def process_tree(pid: int) -> list[int]:
    """``pid`` and its descendants (from /proc/*/stat parent ids)."""
    parents: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as fh:
                stat = fh.read()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        parents.setdefault(ppid, []).append(int(entry))
    tree, todo = [], [pid]
    while todo:
        current = todo.pop()
        tree.append(current)
        todo.extend(parents.get(current, []))
    return tree


def tree_rss_mb(pid: int) -> float:
    return sum(proc_status(p).get("VmRSS", 0) for p in process_tree(pid)) / 1024


def hwm_mb(pid: int) -> float:
    return proc_status(pid).get("VmHWM", 0) / 1024


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of ``pid`` so far (all its threads)."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def renice(pid: int, niceness: int) -> None:
    """Raise the nice value of every thread of ``pid`` to ``niceness`` (Linux nice values are
    per thread); processes and threads started later by a reniced thread inherit it."""
    try:
        tids = [int(t) for t in os.listdir(f"/proc/{pid}/task")]
    except OSError:
        return
    for tid in tids:
        try:
            if os.getpriority(os.PRIO_PROCESS, tid) < niceness:
                os.setpriority(os.PRIO_PROCESS, tid, niceness)
        except OSError:
            pass


class Sampler:
    """Every ``interval_s``, in a thread: the server tree's RSS (peak kept), the CPU seconds of
    the browsers (this process's other descendants: the Playwright driver and Chromium), whose
    threads are also reniced to ``browser_nice`` so that the server, not the 2-core machine's
    browsers, gets the CPU first (in a class, the browsers run on the students' laptops)."""

    def __init__(self, server_pid: int, browser_nice: int = 0, interval_s: float = 0.5) -> None:
        self.server_pid = server_pid
        self.browser_nice = browser_nice
        self.interval_s = interval_s
        self.peak_mb = 0.0
        self.samples: list[tuple[float, float]] = []
        self.browser_cpu: dict[int, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def browsers(self) -> list[int]:
        server = set(process_tree(self.server_pid))
        me = os.getpid()
        return [p for p in process_tree(me) if p != me and p not in server]

    def _run(self) -> None:
        started = time.monotonic()
        while not self._stop.is_set():
            rss = tree_rss_mb(self.server_pid)
            self.samples.append((time.monotonic() - started, rss))
            self.peak_mb = max(self.peak_mb, rss)
            for pid in self.browsers():
                if self.browser_nice:
                    renice(pid, self.browser_nice)
                cpu = cpu_seconds(pid)
                if not math.isnan(cpu):
                    self.browser_cpu[pid] = max(self.browser_cpu.get(pid, 0.0), cpu)
            self._stop.wait(self.interval_s)

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


# -- one session -------------------------------------------------------------------------------


@dataclass
class SessionResult:
    index: int
    slider_ms: dict[str, list[float]] = field(default_factory=dict)
    reply_ms: dict[str, list[float]] = field(default_factory=dict)
    steps_ms: dict[str, float] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    timeouts: list[str] = field(default_factory=list)
    isolation: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    inferred: int = 0  # slider changes whose finish was inferred from the server's silence
    completed: bool = False


class Session:
    """One browser context = one Streamlit session, with Streamlit-aware waits (async)."""

    def __init__(self, page: Any, base_url: str, index: int, timeout_ms: int) -> None:
        self.page = page
        self.base_url = base_url
        self.index = index
        self.timeout_ms = timeout_ms
        self.result = SessionResult(index)
        self.step = "start"

    async def now(self) -> float:
        return float(await self.page.evaluate("() => performance.now()"))

    async def wait_idle(self, after: float = 0.0) -> None:
        await self.page.wait_for_function(
            IDLE_AFTER_JS, arg=[after, QUIET_MS], polling=100, timeout=self.timeout_ms
        )

    async def wait_shown(self, start: float, selector: str, marker: str, expected: str) -> dict:
        handle = await self.page.wait_for_function(
            DONE_AFTER_JS,
            arg=[selector, marker, expected, start],
            polling=50,
            timeout=self.timeout_ms,
        )
        return await handle.json_value()

    async def check_errors(self, where: str) -> None:
        for message in await self.page.evaluate(ERRORS_JS):
            self.result.errors.append(f"{where}: {message}")

    async def go(self, path: str, ready: str) -> float:
        """Click the sidebar link to ``/path``; ms until the page shows ``ready``."""
        start = await self.now()
        link = self.page.locator(f'[data-testid="stSidebarNav"] a[href="{self.base_url}/{path}"]')
        await link.click()
        shown = await self.wait_shown(start, '[data-testid="stMain"]', ready, "")
        await self.wait_idle(start)
        await self.check_errors(f"/{path}")
        return float(shown["ms"])

    async def move_slider(self, name: str, label: str, values: list[str], echo: tuple) -> None:
        """Press ArrowLeft on the sidebar slider ``label`` once per value in ``values``, timing
        each press until the page echoes the new value (``echo = (selector, marker, fmt)``)."""
        pattern = re.compile(rf"^\s*{re.escape(label)}\s*$")
        widget = (
            self.page.locator('[data-testid="stSidebar"] [data-testid="stSlider"]')
            .filter(has=self.page.locator('[data-testid="stWidgetLabel"]', has_text=pattern))
            .first
        )
        thumb = widget.locator('input[type="range"], [role="slider"]').first
        await thumb.focus()
        selector, marker, fmt = echo
        for value in values:
            await self.wait_idle()
            start = await self.now()
            await thumb.press("ArrowLeft")
            shown = await self.wait_shown(start, selector, marker, fmt.format(value))
            self.result.slider_ms.setdefault(name, []).append(float(shown["ms"]))
            self.result.reply_ms.setdefault(name, []).append(float(shown["recv_ms"]))
            self.result.inferred += bool(shown.get("inferred"))
        await self.check_errors(f"slider {name}")

    async def page_text(self) -> str:
        return str(await self.page.evaluate("() => document.body.textContent || ''"))

    async def check_isolation(self, where: str) -> None:
        """Only this session's label and image name may appear on the page."""
        text = await self.page_text()
        labels, names = set(LABEL_RE.findall(text)), set(NAME_RE.findall(text))
        own_label, own_name = label_of(self.index), name_of(self.index)
        if labels - {own_label}:
            self.result.isolation.append(f"{where}: other labels {sorted(labels - {own_label})}")
        if names - {own_name}:
            self.result.isolation.append(f"{where}: other images {sorted(names - {own_name})}")
        if where == "image page" and own_label not in labels:
            self.result.isolation.append(f"{where}: its own label {own_label} is not shown")
        if own_name not in names:
            self.result.isolation.append(f"{where}: its own image {own_name} is not named")

    async def run(self, moves: int, image_size: tuple[int, int]) -> None:
        from playwright.async_api import TimeoutError as PlaywrightTimeout

        i, page = self.index, self.page
        self.step = "first load"
        started = time.perf_counter()
        await page.goto(f"{self.base_url}/")  # a new document: its clock starts at 0
        await self.wait_shown(0.0, '[data-testid="stMain"]', "Input frame (W x H)", "")
        # The canvas asks for one more run once its background image has loaded: let it pass.
        with contextlib.suppress(PlaywrightTimeout):
            await page.wait_for_function(
                "() => window.__st && window.__st.sends >= 2", polling=100, timeout=30_000
            )
        await self.wait_idle()
        self.result.steps_ms["open"] = (time.perf_counter() - started) * 1000
        await self.check_errors("first load")

        # 1. Its own image.
        self.step = "upload"
        width, height = image_size
        photo = random_photo(1000 + i, width, height)
        upload = (
            page.locator('[data-testid="stFileUploader"]')
            .filter(has_text="upload an image")
            .locator('input[type="file"]')
        )
        start = await self.now()
        for attempt in range(2):  # a file given while the uploader re-renders can be dropped
            sends = int(await page.evaluate("() => window.__st.sends"))
            await upload.set_input_files(
                {"name": name_of(i), "mimeType": "image/jpeg", "buffer": photo}
            )
            try:
                await page.wait_for_function(
                    "(n) => window.__st.sends > n", arg=sends, polling=100, timeout=30_000
                )
                break
            except PlaywrightTimeout:
                if attempt:
                    raise
                self.result.notes.append("upload: the uploader ignored the file; given again")
        shown = await self.wait_shown(start, SIDEBAR_CAPTION, "Image:", f"{name_of(i)} · 0 boxes")
        self.result.steps_ms["upload"] = float(shown["ms"])
        await self.wait_idle(start)

        # 2. Its own label, then a box drawn with the mouse.
        self.step = "label and box"
        label = page.get_by_role("textbox", name="Label for the next box")
        start = await self.now()
        await label.fill(label_of(i))
        await label.press("Enter")
        await self.wait_idle(start)
        canvas = page.locator("canvas.upper-canvas").first
        await canvas.evaluate("c => c.scrollIntoView({block: 'center', inline: 'center'})")
        box = await canvas.bounding_box()
        if box is None:
            raise RuntimeError("the drawing canvas is not visible")
        x0, y0 = box["x"] + 0.2 * box["width"], box["y"] + 0.2 * box["height"]
        x1, y1 = box["x"] + 0.7 * box["width"], box["y"] + 0.8 * box["height"]
        start = await self.now()
        await page.mouse.move(x0, y0)
        await page.mouse.down()
        await page.mouse.move(x1, y1, steps=8)
        await page.mouse.up()
        shown = await self.wait_shown(start, SIDEBAR_CAPTION, "Image:", f"{name_of(i)} · 1 box")
        self.result.steps_ms["draw"] = float(shown["ms"])
        await self.wait_idle(start)
        # The input-frame figure draws the label once the run with the box has finished.
        await self.wait_shown(start, '[data-testid="stMain"]', label_of(i), "")
        await self.check_errors("image page")
        await self.check_isolation("image page")

        # 3. Anchor labelling: the positive threshold, 0.70 down in steps of 0.05.
        self.step = "labelling"
        self.result.steps_ms["labelling"] = await self.go("labelling", "Inside anchors")
        values = [f"{0.70 - 0.05 * (k + 1):.2f}" for k in range(moves)]
        echo = ('[data-testid="stMarkdownContainer"]', "anchors reach IoU", "≥ {}")
        await self.move_slider("labelling: positive IoU", "Positive IoU ≥", values, echo)

        # 4. Proposals & NMS: the first backbone forward of this image, then the NMS threshold.
        self.step = "proposals"
        self.result.steps_ms["proposals"] = await self.go("proposals", "After NMS")
        values = [f"{0.70 - 0.05 * (k + 1):g}" for k in range(moves)]
        echo = (".js-plotly-plot text", "after NMS (IoU", "after NMS (IoU {})")
        await self.move_slider("proposals: NMS IoU", "NMS IoU threshold", values, echo)
        await self.check_isolation("proposals page")
        self.result.completed = True


DIAGNOSE_JS = """
() => {
  const app = document.querySelector('[data-testid="stApp"]');
  const st = window.__st || {};
  const now = performance.now();
  const ago = (t) => (t ? ((now - t) / 1000).toFixed(1) + ' s ago' : 'never');
  return `app ${app ? app.getAttribute('data-test-script-state') : 'missing'}; reruns sent `
    + `${st.sends} (last ${ago(st.lastSend)}), runs done ${st.runs} (last ${ago(st.lastDone)}), `
    + `last message ${ago(st.lastRecv)}; connection banner: `
    + `${!!document.querySelector('[data-testid="stStatusWidget"]')}`;
}
"""


async def diagnose(page: Any, index: int) -> str:
    """What a session that timed out was showing (and a screenshot in test-output)."""
    out = ROOT / "test-output" / "load_test"
    try:
        out.mkdir(parents=True, exist_ok=True)
        await page.screenshot(path=str(out / f"timeout_{index:02d}.png"), timeout=30_000)
        return str(await page.evaluate(DIAGNOSE_JS))
    except Exception as exc:  # the page may be gone
        return f"no diagnosis: {type(exc).__name__}"


async def run_session(
    browser: Any,
    base_url: str,
    index: int,
    delay_s: float,
    moves: int,
    image_size: tuple[int, int],
    timeout_ms: int,
) -> SessionResult:
    from playwright.async_api import TimeoutError as PlaywrightTimeout

    await asyncio.sleep(delay_s)
    context = await browser.new_context(viewport={"width": 1280, "height": 900})
    page = await context.new_page()
    page.set_default_timeout(timeout_ms)
    await page.add_init_script(INSTRUMENT_JS)
    await page.add_init_script(RECEIVE_JS)
    session = Session(page, base_url, index, timeout_ms)
    try:
        await session.run(moves, image_size)
    except PlaywrightTimeout as exc:
        state = await diagnose(page, index)
        session.result.timeouts.append(
            f"{session.step}: {str(exc).splitlines()[0][:120]} [{state}]"
        )
    except asyncio.CancelledError:
        session.result.timeouts.append(f"{session.step}: cut short by the run's deadline")
    except Exception as exc:  # a failed session is counted, not fatal to the run
        message = str(exc).splitlines()[0][:160] if str(exc) else ""
        session.result.errors.append(f"{session.step}: {type(exc).__name__}: {message}")
    finally:
        with contextlib.suppress(Exception, asyncio.CancelledError):
            await asyncio.wait_for(context.close(), timeout=30)
    return session.result


# -- one N ----------------------------------------------------------------------------------


@dataclass
class RunResult:
    sessions: int
    results: list[SessionResult]
    wall_s: float
    warmup_s: float
    rss_idle_mb: float
    rss_peak_mb: float
    hwm_mb: float
    rss_end_mb: float
    server_cpu_s: float
    browser_cpu_s: float
    load_before: float
    load_after: float
    rss_curve: list[tuple[float, float]] = field(default_factory=list)


async def warm_up(browser: Any, base_url: str, timeout_ms: int) -> float:
    """What the teacher does before the students arrive: open the app and the Proposals page,
    so VGG16 and the initial heads (shared by every session) are loaded."""
    started = time.perf_counter()
    context = await browser.new_context()
    page = await context.new_page()
    await page.add_init_script(INSTRUMENT_JS)
    for path in ("", "proposals"):
        await page.goto(f"{base_url}/{path}")
        await page.wait_for_function(
            IDLE_AFTER_JS, arg=[0, QUIET_MS], polling=100, timeout=timeout_ms
        )
    await context.close()
    return time.perf_counter() - started


async def run_n(n: int, args: argparse.Namespace) -> RunResult:
    from playwright.async_api import async_playwright

    log = ROOT / "test-output" / f"load_test_server_{n}.log"
    server = AppServer(log_path=log)
    print(f"[N={n}] starting streamlit on 127.0.0.1:{server.port} (log: {log}) ...", flush=True)
    server.start()
    assert server.process is not None
    pid = server.process.pid
    timeout_ms = int(args.action_timeout * 1000)
    image_size = (args.width, args.height)
    try:
        async with async_playwright() as playwright:
            browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            warmup_s = await warm_up(browser, server.url, timeout_ms)
            await asyncio.sleep(2)
            rss_idle = tree_rss_mb(pid)
            cpu_before = cpu_seconds(pid)
            browser_cpu_before = sum(
                cpu_seconds(p) for p in Sampler(pid).browsers() if not math.isnan(cpu_seconds(p))
            )
            load_before = os.getloadavg()[0]
            print(
                f"[N={n}] warm-up {warmup_s:.1f} s, server RSS {rss_idle:.0f} MB; "
                f"{n} sessions, {args.ramp:g} s apart ...",
                flush=True,
            )
            started = time.perf_counter()
            with Sampler(pid, args.browser_nice) as sampler:
                tasks = [
                    asyncio.create_task(
                        run_session(
                            browser,
                            server.url,
                            i,
                            i * args.ramp,
                            args.moves,
                            image_size,
                            timeout_ms,
                        )
                    )
                    for i in range(n)
                ]
                _, pending = await asyncio.wait(tasks, timeout=args.deadline)
                for task in pending:
                    task.cancel()
                if pending:
                    await asyncio.wait(pending, timeout=60)
                results = []
                for i, task in enumerate(tasks):
                    if task.done() and not task.cancelled() and task.exception() is None:
                        results.append(task.result())
                    else:
                        cut = SessionResult(i)
                        cut.timeouts.append("deadline: not finished when the run ended")
                        results.append(cut)
                wall_s = time.perf_counter() - started
                rss_end = tree_rss_mb(pid)
            await browser.close()
        return RunResult(
            sessions=n,
            results=results,
            wall_s=wall_s,
            warmup_s=warmup_s,
            rss_idle_mb=rss_idle,
            rss_peak_mb=sampler.peak_mb,
            hwm_mb=hwm_mb(pid),
            rss_end_mb=rss_end,
            server_cpu_s=cpu_seconds(pid) - cpu_before,
            browser_cpu_s=sum(sampler.browser_cpu.values()) - browser_cpu_before,
            load_before=load_before,
            load_after=os.getloadavg()[0],
            rss_curve=sampler.samples[:: max(1, len(sampler.samples) // 40)],
        )
    finally:
        server.stop()


# -- report -------------------------------------------------------------------------------


def p90(values: list[float]) -> float:
    """Nearest-rank 90th percentile."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(0.9 * len(ordered)) - 1)]


def seconds(values: list[float], pick) -> str:
    return f"{pick(values) / 1000:.2f} s" if values else "—"


def summary_rows(run: RunResult) -> list[tuple[str, str, str, str]]:
    """(what, n, median, p90) rows of one run."""
    rows = []
    names = sorted({name for r in run.results for name in r.slider_ms})
    all_page = [v for r in run.results for vs in r.slider_ms.values() for v in vs]
    all_reply = [v for r in run.results for vs in r.reply_ms.values() for v in vs]
    rows.append(("slider change → page updated (all)", str(len(all_page)), *pair(all_page)))
    rows.append(("slider change → server reply (all)", str(len(all_reply)), *pair(all_reply)))
    for name in names:
        page = [v for r in run.results for v in r.slider_ms.get(name, [])]
        reply = [v for r in run.results for v in r.reply_ms.get(name, [])]
        rows.append((f"  {name}: page", str(len(page)), *pair(page)))
        rows.append((f"  {name}: server reply", str(len(reply)), *pair(reply)))
    for step, what in [
        ("open", "first page load"),
        ("upload", "upload → image shown"),
        ("draw", "draw a box → box counted"),
        ("labelling", "open Anchor labelling"),
        ("proposals", "open Proposals (backbone forward)"),
    ]:
        values = [r.steps_ms[step] for r in run.results if step in r.steps_ms]
        rows.append((what, str(len(values)), *pair(values)))
    return rows


def pair(values: list[float]) -> tuple[str, str]:
    return seconds(values, statistics.median), seconds(values, p90)


def print_run(run: RunResult) -> None:
    n = run.sessions
    completed = sum(r.completed for r in run.results)
    errors = [f"session {r.index}: {e}" for r in run.results for e in r.errors]
    timeouts = [f"session {r.index}: {t}" for r in run.results for t in r.timeouts]
    leaks = [f"session {r.index}: {x}" for r in run.results for x in r.isolation]
    rows = [("measure", "n", "median", "p90"), *summary_rows(run)]
    widths = [max(len(row[k]) for row in rows) for k in range(4)]
    print()
    print(f"== N = {n} concurrent sessions ==")
    for k, row in enumerate(rows):
        print(
            "  ".join(
                c.ljust(w) if j == 0 else c.rjust(w)
                for j, (c, w) in enumerate(zip(row, widths, strict=True))
            )
        )
        if k == 0:
            print("  ".join("-" * w for w in widths))
    print()
    print(f"sessions completed        {completed} / {n}")
    print(f"errors                    {len(errors)}")
    print(f"timeouts                  {len(timeouts)}")
    print(f"isolation violations      {len(leaks)} (another session's label or image seen)")
    notes = [f"session {r.index}: {x}" for r in run.results for x in r.notes]
    print(f"retries                   {len(notes)} (an upload the page ignored, given again)")
    inferred = sum(r.inferred for r in run.results)
    print(f"finish inferred           {inferred} slider changes ('running' never shown)")
    print(
        f"server RSS idle / peak    {run.rss_idle_mb:.0f} MB / {run.rss_peak_mb:.0f} MB "
        f"(VmHWM {run.hwm_mb:.0f} MB; at the end {run.rss_end_mb:.0f} MB)"
    )
    print(
        f"wall / server / browser CPU {run.wall_s:.0f} s / {run.server_cpu_s:.0f} s / "
        f"{run.browser_cpu_s:.0f} s"
        f"(warm-up {run.warmup_s:.1f} s; load average {run.load_before:.1f} → "
        f"{run.load_after:.1f})"
    )
    for line in (errors + timeouts + leaks + notes)[:20]:
        print(f"  - {line}")
    if len(errors + timeouts + leaks + notes) > 20:
        print(f"  ... and {len(errors + timeouts + leaks + notes) - 20} more")


def print_comparison(runs: list[RunResult]) -> None:
    header = (
        "N",
        "slider median",
        "slider p90",
        "reply median",
        "reply p90",
        "errors",
        "timeouts",
        "leaks",
        "done",
        "peak RSS",
        "wall",
    )
    rows = [header]
    for run in runs:
        page = [v for r in run.results for vs in r.slider_ms.values() for v in vs]
        reply = [v for r in run.results for vs in r.reply_ms.values() for v in vs]
        rows.append(
            (
                str(run.sessions),
                *pair(page)[:1],
                pair(page)[1],
                *pair(reply),
                str(sum(len(r.errors) for r in run.results)),
                str(sum(len(r.timeouts) for r in run.results)),
                str(sum(len(r.isolation) for r in run.results)),
                f"{sum(r.completed for r in run.results)}/{run.sessions}",
                f"{run.rss_peak_mb:.0f} MB",
                f"{run.wall_s:.0f} s",
            )
        )
    widths = [max(len(row[k]) for row in rows) for k in range(len(header))]
    print()
    print("== summary ==")
    for k, row in enumerate(rows):
        print("  ".join(c.rjust(w) for c, w in zip(row, widths, strict=True)))
        if k == 0:
            print("  ".join("-" * w for w in widths))
    print()
    print(
        "slider: key press → the page is idle and shows the new value (browser clock); reply: "
        "→ the server's last websocket message of that rerun. peak RSS: the streamlit process "
        "tree, sampled every 0.5 s."
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sessions", type=int, nargs="+", default=[10, 30], help="N values")
    parser.add_argument("--moves", type=int, default=4, help="presses per slider (1..12)")
    parser.add_argument("--ramp", type=float, default=1.0, help="seconds between session starts")
    parser.add_argument("--deadline", type=float, default=540.0, help="seconds per N, at most")
    parser.add_argument("--action-timeout", type=float, default=240.0, help="seconds per wait")
    parser.add_argument("--width", type=int, default=640, help="uploaded photo width")
    parser.add_argument("--height", type=int, default=480, help="uploaded photo height")
    parser.add_argument(
        "--browser-nice", type=int, default=10, help="nice value of the browsers (0: as is)"
    )
    parser.add_argument("--json", type=Path, help="also write the raw numbers here")
    args = parser.parse_args(argv)
    if not 0 <= args.browser_nice <= 19:
        parser.error("--browser-nice: between 0 and 19")
    if not all(1 <= n <= 60 for n in args.sessions):
        parser.error("--sessions: between 1 and 60 each")
    if not 1 <= args.moves <= 12:
        parser.error("--moves: between 1 and 12 (the sliders step down from 0.70 by 0.05)")
    if not 10 <= args.deadline <= 1800:
        parser.error("--deadline: between 10 and 1800 seconds")
    if not Path(CHROMIUM).exists():
        print(f"needs Chromium at {CHROMIUM}", file=sys.stderr)
        return 2
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} CPUs; python "
        f"{platform.python_version()}; photos {args.width} x {args.height}; {args.moves} "
        "presses per slider",
        flush=True,
    )
    runs = []
    for n in args.sessions:
        run = asyncio.run(run_n(n, args))
        print_run(run)
        runs.append(run)
    print_comparison(runs)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(
            json.dumps(
                [
                    {
                        "sessions": run.sessions,
                        "wall_s": run.wall_s,
                        "warmup_s": run.warmup_s,
                        "rss_idle_mb": run.rss_idle_mb,
                        "rss_peak_mb": run.rss_peak_mb,
                        "hwm_mb": run.hwm_mb,
                        "rss_end_mb": run.rss_end_mb,
                        "server_cpu_s": run.server_cpu_s,
                        "browser_cpu_s": run.browser_cpu_s,
                        "rss_curve": run.rss_curve,
                        "results": [r.__dict__ for r in run.results],
                    }
                    for run in runs
                ],
                indent=1,
            )
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
