"""Bounded memory: the server's RSS while students upload 200 different images.

Run from the repository root (needs Debian's Chromium at /usr/bin/chromium and Playwright)::

    .venv/bin/python -m benchmarks.memory_soak [--changes 200] [--sessions 4] [--every 20]
        [--linger 130] [--json PATH]

It starts ``streamlit run app.py`` on a free port on 127.0.0.1, loads the app once, then
``--sessions`` browser sessions, one after the other, upload ``--changes`` distinct random JPEGs
in all (``--width`` x ``--height``, a different seed each), each on the Image page, which decodes
the image, resizes it to the input frame and draws it. Every ``--every`` changes it reads the
server's resident set (VmRSS of the streamlit process and its children, from /proc) and prints
the curve.

Every image is new, so each change adds entries to the per-image caches
(``explorer.caches.decode``: 64 entries and ``IMAGE_CACHE_MB`` of pixels; every stage's
result in ``explorer.caches.STAGES``, bounded by ``FRCNN_STAGE_CACHE_MB``; and the canvas
background, 16): memory grows for the first images and must then stay flat, however many more
arrive. The verdict compares the growth over
the last half of the changes with the first half.

When the last session has closed, the script waits ``--linger`` seconds (Streamlit keeps a
disconnected session for 120 s in case the tab reconnects), opens one fresh session, which
makes Streamlit drop the expired ones, and reads the RSS again: per-session state (the image
bytes, the uploaded files) must be released when a session ends.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import re
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from benchmarks.load_test import IDLE_AFTER_JS, RECEIVE_JS, hwm_mb, tree_rss_mb
from tests.e2e.conftest import (
    CHROMIUM,
    ROOT,
    AppServer,
    StreamlitPage,
    launch_chromium,
)

SIDEBAR_CAPTION = '[data-testid="stSidebar"] [data-testid="stCaptionContainer"]'
# True once a sidebar caption names the image (the run that took the upload has finished).
NAMED_JS = """
([selector, expected]) => {
  const app = document.querySelector('[data-testid="stApp"]');
  if (!app || app.getAttribute('data-test-script-state') !== 'notRunning') return false;
  return [...document.querySelectorAll(selector)].some(
    (el) => (el.textContent || '').includes(expected));
}
"""


def noise_jpeg(seed: int, width: int, height: int) -> bytes:
    """A small random JPEG, different for every seed (uniform noise: nothing to compress)."""
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="JPEG", quality=85)
    return buf.getvalue()


def upload(app: StreamlitPage, name: str, data: bytes) -> None:
    field = (
        app.page.locator('[data-testid="stFileUploader"]')
        .filter(has_text="upload an image")
        .locator('input[type="file"]')
    )
    start = app.now()
    field.set_input_files({"name": name, "mimeType": "image/jpeg", "buffer": data})
    app.page.wait_for_function(
        NAMED_JS,
        arg=[SIDEBAR_CAPTION, f"Image: {name} · 0 boxes"],
        polling=100,
        timeout=app.timeout_ms,
    )
    app.page.wait_for_function(IDLE_AFTER_JS, arg=[start, 300], polling=100, timeout=app.timeout_ms)


def open_app(app: StreamlitPage) -> None:
    """Load the app in this tab (a new Streamlit session) and wait until it is idle."""
    app.page.goto(f"{app.base_url}/")
    app.page.wait_for_function(IDLE_AFTER_JS, arg=[0, 300], polling=100, timeout=app.timeout_ms)


def errors_on(app: StreamlitPage) -> list[str]:
    return app.errors()


def verdict(curve: list[dict[str, Any]]) -> tuple[str, float, float]:
    """Growth (MB per change) over the first and the last half of the changes."""
    if len(curve) < 3:
        return "too few samples to tell", float("nan"), float("nan")
    base, mid, last = curve[0], curve[len(curve) // 2], curve[-1]
    first = (mid["rss_mb"] - base["rss_mb"]) / max(mid["changes"] - base["changes"], 1)
    second = (last["rss_mb"] - mid["rss_mb"]) / max(last["changes"] - mid["changes"], 1)
    flat = second <= max(0.25 * first, 0.2)
    text = (
        "PLATEAU: the second half grows much less than the first"
        if flat
        else "GROWING: memory still rises in the second half"
    )
    return text, first, second


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--changes", type=int, default=200, help="image changes in all")
    parser.add_argument("--sessions", type=int, default=4, help="sessions, one after another")
    parser.add_argument("--every", type=int, default=20, help="sample RSS every N changes")
    parser.add_argument("--width", type=int, default=640)
    parser.add_argument("--height", type=int, default=480)
    parser.add_argument("--linger", type=float, default=130.0, help="seconds after the last")
    parser.add_argument("--deadline", type=float, default=570.0, help="seconds in all, at most")
    parser.add_argument("--json", type=Path, help="also write the curve here")
    args = parser.parse_args(argv)
    if not 1 <= args.changes <= 1000:
        parser.error("--changes: between 1 and 1000")
    if not 1 <= args.sessions <= args.changes:
        parser.error("--sessions: between 1 and --changes")
    if not 1 <= args.every <= args.changes:
        parser.error("--every: between 1 and --changes")
    if not 0 <= args.linger <= 600:
        parser.error("--linger: between 0 and 600 seconds")
    if not Path(CHROMIUM).exists():
        print(f"needs Chromium at {CHROMIUM}", file=sys.stderr)
        return 2

    from playwright.sync_api import sync_playwright

    # Read, not imported: importing explorer.caches outside a Streamlit run only warns.
    source = (ROOT / "explorer" / "caches.py").read_text()
    found = re.search(r"^IMAGE_CACHE_ENTRIES = (\d+)", source, re.MULTILINE)
    entries = found.group(1) if found else "?"
    decoded = args.width * args.height * 3 / 2**20
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} CPUs, python "
        f"{platform.python_version()}; {args.changes} image changes ({args.width} x "
        f"{args.height} JPEG noise, {decoded:.1f} MB decoded, plus the 800 x 800 input frame "
        f"1.8 MB) over {args.sessions} session(s); per-image caches hold "
        f"{entries} entries",
        flush=True,
    )
    log = ROOT / "test-output" / "memory_soak_server.log"
    server = AppServer(log_path=log)
    print(f"starting streamlit on 127.0.0.1:{server.port} (log: {log}) ...", flush=True)
    server.start()
    assert server.process is not None
    pid = server.process.pid
    started = time.perf_counter()
    deadline = started + args.deadline
    curve: list[dict[str, Any]] = []
    errors: list[str] = []
    after: dict[str, float] = {}
    per_session = [
        args.changes // args.sessions + (k < args.changes % args.sessions)
        for k in range(args.sessions)
    ]
    try:
        with sync_playwright() as playwright:
            browser = launch_chromium(playwright)
            changes = 0

            def sample(what: str) -> None:
                rss = tree_rss_mb(pid)
                curve.append(
                    {
                        "changes": changes,
                        "rss_mb": rss,
                        "hwm_mb": hwm_mb(pid),
                        "seconds": time.perf_counter() - started,
                        "what": what,
                    }
                )
                print(
                    f"  {changes:4d} changes  RSS {rss:7.0f} MB  "
                    f"({time.perf_counter() - started:5.0f} s) {what}",
                    flush=True,
                )

            for session, count in enumerate(per_session):
                if time.perf_counter() > deadline:
                    errors.append(f"deadline reached before session {session}")
                    break
                context = browser.new_context(viewport={"width": 1280, "height": 900})
                page = context.new_page()
                app = StreamlitPage(page, server.url, timeout_ms=120_000)
                page.add_init_script(RECEIVE_JS)
                open_app(app)
                if session == 0:
                    time.sleep(2)
                    sample("first session open (VGG16 loaded)")
                for _ in range(count):
                    if time.perf_counter() > deadline:
                        errors.append(f"deadline reached after {changes} changes")
                        break
                    name = f"soak_{changes:03d}.jpg"
                    try:
                        upload(app, name, noise_jpeg(changes, args.width, args.height))
                    except Exception as exc:  # counted; the soak goes on
                        errors.append(f"{name}: {type(exc).__name__}: {str(exc)[:600]}")
                    changes += 1
                    if changes % args.every == 0:
                        errors.extend(f"after {changes}: {e}" for e in errors_on(app))
                        sample(f"session {session}")
                context.close()
            if args.linger and time.perf_counter() + args.linger < deadline + 60:
                sample("last session closed")
                print(f"  waiting {args.linger:.0f} s for the closed sessions to expire ...")
                time.sleep(args.linger)
                context = browser.new_context()
                page = context.new_page()
                app = StreamlitPage(page, server.url, timeout_ms=120_000)
                page.add_init_script(RECEIVE_JS)
                open_app(app)
                time.sleep(2)
                sample("after the closed sessions expired (one fresh session open)")
                after = curve[-1]
                context.close()
            browser.close()
    finally:
        server.stop()

    print()
    print(f"{'changes':>8}  {'RSS MB':>8}  {'Δ MB':>7}  {'VmHWM MB':>9}  {'s':>5}  curve")
    print(f"{'-' * 8}  {'-' * 8}  {'-' * 7}  {'-' * 9}  {'-' * 5}  {'-' * 40}")
    low = min(p["rss_mb"] for p in curve)
    high = max(p["rss_mb"] for p in curve)
    previous = None
    for point in curve:
        delta = "" if previous is None else f"{point['rss_mb'] - previous:+7.0f}"
        bar = "#" * round(40 * (point["rss_mb"] - low) / max(high - low, 1))
        print(
            f"{point['changes']:8d}  {point['rss_mb']:8.0f}  {delta:>7}  "
            f"{point['hwm_mb']:9.0f}  {point['seconds']:5.0f}  {bar}"
        )
        previous = point["rss_mb"]
    soak = [p for p in curve if p["what"].startswith("session")]
    text, first, second = verdict(soak)
    print()
    print(
        f"{text} ({first:.2f} MB per change over the first half, {second:.2f} MB per change "
        "over the second)"
    )
    if after:
        top = max(p["rss_mb"] for p in soak) if soak else float("nan")
        print(
            f"after every session ended: {after['rss_mb']:.0f} MB (peak during the soak "
            f"{top:.0f} MB)"
        )
    print(f"errors: {len(errors)}")
    for line in errors[:20]:
        print(f"  - {line}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"curve": curve, "errors": errors}, indent=1))
    return 0 if not errors else 1


if __name__ == "__main__":
    sys.exit(main())
