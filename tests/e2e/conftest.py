"""Browser tests: a live ``streamlit run app.py`` server driven by headless Chromium.

The server is started once per test session on a free port (``FRCNN_OFFLINE=1``,
``FRCNN_DEVICE=cpu``) and stopped at the end; every test gets a fresh browser context, which is a
fresh Streamlit session (zebra sample, four boxes, default parameters).

:class:`AppServer` and :class:`StreamlitPage` are plain classes (no pytest needed), so
``benchmarks/bench_latency.py`` drives the app with the same code.

Waiting on Streamlit. ``data-test-script-state="notRunning"`` on ``stApp`` holds both *before*
a rerun starts and after it ends; a click, key press or upload reaches the server some
milliseconds (or, with the browser's main thread busy, seconds) later; and a short run can go
by without the attribute ever showing ``running`` (its start and end are rendered in one React
update). So a script installed before the app loads (:data:`INSTRUMENT_JS`) watches the
websocket: it records when the browser last *sent* a rerun request (a ``BackMsg`` whose first
byte is 0x5A: field 11, ``rerun_script``) and when the server last reported a run *finished*
(a ``ForwardMsg`` with top-level field 6, ``script_finished``, other than "stopped early for a
rerun"). The app is idle after an action when a rerun was requested after the action started,
a run finished after the last request, the app shows ``notRunning``, and both have been quiet
for a short while (a request that crosses a run's end starts one more run). The drawing canvas
requests its own rerun when its background image has loaded, up to seconds after the page has
rendered; these waits absorb it.
"""

from __future__ import annotations

import contextlib
import os
import re
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
OUTPUT = ROOT / "test-output" / "e2e"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
# The first page load also loads VGG16 and the initial heads (about 10 s on a 2-core CPU), and a
# new image's first backbone forward takes about 2 s: 120 s leaves room on a slow CI runner.
TIMEOUT_MS = 120_000
SERVER_START_S = 90.0
# Once a run has finished, what it shows is usually on the page at once; but a run the page
# starts by itself right after (a component reporting its size, the URL's language written back)
# can hold it for a while on a cold or busy 2-core server: a bound, not an expectation.
TEXT_TIMEOUT_MS = 90_000

# How long "idle" must hold (no request sent, no run finished) before an action counts as done.
QUIET_MS = 300

# Installed with ``add_init_script`` so it runs before Streamlit's own scripts.
INSTRUMENT_JS = """
(() => {
  if (window.__st) return;
  const st = window.__st = {
    sends: 0, lastSend: 0, finished: 0, lastFinished: 0, runs: 0, lastDone: 0, keyAt: 0,
  };
  // The attribute's own transitions to notRunning (informative; a short run may not show one).
  let state = null;
  new MutationObserver((records) => {
    records.forEach((r, i) => {
      const value = i + 1 < records.length
        ? records[i + 1].oldValue : r.target.getAttribute('data-test-script-state');
      if (value === 'notRunning' && state !== 'notRunning') {
        st.runs += 1;
        st.lastDone = performance.now();
      }
      state = value;
    });
  }).observe(document, {
    subtree: true, attributes: true, attributeOldValue: true,
    attributeFilter: ['data-test-script-state'],
  });
  const bytes = (data) => {
    if (data instanceof ArrayBuffer) return new Uint8Array(data);
    if (!ArrayBuffer.isView(data)) return null;
    return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  };
  // The value of a top-level varint field of a protobuf message, or -1.
  const varintField = (b, wanted) => {
    let i = 0;
    const varint = () => {
      let value = 0, shift = 0, byte;
      do { byte = b[i++]; value += (byte & 0x7f) * 2 ** shift; shift += 7; }
      while (byte & 0x80 && i < b.length);
      return value;
    };
    while (i < b.length) {
      const tag = varint(), field = Math.floor(tag / 8), wire = tag & 7;
      if (wire === 0) { const v = varint(); if (field === wanted) return v; }
      else if (wire === 2) { const length = varint(); i += length; }  // not i += varint()
      else if (wire === 1) i += 8;
      else if (wire === 5) i += 4;
      else return -1;
    }
    return -1;
  };
  const received = (data) => {
    const b = bytes(data);
    if (b === null) return;
    const status = varintField(b, 6);  // ForwardMsg.script_finished
    if (status >= 0 && status !== 2) {  // 2: FINISHED_EARLY_FOR_RERUN, another run follows
      st.finished += 1;
      st.lastFinished = performance.now();
    }
  };
  const NativeWebSocket = window.WebSocket;
  window.WebSocket = class extends NativeWebSocket {
    constructor(...args) {
      super(...args);
      this.addEventListener('message', (event) => {
        if (event.data instanceof Blob) event.data.arrayBuffer().then(received);
        else received(event.data);
      });
    }
    send(data) {
      const b = bytes(data);
      if (b !== null && b.length && b[0] === 0x5a) {  // BackMsg.rerun_script (field 11)
        st.sends += 1;
        st.lastSend = performance.now();
      }
      return super.send(data);
    }
  };
  document.addEventListener('keydown', () => { st.keyAt = performance.now(); }, true);
})();
"""

