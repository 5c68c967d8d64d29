"""What a user waits for: slider latency and a new image's first load, in a real browser.

Run from the repository root (needs Debian's Chromium at /usr/bin/chromium and the dev
requirements)::

    .venv/bin/python -m benchmarks.bench_latency [--reps 10] [--port N | --url URL]
        [--no-apptest] [--json PATH]

It starts ``streamlit run app.py`` on a free port (or ``--port``; ``--url`` uses a server that is
already running), opens the app in headless Chromium and measures, ``--reps`` times each:

- **slider → figure**: from the key press on a sidebar slider's thumb (one step) to the app
  being ``notRunning`` again *and* the page showing the number for the new value (labelling:
  the "N anchors reach IoU ≥ v" line; proposals: the funnel figure's "after NMS (IoU v)" bar;
  roi: the "int(batch × fraction)" line). Measured in the page's own clock: the key's
  ``keydown`` to the first animation frame where both hold. Each repetition steps to a value
  not seen before while the slider's range allows, so results are computed, not cached.
- **new image**: upload a fresh random photo on the Image page until it shows the new image's
  size, then open the Backbone page until it shows the feature map (the first backbone forward
  of that image happens here; the Image and Anchor labelling pages never run the backbone).

Next to each it prints the server's own numbers: the "Server compute: ..." caption of the page
(the stages the page computes, timed by ``explorer.runner.PageRun``), the Backbone page's
"Forward pass" metric, and (unless ``--no-apptest``) the whole page script's run time for the
same change in-process with ``streamlit.testing.v1.AppTest`` (no browser, no websocket). The
gap between the browser's time and the script's is the websocket, the browser's rendering and
the figure drawing.
"""

from __future__ import annotations

import argparse
import io
import json
import math
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from tests.e2e.conftest import (
    CHROMIUM,
    ROOT,
    AppServer,
    StreamlitPage,
    launch_chromium,
)

# Resolves (polled every animation frame) to the ms from the last keydown (or from ``since``) to
# the first frame where a run requested after it has finished (the server's script_finished
# message, see tests/e2e/conftest.py), the app shows notRunning and the probe shows ``expected``.
DONE_AFTER_JS = """
([selector, marker, expected, since]) => {
  const st = window.__st;
  const start = since > 0 ? since : st.keyAt;
  const app = document.querySelector('[data-testid="stApp"]');
  if (!app || app.getAttribute('data-test-script-state') !== 'notRunning') return false;
  if (!(st.lastSend > start && st.lastFinished > st.lastSend)) return false;
  let found = false;
  for (const el of document.querySelectorAll(selector)) {
    const text = el.textContent || '';
    if (text.includes(marker) && text.includes(expected)) { found = true; break; }
  }
  if (!found) return false;
  return {ms: performance.now() - start, run_ms: st.lastFinished - start};
}
"""


@dataclass
class SliderBench:
    """One slider on one page, and how the page shows the slider's new value."""

    name: str
    page: str  # url path
    page_file: str  # for AppTest.switch_page
    ready: str  # text on the page once it has rendered
    slider: str  # the slider's label
    key: str  # session-state key of the slider widget (AppTest)
    start: float
    step: float
    low: float
    high: float
    selector: str  # where the page echoes the value
    marker: str
    expected: Callable[[float], str]  # the echo for value v
    caption_stages: tuple[str, ...]
    digits: int = 2

    def values(self, reps: int) -> list[tuple[float, str]]:
        """``reps`` one-step moves: down while the range allows, then back up (those revisit
        values, marked "revisit"). Returns (value after the press, key)."""
        out: list[tuple[float, str]] = []
        value, direction = self.start, -1
        for _ in range(reps):
            nxt = round(value + direction * self.step, self.digits)
            if nxt < self.low - 1e-9:
                direction = 1
                nxt = round(value + self.step, self.digits)
            out.append((nxt, "ArrowLeft" if direction < 0 else "ArrowRight"))
            value = nxt
        return out


