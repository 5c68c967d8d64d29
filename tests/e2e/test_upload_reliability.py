"""An uploaded photo is taken every time, in a real browser.

The failure this guards against: in a session opened on another page, going to the Image page
and uploading a photo left the file in the uploader while the app kept the zebras, with no
message. Streamlit answers a rerun request that arrives while a run is going (here the drawing
canvas reporting its background once loaded, on the page's first run in the session) by
stopping that run and starting a new one at once; the new run saw the uploader's value
unchanged, so it called no callback, and the stopped callback had already marked the file as
handled. ``explorer.image_page.take_upload`` now marks it last, and the page takes it.

- :func:`test_upload_taken_when_another_rerun_interrupts_it`: the race made certain: a photo
  that takes a while to decode, and a second rerun request sent the moment the upload's is.
- :func:`test_upload_after_opening_another_page`: the reported path, repeated: a fresh session
  on /detect or /train, then the Image page, then a new random JPEG as soon as the uploader
  is there. ``FRCNN_UPLOAD_REPS`` sets the repetitions (default 8; the acceptance run used 50).
"""

from __future__ import annotations

import io
import os
import re
import secrets
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pytest
from PIL import Image

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

REPS = int(os.environ.get("FRCNN_UPLOAD_REPS", "8"))
# From the upload to the sidebar naming it: a new image's first runs take seconds on 2 cores.
TAKEN_MS = 90_000


def random_jpeg(width: int, height: int) -> bytes:
    """A new photo-like JPEG each call (gradients plus fresh noise): never a cached digest."""
    rng = np.random.default_rng()
    yy, xx = np.mgrid[0:height, 0:width]
    base = np.stack((255 * xx / width, 255 * yy / height, 128 + 0 * xx), axis=2)
    pixels = np.clip(base + rng.normal(0, 20, size=base.shape), 0, 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="JPEG", quality=85)
    return buf.getvalue()


def image_uploader(app: StreamlitPage) -> Any:
    """The Image page's photo uploader (the page has another one, for box files)."""
    return (
        app.page.locator('[data-testid="stFileUploader"]')
        .filter(has_text="upload an image")
        .locator('input[type="file"]')
    )


def upload(app: StreamlitPage, name: str, data: bytes) -> None:
    image_uploader(app).set_input_files(
        files=[{"name": name, "mimeType": "image/jpeg", "buffer": data}]
    )


def expect_taken(app: StreamlitPage, name: str, size: tuple[int, int]) -> None:
    """The sidebar names the photo (0 boxes) and the page measures it."""
    caption = re.compile(rf"^Image: {re.escape(name)} · 0 boxes$")
    expect(app.sidebar().get_by_text(caption)).to_be_visible(timeout=TAKEN_MS)
    expect(app.metric_locator("Original (W x H)")).to_have_text(f"{size[0]} x {size[1]}")
    assert not app.errors(), app.errors()


def test_upload_taken_when_another_rerun_interrupts_it(app: StreamlitPage) -> None:
    app.open("", "Input frame (W x H)")
    toggle = (
        app.sidebar()
        .locator('[data-testid="stCheckbox"]')
        .filter(has_text="Truncate boxes")
        .locator("input")
    )
    # 4000 x 3000: decoding it takes a good part of a second, so the second request comes
    # while the upload's callback runs (before the fix: 4 of 4 uploads ignored).
    name = f"big-{secrets.token_hex(3)}.jpg"
    sends = app.stats()["sends"]
    upload(app, name, random_jpeg(4000, 3000))
    app.page.wait_for_function(
        "(n) => window.__st.sends > n", arg=sends, polling=5, timeout=TAKEN_MS
    )
    toggle.dispatch_event("click")  # a second rerun request, at once
    expect_taken(app, name, (4000, 3000))
    app.wait_idle()
    expect(app.sidebar()).to_contain_text(f"Image: {name} · 0 boxes")


@pytest.mark.parametrize("rep", range(REPS))
def test_upload_after_opening_another_page(app: StreamlitPage, rep: int) -> None:
    start, ready = [("detect", "GT found"), ("train", "Start training")][rep % 2]
    app.open(start, ready)
    app.nav_link("").click()  # to the Image page; no wait: upload as soon as it is there
    image_uploader(app).wait_for(state="attached", timeout=TAKEN_MS)
    name = f"photo-{rep}-{secrets.token_hex(3)}.jpg"
    upload(app, name, random_jpeg(1600, 1200))
    expect_taken(app, name, (1600, 1200))
