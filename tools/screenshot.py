"""Screenshot pages of a running explorer in headless Chromium (Debian's /usr/bin/chromium).

    .venv/bin/streamlit run app.py --server.port 8765 --server.headless true &
    .venv/bin/python tools/screenshot.py --port 8765 --out test-output/shots [--page anchors ...]

Each page is opened by its URL path, waited on until Streamlit reports the script finished, and
saved as a full-page PNG.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from playwright.sync_api import sync_playwright

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
PAGES = [
    "",
    "backbone",
    "anchors",
    "labelling",
    "rpn",
    "proposals",
    "roi",
    "head",
    "train",
    "detect",
    "bugs",
]


def wait_done(page, timeout_ms: int = 120_000) -> None:
    """Wait until the app has rendered, the script is no longer running and no element is
    still a loading placeholder (plotly charts and tables mount after the run ends)."""
    page.wait_for_selector('[data-testid="stApp"]', timeout=timeout_ms)
    page.wait_for_timeout(300)
    page.wait_for_selector(DONE, timeout=timeout_ms)
    page.wait_for_function(
        "() => !document.querySelector('[data-testid=\"stSkeleton\"]')", timeout=timeout_ms
    )
    page.wait_for_timeout(1500)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=8501)
    parser.add_argument("--out", default="test-output/shots")
    parser.add_argument("--page", action="append", help="url path(s); default: all pages")
    parser.add_argument("--width", type=int, default=1500)
    parser.add_argument("--height", type=int, default=1000, help="viewport height")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": args.width, "height": args.height})
        for path in args.page or PAGES:
            page.goto(f"http://localhost:{args.port}/{path}")
            wait_done(page)
            target = out / f"{path or 'image'}.png"
            page.screenshot(path=str(target), full_page=True)
            print(target)
        browser.close()


if __name__ == "__main__":
    main()
