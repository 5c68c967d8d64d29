"""Screenshot pages of a running explorer in headless Chromium (Debian's /usr/bin/chromium).

    .venv/bin/streamlit run app.py --server.port 8765 --server.headless true &
    .venv/bin/python tools/screenshot.py --port 8765 --out test-output/shots [--page anchors ...]

Each page is opened by its URL path in a fresh browser context (a fresh session), waited on until
Streamlit reports the script finished, and saved as a PNG of the whole page: Streamlit scrolls
inside its main area, not the document, so the viewport is made as tall as the content first
(the width, which decides what fits, stays as given).

``--matrix`` takes every page at 1280 x 720 and at 150 % zoom of it, in the light and the dark
theme (the projector check): 150 % zoom is what the browser does at that zoom, 853 x 480 CSS
pixels drawn at a device scale factor of 1.5. ``--theme`` picks the theme through the browser's
colour scheme, which the app's "System" theme (its default) follows. ``--presentation`` switches
the app's presentation setting on in each session first.
"""

from __future__ import annotations

import argparse
import ast
from pathlib import Path

from playwright.sync_api import sync_playwright

ROOT = Path(__file__).resolve().parents[1]
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
DONE = '[data-testid="stApp"][data-test-script-state="notRunning"]'
MAX_HEIGHT = 12_000
# (width, height, zoom): what --matrix takes.
SIZES = [(1280, 720, 1.0), (1280, 720, 1.5)]
THEMES = ["light", "dark"]


def app_pages() -> list[str]:
    """Every page's URL path, in menu order, from the ``*_TABLE`` lists in app.py (the first
    page, the default, is ``""``)."""
    tree = ast.parse((ROOT / "app.py").read_text(encoding="utf-8"))
    paths: list[str] = []
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id.endswith("_TABLE") for t in node.targets
        ):
            for row in node.value.elts:  # (file, url path, N_(title), icon)
                paths.append(ast.literal_eval(row.elts[1]))
    return ["", *paths[1:]]


def wait_done(page, timeout_ms: int = 180_000) -> None:
    """Wait until the app has rendered, the script is no longer running and no element is
    still a loading placeholder (plotly charts and tables mount after the run ends)."""
    page.wait_for_selector('[data-testid="stApp"]', timeout=timeout_ms)
    page.wait_for_timeout(300)
    page.wait_for_selector(DONE, timeout=timeout_ms)
    page.wait_for_function(
        "() => !document.querySelector('[data-testid=\"stSkeleton\"]')", timeout=timeout_ms
    )
    page.wait_for_timeout(1500)
    page.wait_for_selector(DONE, timeout=timeout_ms)  # a component's own rerun, if any


def full_shot(page, target: Path) -> None:
    """The whole page at the viewport's width (see the module docstring)."""
    viewport = page.viewport_size
    height = int(
        page.evaluate(
            """() => Math.max(document.documentElement.scrollHeight, ...[
              '[data-testid="stMain"]', '[data-testid="stSidebarContent"]'
            ].map((s) => document.querySelector(s)?.scrollHeight || 0))"""
        )
    )
    if viewport is not None and height > viewport["height"]:
        page.set_viewport_size({"width": viewport["width"], "height": min(height, MAX_HEIGHT)})
        page.wait_for_timeout(800)
    page.screenshot(path=str(target), full_page=True)
    if viewport is not None:
        page.set_viewport_size(viewport)


def shoot(
    browser,
    base: str,
    path: str,
    target: Path,
    size,
    theme: str,
    present: bool,
    lang: str | None = None,
) -> None:
    width, height, zoom = size
    context = browser.new_context(
        viewport={"width": round(width / zoom), "height": round(height / zoom)},
        device_scale_factor=zoom,
        color_scheme=theme,
        locale="ko-KR" if lang == "ko" else "en-US",
    )
    page = context.new_page()
    try:
        page.goto(f"{base}/{path}" + (f"?lang={lang}" if lang else ""))
        wait_done(page)
        if present:
            toggle = page.locator('[data-testid="stSidebar"] [data-testid="stCheckbox"]').filter(
                has_text="Presentation"
            )
            toggle.locator("input").dispatch_event("click")
            page.wait_for_timeout(500)
            wait_done(page)
        full_shot(page, target)
    finally:
        context.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, default=8501)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--out", default="test-output/shots")
    parser.add_argument("--page", action="append", help="url path(s); default: all pages")
    parser.add_argument("--width", type=int, default=1500)
    parser.add_argument("--height", type=int, default=1000, help="window height")
    parser.add_argument("--zoom", type=float, default=1.0, help="browser zoom, e.g. 1.5")
    parser.add_argument("--theme", choices=THEMES, default="light")
    parser.add_argument("--presentation", action="store_true", help="presentation setting on")
    parser.add_argument("--lang", choices=["en", "ko"], help="the app's language (?lang=...)")
    parser.add_argument(
        "--matrix",
        action="store_true",
        help="1280 x 720 at 100 %% and 150 %% zoom, light and dark (overrides the size/theme)",
    )
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    runs = (
        [(s, t) for s in SIZES for t in THEMES]
        if args.matrix
        else [((args.width, args.height, args.zoom), args.theme)]
    )
    base = f"http://{args.host}:{args.port}"
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            for path in args.page or app_pages():
                for size, theme in runs:
                    width, height, zoom = size
                    name = f"{path or 'image'}-{width}x{height}-{round(zoom * 100)}-{theme}"
                    name += "-present" if args.presentation else ""
                    name += f"-{args.lang}" if args.lang else ""
                    target = out / f"{name}.png"
                    shoot(browser, base, path, target, size, theme, args.presentation, args.lang)
                    print(target, flush=True)
        finally:
            browser.close()


if __name__ == "__main__":
    main()
