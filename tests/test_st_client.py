"""The protocol client (benchmarks/st_client.py) against a live ``streamlit run app.py``.

One server for the module; every test opens its own sessions (a fresh session is the zebra
sample with its four boxes and the tutorial's settings). Pages that need no backbone forward
keep it short: the Image page and Anchor labelling.
"""

from __future__ import annotations

import asyncio
import io
import re
from collections.abc import Iterator

import numpy as np
import pytest
from PIL import Image

from benchmarks.st_client import (
    ActionTimeout,
    LocalApp,
    StreamlitClientError,
    StreamlitSession,
    check_local,
)

# A server start and its first run (VGG16 and the heads load): 30-100 s on a busy 2-core CPU.
pytestmark = pytest.mark.slow

TIMEOUT_S = 180.0  # bounds a failure; a busy shared CPU has taken 50 s for the first run


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalApp]:
    log = tmp_path_factory.mktemp("st_client") / "server.log"
    server = LocalApp(log_path=log, env={"FRCNN_DEVICE": "cpu"})
    server.start(timeout=TIMEOUT_S)
    try:
        yield server
    finally:
        server.stop()


def small_jpeg(seed: int, width: int = 160, height: int = 120) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="JPEG")
    return buf.getvalue()


def sidebar_image(session: StreamlitSession) -> str:
    """The sidebar's "Image: **name** · N boxes" caption."""
    found = [t for t in session.texts("caption", container="sidebar") if t.startswith("Image:")]
    assert len(found) == 1, session.texts(container="sidebar")
    return found[0]


def test_only_local_servers() -> None:
    assert check_local("http://127.0.0.1:8501").port == 8501
    for url in ("http://example.com:8501", "http://10.0.0.1:8501", "ftp://127.0.0.1:1"):
        with pytest.raises(ValueError, match="only local apps"):
            StreamlitSession(url)


def test_opens_the_app_and_reads_the_page(app: LocalApp) -> None:
    async def scenario() -> None:
        async with StreamlitSession(app.url, timeout=TIMEOUT_S) as s:
            assert re.fullmatch(r"[0-9a-f-]{36}", s.session_id)
            assert s.page == ""  # the default page: Image & ground truth
            paths = [p.url_path for p in s.pages]
            assert paths[:4] == ["", "backbone", "anchors", "labelling"]
            assert s.metric("Input frame (W x H)") == "800 x 800"
            assert s.metric("Original (W x H)") == "2000 x 1333"
            assert sidebar_image(s) == "Image: **zebras** · 4 boxes"
            width = s.widget("w:resize.width")
            assert (width.kind, width.value, width.label) == ("slider", 800, "Input width")
            sample = s.widget("Sample image")  # by label
            assert sample.key == "image_page:sample"
            assert sample.value == "Zebras (synthetic)" and "Chelsea the cat" in sample.options
            assert s.widget("w:resize.truncate_boxes").kind == "toggle"
            with pytest.raises(StreamlitClientError, match="no widget 'nope'"):
                s.widget("nope")
            with pytest.raises(StreamlitClientError, match="no page"):
                await s.navigate("no-such-page")

    asyncio.run(scenario())


def test_navigate_and_a_slider_changes_the_metric(app: LocalApp) -> None:
    async def scenario() -> None:
        async with StreamlitSession(app.url, timeout=TIMEOUT_S) as s:
            opened = await s.navigate("labelling")
            assert (opened.page, opened.status, opened.errors) == ("labelling", "finished", ())
            assert 0 < opened.start_s <= opened.latency_s
            assert s.widget("w:anchor_targets.pos_iou").value == pytest.approx(0.7)
            at_07 = int(s.metric("Positive") or -1)
            moved = await s.set_value("w:anchor_targets.pos_iou", 0.5)
            assert moved.page == "labelling" and moved.latency_s > 0
            assert s.widget("w:anchor_targets.pos_iou").value == pytest.approx(0.5)
            at_05 = int(s.metric("Positive") or -1)
            # More anchors reach IoU 0.5 than 0.7 with the zebras' four boxes.
            assert 0 < at_07 < at_05
            assert "IoU ≥ 0.50" in " ".join(s.texts("markdown"))
            with pytest.raises(ValueError, match="in \\[0"):
                await s.set_value("w:anchor_targets.pos_iou", 7.0)
            # Back to the Image page: its widgets again, the setting kept by the session.
            await s.navigate("")
            assert s.page == "" and s.metric("Input frame (W x H)") == "800 x 800"
            await s.navigate("labelling")
            assert s.widget("w:anchor_targets.pos_iou").value == pytest.approx(0.5)
            assert int(s.metric("Positive") or -1) == at_05

    asyncio.run(scenario())


