"""One image's boxes in and out: every format round-trips, COCO files with several images give
the named image's boxes, and every malformed file is refused with its name and place."""

from __future__ import annotations

import json

import pytest

from frcnn_core.boxes_io import FORMATS, detect_format, read_boxes, write_boxes
from frcnn_core.ground_truth import BoxesError, clean_label

SIZE = (400, 600)  # (H, W)
BOXES = [
    {"box": [10.0, 20.0, 110.0, 220.0], "label": "cat"},
    {"box": [300.0, 100.0, 590.0, 390.0], "label": "dog"},
    {"box": [50.5, 60.25, 70.5, 90.75], "label": "cat"},
]


@pytest.mark.parametrize("kind", FORMATS)
def test_every_format_round_trips(kind: str) -> None:
    data, name = write_boxes(kind, BOXES, "street.jpg", SIZE)
    assert detect_format(name, data) == kind
    back = read_boxes(data, name, SIZE, "street.jpg")
    assert [b["label"] for b in back.boxes] == [b["label"] for b in BOXES]
    for got, want in zip(back.boxes, BOXES, strict=True):
        assert got["box"] == pytest.approx(want["box"], abs=1e-3), kind  # YOLO: 6 decimals


def test_coco_with_several_images_takes_the_named_one() -> None:
    coco = {
        "images": [
            {"id": 1, "file_name": "a/street.jpg", "width": 600, "height": 400},
            {"id": 2, "file_name": "park.png", "width": 600, "height": 400},
        ],
        "categories": [{"id": 7, "name": "bike"}],
        "annotations": [
            {"image_id": 1, "bbox": [1, 2, 3, 4], "category_id": 7},
            {"image_id": 2, "bbox": [5, 6, 7, 8], "category_id": 7},
            {"image_id": 2, "bbox": [0, 0, 100, 100], "category_id": 7, "iscrowd": 1},
        ],
    }
    data = json.dumps(coco).encode()
    park = read_boxes(data, "train.json", SIZE, "park.jpg")
    assert park.boxes == [{"box": [5.0, 6.0, 12.0, 14.0], "label": "bike"}]
    assert "crowd" in park.notes[0]
    with pytest.raises(BoxesError, match="describes 2 images and none is named like zebras"):
        read_boxes(data, "train.json", SIZE, "zebras.jpg")


def test_yolo_without_names_and_voc_difficult() -> None:
    yolo = read_boxes(b"3 0.5 0.5 0.2 0.5\n", "street.txt", SIZE)
    assert yolo.boxes == [{"box": pytest.approx([240, 100, 360, 300]), "label": "class 3"}]
    assert "no class names" in yolo.notes[0]
    voc = (
        b"<annotation><object><name>cat</name><difficult>1</difficult><bndbox><xmin>1</xmin>"
        b"<ymin>2</ymin><xmax>30</xmax><ymax>40</ymax></bndbox></object></annotation>"
    )
    got = read_boxes(voc, "street.xml", SIZE)
    assert got.boxes == [{"box": [1.0, 2.0, 30.0, 40.0], "label": "cat"}]
    assert "difficult" in got.notes[0]


@pytest.mark.parametrize(
    ("name", "data", "message"),
    [
        ("b.json", b"{not json", r"b\.json is not valid JSON \(line 1, column 2"),
        ("b.json", b'[{"box": [1, 2, 3]}]', r"boxes\[0\]\.box must be a list of four numbers"),
        ("b.json", b"[" * 200 + b"]" * 200, "nests deeper than 64 levels"),
        ("c.json", b'{"images": [], "annotations": []}', "describes no image"),
        (
            "c.json",
            b'{"images": [{"id": 1}], "annotations": [{"image_id": 1, "bbox": [1, 2, "x", 4], '
            b'"category_id": 1}], "categories": [{"id": 1, "name": "a"}]}',
            r"c\.json: annotations\[0\]\.bbox: 'x' is not a number",
        ),
        (
            "c.json",
            b'{"images": [{"id": 1}], "annotations": [{"image_id": 1, "bbox": [1, 2, 3, 4], '
            b'"category_id": 9}], "categories": [{"id": 1, "name": "a"}]}',
            "category_id 9 is not in the categories",
        ),
        ("v.xml", b"<annotation><object><name>a</name></object>", r"v\.xml is not valid XML"),
        ("v.xml", b"<root/>", "not a Pascal VOC annotation"),
        (
            "v.xml",
            b"<annotation><object><name>a</name><bndbox><xmin>1</xmin></bndbox></object>"
            b"</annotation>",
            r"v\.xml: <object> 1: <ymin> is missing",
        ),
        ("y.txt", b"0 0.5 0.5 0.1\n", r"y\.txt line 1: expected 'class cx cy w h', got 4"),
        ("y.txt", b"\n0 0.5 0.5 0.1 1.5\n", r"y\.txt line 2: YOLO coordinates are fractions"),
        ("y.txt", b"a 0.5 0.5 0.1 0.1\n", "class 'a' is not a whole number"),
        ("y.zip", b"PK\x03\x04 broken", r"y\.zip is not a readable zip file"),
    ],
)
def test_malformed_files_say_where(name: str, data: bytes, message: str) -> None:
    with pytest.raises(BoxesError, match=message):
        read_boxes(data, name, SIZE, "street.jpg")


def test_yolo_class_ids_must_be_named() -> None:
    with pytest.raises(BoxesError, match="class 2 is not in the 2 class names"):
        read_boxes(b"2 0.5 0.5 0.1 0.1\n", "y.txt", SIZE, classes=b"cat\ndog\n")


def test_an_export_leaves_out_rows_being_typed() -> None:
    boxes = [
        {"box": ["abc", 782, 623, 1074], "label": "text"},
        {"box": [597, float("nan"), 1038, 1050], "label": "nan"},
        {"box": [10, 20, 5, 40], "label": "inverted"},
        {"box": [1544, 771, 1914, 1063], "label": None},
    ]
    data, _ = write_boxes("boxes", boxes, "zebras.jpg", (1200, 2000))
    rows = json.loads(data)
    assert [r["box"] for r in rows] == [[1544.0, 771.0, 1914.0, 1063.0]]
    assert rows[0]["label"] == clean_label(None)
