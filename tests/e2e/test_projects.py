"""A student's work lasts, in a real browser: an upload, two drawn boxes, three changed settings
and five training iterations come back after a reload, in a second tab and after a restart of
the server; the project file opens on a fresh server (another store); a shared link opened in a
fresh browser shows the same numbers on the same page."""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

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

from tests.e2e.conftest import AppServer, StreamlitPage  # noqa: E402
from tests.e2e.test_browser import draw_box, press, write_photo  # noqa: E402

SIDEBAR = re.compile(r"^Image: field\.png · 2 boxes$")


@pytest.fixture
def own_server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """A server of this test's own, with its own store (it is restarted in the test)."""
    monkeypatch.setenv("FRCNN_STORE", f"sqlite:///{tmp_path / 'store.sqlite3'}")
    server = AppServer(log_path=tmp_path / "server.log").start()
    yield server
    server.stop()


def page_in(context: Any, server: AppServer) -> StreamlitPage:
    return StreamlitPage(context.new_page(), server.url)


def check_work(app: StreamlitPage, where: str) -> None:
    """The image, boxes, settings and trained heads are this student's."""
    app.wait_idle()
    expect(app.sidebar().get_by_text(SIDEBAR), where).to_be_visible()
    expect(app.sidebar().get_by_text("Heads: trained in this session"), where).to_be_visible()
    app.go("proposals", "After NMS")
    assert app.slider_value("NMS IoU threshold") == "0.65", where
    assert app.slider_value("Min size (px)") == "24.00", where
    app.go("roi", "Sampled RoIs")
    assert app.slider_value("RoIs per image") == "120", where


def test_work_survives_reload_tab_restart_and_travels_as_a_file(
    own_server: AppServer, chromium: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    context = chromium.new_context(viewport={"width": 1500, "height": 1000}, accept_downloads=True)
    app = page_in(context, own_server)
    app.open("", "Input frame (W x H)")
    photo = write_photo(tmp_path / "field.png")
    uploader = app.page.locator('[data-testid="stFileUploader"]').filter(has_text="upload an image")
    upload = uploader.locator('input[type="file"]')
    app.act(lambda: upload.set_input_files(photo), "Image: field.png · 0 boxes")
    field = app.page.get_by_role("textbox", name="Label for the next box")
    for i, (name, start, end) in enumerate(
        [("kite", (60, 60), (260, 220)), ("tent", (360, 150), (600, 420))]
    ):
        app.act(lambda name=name: (field.fill(name), field.press("Enter")))
        app.act(lambda start=start, end=end: draw_box(app, start, end))
        expect(app.metric_locator("Boxes used")).to_have_text(str(i + 1))
    app.go("proposals", "After NMS")
    press(app, "NMS IoU threshold", "ArrowLeft", ["0.65"])
    press(app, "Min size (px)", "ArrowRight", ["24.00"])
    app.go("roi", "Sampled RoIs")
    press(app, "RoIs per image", "ArrowLeft", ["120"])
    app.go("train", "Start training")
    iterations = app.slider_widget("Iterations")
    app.act(lambda: (iterations.click(), iterations.page.keyboard.press("Home")))
    press(app, "Iterations", "ArrowRight", ["2", "3", "4", "5"])
    app.act(lambda: app.page.get_by_role("button", name="Start training").click())
    expect(app.page.get_by_text(re.compile("Trained heads for 2 classes"))).to_be_visible(
        timeout=240_000
    )
    check_work(app, "the same tab")

    app.reload()
    check_work(app, "after a reload")
    second = page_in(context, own_server)
    second.open("")
    check_work(second, "a second tab")
    second.page.close()

    own_server.stop()
    own_server.start()
    app.open("")
    check_work(app, "after a restart of the server")

    app.go("roi", "Sampled RoIs")
    sidebar = app.sidebar()
    sidebar.get_by_text("Project").first.click()
    with app.page.expect_download() as info:
        sidebar.get_by_role("button", name="Download project").click()
    project = tmp_path / info.value.suggested_filename
    info.value.save_as(project)
    numbers = app.metrics()
    app.act(lambda: sidebar.get_by_role("button", name="Share this view").click())
    link = sidebar.locator('[data-testid="stCode"]').inner_text().strip()
    assert "/roi?" in link and "view=" in link
    context.close()

    # A fresh browser: the link shows the same numbers on the same page.
    visitor = chromium.new_context(viewport={"width": 1500, "height": 1000})
    viewer = page_in(visitor, own_server)
    viewer.page.goto(link)
    viewer.wait_idle()
    viewer.wait_texts(("Sampled RoIs",))
    # A fresh browser fetches the metric's code on first use: until then it is a grey skeleton.
    expect(viewer.metric_locator("Sampled RoIs")).to_have_text(numbers["Sampled RoIs"])
    assert viewer.metrics() == numbers
    visitor.close()

    # A fresh server with an empty store: the project file brings everything back.
    monkeypatch.setenv("FRCNN_STORE", f"sqlite:///{tmp_path / 'other.sqlite3'}")
    own_server.stop()
    fresh = AppServer(log_path=tmp_path / "fresh.log").start()
    try:
        other = chromium.new_context(viewport={"width": 1500, "height": 1000})
        app = page_in(other, fresh)
        app.open("", "Input frame (W x H)")
        app.sidebar().get_by_text("Project").first.click()
        opener = app.sidebar().locator('[data-testid="stFileUploader"] input[type="file"]').first
        app.act(lambda: opener.set_input_files(project), SIDEBAR)
        check_work(app, "the project file on a fresh server")
        other.close()
    finally:
        fresh.stop()