def test_upload_table_edit_and_two_isolated_sessions(app: LocalApp) -> None:
    seen_by_a: list[bytes] = []
    seen_by_b: list[bytes] = []

    async def scenario() -> None:
        a = StreamlitSession(
            app.url, timeout=TIMEOUT_S, on_message=lambda r, _: seen_by_a.append(r)
        )
        b = StreamlitSession(
            app.url, timeout=TIMEOUT_S, on_message=lambda r, _: seen_by_b.append(r)
        )
        await asyncio.gather(a.connect(), b.connect())
        try:
            assert a.session_id != b.session_id
            uploaded = await a.upload("image_page:upload", "alphaimg.jpg", small_jpeg(1))
            assert uploaded.before_s > 0 and uploaded.errors == ()
            assert "alphaimg" in sidebar_image(a) and sidebar_image(a).endswith("· 0 boxes")
            assert a.metric("Original (W x H)") == "160 x 120"
            assert a.widget("image_page:upload").value == ["alphaimg.jpg"]
            box = {"label": "alphalbl", "x1": 10.0, "y1": 20.0, "x2": 90.0, "y2": 100.0}
            await a.edit_table("image_page:table:*", added_rows=[box])
            assert "alphaimg" in sidebar_image(a) and sidebar_image(a).endswith("· 1 box")
            assert a.metric("Boxes used") == "1"
            # Meanwhile b picks another sample and types its own label.
            await b.set_value("image_page:sample", "Chelsea the cat")
            await b.set_value("image_page:label_widget", "betalbl")
            assert b.widget("image_page:label_widget").value == "betalbl"
            assert sidebar_image(b).startswith("Image: **chelsea** · ")
            await a.rerun()
            assert "alphaimg" in sidebar_image(a) and sidebar_image(a).endswith("· 1 box")
        finally:
            await asyncio.gather(a.close(), b.close())

    asyncio.run(scenario())
    assert any(b"alphalbl" in raw for raw in seen_by_a)  # the scan can see a label at all
    assert not any(b"alpha" in raw for raw in seen_by_b)
    assert not any(b"betalbl" in raw for raw in seen_by_a)


def test_a_timeout_is_raised_and_the_session_recovers(app: LocalApp) -> None:
    async def scenario() -> None:
        async with StreamlitSession(app.url, timeout=TIMEOUT_S) as s:
            with pytest.raises(ActionTimeout):
                await s.navigate("labelling", timeout=0.001)
            # The late run must not pass for the next action's: that one runs the Image page.
            back = await s.navigate("")
            assert back.page == "" and s.metric("Input frame (W x H)") == "800 x 800"
            assert s.find("metric", text="Positive") == []

    asyncio.run(scenario())


FRAGMENT_APP = """
import streamlit as st

st.title("Fragments")
st.session_state.full = st.session_state.get("full", 0) + 1
st.caption(f"full runs: {st.session_state.full}")


@st.fragment(run_every=0.3 if st.session_state.get("ticking", True) else None)
def ticker():
    st.session_state.ticks = st.session_state.get("ticks", 0) + 1
    st.metric("Ticks", st.session_state.ticks)
    st.button("Bump", key="bump")


ticker()
st.toggle("Ticking", value=True, key="ticking")
"""


def test_fragment_timers_and_fragment_runs(tmp_path: pytest.TempPathFactory) -> None:
    script = tmp_path / "fragments.py"  # type: ignore[operator]
    script.write_text(FRAGMENT_APP)

    async def scenario(url: str) -> None:
        async with StreamlitSession(url, timeout=TIMEOUT_S) as s:
            start = int(s.metric("Ticks") or 0)
            await asyncio.sleep(1.5)  # the browser reruns the fragment every 0.3 s
            ticking = int(s.metric("Ticks") or 0)
            assert ticking >= start + 2
            # Fragment runs redraw the fragment only: the rest of the page stays.
            assert s.texts("caption") == ["full runs: 1"]
            assert s.texts("heading") == ["Fragments"]
            bumped = await s.click("bump")
            assert bumped.status == "fragment" and s.texts("caption") == ["full runs: 1"]
            stopped = await s.set_value("ticking", False)  # a full run, no timer any more
            assert stopped.status == "finished" and s.texts("caption") == ["full runs: 2"]
            still = int(s.metric("Ticks") or 0)
            await asyncio.sleep(1.0)
            await s.rerun()
            assert int(s.metric("Ticks") or 0) == still + 1  # only the rerun's own run

    with LocalApp(script=str(script)) as server:
        asyncio.run(scenario(server.url))
