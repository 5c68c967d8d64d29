"""The dataset, fine-tuning and evaluation commands: their JSON, and one line with exit status 2
for every bad input."""

from __future__ import annotations

import http.server
import itertools
import json
import threading
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from frcnn_core import synthetic_dataset
from frcnn_core.cli import main
from frcnn_core.dataset_fetch import fetch_kitti_tiny
from frcnn_core.datasets import load_dataset
from frcnn_core.detectors import build_model, save_checkpoint
from frcnn_core.evaluate import Prediction, predictions_to_json
from frcnn_core.synthetic_dataset import SyntheticSettings, make_dataset


@pytest.fixture(scope="module")
def shipped(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("shipped")
    return make_dataset(root, SyntheticSettings(images=10, width=128, height=128))


def _run(capsys, *argv) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def _error(capsys, *argv) -> str:
    code, out, err = _run(capsys, *argv)
    assert code == 2 and out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    return lines[0]


def test_dataset_info_json(shipped, capsys):
    code, out, _ = _run(capsys, "dataset-info", "--data", shipped, "--format", "kitti")
    assert code == 0
    info = json.loads(out)
    data = load_dataset(shipped, "kitti")  # val split by default
    assert info["images"] == len(data) == 2
    assert info["classes"] == ["Car", "Pedestrian", "Cyclist"]
    assert info["split"] == "val"
    assert sum(info["boxes_per_class"].values()) == sum(len(r.boxes) for r in data.images)
    assert info["ignored"] == sum(len(r.ignored_boxes) for r in data.images)
    _, out, _ = _run(capsys, "dataset-info", "--data", shipped, "--split", "all")
    assert json.loads(out)["images"] == 10


def test_dataset_info_bad_input(shipped, tmp_path, capsys):
    assert "does not exist" in _error(capsys, "dataset-info", "--data", tmp_path / "none")
    assert "unknown dataset format 'pascal'" in _error(
        capsys, "dataset-info", "--data", shipped, "--format", "pascal"
    )
    assert "unknown split 'test'" in _error(
        capsys, "dataset-info", "--data", shipped, "--split", "test"
    )
    assert "holds no dataset in a known layout" in _error(
        capsys, "dataset-info", "--data", tmp_path
    )
    bad = tmp_path / "bad"
    make_dataset(bad, SyntheticSettings(images=2, width=96, height=96))
    (bad / "training" / "label_2" / "000001.txt").write_text("Car 0 0 0 5 5 200 20 0 0 0 0 0 0 0\n")
    assert "000001.txt:1: the box (5, 5, 200, 20) lies outside the 96 x 96 image" in _error(
        capsys, "dataset-info", "--data", bad, "--split", "all"
    )


def test_make_dataset_is_deterministic(tmp_path, capsys):
    for name in ("a", "b"):
        code, out, _ = _run(
            capsys, "make-dataset", "--out", tmp_path / name, "--images", 5, "--size", 96
        )
        assert code == 0 and json.loads(out)["images"] == 5
    files = sorted(
        p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*") if p.is_file()
    )
    assert len(files) == 5 * 2 + 3  # images, labels, train.txt, val.txt, classes.txt
    for rel in files:
        assert (tmp_path / "a" / rel).read_bytes() == (tmp_path / "b" / rel).read_bytes(), rel
    assert "--images must be between 2" in _error(
        capsys, "make-dataset", "--out", tmp_path / "c", "--images", 1
    )


def test_shipped_dataset_classes_differ_in_shape():
    """The generator's classes are told apart by shape: their aspect ranges do not overlap."""
    ranges = sorted(synthetic_dataset.ASPECTS.values())
    assert all(a[1] < b[0] for a, b in itertools.pairwise(ranges))
    data = synthetic_dataset.draw_image(np.random.default_rng(0), 256, 256)[1]
    assert data and all(x1 < x2 <= 256 and y1 < y2 <= 256 for _, (x1, y1, x2, y2) in data)


def test_evaluate_predictions_command(shipped, tmp_path, capsys):
    data = load_dataset(shipped, "kitti")
    perfect = [Prediction(r.boxes, r.boxes.new_ones(len(r.boxes)), r.labels) for r in data.images]
    path = tmp_path / "pred.json"
    path.write_text(json.dumps(predictions_to_json(data, perfect)))
    code, out, _ = _run(capsys, "evaluate", "--data", shipped, "--predictions", path)
    report = json.loads(out)
    assert code == 0 and report["map50"] == 1.0 and report["map"] == 1.0
    assert set(report["per_class"]) == {"Car", "Pedestrian", "Cyclist"}
    path.write_text("[]")  # no predictions at all
    _, out, _ = _run(capsys, "evaluate", "--data", shipped, "--predictions", path, "--curves")
    report = json.loads(out)
    assert report["map50"] == 0.0 and len(report["per_class"]["Car"]["recall"]) == 101
    path.write_text('[{"image_id": "nope", "category_id": 0, "bbox": [1, 1, 2, 2], "score": 1}]')
    assert "detection 0: unknown image_id 'nope'" in _error(
        capsys, "evaluate", "--data", shipped, "--predictions", path
    )


def test_evaluate_checkpoint_of_other_classes(shipped, tmp_path, capsys):
    model = build_model("fasterrcnn_mobilenet_v3_large_fpn", 3, min_size=128, max_size=128)
    ckpt = tmp_path / "other.pt"
    save_checkpoint(ckpt, model, "fasterrcnn_mobilenet_v3_large_fpn", ["__background__", "a", "b"])
    assert "detects a, b; the dataset's classes are Car, Pedestrian, Cyclist" in _error(
        capsys, "evaluate", "--data", shipped, "--checkpoint", ckpt
    )
    assert "weights file not found" in _error(
        capsys, "evaluate", "--data", shipped, "--checkpoint", tmp_path / "none.pt"
    )


def test_finetune_bad_input(shipped, tmp_path, capsys):
    common = ("finetune", "--data", shipped, "--out", tmp_path / "o", "--weights", "random")
    assert "unknown model 'yolo'" in _error(capsys, *common, "--model", "yolo")
    assert "--weights must be auto, coco or random" in _error(
        capsys, *common[:-2], "--weights", "x"
    )
    assert "epochs must be at least 1" in _error(capsys, *common, "--epochs", 0)
    assert "--lr-steps takes epochs" in _error(capsys, *common, "--lr-steps", "a,b")
    if not torch.cuda.is_available():
        assert "CUDA is not available" in _error(capsys, *common, "--device", "cuda")
    assert not (tmp_path / "o").exists()


def test_fetch_dataset_offline_is_one_line(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("FRCNN_OFFLINE", "1")
    line = _error(capsys, "fetch-dataset", "kitti-tiny", "--out", tmp_path / "kt")
    assert "FRCNN_OFFLINE is set" in line and "make-dataset" in line
    assert not (tmp_path / "kt").exists()


def test_fetch_from_a_local_server(shipped, tmp_path, monkeypatch):
    """The real download and unpack path, served from localhost: a zip laid out as
    kitti_tiny.zip is (one top folder)."""
    monkeypatch.delenv("FRCNN_OFFLINE", raising=False)
    serve = tmp_path / "serve"
    serve.mkdir()
    with zipfile.ZipFile(serve / "kitti_tiny.zip", "w") as zf:
        for path in sorted(shipped.rglob("*")):
            if path.is_file():
                zf.write(path, "kitti_tiny/" + str(path.relative_to(shipped)))

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, directory=str(serve), **kwargs)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Quiet)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/kitti_tiny.zip"
        data = fetch_kitti_tiny(tmp_path / "kt", url=url)
    finally:
        server.shutdown()
    assert data.format == "kitti" and data.split == "val" and len(data) == 2
    assert (tmp_path / "kt" / "kitti_tiny" / "training" / "label_2").is_dir()
    assert not list(tmp_path.glob(".kitti_tiny.*"))  # the download was removed
