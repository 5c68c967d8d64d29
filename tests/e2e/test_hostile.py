"""In a real browser: a label with a markdown image link, KaTeX, a colour directive, HTML and a
right-to-left override is shown as literal text and makes the browser fetch nothing; and a walk
through every page asks no host but the server (fonts and icons included)."""

from __future__ import annotations

import http.server
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

import pytest

if TYPE_CHECKING:
    from tests.e2e.conftest import StreamlitPage

CHROMIUM = "/usr/bin/chromium"  # as in conftest.py
pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(
        not Path(CHROMIUM).exists(), reason=f"needs Debian's Chromium at {CHROMIUM}"
    ),
]
pytest.importorskip("playwright.sync_api", reason="playwright (requirements-dev.txt) is missing")

from playwright.sync_api import expect  # noqa: E402

PAGES = ["", "backbone", "anchors", "labelling", "rpn", "proposals", "roi", "head", "train"]
PAGES += ["detect", "bugs"]


class Listener:
    """A local HTTP server that counts the requests a hostile label would make."""

    def __init__(self) -> None:
        self.hits: list[str] = []
        hits = self.hits

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                hits.append(self.path)
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def listener():
    listening = Listener()
    yield listening
    listening.close()


def test_a_hostile_label_is_literal_text_and_fetches_nothing(
    app: StreamlitPage, listener: Listener
) -> None:
    from tests.e2e.test_browser import draw_box  # the same drawing as the upload test

    trap = f"http://127.0.0.1:{listener.port}"
    labels = [f"![x]({trap}/md.png)", f"<img src={trap}/h.png>", ":red[r] $x$ \u202egnp"]
    app.open("", "Input frame (W x H)")
    field = app.page.get_by_role("textbox", name="Label for the next box")
    for i, label in enumerate(labels):
        app.act(lambda label=label: (field.fill(label), field.press("Enter")))
        app.act(lambda i=i: draw_box(app, (40 + 90 * i, 60), (120 + 90 * i, 200)))
        expect(app.metric_locator("Boxes used")).to_have_text(str(5 + i))
    shown = app.page.locator('[data-testid="stMain"]').inner_text()
    for path in ("labelling", "roi", "head", "detect", "bugs"):
        app.go(path)
        shown += app.page.locator('[data-testid="stMain"]').inner_text()
    assert listener.hits == []  # no image, link or style was fetched from the labels
    assert app.page.locator(f'img[src^="{trap}"]').count() == 0
    assert "\u202e" not in shown  # the override is shown by its code point, not obeyed
    app.go("")
    # The input frame's figure writes each label on its box (SVG text: what the eye reads).
    written = " ".join(app.page.locator(".js-plotly-plot text").all_text_contents())
    for label in labels:
        assert label.replace("\u202e", "<U+202E>") in written, (label, written[-400:])
    assert listener.hits == []


def test_a_walk_through_every_page_asks_no_other_host(app: StreamlitPage) -> None:
    server = urlparse(app.base_url).netloc
    hosts: set[str] = set()
    # data: and blob: URLs (an image the page made itself) reach no host at all.
    app.page.on(
        "request",
        lambda request: (
            hosts.add(urlparse(request.url).netloc)
            if urlparse(request.url).scheme in ("http", "https", "ws", "wss")
            else None
        ),
    )
    for path in PAGES:
        app.open(path)
        app.wait_idle()
    assert hosts == {server}, hosts