SLIDERS = [
    SliderBench(
        name="labelling: positive IoU",
        page="labelling",
        page_file="app_pages/labelling.py",
        ready="Inside anchors",
        slider="Positive IoU ≥",
        key="w:anchor_targets.pos_iou",
        start=0.70,
        step=0.05,
        low=0.05,
        high=1.0,
        selector='[data-testid="stMarkdownContainer"]',
        marker="anchors reach IoU",
        expected=lambda v: f"≥ {v:.2f}",
        caption_stages=("Anchor labelling and sampling",),
    ),
    SliderBench(
        name="proposals: NMS IoU",
        page="proposals",
        page_file="app_pages/proposals.py",
        ready="After NMS",
        slider="NMS IoU threshold",
        key="w:proposals.nms_iou",
        start=0.70,
        step=0.05,
        low=0.0,
        high=1.0,
        selector=".js-plotly-plot text",
        marker="after NMS (IoU",
        expected=lambda v: f"after NMS (IoU {v:g})",
        caption_stages=("Proposal layer", "Proposal targets (RoI sampling)"),
    ),
    SliderBench(
        name="roi: RoIs per image",
        page="roi",
        page_file="app_pages/roi.py",
        ready="Sampled RoIs",
        slider="RoIs per image",
        key="w:proposal_targets.roi_batch_size",
        start=128,
        step=8,
        low=8,
        high=512,
        selector='[data-testid="stMarkdownContainer"]',
        marker="Positives: min(",
        expected=lambda v: f"int({int(v)} ×",
        caption_stages=("Proposal targets (RoI sampling)", "RoI pooling"),
        digits=0,
    ),
]


@dataclass
class Row:
    name: str
    browser_ms: list[float] = field(default_factory=list)
    server_ms: list[float] = field(default_factory=list)  # the page's caption / forward metric
    script_ms: list[float] = field(default_factory=list)  # AppTest: the whole page script
    server_label: str = ""
    notes: list[str] = field(default_factory=list)


def p90(values: list[float]) -> float:
    """Nearest-rank 90th percentile."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(0.9 * len(ordered)) - 1)]


def fmt(values: list[float], pick: Callable[[list[float]], float]) -> str:
    if not values:
        return "—"
    value = pick(values)
    return f"{value / 1000:.2f} s" if value >= 10_000 else f"{value:.0f} ms"


# -- browser measurements ------------------------------------------------------------------


def bench_slider(app: StreamlitPage, spec: SliderBench, reps: int) -> Row:
    row = Row(spec.name, server_label=" + ".join(spec.caption_stages))
    app.go(spec.page, spec.ready)
    shown = app.slider_value(spec.slider)
    if abs(float(shown) - spec.start) > 1e-6:
        raise RuntimeError(f"{spec.name}: the slider shows {shown}, expected {spec.start}")
    thumb = app.slider(spec.slider)
    thumb.focus()
    revisits = 0
    seen = {spec.start}
    for value, key in spec.values(reps):
        revisits += value in seen
        seen.add(value)
        app.wait_idle(quiet_ms=500)  # nothing in flight before the press
        thumb.press(key)
        result = app.page.wait_for_function(
            DONE_AFTER_JS,
            arg=[spec.selector, spec.marker, spec.expected(value), 0],
            polling="raf",
            timeout=app.timeout_ms,
        ).json_value()
        row.browser_ms.append(float(result["ms"]))
        app.wait_idle(quiet_ms=300)
        timings = page_timings(app)
        row.server_ms.append(sum(timings.get(stage, 0.0) for stage in spec.caption_stages))
    if revisits:
        row.notes.append(f"{revisits} of {reps} presses revisit a value (cached stages)")
    return row


def page_timings(app: StreamlitPage) -> dict[str, float]:
    """Every "Server compute: name: N ms, ..." caption on the page, merged."""
    out: dict[str, float] = {}
    captions = app.page.locator('[data-testid="stCaptionContainer"]', has_text="Server compute:")
    for caption in captions.all():
        body = caption.inner_text().split("Server compute:", 1)[1]
        for part in body.split(","):
            name, _, ms = part.strip().rpartition(":")
            if ms.strip().endswith("ms"):
                out[name.strip()] = float(ms.strip()[:-2])
    return out


def random_photo(seed: int, width: int = 1600, height: int = 1200) -> bytes:
    """A JPEG a phone might send: smooth gradients plus noise, different for every seed."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width]
    phase = rng.uniform(0, 2 * np.pi, size=3)
    waves = [127 + 100 * np.sin(xx / (80 + 40 * c) + yy / 97 + phase[c]) for c in range(3)]
    base = np.stack(waves, axis=2)
    pixels = np.clip(base + rng.normal(0, 12, size=base.shape), 0, 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="JPEG", quality=90)
    return buf.getvalue()


