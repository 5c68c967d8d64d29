"""The production detector's pages (AppTest): they render on every sample and on an upload with
random weights; a score threshold re-runs no forward; a checkpoint given by
``$FRCNN_DETECTOR_WEIGHTS`` (or registered by a session) is what the Detections page shows, box
for box; COCO-named boxes are graded; the comparison's numbers are each pipeline's own.

Kept fast: MobileNetV3 at a 320 / 533 input, and the tutorial at 320 x 320 with fewer RoIs
through its 4096-wide head. The checkpoint is
random weights with raised biases for three classes, so that there are detections.
"""

from __future__ import annotations

import io
import os
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

os.environ.setdefault("FRCNN_OFFLINE", "1")

from streamlit.testing.v1 import AppTest

import explorer.production
import frcnn_core.production_graph as production_graph
from explorer import caches
from explorer.production import CHECKPOINTS, CHOICE
from explorer.samples import samples
from frcnn_core.anchors import generate_anchors
from frcnn_core.detectors import (
    COCO_CLASS_NAMES,
    WEIGHTS_ENV,
    build_model,
    load_detector,
    save_checkpoint,
)
from frcnn_core.image import load_image
from frcnn_core.params import PipelineParams
from frcnn_core.production import Detections, check_input_size, image_tensor, run_staged
from frcnn_core.production_graph import (
    grade,
    label_boxes,
    production_targets,
    trim,
    with_input_size,
)

ROOT = Path(__file__).resolve().parents[1]
APP = str(ROOT / "app.py")
MOBILE = "fasterrcnn_mobilenet_v3_large_fpn"
SIZE = (320, 533)
SMALL = (
    PipelineParams()
    .replace("production_input.shorter_side", SIZE[0])
    .replace("production_input.longer_side", SIZE[1])
    .replace("resize.height", 320)
    .replace("resize.width", 320)
    # The tutorial's 4096-wide head is its slowest step: fewer RoIs through it.
    .replace("test_proposals.post_nms", 50)
    .replace("proposal_targets.roi_batch_size", 32)
)
PAGES = ("production_detections", "production_inside", "production_compare")
ZEBRA, PERSON, CAT = 24, 1, 17
THRESHOLD = "w:production.box_score_thresh"


def png(width: int, height: int, seed: int = 0) -> bytes:
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 255, (height, width, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="PNG")
    return buf.getvalue()


def start(detector: str | None = MOBILE) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=300)
    at.run()
    assert not at.exception, at.exception
    at.session_state["params"] = SMALL
    if detector is not None:
        at.session_state[CHOICE] = detector
    return at


def open_page(at: AppTest, page: str) -> AppTest:
    at.switch_page(f"app_pages/{page}.py").run()
    assert not at.exception, at.exception
    assert not at.error, [e.value for e in at.error]
    return at


def choose_sample(at: AppTest, name: str) -> None:
    at.switch_page("app_pages/image.py").run()
    at.selectbox(key="image_page:sample").set_value(name).run()
    assert at.session_state["image"].name == name


def metrics(at: AppTest) -> dict[str, str]:
    return {m.label: m.value for m in at.metric}


def markdown(at: AppTest) -> list[str]:
    return [m.value for m in at.markdown]


def row_cells(at: AppTest, step: str) -> list[str]:
    """The comparison row ``step``: its tutorial and production cells (markdown after the step's
    own bold name)."""
    texts = markdown(at)
    i = texts.index(f"**{step}**")
    return texts[i + 1 : i + 3]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> str:
    """MobileNetV3, random weights (seed 3), biases of person, zebra and cat raised: every RoI
    gets about 0.48 zebra, 0.18 person and 0.07 cat."""
    torch.manual_seed(3)
    model = build_model(MOBILE, len(COCO_CLASS_NAMES))
    with torch.no_grad():
        bias = model.roi_heads.box_predictor.cls_score.bias
        bias[[PERSON, ZEBRA, CAT]] += torch.tensor([4.0, 5.0, 3.0])
    path = tmp_path_factory.mktemp("page_production") / "biased.pt"
    # 30 RoIs: per-class NMS then leaves at most 30 boxes a class, so the top 100 detections
    # hold every class above the threshold, not only the most probable one.
    model_kwargs = {"rpn_post_nms_top_n_test": 30}
    save_checkpoint(path, model, MOBILE, COCO_CLASS_NAMES, model_kwargs=model_kwargs)
    return str(path)


