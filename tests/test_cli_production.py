"""``python -m frcnn_core detect`` and ``fetch-weights``: the JSON, the PNGs, and one-line errors.

The commands run in-process (``main([...])`` with stderr captured) except one real subprocess
each. The weights are a MobileNet checkpoint with random weights, raised biases for classes 1-3
(so there are detections above 0.3) and ``model_kwargs`` for a small transform (min 128 / max
192), saved in the fine-tuning checkpoint format, so every run is fast and needs no network.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from frcnn_core.cli import main
from frcnn_core.detectors import (
    COCO_CLASS_NAMES,
    OFFLINE_ENV,
    WEIGHTS_ENV,
    build_model,
    coco_cache_path,
    load_detector,
    save_checkpoint,
)
from frcnn_core.device import DEVICE_ENV, default_device, device_name
from frcnn_core.image import load_image
from frcnn_core.production import image_tensor

MOBILE = "fasterrcnn_mobilenet_v3_large_fpn"
ROOT = Path(__file__).resolve().parents[1]
KEYS = {
    "model",
    "weights",
    "image_size",
    "input_size",
    "feature_maps",
    "anchors_per_level",
    "proposals",
    "detections",
}


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    torch.manual_seed(11)
    model = build_model(MOBILE, 91)
    with torch.no_grad():
        model.roi_heads.box_predictor.cls_score.bias[1:4] += torch.tensor([6.0, 5.0, 4.0])
    path = tmp_path_factory.mktemp("cli_weights") / "mobile_small.pt"
    save_checkpoint(
        path, model, MOBILE, COCO_CLASS_NAMES, model_kwargs={"min_size": 128, "max_size": 192}
    )
    return path


@pytest.fixture(scope="module")
def image_file(tmp_path_factory, make_pixels) -> Path:
    path = tmp_path_factory.mktemp("cli_images") / "landscape.png"
    cv2.imwrite(str(path), cv2.cvtColor(make_pixels(60, 80, seed=4), cv2.COLOR_RGB2BGR))
    return path


@pytest.fixture(autouse=True)
def offline(monkeypatch, tmp_path):
    """No network, no weights env var, an empty torch hub cache: nothing is ever downloaded."""
    monkeypatch.setenv(OFFLINE_ENV, "1")
    monkeypatch.delenv(WEIGHTS_ENV, raising=False)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture(scope="module")
def reference(checkpoint, image_file):
    """What torchvision's own model gives for the same file and weights, at threshold 0.3."""
    det = load_detector(None, str(checkpoint), box_score_thresh=0.3)
    image = image_tensor(load_image(image_file).pixels)
    with torch.inference_mode():
        batch, _ = det.model.transform([image])
        features = det.model.backbone(batch.tensors)
        anchors = det.model.rpn.anchor_generator(batch, list(features.values()))[0]
        output = det.model([image])[0]
    return det, batch, features, anchors, output


def test_detect_prints_one_json_object(capsys, checkpoint, image_file, reference):
    det, batch, features, anchors, output = reference
    code, out, err = run_cli(
        capsys, "detect", "--image", str(image_file), "--weights", str(checkpoint)
    )
    assert code == 0
    assert len(out.strip().splitlines()) == 1
    report = json.loads(out)
    assert set(report) == KEYS
    assert report["model"] == MOBILE and report["weights"] == str(checkpoint)
    assert report["image_size"] == [60, 80]
    assert report["input_size"] == [128, 170]  # x 128 / 60: 80 -> 170.7 -> 170, under 192
    assert report["input_size"] == list(batch.image_sizes[0])
    assert report["feature_maps"] == {k: list(v.shape[1:]) for k, v in features.items()}
    # Anchors per level: the model's anchor generator on this input, split per level.
    per_location = det.model.rpn.anchor_generator.num_anchors_per_location()
    expected = {
        name: a * f.shape[-2] * f.shape[-1]
        for (name, f), a in zip(features.items(), per_location, strict=True)
    }
    assert report["anchors_per_level"] == expected
    assert sum(report["anchors_per_level"].values()) == anchors.shape[0]
    assert 0 < report["proposals"]["post_nms"] <= report["proposals"]["pre_nms"]
    # The detections: torchvision's model at box_score_thresh=0.3, best first, in original pixels.
    found = report["detections"]
    assert len(found) == len(output["scores"]) > 0
    assert [d["score"] for d in found] == output["scores"].tolist()
    assert [d["label_id"] for d in found] == output["labels"].tolist()
    assert [d["label"] for d in found] == [COCO_CLASS_NAMES[i] for i in output["labels"].tolist()]
    for d, box in zip(found, output["boxes"].tolist(), strict=True):
        assert d["box"] == pytest.approx(box, abs=0.006)
        assert 0 <= d["box"][0] < d["box"][2] <= 80 and 0 <= d["box"][1] < d["box"][3] <= 60
        assert d["score"] >= 0.3
    assert err.splitlines() == [
        f"note: running on {device_name(default_device())}",
        f"note: Weights loaded from {checkpoint}.",
    ]


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_device_fallback_is_said(capsys, checkpoint, image_file, monkeypatch):
    monkeypatch.setenv(DEVICE_ENV, "cuda")
    code, out, err = run_cli(
        capsys, "detect", "--image", str(image_file), "--weights", str(checkpoint)
    )
    assert code == 0 and json.loads(out)["detections"]
    assert err.splitlines()[:2] == [
        f"note: {DEVICE_ENV}=cuda but CUDA is not available",
        f"note: running on {device_name(torch.device('cpu'))}",
    ]