# True when the app is idle after page time ``after`` (see the module docstring).
IDLE_JS = """
([after, quiet]) => {
  const st = window.__st;
  if (!st) return false;
  const now = performance.now();
  const app = document.querySelector('[data-testid="stApp"]');
  return app !== null && app.getAttribute('data-test-script-state') === 'notRunning'
    && st.lastSend > after && st.lastFinished > st.lastSend
    && now - st.lastFinished >= quiet && now - st.lastSend >= quiet;
}
"""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class AppServer:
    """``streamlit run app.py`` on a free port, with its output in a log file."""

    def __init__(self, port: int | None = None, log_path: Path | None = None) -> None:
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path or OUTPUT / "server.log"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout_s: float = SERVER_START_S) -> AppServer:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        env = dict(os.environ, FRCNN_OFFLINE="1", FRCNN_DEVICE="cpu", PYTHONUNBUFFERED="1")
        command = [
            sys.executable,
            "-m",
            "streamlit",
            "run",
            "app.py",
            "--server.port",
            str(self.port),
            "--server.address",
            "127.0.0.1",
            "--server.headless",
            "true",
            "--server.fileWatcherType",
            "none",
            "--browser.gatherUsageStats",
            "false",
        ]
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"streamlit exited with status {self.process.returncode} before answering "
                    f"on port {self.port}. Server log:\n{self.log_tail()}"
                )
            if self.healthy():
                return self
            time.sleep(0.25)
        self.stop()
        raise RuntimeError(
            f"streamlit did not answer {self.url}/_stcore/health with 'ok' within "
            f"{timeout_s:.0f} s. Server log:\n{self.log_tail()}"
        )

    def healthy(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/_stcore/health", timeout=2) as response:
                return response.read().decode().strip() == "ok"
        except (urllib.error.URLError, OSError):
            return False

    def log_tail(self, chars: int = 6000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return "(no log)"

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=15)


def launch_chromium(playwright: Any) -> Any:
    return playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)


