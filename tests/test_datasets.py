"""Dataset readers: one dataset written in all four formats loads to the same in-memory form, and
every kind of bad data gives a one-line message naming the file and the place."""

from __future__ import annotations

import json
import os
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from frcnn_core import datasets as ds
from frcnn_core.datasets import DatasetError, load_dataset

CLASSES = ("Car", "Pedestrian", "Cyclist")
ALL_NAMES = (*CLASSES, "DontCare")
# (id, width, height, [(class, (x1, y1, x2, y2))]); DontCare is an ignored box of any class.
# Coordinates are multiples of 1/4 so that COCO's x + w and YOLO's normalisation round-trip.
IMAGES = [
    ("000000", 64, 48, [("Car", (2.0, 3.0, 30.5, 20.25)), ("DontCare", (40.0, 5.0, 60.0, 15.0))]),
    ("000001", 64, 48, [("Pedestrian", (10.0, 4.0, 20.0, 44.0)), ("Cyclist", (30, 10, 50, 40))]),
    ("000002", 40, 56, []),
    ("000003", 40, 56, [("Car", (0.0, 0.0, 40.0, 56.0)), ("Car", (5.5, 6.5, 10.0, 12.0))]),
    ("000004", 64, 48, [("Cyclist", (1, 1, 9, 9)), ("DontCare", (20, 20, 30, 30))]),
]
TRAIN = ["000000", "000001", "000003"]
VAL = ["000002", "000004"]


def _png(path: Path, width: int, height: int, seed: int = 0) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 255, (height, width, 3), dtype=np.uint8)).save(path)


def _splits(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "train.txt").write_text("\n".join(TRAIN) + "\n")
    (folder / "val.txt").write_text("\n".join(VAL) + "\n")


def write_kitti(root: Path, images=IMAGES) -> Path:
    for n, (image_id, w, h, objs) in enumerate(images):
        _png(root / "training" / "image_2" / f"{image_id}.png", w, h, n)
        lines = [f"{c} 0.00 0 0.00 {b[0]} {b[1]} {b[2]} {b[3]} 1 1 1 0 0 0 0" for c, b in objs]
        label = root / "training" / "label_2" / f"{image_id}.txt"
        label.parent.mkdir(parents=True, exist_ok=True)
        label.write_text("".join(line + "\n" for line in lines))
    _splits(root)
    return root


def write_coco(root: Path, images=IMAGES) -> Path:
    cats = [{"id": 10 + k, "name": name} for k, name in enumerate(ALL_NAMES)]
    coco_images, anns = [], []
    for n, (image_id, w, h, objs) in enumerate(images):
        _png(root / "images" / f"{image_id}.png", w, h, n)
        coco_images.append({"id": 100 + n, "file_name": f"{image_id}.png", "width": w, "height": h})
        for c, (x1, y1, x2, y2) in objs:
            anns.append(
                {
                    "id": len(anns) + 1,
                    "image_id": 100 + n,
                    "category_id": 10 + ALL_NAMES.index(c),
                    "bbox": [x1, y1, x2 - x1, y2 - y1],
                    "area": (x2 - x1) * (y2 - y1),
                    "iscrowd": 0,
                }
            )
    data = {"images": coco_images, "annotations": anns, "categories": cats}
    (root / "annotations.json").write_text(json.dumps(data))
    _splits(root)
    return root


def _voc_xml(image_name: str, w: int, h: int, objs, difficult=()) -> str:
    parts = [f"<annotation><filename>{image_name}</filename>"]
    parts.append(f"<size><width>{w}</width><height>{h}</height><depth>3</depth></size>")
    for k, (c, b) in enumerate(objs):
        parts.append(
            f"<object><name>{c}</name><difficult>{int(k in difficult)}</difficult><bndbox>"
            f"<xmin>{b[0]}</xmin><ymin>{b[1]}</ymin><xmax>{b[2]}</xmax><ymax>{b[3]}</ymax>"
            "</bndbox></object>"
        )
    return "".join(parts) + "</annotation>"


