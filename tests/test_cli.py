"""The command line: SPEC section 6's JSON on the zebra sample, bad-input exits, render, train."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from frcnn_core.cli import main

ROOT = Path(__file__).resolve().parents[1]
ZEBRAS = ROOT / "sample_images" / "zebras.jpg"
ZEBRA_BOXES = ROOT / "sample_images" / "zebras.json"
SMALL = ["--set", "height=320", "--set", "width=320"]


@pytest.fixture(scope="module")
def zebra_summary() -> dict:
    """``python -m frcnn_core summarize`` on the zebra sample, as a real subprocess."""
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "frcnn_core",
            "summarize",
            "--image",
            str(ZEBRAS),
            "--boxes",
            str(ZEBRA_BOXES),
            "--weights",
            "random",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    return json.loads(out.stdout)


def test_summary_reproduces_spec_reference_numbers(zebra_summary):
    s = zebra_summary
    assert s["input_size"] == [800, 800]
    assert s["gt_boxes"] == [
        [89, 469, 249, 644],
        [238, 417, 415, 630],
        [435, 419, 580, 634],
        [617, 462, 765, 637],
    ]
    assert s["feature_map"] == [512, 50, 50]
    assert s["weights"] == "random"
    assert s["anchors"] == {"total": 22500, "inside": 8940}
    labels = s["anchor_labels"]
    assert (labels["positive"], labels["negative"], labels["ignored"]) == (45, 7469, 1426)
    assert (labels["sampled_positive"], labels["sampled_negative"]) == (45, 211)
    assert labels["gt_best_iou"] == pytest.approx(
        [0.58514285, 0.5752716, 0.5255493, 0.6325869], abs=1e-7
    )


def test_summary_schema(zebra_summary):
    s = zebra_summary
    assert set(s["proposals"]) == {"decoded", "after_min_size", "pre_nms", "after_nms", "kept"}
    p = s["proposals"]
    assert p["decoded"] == 22500
    assert p["decoded"] >= p["after_min_size"] >= p["pre_nms"] >= p["after_nms"] >= p["kept"]
    assert p["pre_nms"] == min(12000, p["after_min_size"])
    assert p["kept"] == min(2000, p["after_nms"])
    rt = s["roi_targets"]
    assert rt["positive"] <= 32 and rt["positive"] + rt["negative"] == 128
    assert s["roi_pool"] == [128, 512, 7, 7]
    losses = s["losses"]
    assert set(losses) == {"rpn_cls", "rpn_loc", "roi_cls", "roi_loc", "total"}
    assert losses["total"] == pytest.approx(
        losses["rpn_cls"] + losses["rpn_loc"] + losses["roi_cls"] + losses["roi_loc"]
    )
    # Untrained two-way and (C+1)-way softmax: cross-entropy near log 2.
    assert losses["rpn_cls"] == pytest.approx(0.693, abs=0.01)


def test_set_overrides_parameters(capsys):
    code = main(
        [
            "summarize",
            "--image",
            str(ZEBRAS),
            "--boxes",
            str(ZEBRA_BOXES),
            "--weights",
            "random",
            "--set",
            "pos_iou=0.5",
            "--set",
            "roi_batch_size=64",
            "--set",
            "train_proposals.pre_nms=1000",
            "--set",
            "train_proposals.post_nms=100",
        ]
    )
    assert code == 0
    s = json.loads(capsys.readouterr().out)
    # The training proposal counts, by their group's name (test_proposals has the same fields).
    assert s["proposals"]["pre_nms"] == min(1000, s["proposals"]["after_min_size"])
    assert s["proposals"]["kept"] == min(100, s["proposals"]["after_nms"]) == 100
    # At IoU 0.5 more anchors pass the threshold than the 45 ties alone.
    assert s["anchor_labels"]["positive"] > 45
    assert s["anchor_labels"]["sampled_positive"] == min(s["anchor_labels"]["positive"], 128)
    assert s["roi_targets"]["positive"] + s["roi_targets"]["negative"] == 64


def _error(capsys, argv: list[str]) -> str:
    code = main(argv)
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert err and err[-1].startswith("error: ")
    return err[-1]


def test_bad_inputs_exit_2_with_one_line(capsys, tmp_path):
    text = tmp_path / "notes.png"
    text.write_text("not an image")
    bad_json = tmp_path / "boxes.json"
    bad_json.write_text("{not json")
    wrong_shape = tmp_path / "shape.json"
    wrong_shape.write_text(json.dumps([{"box": [1, 2, 3], "label": "x"}]))
    base = ["summarize", "--weights", "random"]
    assert "does not exist" in _error(
        capsys, [*base, "--image", str(tmp_path / "missing.jpg"), "--boxes", str(ZEBRA_BOXES)]
    )
    assert "not an image" in _error(
        capsys, [*base, "--image", str(text), "--boxes", str(ZEBRA_BOXES)]
    )
    assert "not valid JSON" in _error(
        capsys, [*base, "--image", str(ZEBRAS), "--boxes", str(bad_json)]
    )
    assert "four numbers" in _error(
        capsys, [*base, "--image", str(ZEBRAS), "--boxes", str(wrong_shape)]
    )
    zebras = [*base, "--image", str(ZEBRAS), "--boxes", str(ZEBRA_BOXES)]
    assert "unknown setting 'nope'" in _error(capsys, [*zebras, "--set", "nope=1"])
    ambiguous = _error(capsys, [*zebras, "--set", "seed=1"])
    assert "ambiguous" in ambiguous and "anchor_targets.seed" in ambiguous
    assert "nms_iou='high' is not a number" in _error(capsys, [*zebras, "--set", "nms_iou=high"])
    assert "between 0 and 1" in _error(capsys, [*zebras, "--set", "nms_iou=1.5"])
    assert "name=value" in _error(capsys, [*zebras, "--set", "nms_iou"])
    # Sizes that follow from the backbone are not settings: the message says what they follow.
    stride = _error(capsys, [*zebras, "--set", "stride=8"])
    assert "stride is derived" in stride and "16" in stride
    assert "derived" in _error(capsys, [*zebras, "--set", "roi_pool.spatial_scale=0.125"])
    assert "between 160 and 1280" in _error(capsys, [*zebras, "--set", "height=16"])
    assert "does not exist" in _error(
        capsys,
        [
            "summarize",
            "--weights",
            str(tmp_path / "vgg.pth"),
            "--image",
            str(ZEBRAS),
            "--boxes",
            str(ZEBRA_BOXES),
        ],
    )


def test_empty_box_list_is_valid(capsys, tmp_path):
    empty = tmp_path / "empty.json"
    empty.write_text("[]")
    assert (
        main(
            [
                "summarize",
                "--image",
                str(ZEBRAS),
                "--boxes",
                str(empty),
                "--weights",
                "random",
                *SMALL,
            ]
        )
        == 0
    )
    s = json.loads(capsys.readouterr().out)
    assert s["gt_boxes"] == []
    assert s["anchor_labels"]["positive"] == 0
    assert s["anchor_labels"]["sampled_negative"] == 256
    assert s["roi_targets"]["positive"] == 0


def test_render_writes_one_png_per_stage(tmp_path, capsys):
    out = tmp_path / "slides"
    assert (
        main(
            [
                "render",
                "--image",
                str(ZEBRAS),
                "--boxes",
                str(ZEBRA_BOXES),
                "--weights",
                "random",
                "--out",
                str(out),
                *SMALL,
            ]
        )
        == 0
    )
    names = sorted(p.name for p in out.glob("*.png"))
    assert names == [
        "01_gt_boxes.png",
        "02_features.png",
        "03_anchor_centres.png",
        "04_anchors_at_location.png",
        "05_labelled_anchors.png",
        "06_proposals_before_nms.png",
        "07_proposals_after_nms.png",
        "08_sampled_rois.png",
        "09_pooled_features.png",
    ]
    from PIL import Image

    with Image.open(out / "01_gt_boxes.png") as im:
        assert im.size == (320, 320 + 36)  # the image plus its title band


def test_train_writes_weights_and_log(tmp_path, capsys):
    from frcnn_core.train import heads_from_bytes

    weights = tmp_path / "heads.pt"
    assert (
        main(
            [
                "train",
                "--image",
                str(ZEBRAS),
                "--boxes",
                str(ZEBRA_BOXES),
                "--weights",
                "random",
                "--iterations",
                "2",
                "--out",
                str(weights),
                *SMALL,
            ]
        )
        == 0
    )
    result = json.loads(capsys.readouterr().out)
    log = json.loads(Path(result["log"]).read_text())
    assert [row["iteration"] for row in log] == [1, 2]
    assert result["first"] == log[0] and result["last"] == log[1]
    assert result["seconds_per_iteration"] > 0
    # Defaults: RPN 0.001; class scores 1.0 and box deltas 1.0 / lambda (10), one image.
    assert result["learning_rates"] == pytest.approx(
        {"rpn": 0.001, "class_scores": 1.0, "box_deltas": 0.1}
    )
    overlap = result["detection_overlap"]
    assert len(overlap["before"]) == len(overlap["after"]) == 1
    assert all(0.0 <= v <= 1.0 for v in overlap["before"] + overlap["after"])
    loaded = heads_from_bytes(weights.read_bytes())
    assert loaded.class_names == ("zebra",)
