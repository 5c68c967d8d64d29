"""One server killed mid-lesson (SIGKILL, a student's action in flight) and started again over
the same SQLite store: every saved project is intact, and the class goes on (the instructor
still teaches it, the student is back in it).
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import signal
import sqlite3
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from benchmarks.st_client import LocalApp, StreamlitSession
from explorer.store import SqliteStore

pytestmark = pytest.mark.slow

TIMEOUT_S = 180.0
BROWSERS = {
    "teacher": "teacher-browser-0123456789abcdef",
    "uploader": "uploader-browser-0123456789abcdef",
    "tuner": "tuner-browser-0123456789abcdef",
}


def photo() -> bytes:
    pixels = np.random.default_rng(5).integers(0, 256, (200, 300, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="JPEG")
    return buf.getvalue()


def projects(store: Path) -> dict[str, dict]:
    db = SqliteStore(store, 2**30)
    try:
        return {who: json.loads(db.get("project", b) or b"null") for who, b in BROWSERS.items()}
    finally:
        db.close()


def session(url: str, who: str) -> StreamlitSession:
    cookies = {"frcnn_browser": BROWSERS[who]}
    return StreamlitSession(url, name=who, timeout=TIMEOUT_S, cookies=cookies)


def sidebar(s: StreamlitSession) -> list[str]:
    return s.texts(container="sidebar")


def test_a_server_killed_mid_lesson_loses_no_saved_project(tmp_path: Path) -> None:
    store = tmp_path / "store.sqlite3"
    env = {"FRCNN_DEVICE": "cpu", "FRCNN_STORE": f"sqlite:///{store}"}
    first = LocalApp(log_path=tmp_path / "first.log", env=env)
    first.start(TIMEOUT_S)
    try:
        code = asyncio.run(_before(first, store))
    finally:
        first.stop()
    before = projects(store)
    with sqlite3.connect(store) as db:
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    again = LocalApp(first.port, log_path=tmp_path / "again.log", env=env)
    again.start(TIMEOUT_S)
    try:
        asyncio.run(_after(again, code, store, before))
    finally:
        again.stop()


async def _before(app: LocalApp, store: Path) -> str:
    teacher, uploader, tuner = (session(app.url, w) for w in BROWSERS)
    for s in (teacher, uploader, tuner):
        await s.connect()
    await uploader.upload("image_page:upload", "field.jpg", photo())
    box = {"label": "tractor", "x1": 20, "y1": 30, "x2": 200, "y2": 180}
    await uploader.edit_table("image_page:table:*", added_rows=[box])
    await tuner.navigate("labelling")
    await tuner.set_value("w:anchor_targets.pos_iou", 0.6)
    await teacher.click("Start a class (instructor)")
    link = next(t for t in sidebar(teacher) if "?class=" in t)
    code = link.rsplit("=", 1)[1].strip()
    await uploader.set_value("class:code", code)
    await uploader.click("Join the class")
    await teacher.navigate("anchors")
    saved = projects(store)
    assert saved["uploader"]["image"]["name"] == "field.jpg"
    assert [b["label"] for b in saved["uploader"]["boxes"]] == ["tractor"]
    assert saved["tuner"]["params"] == {"anchor_targets.pos_iou": 0.6}
    assert saved["tuner"]["page"] == "labelling"
    # Mid-lesson: the tuner's next move is in flight when the server dies.
    moving = asyncio.create_task(tuner.set_value("w:anchor_targets.neg_iou", 0.25))
    await asyncio.sleep(0.05)
    assert app.process is not None
    os.killpg(app.process.pid, signal.SIGKILL)
    app.process.wait(10)
    for s in (teacher, uploader, tuner):
        await s.close()
    moving.cancel()
    return code


async def _after(app: LocalApp, code: str, store: Path, before: dict[str, dict]) -> None:
    teacher, uploader, tuner = (session(app.url, w) for w in BROWSERS)
    try:
        for s in (teacher, uploader, tuner):
            await s.connect()
        assert projects(store) == before  # coming back changed nothing
        # The instructor still teaches the class; the student is back in it, following.
        assert any(f"Class code: `{code[:3]}-{code[3:]}`" in t for t in sidebar(teacher))
        assert any("Following the instructor" in t for t in sidebar(uploader))
        # The tuner's project: its page and setting.
        await tuner.navigate("labelling")
        assert tuner.widget("w:anchor_targets.pos_iou").value == pytest.approx(0.6)
        # The uploader leaves the class: its own image and box come back.
        await uploader.click("Leave the class")
        caption = next(t for t in sidebar(uploader) if t.startswith("Image:"))
        assert caption == r"Image: **field\.jpg** · 1 box"
    finally:
        for s in (teacher, uploader, tuner):
            await s.close()