def write_voc(root: Path, images=IMAGES) -> Path:
    for n, (image_id, w, h, objs) in enumerate(images):
        _png(root / "JPEGImages" / f"{image_id}.png", w, h, n)
        xml = root / "Annotations" / f"{image_id}.xml"
        xml.parent.mkdir(parents=True, exist_ok=True)
        xml.write_text(_voc_xml(f"{image_id}.png", w, h, objs))
    _splits(root / "ImageSets" / "Main")
    return root


def write_yolo(root: Path, images=IMAGES) -> Path:
    for n, (image_id, w, h, objs) in enumerate(images):
        _png(root / "images" / f"{image_id}.png", w, h, n)
        lines = []
        for c, (x1, y1, x2, y2) in objs:
            cx, cy = (x1 + x2) / 2 / w, (y1 + y2) / 2 / h
            bw, bh = (x2 - x1) / w, (y2 - y1) / h
            lines.append(f"{ALL_NAMES.index(c)} {cx:.10f} {cy:.10f} {bw:.10f} {bh:.10f}")
        label = root / "labels" / f"{image_id}.txt"
        label.parent.mkdir(parents=True, exist_ok=True)
        label.write_text("".join(line + "\n" for line in lines))
    (root / "classes.txt").write_text("\n".join(ALL_NAMES) + "\n")
    _splits(root)
    return root


WRITERS = {"kitti": write_kitti, "coco": write_coco, "voc": write_voc, "yolo": write_yolo}


@pytest.fixture(scope="module")
def four(tmp_path_factory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("four")
    return {fmt: writer(base / fmt) for fmt, writer in WRITERS.items()}


def _expected(split_ids):
    """The in-memory form the readers must produce, from the spec alone."""
    out = []
    for image_id, w, h, objs in sorted(i for i in IMAGES if i[0] in split_ids):
        boxes = [b for c, b in objs if c in CLASSES]
        labels = [CLASSES.index(c) for c, _ in objs if c in CLASSES]
        ignored = [b for c, b in objs if c not in CLASSES]
        out.append((image_id, w, h, boxes, labels, ignored))
    return out


@pytest.mark.parametrize("fmt", ["kitti", "coco", "voc", "yolo"])
@pytest.mark.parametrize("split", ["train", "val", "all", None])
def test_reader_gives_the_spec(four, fmt, split):
    data = load_dataset(four[fmt], fmt, classes=None if fmt == "kitti" else CLASSES, split=split)
    want_split = split or "val"
    ids = {"train": TRAIN, "val": VAL, "all": TRAIN + VAL}[want_split]
    assert data.classes == CLASSES
    assert data.split == want_split
    assert data.format == fmt
    expected = _expected(ids)
    assert [r.image_id for r in data.images] == [e[0] for e in expected]
    for rec, (image_id, w, h, boxes, labels, ignored) in zip(data.images, expected, strict=True):
        assert (rec.width, rec.height) == (w, h)
        assert rec.boxes.dtype == torch.float32 and rec.boxes.shape == (len(boxes), 4)
        torch.testing.assert_close(
            rec.boxes, torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4), atol=1e-4, rtol=0
        )
        assert rec.labels.tolist() == labels
        torch.testing.assert_close(
            rec.ignored_boxes,
            torch.tensor(ignored, dtype=torch.float32).reshape(-1, 4),
            atol=1e-4,
            rtol=0,
        )
        assert rec.ignored_labels.tolist() == [ds.ANY_CLASS] * len(ignored)
        assert rec.path.is_file() and rec.path.stem == image_id


def test_four_formats_load_to_the_same_dataset(four):
    for split in ("train", "val", "all"):
        loaded = {fmt: load_dataset(four[fmt], fmt, classes=CLASSES, split=split) for fmt in four}
        for fmt in ("coco", "voc", "yolo"):
            assert ds.same_annotations(loaded["kitti"], loaded[fmt]), (fmt, split)
    # And the comparison can fail: one box moved by 2 pixels is noticed.
    moved = [list(i) for i in IMAGES]
    moved[0] = ["000000", 64, 48, [("Car", (4.0, 3.0, 30.5, 20.25))]]
    other = write_kitti(four["kitti"].parent / "moved", [tuple(m) for m in moved])
    assert not ds.same_annotations(
        load_dataset(other, "kitti", split="all"), load_dataset(four["kitti"], "kitti", split="all")
    )