@pytest.fixture
def no_env_weights(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(WEIGHTS_ENV, raising=False)


def expected_detections(path: str, pixels: np.ndarray, threshold: float) -> dict:
    """The checkpoint's model run directly at this size and score threshold."""
    model = load_detector(
        None, path, device="cpu", min_size=SIZE[0], max_size=SIZE[1], box_score_thresh=threshold
    ).model
    with torch.inference_mode():
        return model([image_tensor(pixels)])[0]


def table_rows(at: AppTest) -> list[dict]:
    return at.dataframe[0].value.to_dict("records") if at.dataframe else []


def test_the_pages_render_on_every_sample_and_an_upload(no_env_weights) -> None:
    at = start()
    resize = with_input_size(build_model(MOBILE, 91), *SIZE).transform
    images = [*samples(), "upload"]
    for name in images:
        if name == "upload":
            at.switch_page("app_pages/image.py").run()
            upload = ("mine.png", png(90, 60), "image/png")
            at.file_uploader(key="image_page:upload").set_value(upload).run()
            assert at.session_state["image"].name == "mine.png"
            pixels = load_image(png(90, 60)).pixels
        else:
            choose_sample(at, name)
            pixels = load_image(samples()[name].path).pixels
        hi, wi = check_input_size(resize, *pixels.shape[:2])
        open_page(at, "production_detections")
        assert any("detector runs on **random weights**" in w.value for w in at.warning), name
        assert "Detections" in metrics(at)
        assert at.get("plotly_chart"), name
        open_page(at, "production_inside")
        assert metrics(at)["Resized"] == f"{hi:,} × {wi:,}", name
        assert metrics(at)["Original (H × W)"] == f"{pixels.shape[0]:,} × {pixels.shape[1]:,}"
        assert len(at.get("image")) >= 4, name  # the frame, channel tiles, objectness maps
        open_page(at, "production_compare")
        assert "**Anchors**" in markdown(at), name
        tutorial, production = row_cells(at, "Input frame (height × width)")
        assert tutorial.startswith("320 × 320") and production.startswith(f"{hi} × {wi}"), name


def test_the_score_threshold_re_runs_no_forward(
    checkpoint, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(WEIGHTS_ENV, checkpoint)
    forwards: Counter[str] = Counter()
    forward = production_graph.run_staged

    def counted(*args, **kwargs):
        forwards["run_staged"] += 1
        return forward(*args, **kwargs)

    monkeypatch.setattr(production_graph, "run_staged", counted)
    caches.STAGES.clear()
    at = start(detector=None)  # $FRCNN_DETECTOR_WEIGHTS is the default entry
    open_page(at, "production_detections")
    assert forwards["run_staged"] == 1
    pixels = load_image(samples()["zebras"].path).pixels
    for threshold in (0.1, 0.05, 0.3):
        at.slider(key=THRESHOLD).set_value(threshold).run()
        assert not at.exception, at.exception
        expected = expected_detections(checkpoint, pixels, threshold)
        assert metrics(at)["Detections"] == str(len(expected["boxes"]))
    assert forwards["run_staged"] == 1
    for page in ("production_inside", "production_compare", "production_detections"):
        open_page(at, page)
    assert forwards["run_staged"] == 1
    at.slider(key="w:production_input.shorter_side").set_value(288).run()
    assert not at.exception, at.exception
    assert forwards["run_staged"] == 2  # the input size is read by the forward


def test_a_checkpoint_file_is_what_the_page_shows(
    checkpoint, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(WEIGHTS_ENV, checkpoint)
    at = start(detector=None)
    open_page(at, "production_detections")
    assert not any("detector runs on **random weights**" in w.value for w in at.warning)
    assert any("Weights loaded from" in c.value for c in at.caption)
    pixels = load_image(samples()["zebras"].path).pixels
    expected = expected_detections(checkpoint, pixels, 0.3)
    rows = table_rows(at)
    assert len(rows) == len(expected["boxes"]) > 0
    for row, box, score, label in zip(
        rows,
        expected["boxes"].tolist(),
        expected["scores"].tolist(),
        expected["labels"].tolist(),
        strict=True,
    ):
        assert [row["x1"], row["y1"], row["x2"], row["y2"]] == [round(v, 1) for v in box]
        assert row["score"] == round(score, 4)
        assert row["class"] == COCO_CLASS_NAMES[label]
    # The zebra sample's boxes are labelled "zebra", a COCO class: every detection is graded.
    truth = label_boxes(
        [b["box"] for b in at.session_state["boxes"]],
        [b["label"] for b in at.session_state["boxes"]],
        COCO_CLASS_NAMES,
        pixels.shape[:2],
        (1, 1),
    )
    found = Detections(
        expected["boxes"], expected["boxes"], expected["scores"], expected["labels"], 0.3
    )
    match = grade(found, truth, 0.5)
    shown = metrics(at)
    tp = int(match.true_positive.sum())
    assert shown["True positives"] == str(tp)
    assert shown["False positives"] == str(len(rows) - tp)
    assert shown["Missed boxes"] == f"{int((~match.gt_found).sum())} / 4"
    assert [r["result"] for r in rows] == ["TP" if t else "FP" for t in match.true_positive]


def test_the_class_filter_keeps_what_was_taken_out(
    checkpoint, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(WEIGHTS_ENV, checkpoint)
    at = start(detector=None)
    open_page(at, "production_detections")
    at.slider(key=THRESHOLD).set_value(0.1).run()
    classes = at.multiselect(key="production_classes")
    assert set(classes.value) == {"zebra", "person"}
    classes.set_value(["zebra"]).run()
    assert {r["class"] for r in table_rows(at)} == {"zebra"}
    at.slider(key=THRESHOLD).set_value(0.05).run()  # the cat comes in, the person stays out
    assert set(at.multiselect(key="production_classes").value) == {"zebra", "cat"}
    assert {r["class"] for r in table_rows(at)} == {"zebra", "cat"}


def test_boxes_with_no_coco_name_are_not_graded(no_env_weights) -> None:
    at = start()
    choose_sample(at, "coins")
    open_page(at, "production_detections")
    assert "True positives" not in metrics(at)
    assert any("nothing is graded" in i.value for i in at.info)


def test_a_registered_checkpoint_is_selectable(
    checkpoint, no_env_weights, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(explorer.production, "UPLOAD_DIR", tmp_path)  # bytes are written here

    def script(path: str) -> None:
        import streamlit as st

        from explorer.production import chosen, load, register_checkpoint
        from frcnn_core.detectors import DetectorWeightsError

        with open(path, "rb") as fh:
            option = register_checkpoint(fh.read(), "fine-tuned")
        st.write(option.id)
        st.write(chosen().id)
        st.write(load(chosen()).weights)
        try:
            register_checkpoint(b"not a checkpoint", "broken")
        except DetectorWeightsError as exc:
            st.write(f"refused: {exc}")

    own = AppTest.from_function(script, args=(checkpoint,), default_timeout=120)
    own.run()
    assert not own.exception, own.exception
    texts = markdown(own)
    digest = texts[0].removeprefix("checkpoint:")
    assert texts[1] == texts[0] and len(digest) == 64
    assert texts[2] == str(tmp_path / f"{digest}.pt")
    assert texts[3].startswith("refused:") and "\n" not in texts[3]
    # The same entry in the app's session: the Detections page runs that checkpoint.
    at = start(detector=None)
    at.session_state[CHECKPOINTS] = own.session_state[CHECKPOINTS]
    at.session_state[CHOICE] = texts[0]
    open_page(at, "production_detections")
    assert at.selectbox(key="production_detector#widget").value == texts[0]
    expected = expected_detections(checkpoint, load_image(samples()["zebras"].path).pixels, 0.3)
    assert metrics(at)["Detections"] == str(len(expected["boxes"]))


def test_the_comparison_numbers_are_each_pipelines_own(no_env_weights) -> None:
    at = start()
    open_page(at, "production_compare")
    pixels = load_image(samples()["zebras"].path).pixels
    # The tutorial: a 320 x 320 frame, VGG16's stride 16: 20 x 20 cells of 9 anchors.
    grid = generate_anchors((20, 20), (320, 320), SMALL.anchors, 16)
    tutorial, production = row_cells(at, "Anchors")
    assert tutorial.startswith(f"{grid.total:,} = 20 × 20 × 9; {grid.inside:,} lie inside")
    # The production detector: its own anchor generator on this image at this size.
    detector = load_detector(MOBILE, "random", device="cpu")
    model = with_input_size(detector.model, *SIZE)
    with torch.inference_mode():
        staged = run_staged(model, image_tensor(pixels))
    counts = staged.anchors.counts()
    total = sum(counts.values())
    assert production.startswith(f"{total:,} = " + " + ".join(f"{n:,}" for n in counts.values()))
    _, production = row_cells(at, "Proposals before and after NMS (test time)")
    assert production.endswith(f": {staged.proposals.post_nms:,}")
    # Matching, sampling and the RPN's loss: torchvision's own, for the four zebra boxes.
    boxes = at.session_state["boxes"]
    truth = label_boxes(
        [b["box"] for b in boxes],
        [b["label"] for b in boxes],
        COCO_CLASS_NAMES,
        staged.input.original_size,
        staged.input.input_size,
    )
    targets = production_targets(trim(staged), truth, model)
    counts = targets.anchor_counts()
    _, production = row_cells(at, "Anchor matching")
    assert (
        f"{counts['positive']:,} object, {counts['negative']:,} background, "
        f"{counts['ignored']:,} ignored"
    ) in production
    _, production = row_cells(at, "Losses")
    assert f"RPN objectness {targets.rpn_objectness_loss:.3f}" in production
    assert "head class" not in production
    at.toggle(key="production_compare_head_loss").set_value(True).run()
    assert not at.exception, at.exception
    _, production = row_cells(at, "Losses")
    assert "head class" in production and "total" in production


def test_an_image_too_thin_for_the_detector_is_one_line(no_env_weights) -> None:
    at = start()
    at.switch_page("app_pages/image.py").run()
    at.file_uploader(key="image_page:upload").set_value(("strip.png", png(2000, 3), "image/png"))
    at.run()
    assert at.session_state["image"].name == "strip.png"
    for page in PAGES:
        at.switch_page(f"app_pages/{page}.py").run()
        assert not at.exception, at.exception
        errors = [e.value for e in at.error]
        assert len(errors) == 1 and "too thin for the detector" in errors[0], errors