def bench_new_image(app: StreamlitPage, reps: int, seed0: int) -> tuple[Row, Row, Row]:
    upload_row = Row("new image: upload → Image page", server_label="prepare")
    backbone_row = Row("new image: → Backbone page", server_label="forward pass (metric)")
    total_row = Row("new image: upload → features shown", server_label="prepare + forward")
    upload = (
        app.page.locator('[data-testid="stFileUploader"]')
        .filter(has_text="upload an image")
        .locator('input[type="file"]')
    )
    for rep in range(reps):
        app.go("", "Input frame (W x H)")
        app.wait_idle(quiet_ms=500)
        name = f"photo_{seed0 + rep}.jpg"
        payload = {"name": name, "mimeType": "image/jpeg", "buffer": random_photo(seed0 + rep)}
        start = app.now()
        upload.set_input_files(payload)
        sidebar_caption = '[data-testid="stSidebar"] [data-testid="stCaptionContainer"]'
        shown = app.page.wait_for_function(
            DONE_AFTER_JS,
            arg=[sidebar_caption, "Image:", name, start],
            polling="raf",
            timeout=app.timeout_ms,
        ).json_value()
        upload_row.browser_ms.append(float(shown["ms"]))
        app.wait_idle(quiet_ms=300)
        timings = page_timings(app)  # stage 1: resizing the image and scaling the boxes
        stage1 = [timings.get(title) for title in ("Load and resize", "Ground-truth boxes")]
        upload_row.server_ms.append(sum(stage1) if None not in stage1 else float("nan"))

        start = app.now()
        app.nav_link("backbone").click()
        shown = app.page.wait_for_function(
            DONE_AFTER_JS,
            arg=['[data-testid="stMetric"]', "Forward pass", "", start],
            polling="raf",
            timeout=app.timeout_ms,
        ).json_value()
        backbone_row.browser_ms.append(float(shown["ms"]))
        app.wait_idle(quiet_ms=300)
        forward = app.metric("Forward pass")
        backbone_row.server_ms.append(seconds_text_to_ms(forward))
        total_row.browser_ms.append(upload_row.browser_ms[-1] + backbone_row.browser_ms[-1])
        total_row.server_ms.append(upload_row.server_ms[-1] + backbone_row.server_ms[-1])
    return upload_row, backbone_row, total_row


def load_average() -> str:
    return f"{os.getloadavg()[0]:.1f}" if hasattr(os, "getloadavg") else "?"


def seconds_text_to_ms(text: str) -> float:
    """ "1.84 s" or "950 ms" → milliseconds."""
    value = text.strip().replace(",", "")
    if value.endswith("ms"):
        return float(value[:-2])
    if value.endswith("s"):
        return float(value[:-1]) * 1000
    return float("nan")


# -- in-process script times (AppTest) -----------------------------------------------------


def apptest_slider(spec: SliderBench, reps: int) -> list[float]:
    import logging

    from streamlit.testing.v1 import AppTest

    # Module-level cache lookups outside a script run warn once per module; harmless here.
    logging.getLogger("streamlit.runtime.scriptrunner_utils.script_run_context").setLevel(
        logging.ERROR
    )

    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=300)
    at.run()
    at.switch_page(spec.page_file)
    at.run()
    at.run()  # twice: the same state as the browser after it has settled
    if at.exception:
        raise RuntimeError(f"{spec.name}: AppTest raised {at.exception}")
    times = []
    for value, _ in spec.values(reps):
        widget = at.slider(key=spec.key)
        widget.set_value(int(value) if spec.digits == 0 else value)
        started = time.perf_counter()
        at.run()
        times.append((time.perf_counter() - started) * 1000)
        if at.exception:
            raise RuntimeError(f"{spec.name}: AppTest raised {at.exception}")
    return times


# -- report ------------------------------------------------------------------------------