def test_auto_format_and_dataset_info_summary(four):
    for fmt, root in four.items():
        assert ds.detect_format(root) == fmt
    data = load_dataset(four["kitti"], split="all")
    summary = ds.summarize(data).to_dict()
    assert summary["images"] == 5
    assert summary["boxes_per_class"] == {"Car": 3, "Pedestrian": 1, "Cyclist": 2}
    assert summary["ignored"] == 2
    assert summary["images_without_boxes"] == 1
    # Box sides sqrt(w h): Car 28.5x17.25 -> 22.2, 40x56 -> 47.3, 4.5x5.5 -> 5.0.
    sizes = summary["box_size_histogram"]
    assert sizes["counts"]["Car"][sizes["bins"].index("16-32")] == 1
    assert sizes["counts"]["Car"][sizes["bins"].index("32-64")] == 1
    assert sizes["counts"]["Car"][sizes["bins"].index("0-8")] == 1
    aspects = summary["aspect_histogram"]
    # Pedestrian 10 x 40: aspect 0.25 -> the 0.25-0.50 bin.
    assert aspects["counts"]["Pedestrian"][aspects["bins"].index("0.25-0.50")] == 1
    assert sum(sum(v) for v in aspects["counts"].values()) == 6


def test_kitti_classes_option_and_class_file(tmp_path):
    root = write_kitti(tmp_path / "k")
    data = load_dataset(root, "kitti", classes="Cyclist,Car", split="all")
    assert data.classes == ("Cyclist", "Car")
    rec = data.images[data.index("000001")]
    assert rec.labels.tolist() == [0]  # Pedestrian is now an ignored box of any class
    assert rec.ignored_labels.tolist() == [-1]
    (root / "classes.txt").write_text("Pedestrian\n")
    assert load_dataset(root, "kitti", split="all").classes == ("Pedestrian",)


def test_crowd_and_difficult_are_ignored_with_their_class(tmp_path):
    root = write_coco(tmp_path / "c")
    data = json.loads((root / "annotations.json").read_text())
    data["annotations"][0]["iscrowd"] = 1  # the Car of 000000
    (root / "annotations.json").write_text(json.dumps(data))
    rec = load_dataset(root, "coco", classes=CLASSES, split="all").images[0]
    assert rec.boxes.shape == (0, 4)
    assert rec.ignored_labels.tolist() == [0, -1]  # crowd Car keeps its class; DontCare any
    voc = write_voc(tmp_path / "v")
    (voc / "Annotations" / "000001.xml").write_text(
        _voc_xml("000001.png", 64, 48, IMAGES[1][3], difficult=(1,))
    )
    rec = load_dataset(voc, "voc", classes=CLASSES, split="all").images[1]
    assert rec.labels.tolist() == [1]
    assert rec.ignored_labels.tolist() == [2]


def test_voc_classes_default_to_sorted_names(tmp_path):
    root = write_voc(tmp_path / "v")
    assert load_dataset(root, "voc", split="all").classes == (
        "Car",
        "Cyclist",
        "DontCare",
        "Pedestrian",
    )


