"""Follow the instructor, over Streamlit's own protocol: one instructor and three students on a
live server (``benchmarks/st_client.py``), plus the class panel's checks in AppTest.

The protocol test is one lesson: students join (by link and by code), follow page and setting
changes, one steps away and is not pulled back until it follows again, a student's changes
never reach the class, and the end of the class gives each student their own project back.
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from benchmarks.st_client import LocalApp, StreamlitSession
from explorer import classroom
from explorer.store import SqliteStore

ROOT = Path(__file__).resolve().parents[1]
TIMEOUT_S = 180.0  # bounds a failure (a busy 2-core CPU has taken 50 s for a first run)
# Students follow without reloading: the watcher pushes the rerun (it adds at most POLL_S,
# 0.2 s; the rest is the student's own rerun of the page). The bar, a second, is a speed
# target: the test prints the delays (`-s`) and bounds them only loosely, since a busy 2-core
# machine stretches every rerun (0.4-1.5 s measured at a load of 3-5); a student left behind
# until a manual reload would wait the whole TIMEOUT_S.
FOLLOW_S = float(os.environ.get("FRCNN_TEST_FOLLOW_S", "15.0"))


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LocalApp, Path]]:
    folder = tmp_path_factory.mktemp("classroom")
    store = folder / "store.sqlite3"
    app = LocalApp(
        log_path=folder / "server.log",
        env={"FRCNN_DEVICE": "cpu", "FRCNN_STORE": f"sqlite:///{store}"},
    )
    app.start(timeout=TIMEOUT_S)
    try:
        yield app, store
    finally:
        app.stop()


async def until(check: Callable[[], bool], limit: float = 30.0) -> float:
    """Seconds until ``check()`` holds (polled every 10 ms); fails the test after ``limit``."""
    start = time.monotonic()
    while time.monotonic() - start < limit:
        if check():
            return time.monotonic() - start
        await asyncio.sleep(0.01)
    raise AssertionError(f"not within {limit:g} s")


def shows(session: StreamlitSession, page: str, **values: object) -> Callable[[], bool]:
    """A check: ``session`` finished a run of ``page`` whose widgets hold ``values``."""

    def check() -> bool:
        if session.running or session.page != page:
            return False
        have = {w.key: w.value for w in session.widgets() if w.key in values}
        return have == values

    return check


def sidebar_says(session: StreamlitSession, text: str) -> bool:
    return any(text in t for t in session.texts(container="sidebar"))


def class_record(store: Path, code: str) -> dict:
    raw = SqliteStore(store, 2**30).get("class", code)
    assert raw is not None, f"no class {code}"
    return json.loads(raw)


@pytest.mark.slow
def test_a_lesson_with_one_instructor_and_three_students(
    server: tuple[LocalApp, Path],
) -> None:
    app, store = server
    asyncio.run(_lesson(app.url, store))


async def _lesson(url: str, store: Path) -> None:
    teacher = StreamlitSession(url, name="instructor", timeout=TIMEOUT_S)
    students = [StreamlitSession(url, name=f"student {i}", timeout=TIMEOUT_S) for i in range(3)]
    await teacher.connect()
    try:
        await teacher.click("Start a class (instructor)")
        link = next(t for t in teacher.texts(container="sidebar") if "?class=" in t)
        code = link.rsplit("=", 1)[1].strip()
        assert len(code) == classroom.CODE_LENGTH and set(code) <= set(classroom.ALPHABET)
        assert sidebar_says(teacher, f"Class code: `{classroom.display(code)}`")

        # Two join by the link, one types the code as it is projected (with its dash).
        for s in students[:2]:
            await s.connect(query=f"class={code}")
        await students[2].connect()
        await students[2].set_value("class:code", classroom.display(code).lower())
        await students[2].click("Join the class")
        for s in students:
            assert sidebar_says(s, "Following the instructor"), s.texts(container="sidebar")
        await until(lambda: teacher.metric("Students following") == "3", 15)

        # The instructor opens a page and moves a setting: every student follows, each
        # within FOLLOW_S of the instructor's run.
        delays = []
        opened = await teacher.navigate("labelling")
        print(f"instructor's run of the page: {opened.latency_s:.3f} s")
        delays += await asyncio.gather(*(until(shows(s, "labelling")) for s in students))
        await teacher.set_value("w:anchor_targets.pos_iou", 0.5)
        expected = teacher.metric("Positive")
        delays += await asyncio.gather(
            *(until(shows(s, "labelling", **{"w:anchor_targets.pos_iou": 0.5})) for s in students)
        )
        for s in students:
            assert s.metric("Positive") == expected
        print(f"follow delays (s): {[round(d, 3) for d in delays]}")
        assert max(delays) < FOLLOW_S, delays

        # A student steps away by moving a slider: the class is not changed by it...
        before = class_record(store, code)["fingerprint"]
        await students[0].set_value("w:anchor_targets.neg_iou", 0.2)
        assert sidebar_says(students[0], "exploring on your own")
        assert students[0].widget("Follow the instructor").kind == "button"
        await asyncio.sleep(3 * classroom.POLL_S)
        assert class_record(store, code)["fingerprint"] == before
        for s in students[1:]:
            assert s.widget("w:anchor_targets.neg_iou").value == pytest.approx(0.3)
        await until(lambda: teacher.metric("Students following") == "2", 15)
        assert sidebar_says(teacher, "1 exploring on their own")

        # ...and it is not pulled back when the instructor moves on.
        await teacher.navigate("anchors")
        await asyncio.gather(*(until(shows(s, "anchors")) for s in students[1:]))
        await asyncio.sleep(1.0)
        assert students[0].page == "labelling"
        assert students[0].widget("w:anchor_targets.neg_iou").value == pytest.approx(0.2)

        # One click brings it back: the instructor's page and settings, its own change gone.
        await students[0].click("Follow the instructor")
        await until(shows(students[0], "anchors"))
        assert sidebar_says(students[0], "Following the instructor")
        await students[0].navigate("labelling")  # looking elsewhere steps away again
        assert sidebar_says(students[0], "exploring on your own")
        assert students[0].widget("w:anchor_targets.neg_iou").value == pytest.approx(0.3)
        assert students[0].widget("w:anchor_targets.pos_iou").value == pytest.approx(0.5)

        # The end of the class: every student is told. One who had worked before joining has
        # that work back (the class never saved over it); one who came by the link keeps the
        # class's view as their own.
        await teacher.click("End the class")
        for s in students:
            await until(lambda s=s: sidebar_says(s, "ended the class"), 15)
            await until(lambda s=s: not s.running)
        assert sidebar_says(students[2], "Your own project is back")
        await students[2].navigate("labelling")
        assert students[2].widget("w:anchor_targets.pos_iou").value == pytest.approx(0.7)
        assert sidebar_says(students[1], "You keep this view as your own")
        await students[1].navigate("labelling")
        assert students[1].widget("w:anchor_targets.pos_iou").value == pytest.approx(0.5)
        assert SqliteStore(store, 2**30).get("class", code) is None
        print(f"median follow delay: {statistics.median(delays):.3f} s")
    finally:
        for s in [teacher, *students]:
            await s.close()


# -- the panel, in AppTest (no server) ---------------------------------------------------------


@pytest.fixture
def app_test(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> AppTest:
    monkeypatch.setenv("FRCNN_STORE", f"sqlite:///{tmp_path / 'store.sqlite3'}")
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=TIMEOUT_S)
    at.run()
    assert not at.exception
    return at


def button(at: AppTest, label: str):
    return next(b for b in at.button if b.label == label)


def test_the_passphrase_guards_starting_a_class(
    app_test: AppTest, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(classroom.PASSPHRASE_ENV, "correct horse")
    at = app_test.run()
    at.text_input(key="class:passphrase").set_value("wrong")
    button(at, "Start a class (instructor)").click()
    at.run()
    assert [e.value for e in at.error] == ["that is not the instructor passphrase"]
    assert not any("Class code:" in m.value for m in at.markdown)
    at.text_input(key="class:passphrase").set_value("correct horse")
    button(at, "Start a class (instructor)").click()
    at.run()
    assert not at.error
    assert any("Class code:" in m.value for m in at.markdown)


def test_a_wrong_code_joins_nothing(app_test: AppTest) -> None:
    at = app_test
    at.text_input(key="class:code").set_value("ZZZ-999")
    button(at, "Join the class").click()
    at.run()
    assert len(at.error) == 1 and "no class ZZZ999 is running" in at.error[0].value
    assert not any("Following" in c.value for c in at.caption)


def test_codes_read_off_a_projector() -> None:
    assert classroom.normalise(" k7m-3qx ") == "K7M3QX"
    assert classroom.display("K7M3QX") == "K7M-3QX"
    assert not set("01IOL") & set(classroom.ALPHABET)
