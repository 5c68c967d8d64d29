"""End-to-end flows in headless Chromium against a live server; each asserts on what the page
shows. Run: ``.venv/bin/python -m pytest tests/e2e -m browser``. Screenshots of every page go
to ``test-output/e2e/`` (and ``FAILED-<test>.png`` when a test fails).

The numbers are SPEC section 3's (zebra sample, tutorial defaults): 22,500 anchors of which
8,940 lie inside the 800 x 800 frame; 45 positives (all best-IoU ties), 7,469 negatives and
1,426 ignored; 45 + 211 sampled. They do not depend on the backbone's weights.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlparse

import numpy as np
import pytest
from PIL import Image

if TYPE_CHECKING:
    from tests.e2e.conftest import StreamlitPage

CHROMIUM = "/usr/bin/chromium"  # as in conftest.py
pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(
        not Path(CHROMIUM).exists(),
        reason=f"browser tests need Debian's Chromium at {CHROMIUM} (apt-get install chromium)",
    ),
]
pytest.importorskip("playwright.sync_api", reason="playwright (requirements-dev.txt) is missing")

from playwright.sync_api import expect  # noqa: E402

from explorer.views.image import CANVAS_MARGIN  # noqa: E402

ZEBRA_SIDEBAR = "Image: zebras · 4 boxes"


def number(text: str) -> float:
    return float(text.replace(",", "").strip())


def assert_clean(app: StreamlitPage, where: str) -> None:
    errors = app.errors()
    assert not errors, f"{where}: the page shows an error: {errors}"


def pick_sample(app: StreamlitPage, title: str, sidebar_text: str) -> None:
    box = app.page.locator('[data-testid="stSelectbox"]').filter(has_text="Sample image")

    def choose() -> None:
        box.click()
        app.page.get_by_role("option", name=title, exact=True).click()

    app.act(choose, sidebar_text)


def press(
    app: StreamlitPage,
    slider_label: str,
    key: str,
    shown: list[str],
    *texts: str | re.Pattern[str],
) -> None:
    """Press ``key`` on the sidebar slider's thumb once per value in ``shown``: each press waits
    for the thumb to show that value and for the rerun it starts to finish (a press made while
    a run is in flight can be undone when that run echoes the older value back to the slider).
    After the last press, wait for ``texts``."""
    thumb = app.slider(slider_label)
    value = app.slider_value_locator(slider_label)
    for i, expected in enumerate(shown):

        def step(expected: str = expected) -> None:
            thumb.press(key)
            expect(value).to_have_text(expected)

        app.act(step, *(texts if i == len(shown) - 1 else ()))


def table_cells(app: StreamlitPage, column: int, grid: int = 0) -> Any:
    """One column's cells in a data grid (``grid`` 0: the page's first, the box table). The
    grid draws on a canvas; these are its accessible cells, filled in once it has laid out."""
    table = app.page.locator('[data-testid="stDataFrame"]').nth(grid)
    return table.locator(f'[data-testid^="glide-cell-{column}-"]')


def expect_column(app: StreamlitPage, column: int, texts: list[str], grid: int = 0) -> None:
    expect(table_cells(app, column, grid)).to_have_text(texts, timeout=15_000)


def editor_column(app: StreamlitPage, column: int) -> list[str]:
    return [c.text_content().strip() for c in table_cells(app, column).all()]


def draw_box(app: StreamlitPage, start: tuple[float, float], end: tuple[float, float]) -> None:
    """Drag with the mouse on the drawing canvas, from ``start`` to ``end`` (pixels of the
    picture on the canvas, which sits in a grey margin of ``CANVAS_MARGIN`` pixels)."""
    canvas = app.page.locator("canvas.upper-canvas").first
    canvas.evaluate("c => c.scrollIntoView({block: 'center', inline: 'center'})")
    box = canvas.bounding_box()
    assert box is not None, "the drawing canvas is not visible"
    x0, y0 = box["x"] + CANVAS_MARGIN, box["y"] + CANVAS_MARGIN
    mouse = app.page.mouse
    mouse.move(x0 + start[0], y0 + start[1])
    mouse.down()
    mouse.move(x0 + end[0], y0 + end[1], steps=8)
    mouse.up()


def canvas_scale(app: StreamlitPage, original_width: int) -> float:
    """Original pixels per canvas pixel (of the picture, inside the canvas's margin)."""
    canvas = app.page.locator("canvas.upper-canvas").first
    width = canvas.evaluate("c => c.getBoundingClientRect().width")
    return original_width / (width - 2 * CANVAS_MARGIN)


def write_photo(path: Path, width: int = 640, height: int = 480, seed: int = 0) -> Path:
    """A smooth, seeded RGB picture (gradients plus noise) saved as PNG."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width]
    base = np.stack((255 * xx / width, 255 * yy / height, 128 + 0 * xx), axis=2)
    pixels = np.clip(base + rng.normal(0, 25, size=base.shape), 0, 255).astype(np.uint8)
    Image.fromarray(pixels).save(path)
    return path


# -- the tour ------------------------------------------------------------------------------


def check_image(app: StreamlitPage) -> None:
    assert app.metric("Original (W x H)") == "2000 x 1333"
    assert app.metric("Input frame (W x H)") == "800 x 800"
    assert app.metric_int("Boxes used") == 4


def check_backbone(app: StreamlitPage) -> None:
    feature_map = app.metric("Feature map")
    assert re.fullmatch(r"512\s*[×x]\s*50\s*[×x]\s*50", feature_map), feature_map
    assert app.metric_int("Stride") == 16


def check_anchors(app: StreamlitPage) -> None:
    main = app.main()
    expect(main).to_contain_text(re.compile(r"22,?500"))
    expect(main).to_contain_text(re.compile(r"8,?940"))


def check_labelling(app: StreamlitPage) -> None:
    assert app.metric("Inside anchors") == "8,940"
    assert app.metric_int("Positive") == 45
    assert app.metric_int("Negative") == 7469
    assert app.metric_int("Ignored") == 1426
    assert app.metric_int("Sampled positive") == 45
    assert app.metric_int("Sampled negative") == 211


def check_rpn(app: StreamlitPage) -> None:
    assert app.metric("Anchors scored") == "22,500"
    assert app.metric_int("N_pos (positive anchors)") == 45
    assert app.metric_int("N_cls (sampled anchors)") == 256


def check_proposals(app: StreamlitPage) -> None:
    assert app.metric("Decoded") == "22,500"
    assert app.metric_int("Pre-NMS") == 12000
    after_nms = app.metric_int("After NMS")
    kept = app.metric_int("Kept")
    assert 0 < after_nms <= 12000
    assert kept == min(after_nms, 2000)


def check_roi(app: StreamlitPage) -> None:
    assert app.metric_int("Proposals") > 0
    assert app.metric_int("Sampled RoIs") == 128
    assert app.metric_int("Sampled positive") <= 32  # int(128 x 0.25)


def check_head(app: StreamlitPage) -> None:
    expect(app.main()).to_contain_text("S = 128")
    losses = {name: number(app.metric(name)) for name in ("rpn_cls", "rpn_loc", "roi_cls")}
    losses.update({name: number(app.metric(name)) for name in ("roi_loc", "total")})
    # Fresh heads score every RoI about 1/2 (one class + background): CE close to log 2.
    assert abs(losses["roi_cls"] - math.log(2)) < 0.2, losses
    parts = losses["rpn_cls"] + losses["rpn_loc"] + losses["roi_cls"] + losses["roi_loc"]
    assert abs(losses["total"] - parts) < 2e-3, losses


def check_train(app: StreamlitPage) -> None:
    expect(app.page.get_by_role("button", name="Start training")).to_be_enabled()
    expect(app.main()).to_contain_text("Initial weights (seeded)")


def check_detect(app: StreamlitPage) -> None:
    assert 0 < app.metric_int("Proposals") <= 300
    assert re.fullmatch(r"\d+ / 4", app.metric("GT found")), app.metric("GT found")


def check_bugs(app: StreamlitPage) -> None:
    expect(app.page.get_by_role("heading", name="All 13 at a glance")).to_be_visible()
    expect_column(app, 0, [f"B{i}" for i in range(1, 14)])
    # The first bug is shown in detail, with its effect computed on the zebras.
    expect(app.page.get_by_role("heading", name=re.compile(r"^B1 · "))).to_be_visible()
    expect(app.page.get_by_role("heading", name="Effect on this image")).to_be_visible()


# (url path, screenshot name, text that shows the page has rendered, check)
TOUR = [
    ("", "image", "Input frame (W x H)", check_image),
    ("backbone", "backbone", "Feature map", check_backbone),
    ("anchors", "anchors", re.compile(r"8,?940"), check_anchors),
    ("labelling", "labelling", "Inside anchors", check_labelling),
    ("rpn", "rpn", "Anchors scored", check_rpn),
    ("proposals", "proposals", "After NMS", check_proposals),
    ("roi", "roi", "Sampled RoIs", check_roi),
    ("head", "head", "rpn_cls", check_head),
    ("train", "train", "Start training", check_train),
    ("detect", "detect", "GT found", check_detect),
    ("bugs", "bugs", "All 13 at a glance", check_bugs),
]


def test_tour_of_every_page_on_the_zebras(app: StreamlitPage) -> None:
    app.open("", "Input frame (W x H)")
    assert_clean(app, "first load")
    # Pick the zebras explicitly (they are the default): another sample first, then them.
    pick_sample(app, "Chelsea the cat", "Image: chelsea")
    pick_sample(app, "Zebras (synthetic)", ZEBRA_SIDEBAR)
    failures = []
    for path, name, ready, check in TOUR:
        if path:
            app.go(path)
        app.screenshot(name)
        try:
            expect(app.text(ready).first).to_be_visible(timeout=10_000)
            assert_clean(app, f"/{path}")
            check(app)
        except AssertionError as exc:
            failures.append(f"/{path}: {exc}")
    assert not failures, "\n".join(failures)


# -- drawing on an uploaded image -------------------------------------------------------


def test_upload_draw_two_boxes_and_see_positives(app: StreamlitPage, tmp_path: Path) -> None:
    app.open("", "Input frame (W x H)")
    photo = write_photo(tmp_path / "street.png")
    upload = (
        app.page.locator('[data-testid="stFileUploader"]')
        .filter(has_text="upload an image")
        .locator('input[type="file"]')
    )
    app.act(lambda: upload.set_input_files(photo), "Image: street.png · 0 boxes")
    expect(app.metric_locator("Original (W x H)")).to_have_text("640 x 480")
    expect(app.metric_locator("Boxes used")).to_have_text("0")
    scale = canvas_scale(app, 640)

    label = app.page.get_by_role("textbox", name="Label for the next box")
    drawn = [("cat", (60, 60), (260, 220)), ("dog", (360, 150), (600, 420))]
    for i, (name, start, end) in enumerate(drawn, start=1):
        app.act(lambda name=name: (label.fill(name), label.press("Enter")))
        expect(label).to_have_value(name)
        app.act(lambda start=start, end=end: draw_box(app, start, end))
        expect(app.metric_locator("Boxes used")).to_have_text(str(i))
        caption = re.compile(rf"^Image: street\.png · {i} box(es)?$")
        expect(app.sidebar().get_by_text(caption)).to_be_visible()

    expect_column(app, 1, ["cat", "dog"])
    for column, (axis, corner) in enumerate([(0, 1), (1, 1), (0, 2), (1, 2)], start=2):
        shown = [number(v) for v in editor_column(app, column)]
        wanted = [(start if corner == 1 else end)[axis] * scale for _, start, end in drawn]
        assert np.allclose(shown, wanted, atol=3.0), (column, shown, wanted)
    expect(app.metric_locator("Classes")).to_have_text("2")
    app.screenshot("upload-drawn")

    app.go("labelling", "Inside anchors")
    assert_clean(app, "/labelling after drawing")
    expect(app.page.get_by_text("No ground-truth boxes yet")).to_have_count(0)
    # Waited for, not read once: the page's metrics can still be the last run's for a moment.
    expect(app.metric_locator("Inside anchors")).to_have_text("8,940")
    positives = app.metric_int("Positive")
    assert positives > 0, "two drawn boxes should give positive anchors"
    assert app.metric_int("Sampled positive") == min(positives, 128)
    app.screenshot("upload-labelling")


# -- sliders --------------------------------------------------------------------------------


def test_sliders_change_the_numbers(app: StreamlitPage) -> None:
    app.open("proposals", "After NMS")
    assert app.slider_value("NMS IoU threshold") == "0.70"
    before = app.metric_int("After NMS")
    # Four steps of 0.05 down; the NMS step's explanation echoes the server's new value.
    steps = ["0.65", "0.60", "0.55", "0.50"]
    press(app, "NMS IoU threshold", "ArrowLeft", steps, re.compile(r"IoU > 0\.5(?![\d.])"))
    assert app.slider_value("NMS IoU threshold") == "0.50"
    after = app.metric_int("After NMS")
    assert after < before, (
        f"NMS at IoU 0.5 should keep fewer boxes than at 0.7 ({after} vs {before})"
    )
    assert app.metric_int("Kept") == min(after, 2000)
    assert_clean(app, "/proposals after the NMS slider")

    app.go("labelling", "Inside anchors")
    assert app.metric_int("Positive") == 45
    steps = ["0.65", "0.60", "0.55", "0.50", "0.45", "0.40"]
    press(app, "Positive IoU ≥", "ArrowLeft", steps, "reach IoU ≥ 0.40")
    assert app.slider_value("Positive IoU ≥") == "0.40"
    # Geometry only (anchors and the four boxes): 609 anchors reach IoU 0.4, the 45 ties among
    # them; the sample takes at most 128.
    positives = app.metric_int("Positive")
    assert positives == 609, f"at a 0.40 threshold the page shows {positives} positives, not 609"
    expect(app.main()).to_contain_text("609 anchors reach IoU ≥ 0.40")
    assert app.metric_int("Sampled positive") == 128
    assert_clean(app, "/labelling after the positive IoU slider")

    # Detect: a score threshold above every score leaves no detection.
    app.go("detect", "GT found")
    assert app.metric_int("Above threshold") > 0
    press(app, "Score threshold", "End", ["0.99"])
    assert app.slider_value("Score threshold") == "0.99"
    assert app.metric_int("Above threshold") == 0, "no fresh-head score reaches 0.99"
    expect(app.text("No class score reaches the threshold")).to_be_visible()
    assert_clean(app, "/detect after the score threshold slider")


# -- reload --------------------------------------------------------------------------------


def test_reload_comes_back_usable(app: StreamlitPage) -> None:
    app.open("labelling", "Inside anchors")
    assert app.metric_int("Positive") == 45
    app.reload("Inside anchors")
    assert_clean(app, "after reload")
    assert urlparse(app.page.url).path.rstrip("/").endswith("/labelling")
    assert parse_qs(urlparse(app.page.url).query).get("lang") == ["en"]  # kept in the URL
    assert app.metric("Inside anchors") == "8,940"
    assert app.metric_int("Positive") == 45
    expect(app.sidebar()).to_contain_text(ZEBRA_SIDEBAR)
    # Still interactive after the reload.
    press(app, "Positive IoU ≥", "ArrowLeft", ["0.65"], "reach IoU ≥ 0.65")
    assert_clean(app, "slider after reload")


# -- a file that is not an image ----------------------------------------------------------


def test_upload_of_a_non_image_keeps_image_and_boxes(app: StreamlitPage, tmp_path: Path) -> None:
    app.open("", "Input frame (W x H)")
    expect_column(app, 1, ["zebra"] * 4)
    fake = tmp_path / "notes.png"
    fake.write_text("these are my notes, not a picture\n" * 20, encoding="utf-8")
    upload = (
        app.page.locator('[data-testid="stFileUploader"]')
        .filter(has_text="upload an image")
        .locator('input[type="file"]')
    )
    app.act(lambda: upload.set_input_files(fake), "cannot be used")
    message = app.page.locator('[data-testid="stAlertContentWarning"]').filter(
        has_text="cannot be used"
    )
    expect(message).to_contain_text("notes.png")
    expect(message).to_contain_text("previous image and its boxes are kept")
    expect(app.page.locator('[data-testid="stException"]')).to_have_count(0)
    expect(app.sidebar()).to_contain_text(ZEBRA_SIDEBAR)
    assert app.metric("Original (W x H)") == "2000 x 1333"
    assert app.metric_int("Boxes used") == 4
    expect_column(app, 1, ["zebra"] * 4)
    app.screenshot("upload-not-an-image")