def print_table(rows: list[Row], reps: int, header: list[str]) -> None:
    cols = [
        "stage",
        "n",
        "browser median",
        "browser p90",
        "server compute median",
        "(what)",
        "script run median",
        "script run p90",
    ]
    table = [cols]
    for r in rows:
        table.append(
            [
                r.name,
                str(len(r.browser_ms)),
                fmt(r.browser_ms, statistics.median),
                fmt(r.browser_ms, p90),
                fmt([v for v in r.server_ms if not math.isnan(v)], statistics.median),
                r.server_label,
                fmt(r.script_ms, statistics.median),
                fmt(r.script_ms, p90),
            ]
        )
    widths = [max(len(line[i]) for line in table) for i in range(len(cols))]
    print()
    for line in header:
        print(line)
    print()
    for i, line in enumerate(table):
        cells = zip(line, widths, strict=True)
        print(
            "  ".join(c.ljust(w) if j in (0, 5) else c.rjust(w) for j, (c, w) in enumerate(cells))
        )
        if i == 0:
            print("  ".join("-" * w for w in widths))
    notes = [f"- {r.name}: {n}" for r in rows for n in r.notes]
    if notes:
        print()
        print("\n".join(notes))
    print()
    print(
        "browser: key press (or upload / page click) to the first frame where the app is "
        "notRunning and shows the new number, in the page's clock.\n"
        "server compute: the page's 'Server compute' caption (its stages only) or the Backbone "
        "page's 'Forward pass' metric.\n"
        "script run: the whole page script for the same change, in-process (AppTest), "
        "no browser."
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reps", type=int, default=10, help="repetitions per measurement")
    parser.add_argument("--port", type=int, help="port for the server this script starts")
    parser.add_argument("--url", help="use a server already running at this URL")
    parser.add_argument("--no-apptest", action="store_true", help="skip the in-process runs")
    parser.add_argument("--json", type=Path, help="also write the raw numbers here")
    parser.add_argument("--seed", type=int, default=int(time.time()) % 100_000)
    args = parser.parse_args(argv)
    if args.reps < 1:
        parser.error("--reps must be at least 1")
    if not Path(CHROMIUM).exists():
        print(f"needs Chromium at {CHROMIUM}", file=sys.stderr)
        return 2
    os.environ.setdefault("FRCNN_OFFLINE", "1")
    os.environ.setdefault("FRCNN_DEVICE", "cpu")
    load_before = load_average()

    from playwright.sync_api import sync_playwright

    server = None
    if args.url:
        url = args.url.rstrip("/")
    else:
        log = ROOT / "test-output" / "bench_latency_server.log"
        server = AppServer(args.port, log_path=log)
        print(f"starting streamlit on port {server.port} (log: {log}) ...", flush=True)
        server.start()
        url = server.url
    rows: list[Row] = []
    try:
        with sync_playwright() as playwright:
            browser = launch_chromium(playwright)
            context = browser.new_context(viewport={"width": 1500, "height": 1000})
            app = StreamlitPage(context.new_page(), url, timeout_ms=180_000)
            started = time.perf_counter()
            app.open("", "Input frame (W x H)")
            print(f"first page load (incl. loading VGG16): {time.perf_counter() - started:.1f} s")
            for spec in SLIDERS:
                print(f"measuring {spec.name} x {args.reps} ...", flush=True)
                rows.append(bench_slider(app, spec, args.reps))
            print(f"measuring new image x {args.reps} ...", flush=True)
            rows.extend(bench_new_image(app, args.reps, args.seed))
            chromium_version = browser.version
            context.close()
            browser.close()
    finally:
        if server is not None:
            server.stop()

    if not args.no_apptest:
        print("measuring the page scripts in-process (AppTest) ...", flush=True)
        for spec, row in zip(SLIDERS, rows, strict=False):
            row.script_ms = apptest_slider(spec, args.reps)

    import streamlit
    import torch

    header = [
        f"Faster R-CNN Explorer latency, {args.reps} repetitions each",
        f"machine: {platform.machine()}, {os.cpu_count()} CPUs, torch threads "
        f"{torch.get_num_threads()}; 1-min load average {load_before} before, "
        f"{load_average()} after (other work on the machine inflates every number)",
        f"python {platform.python_version()}, streamlit {streamlit.__version__}, "
        f"torch {torch.__version__}, chromium {chromium_version} (headless, software GL)",
    ]
    print_table(rows, args.reps, header)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(
            json.dumps(
                {
                    "header": header,
                    "rows": [
                        {
                            "stage": r.name,
                            "browser_ms": r.browser_ms,
                            "server_ms": r.server_ms,
                            "server_what": r.server_label,
                            "script_ms": r.script_ms,
                            "notes": r.notes,
                        }
                        for r in rows
                    ],
                },
                indent=2,
            )
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
