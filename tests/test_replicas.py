"""More than one server: two app replicas behind Debian's nginx (with the shipped
``deploy/nginx/frcnn.conf``) and a Redis store, all on 127.0.0.1; and one server killed and
started again over its SQLite store.

The replicated lesson: a student on replica A uploads an image and draws a box (the upload must
reach A through the proxy), follows an instructor who teaches from replica B, leaves the class;
then A is killed mid-lesson and the student's reconnect lands on B with the project intact.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from benchmarks.st_client import LocalApp, StreamlitSession, free_port

ROOT = Path(__file__).resolve().parents[1]
NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
REDIS = shutil.which("redis-server") or "/usr/bin/redis-server"
TIMEOUT_S = 180.0
# Two servers start at once and each loads VGG16: a busy 2-core CPU has taken minutes.
START_S = 300.0

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not (os.path.exists(NGINX) and os.path.exists(REDIS)),
        reason="needs Debian's nginx and redis-server (.ci/run installs them)",
    ),
]


def wait_port(port: int, limit: float = 30.0) -> None:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.5):
            return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port}")


@pytest.fixture(scope="module")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    folder = tmp_path_factory.mktemp("redis")
    port = free_port()
    command = [
        REDIS,
        "--bind",
        "127.0.0.1",
        "--port",
        str(port),
        "--save",
        "",
        "--dir",
        str(folder),
    ]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_port(port)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        process.terminate()
        process.wait(10)


def nginx_conf(folder: Path, listen: int, upstreams: list[int]) -> Path:
    """The shipped site config with this test's ports, in a main config that runs unprivileged
    from ``folder``."""
    site = (ROOT / "deploy" / "nginx" / "frcnn.conf").read_text()
    site = site.replace("listen 8080;", f"listen 127.0.0.1:{listen};")
    servers = re.findall(r"server app\d+:8501", site)
    assert len(servers) == len(upstreams) == 2, servers
    for old, port in zip(servers, upstreams, strict=True):
        site = site.replace(old, f"server 127.0.0.1:{port}")
    (folder / "frcnn.conf").write_text(site)
    temp = {name: folder / name for name in ("body", "proxy", "fastcgi", "uwsgi", "scgi")}
    for path in temp.values():
        path.mkdir(exist_ok=True)
    main = f"""
{"user root;" if os.geteuid() == 0 else ""}
worker_processes 1;
daemon off;
pid {folder}/nginx.pid;
error_log {folder}/error.log warn;
events {{ worker_connections 512; }}
http {{
    access_log {folder}/access.log;
    client_body_temp_path {temp["body"]};
    proxy_temp_path {temp["proxy"]};
    fastcgi_temp_path {temp["fastcgi"]};
    uwsgi_temp_path {temp["uwsgi"]};
    scgi_temp_path {temp["scgi"]};
    include {folder}/frcnn.conf;
}}
"""
    path = folder / "nginx.conf"
    path.write_text(main)
    return path


@pytest.fixture(scope="module")
def deployment(
    tmp_path_factory: pytest.TempPathFactory, redis_url: str
) -> Iterator[tuple[str, dict[str, LocalApp]]]:
    folder = tmp_path_factory.mktemp("replicas")
    replicas = {
        name: LocalApp(
            log_path=folder / f"{name}.log",
            env={
                "FRCNN_DEVICE": "cpu",
                "FRCNN_STORE": redis_url,
                "FRCNN_REPLICA": name,
                "STREAMLIT_SERVER_COOKIE_SECRET": "the same on every replica",
            },
        )
        for name in ("a", "b")
    }
    starts = [threading.Thread(target=r.start, args=(START_S,)) for r in replicas.values()]
    for t in starts:
        t.start()
    for t in starts:
        t.join()
    port = free_port()
    conf = nginx_conf(folder, port, [r.port for r in replicas.values()])
    check = subprocess.run([NGINX, "-t", "-p", str(folder), "-c", str(conf)], capture_output=True)
    assert check.returncode == 0, check.stderr.decode()
    proxy = subprocess.Popen([NGINX, "-p", str(folder), "-c", str(conf)])
    try:
        wait_port(port)
        yield f"http://127.0.0.1:{port}", replicas
    finally:
        proxy.terminate()
        proxy.wait(10)
        for replica in replicas.values():
            replica.stop()


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