def test_yolo_data_yaml_and_split_folders(tmp_path):
    root = write_yolo(tmp_path / "y")
    (root / "classes.txt").unlink()
    (root / "data.yaml").write_text(
        "path: .\nnames:\n  0: Car\n  1: Pedestrian\n  2: Cyclist\n  3: DontCare\n"
    )
    data = load_dataset(root, "yolo", classes=CLASSES, split="all")
    assert len(data) == 5 and data.classes == CLASSES
    (root / "data.yaml").write_text("names: [Car, Pedestrian, Cyclist, DontCare]\n")
    assert load_dataset(root, "yolo", split="all").classes == ALL_NAMES
    # Ultralytics layout: images/train, images/val, labels/train, labels/val.
    for split, ids in (("train", TRAIN), ("val", VAL)):
        for image_id in ids:
            for kind, suffix in (("images", ".png"), ("labels", ".txt")):
                (root / kind / split).mkdir(parents=True, exist_ok=True)
                os.replace(
                    root / kind / f"{image_id}{suffix}", root / kind / split / f"{image_id}{suffix}"
                )
    (root / "train.txt").unlink()
    (root / "val.txt").unlink()
    val = load_dataset(root, "yolo", classes=CLASSES)
    assert val.split == "val" and [r.image_id for r in val.images] == VAL
    assert ds.same_annotations(val, load_dataset(tmp_path / "y", "yolo", classes=CLASSES))
    assert ds.same_annotations(
        load_dataset(root, "yolo", classes=CLASSES, split="all"),
        load_dataset(write_kitti(tmp_path / "k"), "kitti", split="all"),
    )


def test_no_split_files_means_all(tmp_path):
    root = write_kitti(tmp_path / "k")
    (root / "val.txt").unlink()
    assert load_dataset(root, "kitti").split == "all"
    assert ds.has_split(root, "kitti", "train") and not ds.has_split(root, "kitti", "val")
    with pytest.raises(DatasetError, match="no val split"):
        load_dataset(root, "kitti", split="val")


# -- bad data: one line naming the file and the place ------------------------------------------


def _one_line(exc: pytest.ExceptionInfo) -> str:
    message = str(exc.value)
    assert "\n" not in message and message
    return message


def _kitti_bad(tmp_path, line: str) -> str:
    root = write_kitti(tmp_path / "k")
    label = root / "training" / "label_2" / "000001.txt"
    label.write_text(label.read_text() + line + "\n")
    with pytest.raises(DatasetError) as exc:
        load_dataset(root, "kitti", split="all")
    message = _one_line(exc)
    assert f"{label}:3" in message  # the file and the line
    return message


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        ("Car 0 0 0 1 2 3", "at least 8 fields"),
        ("Car 0 0 0 1 2 x 9 0 0 0 0 0 0 0", "'x' is not a number"),
        ("Car 0 0 0 10 10 70 20 0 0 0 0 0 0 0", "outside the 64 x 48 image"),
        ("Car 0 0 0 10 10 10 20 0 0 0 0 0 0 0", "no area"),
        ("Car 0 0 0 10 10 20 nan 0 0 0 0 0 0 0", "is nan"),
    ],
)
def test_kitti_bad_lines(tmp_path, line, reason):
    assert reason in _kitti_bad(tmp_path, line)


def test_kitti_box_within_tolerance_is_clipped(tmp_path):
    root = write_kitti(tmp_path / "k")
    label = root / "training" / "label_2" / "000001.txt"
    label.write_text("Car 0 0 0 -0.5 1 64.6 48 0 0 0 0 0 0 0\n")
    rec = load_dataset(root, "kitti", split="all").images[1]
    assert rec.boxes.tolist() == [[0.0, 1.0, 64.0, 48.0]]


def test_kitti_missing_files_and_empty(tmp_path):
    root = write_kitti(tmp_path / "k")
    (root / "training" / "image_2" / "000002.png").unlink()
    with pytest.raises(DatasetError, match="missing image") as exc:
        load_dataset(root, "kitti", split="val")
    assert "000002" in _one_line(exc)
    root = write_kitti(tmp_path / "k2")
    (root / "training" / "label_2" / "000004.txt").unlink()
    with pytest.raises(DatasetError, match=r"missing label file .*000004\.txt"):
        load_dataset(root, "kitti", split="val")
    root = write_kitti(tmp_path / "k3")
    (root / "val.txt").write_text("\n")
    with pytest.raises(DatasetError, match="empty dataset"):
        load_dataset(root, "kitti", split="val")
    empty = tmp_path / "k4"
    (empty / "training" / "image_2").mkdir(parents=True)
    (empty / "training" / "label_2").mkdir(parents=True)
    with pytest.raises(DatasetError, match="empty dataset"):
        load_dataset(empty, "kitti")
    with pytest.raises(DatasetError, match="is not a KITTI dataset"):
        load_dataset(tmp_path, "kitti")
    with pytest.raises(DatasetError, match="does not exist"):
        load_dataset(tmp_path / "nowhere", "kitti")


