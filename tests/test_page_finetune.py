"""The Fine-tune pages: the dataset page (the shipped dataset, zips in all four formats, a server
folder; bad zips of every kind leave the dataset and the trained model in place), the train page
(a short real training in its own process, to the end; a second session waits in line with its
place shown, and a third session's tutorial page computes while the first trains, with every
forward slot free), and the results page (the per-class AP from the run's detections equals the
run's own evaluation; the model is offered for download and on the production-detector pages).

The data is tiny: 8 generated images of 128 px (objects drawn as large as on 256 px), the
MobileNet model from random weights at 128 px, a handful of iterations, one CPU thread.
"""

from __future__ import annotations

import io
import os
import time
import zipfile
from pathlib import Path

os.environ.setdefault("FRCNN_OFFLINE", "1")

import numpy as np
import pytest
from PIL import Image
from streamlit.testing.v1 import AppTest

from explorer import finetune, jobs, runtime
from explorer.finetune_worker import PREDICTIONS
from explorer.uploads import LIMITS_MB
from frcnn_core.datasets import load_dataset, summarize
from frcnn_core.detectors import checkpoint_info
from frcnn_core.evaluate import evaluate_predictions, read_predictions_json
from frcnn_core.synthetic_dataset import SyntheticSettings, make_dataset
from tests.test_datasets import WRITERS

APP = "../app.py"
DATASET = "app_pages/finetune_dataset.py"
TRAIN = "app_pages/finetune_train.py"
RESULTS = "app_pages/finetune_results.py"
CLASSES_TEXT = "Car, Pedestrian, Cyclist"


@pytest.fixture(scope="module", autouse=True)
def folders(tmp_path_factory) -> dict[str, Path]:
    """The server's folders for this module: data, work, and a datasets folder offering
    ``tiny`` (8 images: 6 train, 2 val)."""
    base = tmp_path_factory.mktemp("finetune_app")
    offered = base / "offered"
    make_dataset(
        offered / "tiny",
        SyntheticSettings(images=8, width=128, height=128, val_fraction=0.25, object_scale=2.0),
    )
    env = {
        "FRCNN_DATA_DIR": str(base / "data"),
        "FRCNN_FINETUNE_DIR": str(base / "work"),
        "FRCNN_DATASETS_DIR": str(offered),
        "FRCNN_FINETUNE_THREADS": "1",
        "FRCNN_DEVICE": "cpu",
    }
    before = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    yield {"base": base, "offered": offered, "work": base / "work"}
    for key, value in before.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@pytest.fixture(autouse=True)
def no_run_left_behind():
    """A failing test must not leave a training running."""
    yield
    for job in list(finetune.QUEUE._running) + list(finetune.QUEUE._waiting):
        job.cancel()
        job.wait(120)


def session(page: str = DATASET) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=300)
    at.run()
    at.switch_page(page).run()
    assert not at.exception, at.exception
    return at


def metric(at: AppTest, label: str) -> str:
    return next(m.value for m in at.metric if m.label == label)


def button(at: AppTest, label: str):
    return next(b for b in at.button if b.label == label)


def use_folder(at: AppTest, name: str = "tiny") -> None:
    at.radio(key="ft:source").set_value(finetune.SERVER).run()
    at.selectbox(key="ft:folder").set_value(name).run()
    button(at, "Use this folder").click().run()
    assert not at.exception, at.exception
    assert at.session_state[finetune.DATA].name == name


def zipped(folder: Path) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                zf.write(path, Path(folder.name) / path.relative_to(folder))
    return buf.getvalue()


