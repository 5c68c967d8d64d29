"""A student's work lasts: saved for the browser and brought back by a new session, one project
file that round-trips, share links that reproduce a view; and bad project files, bad box files
and bad links change nothing and say why."""

from __future__ import annotations

import io
import json
import os
import zipfile

os.environ.setdefault("FRCNN_OFFLINE", "1")

import numpy as np
import pytest
import torch
from PIL import Image
from streamlit.testing.v1 import AppTest

from explorer import projects
from explorer.models import SESSION_MODEL, SessionModel
from frcnn_core.pipeline import DetectorHeads

APP = "../app.py"
BOXES = [
    {"box": [40.0, 30.0, 300.0, 200.0], "label": "kite"},
    {"box": [320.0, 60.0, 600.0, 400.0], "label": "tent"},
]


def photo(seed: int = 0) -> bytes:
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 256, (480, 640, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="PNG")
    return buf.getvalue()


def new_session(owner: str | None = None, query: dict[str, str] | None = None) -> AppTest:
    """A fresh session; ``owner`` plays the browser's cookie (the browser test sets a real one)."""
    at = AppTest.from_file(APP, default_timeout=300)
    if owner is not None:
        at.session_state[projects.OWNER] = owner
    for key, value in (query or {}).items():
        at.query_params[key] = value
    at.run()
    assert not at.exception, at.exception
    return at


def make_work(at: AppTest) -> SessionModel:
    """An upload, two boxes, three changed settings and a (small) trained model."""
    at.switch_page("app_pages/image.py").run()
    at.file_uploader(key="image_page:upload").set_value(("field.png", photo(), "image/png"))
    at.run()
    assert at.session_state["image"].name == "field.png"
    at.session_state["boxes"] = [dict(b) for b in BOXES]
    at.session_state["boxes_version"] += 1
    at.switch_page("app_pages/proposals.py").run()
    at.slider(key="w:proposals.nms_iou").set_value(0.5).run()
    at.slider(key="w:train_proposals.post_nms").set_value(1000).run()
    at.switch_page("app_pages/roi.py").run()
    at.slider(key="w:proposal_targets.roi_batch_size").set_value(64).run()
    heads = DetectorHeads(2, 9, 512, 7, seed=4, hidden=32).eval()
    model = SessionModel(heads, ("kite", "tent"), history=[{"total": 3.0}, {"total": 2.0}])
    at.session_state[SESSION_MODEL] = model
    at.run()
    assert not at.exception, at.exception
    return model


def same_work(at: AppTest, model: SessionModel) -> None:
    assert at.session_state["image"].name == "field.png"
    assert at.session_state["image"].data == photo()
    assert at.session_state["boxes"] == BOXES
    params = at.session_state["params"]
    assert params.proposals.nms_iou == 0.5
    assert params.train_proposals.post_nms == 1000
    assert params.proposal_targets.roi_batch_size == 64
    own = at.session_state[SESSION_MODEL]
    assert own.class_names == ("kite", "tent")
    assert [h["total"] for h in own.history] == [3.0, 2.0]
    for key, value in model.heads.state_dict().items():
        assert torch.equal(own.heads.state_dict()[key], value), key


def test_a_new_session_of_the_same_browser_gets_the_work_back() -> None:
    owner = "test-owner-0123456789abcdef"
    first = new_session(owner)
    model = make_work(first)
    second = new_session(
        owner
    )  # a reload, a new tab, or the server restarted (the store is a file)
    same_work(second, model)
    assert second.session_state["boxes"] == BOXES
    stranger = new_session("another-browser-0123456789ab")
    assert stranger.session_state["image"].name == "zebras"  # nobody else's work


def test_the_project_file_round_trips_into_a_fresh_session() -> None:
    first = new_session("owner-file-0123456789abcdef")
    model = make_work(first)
    make, name = first.session_state[projects.FILE_DOWNLOAD][1:]
    data = make()  # what the download button sends when clicked
    assert name == "field.frcnn-project.zip"
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        assert set(archive.namelist()) == {"project.json", "image", "heads.pt"}
    fresh = new_session("owner-fresh-0123456789abcdef")
    fresh.sidebar.file_uploader(key="project:file").set_value((name, data, "application/zip"))
    fresh.run()
    assert not fresh.exception, fresh.exception
    same_work(fresh, model)


