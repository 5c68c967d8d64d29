"""Ground-truth boxes as users give them: cleaned, with a note for each fix."""

from __future__ import annotations

import json
import math

import pytest
import torch

from frcnn_core.ground_truth import (
    DEFAULT_LABEL,
    MAX_BOXES,
    MAX_LABEL_CHARS,
    BoxesError,
    clean_boxes,
    clean_label,
    parse_boxes,
    read_boxes_file,
)

SIZE = (100, 200)  # (H, W)


def test_valid_boxes_pass_unchanged():
    gt = clean_boxes([[10, 20, 30, 40], [0, 0, 200, 100]], ["a", "b"], SIZE)
    assert gt.boxes.tolist() == [[10, 20, 30, 40], [0, 0, 200, 100]]
    assert gt.boxes.dtype == torch.float32
    assert gt.labels == ("a", "b")
    assert gt.notes == ()


def test_inverted_corners_are_swapped():
    gt = clean_boxes([[30, 40, 10, 20], [10, 40, 30, 20]], ["a", "a"], SIZE)
    assert gt.boxes.tolist() == [[10, 20, 30, 40], [10, 20, 30, 40]]
    assert len(gt.notes) == 2 and all("swapped" in n for n in gt.notes)


def test_out_of_image_boxes_are_clipped():
    # W = 200, H = 100.
    gt = clean_boxes([[-10, -5, 50, 60], [150, 50, 250, 130]], ["a", "b"], SIZE)
    assert gt.boxes.tolist() == [[0, 0, 50, 60], [150, 50, 200, 100]]
    assert [("clipped" in n) for n in gt.notes] == [True, True]


def test_zero_area_and_outside_boxes_are_dropped():
    raw = [
        [10, 10, 10, 50],  # zero width
        [10, 10, 50, 10],  # zero height
        [300, 10, 400, 50],  # wholly right of the 200-wide image
        [-50, -50, -1, -1],  # wholly above-left
        [20, 20, 60, 60],  # kept
    ]
    gt = clean_boxes(raw, ["z1", "z2", "out1", "out2", "ok"], SIZE)
    assert gt.boxes.tolist() == [[20, 20, 60, 60]]
    assert gt.labels == ("ok",)
    assert sum("dropped" in n for n in gt.notes) == 4
    assert gt.notes[0].startswith("box 1")


def test_nan_and_non_numbers_are_dropped():
    raw = [[math.nan, 0, 10, 10], [0, 0, math.inf, 10], ["a", 0, 10, 10], [1, 2, 3], [1, 1, 9, 9]]
    gt = clean_boxes(raw, ["n", "i", "s", "short", "ok"], SIZE)
    assert gt.boxes.tolist() == [[1, 1, 9, 9]]
    assert gt.labels == ("ok",)
    assert len(gt.notes) == 4
    assert any("non-finite" in n for n in gt.notes)
    assert any("four numbers" in n for n in gt.notes)


def test_empty_box_list():
    gt = clean_boxes([], [], SIZE)
    assert gt.boxes.shape == (0, 4)
    assert gt.labels == () and gt.class_names == ()
    assert gt.class_ids.tolist() == []


def test_labels_trimmed_and_defaulted():
    assert clean_label("  zebra\n  crossing ") == "zebra crossing"
    assert clean_label("") == DEFAULT_LABEL
    assert clean_label(None) == DEFAULT_LABEL
    assert clean_label("   \t") == DEFAULT_LABEL
    assert clean_label("x" * 100) == "x" * MAX_LABEL_CHARS
    assert clean_label(7) == "7"


def test_class_ids_in_order_of_first_appearance():
    boxes = [[0, 0, 10, 10]] * 4
    gt = clean_boxes(boxes, ["dog", " cat", "dog", ""], SIZE)
    assert gt.labels == ("dog", "cat", "dog", DEFAULT_LABEL)
    assert gt.class_names == ("dog", "cat", DEFAULT_LABEL)
    assert gt.class_ids.tolist() == [1, 2, 1, 3]  # 0 is background
    sub = gt.subset([1, 3])
    assert sub.labels == ("cat", DEFAULT_LABEL)
    assert sub.boxes.shape == (2, 4)


def test_at_most_max_boxes_are_kept():
    raw = [[0, 0, 10, 10]] * (MAX_BOXES + 3)
    gt = clean_boxes(raw, ["a"] * len(raw), SIZE)
    assert gt.boxes.shape == (MAX_BOXES, 4)
    assert any(str(MAX_BOXES) in n for n in gt.notes)


def test_mismatched_labels_length_raises():
    with pytest.raises(ValueError):
        clean_boxes([[0, 0, 10, 10]], [], SIZE)


def test_parse_boxes_accepts_list_and_object():
    data = [{"box": [1, 2, 3, 4], "label": "zebra"}, {"box": [5.5, 6, 7, 8]}]
    assert parse_boxes(data) == ([[1, 2, 3, 4], [5.5, 6, 7, 8]], ["zebra", DEFAULT_LABEL])
    assert parse_boxes({"boxes": data}) == parse_boxes(data)
    assert parse_boxes([]) == ([], [])


@pytest.mark.parametrize(
    "data",
    [
        {"box": [1, 2, 3, 4]},  # an object, not a list
        "boxes",
        None,
        [[1, 2, 3, 4]],  # items must be objects
        [{"label": "x"}],  # no "box"
        [{"box": [1, 2, 3]}],  # three numbers
        [{"box": "1,2,3,4"}],
        [{"box": [1, 2, 3, "4"]}],
        [{"box": [True, 2, 3, 4]}],  # bool is not a number here
        [{"box": [1, 2, 3, None]}],
    ],
)
def test_parse_boxes_errors(data):
    with pytest.raises(BoxesError):
        parse_boxes(data)


def test_read_boxes_file(tmp_path):
    good = tmp_path / "boxes.json"
    good.write_text(json.dumps([{"box": [1, 2, 3, 4], "label": "a"}]), encoding="utf-8")
    assert read_boxes_file(good) == ([[1, 2, 3, 4]], ["a"])
    bad = tmp_path / "bad.json"
    bad.write_text("[{", encoding="utf-8")
    with pytest.raises(BoxesError, match="JSON"):
        read_boxes_file(bad)
    with pytest.raises(BoxesError):
        read_boxes_file(tmp_path / "missing.json")
    # NaN in JSON (Python's json accepts it) parses, then clean_boxes drops the box.
    nan = tmp_path / "nan.json"
    nan.write_text('[{"box": [NaN, 0, 10, 10]}]', encoding="utf-8")
    raw, labels = read_boxes_file(nan)
    assert clean_boxes(raw, labels, SIZE).boxes.shape == (0, 4)