def test_detect_threshold(capsys, checkpoint, image_file):
    code, out, _ = run_cli(
        capsys, "detect", "--image", str(image_file), "--weights", str(checkpoint),
        "--score-threshold", "0.02",
    )  # fmt: skip
    low = json.loads(out)["detections"]
    code2, out2, _ = run_cli(
        capsys, "detect", "--image", str(image_file), "--weights", str(checkpoint)
    )
    default = json.loads(out2)["detections"]
    assert code == code2 == 0
    assert len(low) > len(default)  # below the model's own 0.05: the post-process re-ran
    assert min(d["score"] for d in low) > 0.02
    assert [d["score"] for d in low] == sorted((d["score"] for d in low), reverse=True)


def test_detect_out_writes_one_png_per_stage(capsys, checkpoint, image_file, tmp_path):
    out_dir = tmp_path / "slides"
    code, out, err = run_cli(
        capsys, "detect", "--image", str(image_file), "--weights", str(checkpoint),
        "--out", str(out_dir),
    )  # fmt: skip
    assert code == 0 and set(json.loads(out)) == KEYS
    names = sorted(p.name for p in out_dir.iterdir())
    assert names == [
        "01_input.png",
        "02_fpn_levels.png",
        "03_anchors.png",
        "04_objectness.png",
        "05_proposals.png",
        "06_roi_levels.png",
        "07_detections.png",
    ]
    for name in names:
        picture = cv2.imread(str(out_dir / name))
        assert picture is not None and picture.shape[0] > 40 and picture.std() > 5, name
    # The detections are drawn on the original image (60 x 80 under its title band).
    assert cv2.imread(str(out_dir / "07_detections.png")).shape[1] == 80
    assert err.count("wrote ") == 7


def _bad_cases(tmp: Path, checkpoint: Path, image_file: Path) -> dict[str, tuple[list[str], str]]:
    strip = tmp / "strip.png"
    cv2.imwrite(str(strip), np.full((1, 400, 3), 128, dtype=np.uint8))
    text = tmp / "notes.jpg"
    text.write_text("not an image")
    corrupt = tmp / "corrupt.pt"
    corrupt.write_bytes(checkpoint.read_bytes()[:5000])
    img = ["--image", str(image_file)]
    w = ["--weights", str(checkpoint)]
    cases = {
        "missing image": (["--image", str(tmp / "nope.jpg"), *w], "nope.jpg does not exist"),
        "unreadable image": (["--image", str(text), *w], "is not an image file"),
        "weights for another model": (
            [*img, *w, "--model", "fasterrcnn_resnet50_fpn"],
            f"checkpoint for {MOBILE}, not fasterrcnn_resnet50_fpn",
        ),
        "corrupt weights": ([*img, "--weights", str(corrupt)], "is not a PyTorch weights file"),
        "missing weights": ([*img, "--weights", str(tmp / "w.pt")], "weights file not found"),
        "image too thin": (["--image", str(strip), *w], "a 400 x 1 image is too thin"),
        "unknown model": ([*img, "--model", "yolov8"], "unknown model 'yolov8'"),
        "bogus device": ([*img, *w, "--device", "banana"], "unknown device 'banana'"),
        "threshold": ([*img, *w, "--score-threshold", "1.5"], "between 0 and 1"),
        "half on cpu": ([*img, *w, "--device", "cpu", "--half"], "--half needs CUDA"),
    }
    if not torch.cuda.is_available():
        cases["cuda without cuda"] = ([*img, *w, "--device", "cuda"], "CUDA is not available")
    return cases