def zip_of(files: dict[str, bytes | str]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in files.items():
            zf.writestr(name, data)
    return buf.getvalue()


def text(markdown: str) -> str:
    """A message as the user reads it: without the escapes that keep user text inert."""
    return markdown.replace("\\", "").replace("\u200b", "")


def png(width: int = 60, height: int = 40) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.zeros((height, width, 3), np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def upload(at: AppTest, name: str, data: bytes) -> None:
    at.file_uploader(key="ft:upload").set_value((name, data, "application/zip")).run()
    assert not at.exception, at.exception


def test_dataset_page_shows_the_shipped_dataset() -> None:
    at = session()
    data = at.session_state[finetune.DATA]
    assert data.source == finetune.SHIPPED
    expected = summarize(load_dataset(finetune.shipped_root(), "kitti", None, "all"))
    assert expected.images == 200 and expected.ignored > 0
    assert metric(at, "Images") == "200"
    assert metric(at, "Boxes") == str(sum(expected.boxes_per_class))
    assert metric(at, "Ignored boxes") == str(expected.ignored)
    assert (data.count("train"), data.count("val")) == (160, 40)
    assert len(at.get("plotly_chart")) == 3  # class counts, sizes, aspects
    grid = at.get("image")[0]
    assert len(grid.value) == 12  # the first page of the grid
    assert grid.captions[0].startswith("000000 · 256 × 256")
    at.number_input(key="ft:page").set_value(2).run()
    assert at.get("image")[0].captions[0].startswith("000012 · ")
    at.radio(key="ft:browse_split").set_value("val").run()
    assert any("40 validation images, 12 a page" in c.value for c in at.caption)


def test_a_zip_in_each_format_loads_the_same_dataset(tmp_path) -> None:
    at = session()
    at.radio(key="ft:source").set_value(finetune.UPLOAD).run()
    at.text_input(key="ft:classes").set_value(CLASSES_TEXT).run()
    seen = {}
    for fmt, writer in WRITERS.items():
        upload(at, f"{fmt}.zip", zipped(writer(tmp_path / fmt)))
        assert not at.error, [e.value for e in at.error]
        data = at.session_state[finetune.DATA]
        assert data.source == finetune.UPLOAD and data.format == fmt
        s = data.summary
        seen[fmt] = (s.images, s.classes, s.boxes_per_class, s.ignored, s.size_counts)
        assert metric(at, "Images") == str(s.images)
    assert len(set(seen.values())) == 1, seen
    assert seen["kitti"][:4] == (5, ("Car", "Pedestrian", "Cyclist"), (3, 1, 2), 2)


def test_a_server_folder_is_offered_and_used() -> None:
    at = session()
    use_folder(at)
    assert metric(at, "Images") == "8"
    assert at.session_state[finetune.DATA].count("val") == 2
    assert any("Now using tiny" in s.value for s in at.success)


def test_train_page_has_the_tutorials_settings_and_refuses_what_cannot_train() -> None:
    at = session(TRAIN)
    tutorial = finetune.values_of(finetune.TUTORIAL)
    assert at.selectbox(key=finetune.WIDGET + "model").value == "fasterrcnn_resnet50_fpn"
    assert at.number_input(key=finetune.WIDGET + "epochs").value == 12
    assert at.multiselect(key=finetune.WIDGET + "lr_steps").value == [8, 11]
    assert at.toggle(key=finetune.WIDGET + "linear_rule").value is True
    # The linear rule, with its formula: 0.02 x batch / 16.
    assert any("÷ 16 = **0.0025**" in m.value for m in at.markdown)
    at.number_input(key=finetune.WIDGET + "batch_size").set_value(4).run()
    assert any(
        "0.02 × 4 images per step × 1 process ÷ 16 = **0.005**" in m.value for m in at.markdown
    )
    # Offline, no COCO weights: a visible notice that training starts from random weights.
    assert any("starts from **random weights**" in w.value for w in at.warning)
    # The quick recipe and back; the values survive a visit to another page.
    button(at, "Quick CPU recipe").click().run()
    assert at.number_input(key=finetune.WIDGET + "min_size").value == 256
    at.switch_page(DATASET).run()
    at.switch_page(TRAIN).run()
    assert at.selectbox(key=finetune.WIDGET + "model").value == "fasterrcnn_mobilenet_v3_large_fpn"
    button(at, "Tutorial's settings").click().run()
    assert at.session_state[finetune.VALUES] == tutorial
    # Settings that cannot train: one line, and nothing starts.
    at.number_input(key=finetune.WIDGET + "min_size").set_value(1024).run()
    at.number_input(key=finetune.WIDGET + "max_size").set_value(512).run()
    button(at, "Start training").click().run()
    assert any(
        "These settings cannot train: min size must not exceed max size" in text(w.value)
        for w in at.warning
    )
    assert finetune.RUN not in at.session_state


def start_training(at: AppTest, **changes) -> finetune.FinetuneRun:
    """The quick CPU recipe made tiny: 128 px, one log line an iteration, ``changes`` on top."""
    at.switch_page(TRAIN).run()
    button(at, "Quick CPU recipe").click().run()
    values = {"min_size": 128, "max_size": 128, "log_interval": 1, **changes}
    for name, value in values.items():
        at.number_input(key=finetune.WIDGET + name).set_value(value).run()
    button(at, "Start training").click().run()
    assert not at.exception, at.exception
    assert not at.warning or all("random weights" in w.value for w in at.warning)
    return at.session_state[finetune.RUN]


@pytest.fixture(scope="module")
def trained() -> tuple[AppTest, finetune.FinetuneRun]:
    """A session that trained 4 iterations on the tiny server dataset, to the end."""
    at = session()
    use_folder(at)
    run = start_training(at, max_iters=4)
    assert run.settings.model == "fasterrcnn_mobilenet_v3_large_fpn"
    assert run.settings.min_size == 128 and run.settings.max_iters == 4
    at.switch_page("app_pages/labelling.py").run()  # the user looks elsewhere meanwhile
    assert not at.exception, at.exception
    assert run.job.active or run.job.state == jobs.DONE
    assert run.job.wait(600), "the training did not end"
    assert run.job.state == jobs.DONE, run.job.error
    at.run()  # the router keeps the finished run's model
    assert not at.exception, at.exception
    return at, run


@pytest.mark.slow
def test_a_short_training_runs_to_the_end_and_shows_results(trained) -> None:
    at, run = trained
    outcome = run.outcome
    assert outcome.state == "finished" and outcome.iterations == 4
    assert at.session_state[finetune.MODEL] is run
    p = finetune.progress_of(run)
    assert [it for it, _ in p.loss_history] == [1, 2, 3, 4]
    assert all(losses["loss"] > 0 for _, losses in p.loss_history)
    assert [e[0] for e in p.evaluations] == [0, 2]  # before training, and the last epoch
    assert "random weights" in p.note
    at.switch_page(TRAIN).run()  # back on the Train page: the run's end and its curves
    assert any("Training finished after 4 iterations" in s.value for s in at.success)
    assert len(at.get("plotly_chart")) == 2  # losses, mAP
    # The kept model is weights only and fits the upload limit; epoch checkpoints stay.
    info = checkpoint_info(outcome.model)
    assert outcome.model.name == "best.pt" and info.get("optimizer") is None
    assert info["class_names"][1:] == ["Car", "Pedestrian", "Cyclist"]
    assert finetune.fits_upload_limit(outcome.model.stat().st_size)

    at.switch_page(RESULTS).run()
    assert not at.exception, at.exception
    # The page's scores (re-scored from the run's saved detections) are the run's own.
    val = load_dataset(run.settings.data, "kitti", None, "val")
    again = evaluate_predictions(val, read_predictions_json(run.folder / PREDICTIONS, val))
    assert again.map50 == pytest.approx(outcome.map50, abs=1e-9)
    assert metric(at, "mAP@0.5") == f"{outcome.map50:.3f}"
    assert metric(at, "Validation images") == "2"
    table = at.dataframe[0].value
    assert list(table["Class"]) == ["Car", "Pedestrian", "Cyclist"]
    for row, result in zip(table.itertuples(), again.per_class, strict=True):
        expected = "no ground truth" if result.ap50 is None else f"{result.ap50:.3f}"
        assert row[4] == expected
    # Lowering the threshold to 0 counts every detection (the model is barely trained).
    at.slider(key="ft:threshold").set_value(0.0).run()
    detections = sum(len(p.scores) for p in again.predictions)
    counted = [c.value for c in at.caption if c.value.startswith("At score 0.00")]
    tp = sum(len(m.at_threshold(0.0).true_positives) for m in again.images)
    fp = sum(len(m.at_threshold(0.0).false_positives) for m in again.images)
    assert (
        counted and f"{tp} true positives" in counted[0] and f"{fp} false positives" in counted[0]
    )
    assert tp + fp <= detections
    assert at.get("download_button"), "no download of the model"
    # Selectable on the production-detector pages.
    listed = at.session_state["production_checkpoints"]
    assert [o.path for o in listed.values()] == [str(outcome.model)]
    button(at, "Choose it on the production-detector pages").click().run()
    assert at.session_state["production_detector"] == run.registered


BAD_ZIPS = {
    "not-a-zip.zip": (b"this is not a zip", "not a readable zip file"),
    "escape.zip": (zip_of({"../outside.txt": "x"}), "leaves its folder"),
    "no-dataset.zip": (zip_of({"notes/readme.txt": "hello"}), "no dataset in a known layout"),
}


def _kitti_zip(label: str, image: bool = True) -> bytes:
    files: dict[str, bytes | str] = {
        "d/training/label_2/000000.txt": label,
        "d/training/label_2/000001.txt": "Car 0 0 0 1 1 20 20 0 0 0 0 0 0 0\n",
        "d/training/image_2/000001.png": png(),
    }
    if image:
        files["d/training/image_2/000000.png"] = png()
    return zip_of(files)


BAD_ZIPS.update(
    {
        "short-line.zip": (_kitti_zip("Car 0 0\n"), "000000.txt:1: a KITTI line needs at least"),
        "outside.zip": (
            _kitti_zip("Car 0 0 0 10 10 500 20 0 0 0 0 0 0 0\n"),
            "000000.txt:1: the box (10, 10, 500, 20) lies outside the 60 x 40 image",
        ),
        "no-area.zip": (_kitti_zip("Car 0 0 0 10 10 10 20 0 0 0 0 0 0 0\n"), "has no area"),
        "missing-image.zip": (_kitti_zip("Car 0 0 0 1 1 9 9\n", image=False), "missing image"),
        "empty.zip": (
            zip_of({"d/training/label_2/README": "", "d/training/image_2/README": ""}),
            "has no images (empty dataset)",
        ),
        "bad-json.zip": (zip_of({"c/annotations.json": "{not json"}), "is not valid JSON"),
        "yolo-class.zip": (
            zip_of(
                {
                    "y/classes.txt": "Car\n",
                    "y/labels/a.txt": "3 0.5 0.5 0.1 0.1\n",
                    "y/images/a.png": png(),
                }
            ),
            "y/labels/a.txt:1: unknown class id 3 (the names file lists 1 classes)",
        ),
    }
)


@pytest.mark.slow
def test_bad_zips_leave_the_dataset_and_the_model_in_place(trained, folders) -> None:
    at, run = trained
    at.switch_page(DATASET).run()
    at.radio(key="ft:source").set_value(finetune.UPLOAD).run()
    at.text_input(key="ft:classes").set_value("").run()
    before = at.session_state[finetune.DATA]
    uploads = folders["work"] / "uploads"
    kept = sorted(uploads.glob("*/*"))  # one folder per imported zip
    refused = 0
    for name, (data, reason) in BAD_ZIPS.items():
        upload(at, name, data)
        errors = [text(e.value) for e in at.error]
        assert len(errors) == 1 and "was not imported" in errors[0], (name, errors)
        assert reason in errors[0] and "Nothing changed" in errors[0], (name, errors[0])
        assert str(folders["base"]) not in errors[0]  # no server path in what the user sees
        assert at.session_state[finetune.DATA] is before, name
        assert at.session_state[finetune.MODEL] is run, name
        assert metric(at, "Images") == "8", name
        refused += 1
    assert refused == len(BAD_ZIPS) == 10
    # Nothing of the refused zips stayed on the server.
    assert sorted(uploads.glob("*/*")) == kept
    # The trained model is still the session's, and its results still show.
    at.switch_page(RESULTS).run()
    assert metric(at, "mAP@0.5") == f"{run.outcome.map50:.3f}"


def test_the_uploader_announces_the_dataset_limit() -> None:
    at = session()
    at.radio(key="ft:source").set_value(finetune.UPLOAD).run()
    assert at.file_uploader(key="ft:upload").proto.max_upload_size_mb == LIMITS_MB["dataset"]


@pytest.mark.slow
def test_a_second_training_waits_in_line_and_other_pages_keep_computing(monkeypatch) -> None:
    monkeypatch.setattr(finetune, "QUEUE", jobs.JobQueue(workers=1))
    first, second = session(), session()
    use_folder(first)
    use_folder(second)
    other = session("app_pages/labelling.py")  # a tutorial page of a third user
    t0 = time.perf_counter()
    other.slider(key="w:anchor_targets.pos_iou").set_value(0.65).run()
    idle_s = time.perf_counter() - t0

    run = start_training(first, epochs=200)  # long: it is cancelled below
    queued = start_training(second, max_iters=2)
    assert queued.job.state == jobs.QUEUED
    second.run()
    assert any("Waiting for the server: 1 training ahead of yours" in i.value for i in second.info)

    deadline = time.monotonic() + 300
    while finetune.progress_of(run).iteration < 2 and time.monotonic() < deadline:
        assert run.job.active, run.job.error
        time.sleep(0.5)
    assert finetune.progress_of(run).iteration >= 2, "the first training did not start"
    # While it trains, no forward slot is taken: the training is in a process of its own.
    assert runtime.FORWARDS.load() == (0, 0)  # (running, waiting)
    t0 = time.perf_counter()
    other.slider(key="w:anchor_targets.pos_iou").set_value(0.6).run()
    busy_s = time.perf_counter() - t0
    assert not other.exception
    assert any(m.label == "Positive" for m in other.metric)
    assert finetune.progress_of(run).state == "running" and run.job.active
    print(f"\ntutorial page rerun: {idle_s:.2f} s idle, {busy_s:.2f} s while a training ran")

    button(second, "Cancel").click().run()  # queued: it never starts
    button(first, "Cancel").click().run()
    assert run.job.wait(300) and queued.job.wait(60)
    assert run.job.state == jobs.CANCELLED and queued.job.state == jobs.CANCELLED
    assert queued.job.started is None
    first.run()
    kept = first.session_state[finetune.MODEL]
    assert kept is run and run.outcome.state == "cancelled"
    assert 2 <= run.outcome.iterations < 200 * 2