def bad_files() -> dict[str, bytes]:
    good = io.BytesIO()
    with zipfile.ZipFile(good, "w") as archive:
        archive.writestr("project.json", json.dumps({"format": projects.FORMAT, "version": 1}))
    future = io.BytesIO()
    with zipfile.ZipFile(future, "w") as archive:
        meta = {"format": projects.FORMAT, "version": 99, "boxes": [], "params": {}}
        archive.writestr("project.json", json.dumps(meta))
    foreign = io.BytesIO()
    with zipfile.ZipFile(foreign, "w") as archive:
        archive.writestr("readme.txt", "hello")
    wrong_image = io.BytesIO()
    with zipfile.ZipFile(wrong_image, "w") as archive:
        meta = {
            "format": projects.FORMAT,
            "version": 1,
            "image": {"name": "x.png", "digest": "0" * 64, "sample": None},
            "boxes": [],
            "params": {},
        }
        archive.writestr("project.json", json.dumps(meta))
        archive.writestr("image", photo(1))
    whole = future.getvalue()
    return {
        "not a zip": b"just text",
        "truncated": whole[: len(whole) // 2],
        "foreign zip": foreign.getvalue(),
        "future version": whole,
        "malformed": good.getvalue(),
        "image not the named one": wrong_image.getvalue(),
    }


@pytest.mark.parametrize("case", list(bad_files()))
def test_a_bad_project_file_says_why_and_changes_nothing(case: str) -> None:
    at = new_session(f"owner-bad-{case.replace(' ', '-')}-0123456789")
    before = (
        at.session_state["image"],
        list(at.session_state["boxes"]),
        at.session_state["params"],
    )
    at.sidebar.file_uploader(key="project:file").set_value(
        ("p.zip", bad_files()[case], "application/zip")
    )
    at.run()
    assert not at.exception
    errors = [e.value for e in at.sidebar.error]
    assert len(errors) == 1 and "Nothing was changed" in errors[0], errors
    after = (at.session_state["image"], at.session_state["boxes"], at.session_state["params"])
    assert after[0] is before[0] and after[1] == before[1] and after[2] == before[2]


def test_a_shared_link_reproduces_the_view_in_a_fresh_session() -> None:
    at = new_session("owner-share-0123456789abcdef")
    make_work(at)
    at.switch_page("app_pages/roi.py").run()
    at.session_state["roi:pick"] = 3
    at.run()
    next(b for b in at.sidebar.button if b.label == "Share this view").click().run()
    link = at.sidebar.code[0].value
    assert link.startswith("http") and "/roi?" in link
    query = dict(p.split("=", 1) for p in link.split("?", 1)[1].split("&"))
    assert "view" in query and query["proposals.nms_iou"] == "0.5"
    numbers = {m.label: m.value for m in at.metric}
    other = new_session("owner-visitor-0123456789abcd", query=query)
    other.switch_page("app_pages/roi.py").run()
    assert {m.label: m.value for m in other.metric} == numbers
    assert other.session_state["roi:pick"] == 3
    assert other.session_state["boxes"] == BOXES


def test_a_sample_link_needs_no_snapshot() -> None:
    at = new_session("owner-sample-0123456789abcde")
    at.switch_page("app_pages/labelling.py").run()
    next(b for b in at.sidebar.button if b.label == "Share this view").click().run()
    assert "/labelling?sample=zebras&anchor=" in at.sidebar.code[0].value  # and the pick


@pytest.mark.parametrize(
    ("query", "note"),
    [
        ({"view": "no-such-view"}, "shared view was not found"),
        ({"sample": "unicorns"}, "no sample called unicorns"),
        ({"proposals.nms_iou": "2.5"}, "proposals.nms_iou must be between 0 and 1"),
        ({"bogus": "1"}, "unknown setting 'bogus'"),
        ({"roi": "three"}, "ignored roi=three: not a whole number"),
        ({"cell": "1"}, "ignored cell=1: expected row,column"),
    ],
)
def test_a_bad_link_is_ignored_with_a_note(query: dict[str, str], note: str) -> None:
    at = new_session(f"owner-link-{abs(hash(str(query)))}-0123456789", query=query)
    said = " ".join(w.value for w in at.warning)
    assert note in said.replace("\\", ""), said
    assert at.session_state["image"].name == "zebras"
    assert at.session_state["params"].proposals.nms_iou == 0.7


def test_importing_boxes_replaces_them_and_a_bad_file_changes_nothing() -> None:
    at = new_session("owner-boxes-0123456789abcdef")
    at.switch_page("app_pages/image.py").run()
    uploader = at.file_uploader(key="boxes_io:files")
    good = json.dumps([{"box": [10, 20, 300, 400], "label": "horse"}]).encode()
    uploader.set_value([("horse.json", good, "application/json")]).run()
    assert at.session_state["boxes"] == [{"box": [10.0, 20.0, 300.0, 400.0], "label": "horse"}]
    at.file_uploader(key="boxes_io:files").set_value(
        [("bad.xml", b"<annotation><object>", "text/xml")]
    ).run()
    assert any("No box was changed" in e.value for e in at.error)
    assert at.session_state["boxes"] == [{"box": [10.0, 20.0, 300.0, 400.0], "label": "horse"}]