def test_bounded_reads(tmp_path, monkeypatch):
    root = write_kitti(tmp_path / "k")
    label = root / "training" / "label_2" / "000001.txt"
    monkeypatch.setattr(ds, "MAX_LABEL_BYTES", 20)
    with pytest.raises(
        DatasetError, match=r"label file .*\.txt is \d+ bytes; the limit is 20 bytes"
    ):
        load_dataset(root, "kitti", split="all")
    monkeypatch.undo()
    label.unlink()
    label.mkdir()  # a folder where a label file should be
    with pytest.raises(DatasetError, match="is not a regular file"):
        load_dataset(root, "kitti", split="all")
    label.rmdir()
    os.mkfifo(label)  # a FIFO would block a plain open(); it is refused from its stat
    with pytest.raises(DatasetError, match="is not a regular file"):
        load_dataset(root, "kitti", split="all")
    label.unlink()
    label.write_bytes(b"Car \xff\xfe 0 0\n")
    with pytest.raises(DatasetError, match="not UTF-8"):
        load_dataset(root, "kitti", split="all")


def test_bad_image_files(tmp_path):
    root = write_kitti(tmp_path / "k")
    (root / "training" / "image_2" / "000001.png").write_bytes(b"not an image")
    with pytest.raises(DatasetError, match=r"000001\.png is not an image"):
        load_dataset(root, "kitti", split="all")
    root = write_kitti(tmp_path / "k2")
    data = load_dataset(root, "kitti", split="all")
    _png(root / "training" / "image_2" / "000001.png", 10, 10)
    with pytest.raises(DatasetError, match="is now 10 x 10"):
        ds.read_pixels(data.images[1])
    pixels = ds.read_pixels(data.images[0])
    assert pixels.shape == (48, 64, 3) and pixels.dtype == np.uint8


def _coco_bad(tmp_path, edit) -> str:
    root = write_coco(tmp_path / "c")
    data = json.loads((root / "annotations.json").read_text())
    edit(data)
    (root / "annotations.json").write_text(json.dumps(data))
    with pytest.raises(DatasetError) as exc:
        load_dataset(root, "coco", classes=CLASSES, split="all")
    message = _one_line(exc)
    assert "annotations.json" in message
    return message


def test_coco_bad_annotations(tmp_path):
    def set_ann(key, value, k=1):
        return lambda d: d["annotations"][k].__setitem__(key, value)

    assert "annotations[1] (id 2): unknown category_id 99" in _coco_bad(
        tmp_path / "a", set_ann("category_id", 99)
    )
    assert "annotations[1] (id 2): unknown image_id 7" in _coco_bad(
        tmp_path / "b", set_ann("image_id", 7)
    )
    assert "bbox must be" in _coco_bad(tmp_path / "c", set_ann("bbox", [1, 2, 3]))
    assert "outside the 64 x 48 image" in _coco_bad(tmp_path / "d", set_ann("bbox", [50, 1, 30, 5]))
    assert "no area" in _coco_bad(tmp_path / "e", set_ann("bbox", [5, 1, 0, 5]))
    assert "iscrowd must be 0 or 1" in _coco_bad(tmp_path / "f", set_ann("iscrowd", 2))
    assert "declares 65 x 48" in _coco_bad(
        tmp_path / "g", lambda d: d["images"][0].__setitem__("width", 65)
    )
    assert "no 'categories'" in _coco_bad(tmp_path / "h", lambda d: d.pop("categories"))
    assert "image id 101 appears twice" in _coco_bad(
        tmp_path / "i", lambda d: d["images"][2].__setitem__("id", 101)
    )
    assert "missing image: nope.png" in _coco_bad(
        tmp_path / "j", lambda d: d["images"][0].__setitem__("file_name", "nope.png")
    )
    assert "leaves the dataset folder" in _coco_bad(
        tmp_path / "k", lambda d: d["images"][0].__setitem__("file_name", "../../etc/x.png")
    )


