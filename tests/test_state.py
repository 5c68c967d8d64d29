"""explorer.state's cache key of the boxes: whatever a box holds, it is a key, never a traceback,
and stage 1 drops a box that is not four numbers with a note for the user."""

from __future__ import annotations

import math

import numpy as np

from explorer.state import key_of_boxes
from frcnn_core.ground_truth import clean_boxes


def test_numbers_become_floats() -> None:
    key = key_of_boxes([{"box": [1, 2.5, np.float32(3), "4"], "label": "cat"}])
    assert key == (((1.0, 2.5, 3.0, 4.0), "cat"),)
    assert all(type(v) is float for v in key[0][0])


def test_text_none_and_odd_shapes_are_kept_as_not_numbers() -> None:
    boxes = [
        {"box": ["abc", 782, 623, 1074], "label": "text"},
        {"box": [597, 695, None, 1050], "label": "none"},
        {"box": [1, 2, 3], "label": "three"},
        {"box": "1234", "label": "a string"},
        {"box": None, "label": "no list"},
        {"label": "no box"},
        "not a dict",
        {"box": [10, 20, 30, 40], "label": None},
        {"box": [10, 20, 30, 40], "label": 7},
    ]
    assert key_of_boxes(boxes) == (
        ((None, 782.0, 623.0, 1074.0), "text"),
        ((597.0, 695.0, None, 1050.0), "none"),
        ((1.0, 2.0, 3.0), "three"),
        ((), "a string"),
        ((), "no list"),
        ((), "no box"),
        ((), ""),
        ((10.0, 20.0, 30.0, 40.0), ""),
        ((10.0, 20.0, 30.0, 40.0), "7"),
    )


def test_nan_and_inf_stay_for_stage_1_to_judge() -> None:
    ((coords, _),) = key_of_boxes([{"box": [float("nan"), "inf", 3, 4], "label": "x"}])
    assert math.isnan(coords[0]) and coords[1] == math.inf and coords[2:] == (3.0, 4.0)


def test_the_key_is_hashable_and_stage_1_says_what_it_dropped() -> None:
    key = key_of_boxes(
        [
            {"box": ["abc", 782, 623, 1074], "label": "text"},
            {"box": [597, float("nan"), 1038, 1050], "label": "nan"},
            {"box": [1, 2, 3], "label": "three"},
            {"box": [1544, 771, 1914, 1063], "label": "zebra"},
        ]
    )
    hash(key)
    gt = clean_boxes([list(b) for b, _ in key], [label for _, label in key], (1333, 2000))
    assert gt.labels == ("zebra",)
    assert gt.boxes.tolist() == [[1544.0, 771.0, 1914.0, 1063.0]]
    assert gt.notes == (
        "box 1 dropped: its coordinates are not four numbers",
        "box 2 dropped: it has a missing or non-finite coordinate",
        "box 3 dropped: its coordinates are not four numbers",
    )
