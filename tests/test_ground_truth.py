"""Ground-truth boxes as users give them: cleaned, with a note for each fix; scaled to the input
frame (stage 1 for the boxes); and their class ids."""

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
    GroundTruth,
    class_ids,
    clean_boxes,
    clean_label,
    ground_truth,
    parse_boxes,
    read_boxes_file,
    scale_to_input,
)
from frcnn_core.image import ResizeParams

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
    assert clean_label("x" * 100) == "x" * (MAX_LABEL_CHARS - 1) + "…"  # cut, visibly
    assert clean_label("x" * MAX_LABEL_CHARS) == "x" * MAX_LABEL_CHARS
    assert clean_label(7) == "7"
    # Marks that would reverse or hide text are shown by their code point; controls dropped.
    assert clean_label("cat\u202egnp.exe\x07") == "cat<U+202E>gnp.exe"


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


# ---- stage 1 for the boxes: scale_to_input and ground_truth -------------------------------


def boxes_on(rows: list[list[float]], labels: list[str] | None = None) -> GroundTruth:
    """Clean boxes on an original image, as clean_boxes returns them."""
    names = tuple(labels or [f"b{i}" for i in range(len(rows))])
    return GroundTruth(torch.tensor(rows, dtype=torch.float32).reshape(-1, 4), names)


def test_scale_to_input_scales_and_truncates_boxes():
    gt = scale_to_input(boxes_on([[223, 782, 623, 1074]]), (1333, 2000), ResizeParams())
    # sx = 800 / 2000 = 0.4, sy = 800 / 1333 = 0.60015:
    # 223 * 0.4 = 89.2 -> 89; 782 * 0.60015 = 469.3 -> 469; 623 * 0.4 = 249.2 -> 249;
    # 1074 * 0.60015 = 644.56 -> 644 (truncated, not rounded).
    assert gt.boxes.tolist() == [[89.0, 469.0, 249.0, 644.0]]
    assert gt.boxes.dtype == torch.float32
    assert gt.labels == ("b0",) and gt.notes == ()
    floats = scale_to_input(
        boxes_on([[223, 782, 623, 1074]]), (1333, 2000), ResizeParams(truncate_boxes=False)
    )
    expected = [223 * 0.4, 782 * 800 / 1333, 623 * 0.4, 1074 * 800 / 1333]
    assert floats.boxes[0].tolist() == pytest.approx(expected, rel=1e-6)


def test_scale_to_input_non_square_frame():
    # 300 x 400 (H x W) -> 480 x 640: sx = 640 / 400 = 1.6, sy = 480 / 300 = 1.6.
    gt = scale_to_input(boxes_on([[100.0, 30, 300, 150]]), (300, 400), ResizeParams(480, 640))
    assert gt.boxes.tolist() == [[160.0, 48.0, 480.0, 240.0]]


def test_scale_to_input_drops_boxes_that_vanish():
    # 2000 -> 800: a 2-pixel-wide box [0, 0, 2, 50] becomes [0, 0, 0.8 -> 0, 20]: no width.
    before = boxes_on([[0.0, 0, 2, 50], [100, 0, 400, 50], [5, 0, 6, 10]], ["a", "b", "c"])
    before = GroundTruth(before.boxes, before.labels, ("box 9: clipped to the image",))
    gt = scale_to_input(before, (100, 2000), ResizeParams())
    assert gt.boxes.tolist() == [[40.0, 0.0, 160.0, 400.0]]
    assert gt.labels == ("b",)  # the labels stay aligned with the surviving boxes
    # The cleaning's notes come first, then one per vanished box, by its label.
    assert gt.notes == (
        "box 9: clipped to the image",
        "box 'a' vanished when scaled to the input frame",
        "box 'c' vanished when scaled to the input frame",
    )
    empty = scale_to_input(boxes_on([]), (100, 2000), ResizeParams())
    assert empty.boxes.shape == (0, 4) and empty.labels == () and empty.notes == ()


def test_ground_truth_cleans_on_the_original_then_scales():
    # Cleaning happens in original pixels (W = 2000, H = 100), scaling after it.
    raw = [
        [400, 80, 100, 10],  # inverted: swapped to [100, 10, 400, 80]
        [5, 0, 6, 10],  # 1 pixel wide: 0.4 wide at 800 / 2000 -> truncated to 0 -> vanishes
        [float("nan"), 0, 10, 10],  # dropped by the cleaning
        [1900, 50, 2100, 120],  # clipped to [1900, 50, 2000, 100]
    ]
    gt = ground_truth(raw, ["cat", "dog", "bird", " horse "], (100, 2000), ResizeParams())
    # sx = 0.4, sy = 8: [100, 10, 400, 80] -> [40, 80, 160, 640]; [1900, 50, 2000, 100] ->
    # [760, 400, 800, 800].
    assert gt.boxes.tolist() == [[40, 80, 160, 640], [760, 400, 800, 800]]
    assert gt.labels == ("cat", "horse")
    notes = " | ".join(gt.notes)
    assert "swapped" in notes and "clipped" in notes and "'dog' vanished" in notes
    assert sum("dropped" in n for n in gt.notes) == 1  # the NaN box
    # The same as the two steps by hand.
    clean = clean_boxes(raw, ["cat", "dog", "bird", " horse "], (100, 2000))
    by_hand = scale_to_input(clean, (100, 2000), ResizeParams())
    assert torch.equal(gt.boxes, by_hand.boxes) and gt.notes == by_hand.notes


def test_class_ids_in_a_models_vocabulary():
    # A trained model's vocabulary may hold more classes, in its own order: ids follow it.
    ids = class_ids(("dog", "cat", "dog"), ("cat", "zebra", "dog"))
    assert ids.class_names == ("cat", "zebra", "dog")
    assert ids.gt_labels.tolist() == [3, 1, 3] and ids.gt_labels.dtype == torch.int64
    assert class_ids((), ("cat",)).gt_labels.shape == (0,)
    with pytest.raises(ValueError, match="'horse'"):
        class_ids(("cat", "horse"), ("cat", "dog"))
