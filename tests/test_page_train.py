"""The Train page: training runs as a job in a worker thread, goes on while the student looks at
other pages, becomes the session's model when it ends (or is stopped), and waits in line when
the server's training slots are taken."""

from __future__ import annotations

import os
import time

os.environ.setdefault("FRCNN_OFFLINE", "1")

import pytest
from streamlit.testing.v1 import AppTest

from explorer import jobs, training
from explorer.models import SESSION_MODEL
from frcnn_core.image import ResizeParams
from frcnn_core.params import PipelineParams

APP = "../app.py"


@pytest.fixture(autouse=True)
def no_training_left_running():
    """A failing test must not leave a training running in the background."""
    yield
    for job in list(training.QUEUE._running) + list(training.QUEUE._waiting):
        job.cancel()
        job.wait(60)


# A small input frame keeps each iteration short.
SMALL = PipelineParams(resize=ResizeParams(height=320, width=320))


def session(iterations: int) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=300)
    at.run()
    at.session_state["params"] = SMALL
    at.switch_page("app_pages/train.py").run()
    assert not at.exception, at.exception
    at.slider(key="train:iterations").set_value(iterations).run()
    return at


def start(at: AppTest) -> training.TrainingJob:
    at.button[0].click().run()  # "Start training"
    assert not at.exception, at.exception
    job = at.session_state[training.JOB]
    assert job.job.state in (jobs.QUEUED, jobs.RUNNING, jobs.DONE)
    return job


def test_training_goes_on_across_pages_and_becomes_the_sessions_model() -> None:
    at = session(iterations=4)
    job = start(at)
    at.switch_page("app_pages/labelling.py").run()  # the student looks elsewhere meanwhile
    assert not at.exception
    assert job.job.wait(240), "the training did not end"
    assert job.job.state == jobs.DONE, job.job.error
    at.run()  # the router takes the finished job's model, on whatever page
    model = at.session_state[SESSION_MODEL]
    assert len(model.history) == 4
    assert model.class_names == ("zebra",)
    assert all(h["total"] > 0 for h in model.history)
    assert any("trained in this session" in c.value for c in at.sidebar.caption)
    at.switch_page("app_pages/detect.py").run()
    assert not at.exception
    assert not any("untrained" in i.value for i in at.info)  # the Detect page uses it
    at.switch_page("app_pages/train.py").run()
    assert any("Trained heads for 1 class \\(zebra" in s.value for s in at.success)
    assert at.get("download_button")  # the weights can be downloaded


def test_stop_keeps_what_was_trained_so_far() -> None:
    at = session(iterations=300)
    job = start(at)
    deadline = time.monotonic() + 120
    while len(job.job.progress.get("history", [])) < 2 and time.monotonic() < deadline:
        time.sleep(0.2)
    at.run()
    stop = next(b for b in at.button if b.label == "Stop")
    stop.click().run()
    assert job.job.wait(60)
    assert job.job.state == jobs.CANCELLED
    at.run()
    model = at.session_state[SESSION_MODEL]
    assert 2 <= len(model.history) < 300


def test_a_second_training_waits_its_turn(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(training, "QUEUE", jobs.JobQueue(workers=1))
    first, second = session(iterations=300), session(iterations=2)
    first_job = start(first)
    second_job = start(second)
    assert second_job.job.state == jobs.QUEUED
    second.run()
    assert any("Waiting for the server: 1 training ahead" in i.value for i in second.info)
    first.button[1].click().run()  # the first student stops: the second starts
    assert first_job.job.wait(60)
    assert second_job.job.wait(240)
    assert second_job.job.state == jobs.DONE
