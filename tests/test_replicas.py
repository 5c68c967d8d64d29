"""More than one server: two app replicas behind Debian's nginx (with the shipped
``deploy/nginx/frcnn.conf``) and a Redis store, all on 127.0.0.1; and one server killed and
started again over its SQLite store.

The replicated lesson: a student on replica A uploads an image and draws a box (the upload must
reach A through the proxy), follows an instructor who teaches from replica B, leaves the class;
then A is killed mid-lesson and the student's reconnect lands on B with the project intact.
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import re
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from benchmarks.replicas import Deployment, available
from benchmarks.st_client import LocalApp, StreamlitSession

ROOT = Path(__file__).resolve().parents[1]
TIMEOUT_S = 180.0
# Two servers start at once and each loads VGG16: a busy 2-core CPU has taken minutes.
START_S = 300.0

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not available(),
        reason="needs Debian's nginx and redis-server (.ci/run installs them)",
    ),
]


@pytest.fixture(scope="module")
def replicated(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    with Deployment(tmp_path_factory.mktemp("replicas"), ("a", "b"), start_s=START_S) as up:
        yield up


@pytest.fixture(scope="module")
def redis_url(replicated: Deployment) -> str:
    return replicated.store


@pytest.fixture(scope="module")
def deployment(replicated: Deployment) -> tuple[str, dict[str, LocalApp]]:
    return replicated.url, replicated.replicas


def replica_of(session: StreamlitSession) -> str:
    """The replica that serves ``session`` (the sidebar's "Device: ... · server X")."""
    for text in session.texts("caption", container="sidebar"):
        found = re.search(r"· server (\w+)", text)
        if found:
            return found.group(1)
    raise AssertionError(session.texts(container="sidebar"))


async def pinned(url: str, replica: str, browser: str, name: str) -> StreamlitSession:
    """A session through the proxy that lands on ``replica``: a browser with a route cookie that
    hashes there (the proxy picks; we try cookies until one does)."""
    for attempt in range(40):
        cookies = {"frcnn_route": f"{name}-{attempt}", "frcnn_browser": browser}
        session = StreamlitSession(url, name=name, timeout=TIMEOUT_S, cookies=cookies)
        await session.connect()
        if replica_of(session) == replica:
            return session
        await session.close()
    raise AssertionError(f"no route cookie reached replica {replica}")


def photo(seed: int) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 256, (240, 320, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="JPEG")
    return buf.getvalue()


def sidebar_image(session: StreamlitSession) -> str:
    return next(t for t in session.texts("caption", container="sidebar") if t.startswith("Image:"))


async def until(check, limit: float = 30.0) -> None:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if check():
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"not within {limit:g} s")


def saved(redis_url: str, browser: str) -> dict:
    """The project the store holds for ``browser``."""
    import redis

    raw = redis.Redis.from_url(redis_url).get(f"frcnn:project:{browser}")
    assert raw is not None
    return json.loads(raw)


def test_uploads_projects_and_a_class_across_replicas_and_a_replica_killed(
    deployment: tuple[str, dict[str, LocalApp]], redis_url: str
) -> None:
    url, replicas = deployment
    asyncio.run(_replicated_lesson(url, replicas, redis_url))


async def _replicated_lesson(url: str, replicas: dict[str, LocalApp], redis_url: str) -> None:
    student_browser = "student-browser-0123456789abcdef"
    student = await pinned(url, "a", student_browser, "student")
    teacher = await pinned(url, "b", "teacher-browser-0123456789abcdef", "teacher")
    try:
        # The upload goes through the proxy to the student's replica.
        done = await student.upload("image_page:upload", "field.jpg", photo(3))
        assert done.errors == ()
        box = {"label": "tractor", "x1": 20, "y1": 30, "x2": 200, "y2": 180}
        await student.edit_table("image_page:table:*", added_rows=[box])
        assert sidebar_image(student) == r"Image: **field\.jpg** · 1 box"

        # A class taught from replica B, followed on replica A (through Redis).
        await teacher.click("Start a class (instructor)")
        link = next(t for t in teacher.texts(container="sidebar") if "?class=" in t)
        code = link.rsplit("=", 1)[1].strip()
        await student.set_value("class:code", code)
        await student.click("Join the class")
        await teacher.navigate("labelling")
        await teacher.set_value("w:anchor_targets.pos_iou", 0.55)
        await until(
            lambda: (
                not student.running
                and student.page == "labelling"
                and student.widget("w:anchor_targets.pos_iou").value == pytest.approx(0.55)
            )
        )
        assert replica_of(student) == "a"
        await until(lambda: teacher.metric("Students following") == "1", 15)
        await student.click("Leave the class")
        assert sidebar_image(student) == r"Image: **field\.jpg** · 1 box"

        before = saved(redis_url, student_browser)
        assert [b["label"] for b in before["boxes"]] == ["tractor"]
        assert before["image"]["name"] == "field.jpg"

        # Replica A dies mid-lesson; the student's browser reconnects through the proxy.
        process = replicas["a"].process
        assert process is not None
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(10)
        await student.close()
        again = StreamlitSession(
            url, name="student again", timeout=TIMEOUT_S, cookies=student.cookies
        )
        await again.connect()
        try:
            assert replica_of(again) == "b"
            assert sidebar_image(again) == r"Image: **field\.jpg** · 1 box"
            assert saved(redis_url, student_browser) == before
        finally:
            await again.close()
        # The class goes on, on B.
        assert teacher.metric("Students following") is not None
    finally:
        await student.close()
        await teacher.close()