def test_coco_bad_json(tmp_path):
    root = write_coco(tmp_path / "c")
    (root / "annotations.json").write_text('{"images": [1, 2')
    with pytest.raises(DatasetError, match=r"is not valid JSON \(line 1"):
        load_dataset(root, "coco")
    (root / "annotations.json").write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(DatasetError, match="nests deeper than 32"):
        load_dataset(root, "coco")
    assert ds.json_depth('{"a": "[[[[", "b": [[1]]}') == 3


def test_voc_bad_files(tmp_path):
    def bad(text: str) -> str:
        root = write_voc(tmp_path / f"v{len(list(tmp_path.iterdir()))}")
        xml = root / "Annotations" / "000001.xml"
        xml.write_text(text)
        with pytest.raises(DatasetError) as exc:
            load_dataset(root, "voc", classes=CLASSES, split="all")
        message = _one_line(exc)
        assert str(xml) in message
        return message

    good = _voc_xml("000001.png", 64, 48, IMAGES[1][3])
    assert "<bndbox> is missing" in bad(
        good.replace("<bndbox>", "<box>").replace("</bndbox>", "</box>")
    )
    assert "object 2 (Cyclist): <xmax> 'ten' is not a number" in bad(
        good.replace("<xmax>50</xmax>", "<xmax>ten</xmax>")
    )
    assert "object 1 (Pedestrian): the box (10, 4, 20, 60) lies outside" in bad(
        good.replace("<ymax>44.0</ymax>", "<ymax>60</ymax>")
    )
    assert "not valid XML" in bad(good[:-5])
    bomb = '<?xml version="1.0"?><!DOCTYPE a [<!ENTITY a "aaaa">]><annotation>&a;</annotation>'
    assert "has a DOCTYPE" in bad(bomb)
    assert "<size> says 60 x 48" in bad(good.replace("<width>64</width>", "<width>60</width>"))


def _yolo_bad(tmp_path, line: str) -> str:
    root = write_yolo(tmp_path / "y")
    label = root / "labels" / "000001.txt"
    label.write_text(label.read_text() + line + "\n")
    with pytest.raises(DatasetError) as exc:
        load_dataset(root, "yolo", split="all")
    message = _one_line(exc)
    assert f"{label}:3" in message
    return message


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        ("0 0.5 0.5 0.1", "5 fields"),
        ("7 0.5 0.5 0.1 0.1", "unknown class id 7 (the names file lists 4 classes)"),
        ("a 0.5 0.5 0.1 0.1", "class id 'a' is not an integer"),
        ("0 12 30 5 5", "normalised to 0..1"),
        ("0 0.95 0.5 0.2 0.2", "outside the 64 x 48 image"),
        ("0 0.5 0.5 0 0.2", "no area"),
    ],
)
def test_yolo_bad_lines(tmp_path, line, reason):
    assert reason in _yolo_bad(tmp_path, line)


def test_yolo_missing_names_and_images(tmp_path):
    root = write_yolo(tmp_path / "y")
    (root / "classes.txt").unlink()
    with pytest.raises(DatasetError, match="no class names"):
        load_dataset(root, "yolo")
    root = write_yolo(tmp_path / "y2")
    (root / "images" / "000004.png").unlink()
    with pytest.raises(DatasetError, match=r"missing image: .*val\.txt lists 000004"):
        load_dataset(root, "yolo")
    with pytest.raises(DatasetError, match="class 'Truck' is not in the YOLO class names"):
        load_dataset(root, "yolo", classes="Car,Truck")