def test_bad_input_exits_2_with_one_line(capsys, checkpoint, image_file, tmp_path):
    for case, (argv, expected) in _bad_cases(tmp_path, checkpoint, image_file).items():
        code, out, err = run_cli(capsys, "detect", *argv)
        assert code == 2, case
        assert out == "", case
        lines = err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: "), (case, err)
        assert expected in lines[0], (case, lines[0])
        assert "Traceback" not in err


def test_fetch_weights_offline_says_so(capsys):
    code, out, err = run_cli(capsys, "fetch-weights", "--model", MOBILE)
    assert code == 2 and out == ""
    assert err.strip().splitlines() == [
        f"error: {OFFLINE_ENV} is set: not downloading {coco_cache_path(MOBILE).name}; "
        "unset it where download.pytorch.org is reachable"
    ]
    for model in ("vgg16", "all"):
        code, _, err = run_cli(capsys, "fetch-weights", "--model", model)
        assert code == 2 and len(err.strip().splitlines()) == 1 and OFFLINE_ENV in err


def test_fetch_weights_unknown_model(capsys):
    code, _, err = run_cli(capsys, "fetch-weights", "--model", "resnet18")
    assert code == 2 and err.startswith("error: unknown model 'resnet18'")


def test_fetch_weights_finds_the_cached_file(capsys, checkpoint):
    cached = coco_cache_path(MOBILE)
    cached.parent.mkdir(parents=True)
    cached.write_bytes(b"placeholder")
    code, out, _ = run_cli(capsys, "fetch-weights", "--model", MOBILE)
    assert code == 0
    assert out.strip() == f"{MOBILE}: {cached} (already in the cache)"


def _subprocess(*argv: str, env_extra: dict[str, str]) -> subprocess.CompletedProcess:
    env = {**os.environ, **env_extra}
    return subprocess.run(
        [sys.executable, "-m", "frcnn_core", *argv],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_detect_in_a_real_process(checkpoint, image_file, tmp_path):
    env = {OFFLINE_ENV: "1", "TORCH_HOME": str(tmp_path / "th"), WEIGHTS_ENV: str(checkpoint)}
    done = _subprocess("detect", "--image", str(image_file), env_extra=env)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["weights"] == str(checkpoint) and report["model"] == MOBILE
    assert report["detections"] and report["input_size"] == [128, 170]
    bad = _subprocess("detect", "--image", str(tmp_path / "none.png"), env_extra=env)
    assert bad.returncode == 2 and bad.stdout == ""
    assert bad.stderr.strip().splitlines() == [
        f"error: image {tmp_path / 'none.png'} does not exist."
    ]


@pytest.mark.slow
def test_detect_in_a_real_process_on_random_weights(image_file, tmp_path):
    # MobileNet at torchvision's default 800 / 1333, offline: random weights with a notice.
    env = {OFFLINE_ENV: "1", "TORCH_HOME": str(tmp_path / "th"), WEIGHTS_ENV: ""}
    done = _subprocess("detect", "--image", str(image_file), "--model", MOBILE, env_extra=env)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["weights"] == "random" and report["model"] == MOBILE
    assert report["input_size"] == [800, 1066]  # 60 x 80 x (800 / 60)
    assert report["feature_maps"] == {"0": [256, 25, 34], "1": [256, 25, 34], "pool": [256, 13, 17]}
    # 25 x 34 cells x 15 anchors (5 sizes x 3 ratios) on each level.
    assert report["anchors_per_level"] == {"0": 12750, "1": 12750, "pool": 3315}
    assert "warning: COCO weights for" in done.stderr and "fetch-weights" in done.stderr