class StreamlitPage:
    """One browser tab on the app (one Streamlit session), with waits that know Streamlit."""

    def __init__(self, page: Any, base_url: str, timeout_ms: int = TIMEOUT_MS) -> None:
        self.page = page
        self.base_url = base_url.rstrip("/")
        self.timeout_ms = timeout_ms
        page.set_default_timeout(timeout_ms)
        page.add_init_script(INSTRUMENT_JS)

    # -- waiting ---------------------------------------------------------------------------

    def now(self) -> float:
        """The page's clock (``performance.now()``, ms)."""
        return float(self.page.evaluate("() => performance.now()"))

    def stats(self) -> dict[str, float]:
        return dict(self.page.evaluate("() => window.__st"))

    def wait_idle(self, after: float = 0.0, quiet_ms: int = QUIET_MS) -> None:
        """Wait until a rerun requested after page time ``after`` has run and the app is quiet."""
        from playwright.sync_api import TimeoutError as PlaywrightTimeout

        try:
            self.page.wait_for_function(
                IDLE_JS, arg=[after, quiet_ms], polling=50, timeout=self.timeout_ms
            )
        except PlaywrightTimeout as exc:
            raise AssertionError(
                f"the app did not finish a rerun requested after t={after:.0f} ms within "
                f"{self.timeout_ms / 1000:.0f} s (page clock now {self.now():.0f} ms; websocket "
                f"counters: {self.stats()})"
            ) from exc

    def wait_texts(self, texts: tuple[str | re.Pattern[str], ...]) -> None:
        """Each of ``texts`` visible (called once the run has finished, so a short wait)."""
        for text in texts:
            self.text(text).first.wait_for(state="visible", timeout=TEXT_TIMEOUT_MS)

    def act(self, action: Callable[[], Any], *texts: str | re.Pattern[str]) -> None:
        """Do ``action`` (which must make the app rerun), wait until its rerun has finished and
        the app is quiet, and until each of ``texts`` is visible."""
        after = self.now()
        action()
        self.wait_idle(after)
        if texts:
            # A slider sends its value after a debounce (later still when the page is busy), so
            # "idle" can come before the last value's run: the expected text is the real signal.
            self.wait_texts(texts)
            self.wait_idle(after)

    # -- navigation ------------------------------------------------------------------------

    def open(self, path: str = "", *texts: str | re.Pattern[str]) -> None:
        """Load ``/path`` in this tab (a new page load is a new Streamlit session)."""
        self.page.goto(f"{self.base_url}/{path}")
        self.wait_idle()
        self.wait_texts(texts)

    def reload(self, *texts: str | re.Pattern[str]) -> None:
        self.page.reload()
        self.wait_idle()
        self.wait_texts(texts)

    def nav_link(self, path: str) -> Any:
        return self.page.locator(f'[data-testid="stSidebarNav"] a[href="{self.base_url}/{path}"]')

    def go(self, path: str, *texts: str | re.Pattern[str]) -> None:
        """Switch page with the sidebar navigation (same session, as a user does)."""
        self.act(lambda: self.nav_link(path).click(), *texts)
        expected = f"{self.base_url}/{path}".rstrip("/")
        if self.page.url.split("?")[0].rstrip("/") != expected:
            raise AssertionError(f"expected to be on {expected}, the browser is on {self.page.url}")

    # -- reading ---------------------------------------------------------------------------

    def text(self, text: str | re.Pattern[str]) -> Any:
        return self.page.get_by_text(text)

    def main(self) -> Any:
        return self.page.locator('[data-testid="stMain"]')

    def sidebar(self) -> Any:
        return self.page.locator('[data-testid="stSidebar"]')

    def metric_locator(self, label: str) -> Any:
        name = re.compile(rf"^\s*{re.escape(label)}\s*$")
        return (
            self.page.locator('[data-testid="stMetric"]')
            .filter(has=self.page.locator('[data-testid="stMetricLabel"]', has_text=name))
            .first.locator('[data-testid="stMetricValue"]')
        )

    def metric(self, label: str) -> str:
        return self.metric_locator(label).inner_text(timeout=self.timeout_ms).strip()

    def metric_int(self, label: str) -> int:
        value = self.metric(label)
        digits = value.replace(",", "").replace("\u202f", "").strip()
        if not re.fullmatch(r"-?\d+", digits):
            raise AssertionError(f"metric {label!r} shows {value!r}, not a whole number")
        return int(digits)

    def metrics(self) -> dict[str, str]:
        out: dict[str, str] = {}
        for metric in self.page.locator('[data-testid="stMetric"]').all():
            label = metric.locator('[data-testid="stMetricLabel"]').inner_text().strip()
            out[label] = metric.locator('[data-testid="stMetricValue"]').inner_text().strip()
        return out

    def errors(self) -> list[str]:
        """Exceptions, error alerts and the page guard's "Something went wrong" on the page."""
        found = [
            e.inner_text()[:500]
            for e in self.page.locator(
                '[data-testid="stException"], [data-testid="stAlertContentError"]'
            ).all()
        ]
        if self.page.get_by_text("Something went wrong").count():
            found.append("'Something went wrong' is on the page")
        return found

    def slider_widget(self, label: str) -> Any:
        name = re.compile(rf"^\s*{re.escape(label)}\s*$")
        return (
            self.sidebar()
            .locator('[data-testid="stSlider"]')
            .filter(has=self.page.locator('[data-testid="stWidgetLabel"]', has_text=name))
        )

    def slider(self, label: str) -> Any:
        """The thumb of the sidebar slider labelled ``label`` (focus it, then press keys)."""
        return self.slider_widget(label).locator('input[type="range"], [role="slider"]').first

    def slider_value_locator(self, label: str) -> Any:
        return self.slider_widget(label).locator('[data-testid="stSliderThumbValue"]')

    def slider_value(self, label: str) -> str:
        return self.slider_value_locator(label).inner_text().strip()

    def screenshot(self, name: str, max_height: int = 8000) -> Path:
        """A PNG of the whole page. Streamlit scrolls inside ``stMain`` (and the sidebar), not
        the document, so the viewport is made as tall as the content for the shot."""
        OUTPUT.mkdir(parents=True, exist_ok=True)
        target = OUTPUT / f"{name}.png"
        viewport = self.page.viewport_size
        height = int(
            self.page.evaluate(
                """() => Math.max(document.documentElement.scrollHeight, ...[
                  '[data-testid="stMain"]', '[data-testid="stSidebarContent"]'
                ].map((s) => document.querySelector(s)?.scrollHeight || 0))"""
            )
        )
        tall = viewport is not None and height > viewport["height"]
        if tall:
            self.page.set_viewport_size(
                {"width": viewport["width"], "height": min(height, max_height)}
            )
            self.page.evaluate(
                "() => new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r)))"
            )
        try:
            self.page.screenshot(path=str(target), full_page=True)
        finally:
            if tall:
                self.page.set_viewport_size(viewport)
        return target


# -- pytest fixtures ----------------------------------------------------------------------


@pytest.fixture(scope="session")
def app_server() -> Iterator[AppServer]:
    for stale in OUTPUT.glob("FAILED-*.png"):
        stale.unlink()
    server = AppServer()
    try:
        server.start()
    except RuntimeError as exc:
        pytest.fail(str(exc), pytrace=False)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def chromium() -> Iterator[Any]:
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
    with sync_api.sync_playwright() as playwright:
        browser = launch_chromium(playwright)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def app(
    app_server: AppServer, chromium: Any, request: pytest.FixtureRequest
) -> Iterator[StreamlitPage]:
    """A fresh browser context (a fresh Streamlit session) on the live server."""
    context = chromium.new_context(viewport={"width": 1500, "height": 1000})
    page = context.new_page()
    driver = StreamlitPage(page, app_server.url)
    try:
        yield driver
    finally:
        report = getattr(request.node, "rep_call", None)
        if report is not None and report.failed:
            with contextlib.suppress(Exception):
                driver.screenshot(f"FAILED-{request.node.name}")
        context.close()


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    report = yield
    setattr(item, f"rep_{report.when}", report)
    return report