def test_bad_class_lists(tmp_path):
    root = write_kitti(tmp_path / "k")
    with pytest.raises(DatasetError, match="listed twice"):
        load_dataset(root, "kitti", classes="Car,Car")
    with pytest.raises(DatasetError, match="an empty class name"):
        load_dataset(root, "kitti", classes="Car,,Van")
    with pytest.raises(DatasetError, match="unknown dataset format"):
        load_dataset(root, "pascal")
    with pytest.raises(DatasetError, match="unknown split"):
        load_dataset(root, "kitti", split="test")


# -- zip uploads -------------------------------------------------------------------------------


def _zip_folder(folder: Path, out: Path, prefix: str = "") -> Path:
    with zipfile.ZipFile(out, "w") as zf:
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                zf.write(path, prefix + str(path.relative_to(folder)))
    return out


@pytest.mark.parametrize("fmt", ["kitti", "coco", "voc", "yolo"])
def test_import_zip_of_each_format(four, tmp_path, fmt):
    archive = _zip_folder(four[fmt], tmp_path / "upload.zip", prefix="my_data/")
    data = ds.import_zip(archive.read_bytes(), tmp_path / "imported")
    assert data.format == fmt
    classes = None if fmt == "kitti" else CLASSES
    again = load_dataset(data.root, fmt, classes=classes, split="all")
    assert ds.same_annotations(again, load_dataset(four["kitti"], "kitti", split="all"))


def test_zip_safety(tmp_path):
    def zipped(entries) -> bytes:
        out = tmp_path / f"z{len(list(tmp_path.iterdir()))}.zip"
        with zipfile.ZipFile(out, "w") as zf:
            for entry in entries:
                if isinstance(entry, zipfile.ZipInfo):
                    zf.writestr(entry, "target")
                else:
                    zf.writestr(entry, "x")
        return out.read_bytes()

    cases = [
        (zipped(["../evil.txt"]), "leaves its folder"),
        (zipped(["a/../../evil.txt"]), "leaves its folder"),
        (zipped(["/etc/evil.txt"]), "absolute path"),
        (zipped(["C:/evil.txt"]), "absolute path"),
    ]
    link = zipfile.ZipInfo("data/link")
    link.external_attr = (0o120777) << 16
    cases.append((zipped([link]), "link or special file"))
    cases.append((b"PK\x03\x04 not really", "not a readable zip"))
    for n, (data, reason) in enumerate(cases):
        dest = tmp_path / f"out{n}"
        with pytest.raises(DatasetError, match=reason):
            ds.extract_zip(data, dest)
        assert not dest.exists()
        assert not any(p.name.startswith(f".out{n}") for p in tmp_path.iterdir())
    assert not (tmp_path.parent / "evil.txt").exists()
    many = zipped([f"f{i}" for i in range(5)])
    with pytest.raises(DatasetError, match="holds 5 files; the limit is 4"):
        ds.extract_zip(many, tmp_path / "many", max_members=4)
    with pytest.raises(DatasetError, match="unpacks to over"):
        ds.extract_zip(many, tmp_path / "big", max_bytes=3)
    assert ds.extract_zip(many, tmp_path / "ok").is_dir()
    with pytest.raises(DatasetError, match="already exists"):
        ds.extract_zip(many, tmp_path / "ok")


def test_import_zip_with_bad_data_leaves_nothing(four, tmp_path):
    bad = tmp_path / "bad"
    write_kitti(bad)
    (bad / "training" / "label_2" / "000004.txt").write_text("Car 0 0 0 1 2 3\n")
    archive = _zip_folder(bad, tmp_path / "bad.zip")
    with pytest.raises(DatasetError, match=r"000004\.txt:1: a KITTI line needs"):
        ds.import_zip(archive, tmp_path / "imported")
    assert not (tmp_path / "imported").exists()
    junk = _zip_folder(four["kitti"] / "training" / "image_2", tmp_path / "junk.zip")
    with pytest.raises(DatasetError, match="no dataset in a known layout"):
        ds.import_zip(junk, tmp_path / "imported")
    assert not (tmp_path / "imported").exists()
