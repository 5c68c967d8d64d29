"""Detection datasets on disk (KITTI, COCO JSON, Pascal VOC XML, YOLO txt) in one in-memory form.

Every reader returns a :class:`DetectionDataset`: a class list, a split name and one
:class:`ImageRecord` per image with its boxes in (x1, y1, x2, y2) pixel coordinates of the stored
image (no EXIF rotation is applied: annotation tools label the stored pixels). Labels are
indices into the dataset's class list (0..C-1); a torchvision detector's label ids are these
plus one, 0 being its background. Boxes that must be neither learned nor counted as misses
are kept apart as *ignored* boxes, each with a class index, or -1 for "any class":

============  =====================================================================  =========
format        layout under ``DIR``                                                    ignored
============  =====================================================================  =========
``kitti``     ``training/image_2/<id>.jpeg|jpg|png``, ``training/label_2/<id>.txt``   DontCare,
              (one object a line: class, 3 unused fields, x1 y1 x2 y2, ...);          classes
              classes: ``--classes``, else ``DIR/classes.txt``, else the tutorial's   not in
              Car, Pedestrian, Cyclist                                                the list
``coco``      one JSON (``DIR/annotations.json``, the only ``*.json`` in ``DIR`` or   iscrowd
              ``DIR/annotations/``, or ``--data FILE.json``), or ``train.json`` and
              ``val.json``; images at ``file_name`` next to the JSON or under
              ``images/``; classes: the categories in id order
``voc``       ``Annotations/<id>.xml``, ``JPEGImages/<id>.jpg``; classes:             difficult
              ``--classes``, else ``DIR/classes.txt``, else the sorted object names
``yolo``      ``images/<id>.jpg``, ``labels/<id>.txt`` (class cx cy w h, normalised   (none)
              to 0..1); class names in ``classes.txt``, ``obj.names`` or
              ``data.yaml``; ``images/train`` + ``images/val`` also work
============  =====================================================================  =========

Splits: ``DIR/train.txt`` and ``DIR/val.txt`` list image ids (file names without extension;
a YOLO list may hold image paths); VOC also reads ``ImageSets/Main/train.txt``. ``split=None``
means ``"val"`` where a val split exists, else ``"all"`` (the evaluation default). With
``classes`` given, boxes of any other class become ignored boxes (class -1), as the tutorial does
with KITTI's ``Van`` and ``DontCare``.

Bad data raises :class:`DatasetError` with one line naming the file and the line or annotation.
Reads are bounded: sizes are checked before a file is read, only regular files are read, JSON
nesting is limited, and XML with a DOCTYPE (entity expansion) is refused.
"""

from __future__ import annotations

import io
import itertools
import json
import math
import os
import re
import shutil
import stat
import tempfile
import warnings
import xml.etree.ElementTree as ET
import zipfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from frcnn_core.i18n import N_, _, ngettext

FORMATS = ("kitti", "coco", "voc", "yolo")
SPLITS = ("train", "val", "all")
KITTI_CLASSES = ("Car", "Pedestrian", "Cyclist")
IMAGE_SUFFIXES = (".jpeg", ".jpg", ".png", ".bmp", ".webp")
CLASS_FILES = ("classes.txt", "labels.txt", "obj.names")
ANY_CLASS = -1
MAX_IMAGE_BYTES = 50 * 2**20
MAX_IMAGE_PIXELS = 40_000_000
MAX_LABEL_BYTES = 4 * 2**20  # one KITTI / YOLO txt or VOC xml
MAX_JSON_BYTES = 512 * 2**20
MAX_JSON_DEPTH = 32  # COCO needs 6 (root, annotations, one, segmentation, polygon, ...)
MAX_LIST_BYTES = 16 * 2**20  # split and class files
MAX_IMAGES = 200_000
MAX_BOXES_PER_IMAGE = 5_000
MAX_CLASSES = 1_000
MAX_CLASS_CHARS = 100
# Annotation tools round: a corner up to this far outside the image is clipped, not refused.
BOX_TOLERANCE = 1.0
# Zip uploads: limits on what is extracted, whatever the archive's headers claim.
MAX_ZIP_MEMBERS = 100_000
MAX_ZIP_BYTES = 4 * 2**30
# Summary histograms: sqrt(box area) in pixels (COCO's small / medium / large are 32 and 96),
# and aspect ratio w / h.
SIZE_EDGES = (0.0, 8.0, 16.0, 32.0, 64.0, 96.0, 128.0, 256.0, 512.0, math.inf)
ASPECT_EDGES = (0.0, 0.25, 0.5, 0.75, 1.0 / 0.75, 2.0, 4.0, math.inf)


class DatasetError(ValueError):
    """A dataset that cannot be read; the message is one line naming the file and the place."""


# Messages raised in several places (translated where raised: the caller's language).
UNKNOWN_SPLIT = N_("unknown split {split!r}; use train, val or all")
NOT_AN_OBJECT = N_("{where} is not an object")
BBOX_NUMBERS = N_("{where}: bbox must be [x, y, width, height] numbers")
ZIP_TOO_LARGE = N_("the zip unpacks to over {limit}; refused")


@dataclass(frozen=True, eq=False)
class ImageRecord:
    """One image and its annotations.

    Attributes:
        image_id: the file name without extension (``000068``); unique in a dataset.
        path: the image file.
        width, height: the stored image's size in pixels.
        boxes (Tensor[N, 4]): float32 (x1, y1, x2, y2) pixels, 0 <= x1 < x2 <= width,
            0 <= y1 < y2 <= height.
        labels (Tensor[N]): int64 class indices 0..C-1 into the dataset's ``classes``.
        ignored_boxes (Tensor[K, 4]): float32 (x1, y1, x2, y2) boxes neither learned nor
            counted as misses, and detections on them are not false positives.
        ignored_labels (Tensor[K]): int64 class index, or -1 (``ANY_CLASS``) for a region that
            no class may be scored on (DontCare, or a class outside the list).
    """

    image_id: str
    path: Path
    width: int
    height: int
    boxes: torch.Tensor
    labels: torch.Tensor
    ignored_boxes: torch.Tensor
    ignored_labels: torch.Tensor

    @property
    def size(self) -> tuple[int, int]:
        """(H, W)."""
        return self.height, self.width


@dataclass(frozen=True, eq=False)
class DetectionDataset:
    """Images with boxes, read from one folder in one format.

    Attributes:
        root: the folder (or the COCO JSON file) it was read from.
        format: one of ``FORMATS``.
        classes: class names; a label is an index into it.
        split: ``"train"``, ``"val"`` or ``"all"``.
        images: one record per image, sorted by ``image_id``.
        notes: what the reader left out or assumed, one line each, for the user.
    """

    root: Path
    format: str
    classes: tuple[str, ...]
    split: str
    images: tuple[ImageRecord, ...]
    notes: tuple[str, ...] = ()

    def __len__(self) -> int:
        return len(self.images)

    def index(self, image_id: str) -> int:
        """Position of the image with this id; KeyError when there is none."""
        lookup = self.__dict__.get("_index")
        if lookup is None:
            lookup = {rec.image_id: i for i, rec in enumerate(self.images)}
            object.__setattr__(self, "_index", lookup)
        return lookup[image_id]


# -- bounded reading -----------------------------------------------------------------------------


def _regular_file(path: Path, limit: int, what: str) -> int:
    """Size of ``path`` after checking it is a regular file (symlinks followed) under ``limit``."""
    try:
        info = os.stat(path)
    except FileNotFoundError:
        raise DatasetError(
            _("{what} {path} does not exist").format(what=_(what), path=path)
        ) from None
    except OSError as exc:
        raise DatasetError(
            _("{what} {path} cannot be read: {reason}").format(
                what=_(what), path=path, reason=exc.strerror or exc
            )
        ) from None
    if not stat.S_ISREG(info.st_mode):
        raise DatasetError(_("{what} {path} is not a regular file").format(what=_(what), path=path))
    if info.st_size > limit:
        raise DatasetError(
            _("{what} {path} is {size}; the limit is {limit}").format(
                what=_(what), path=path, size=human_bytes(info.st_size), limit=human_bytes(limit)
            )
        )
    return info.st_size


def human_bytes(n: int) -> str:
    """``1536`` -> ``"1.5 KB"``; binary units, as the limits are written."""
    for unit, size in (("GB", 2**30), ("MB", 2**20), ("KB", 2**10)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return ngettext("{n} byte", "{n} bytes", n).format(n=n)


def _read_bytes(path: Path, limit: int, what: str) -> bytes:
    _regular_file(path, limit, what)
    try:
        with open(path, "rb") as fh:
            data = fh.read(limit + 1)
    except OSError as exc:
        raise DatasetError(
            _("{what} {path} cannot be read: {reason}").format(
                what=_(what), path=path, reason=exc.strerror or exc
            )
        ) from None
    if len(data) > limit:  # grew since the stat
        raise DatasetError(
            _("{what} {path} is over {limit}").format(
                what=_(what), path=path, limit=human_bytes(limit)
            )
        )
    return data


def _read_text(path: Path, limit: int, what: str) -> str:
    data = _read_bytes(path, limit, what)
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DatasetError(
            _("{what} {path} is not UTF-8 text (byte {byte})").format(
                what=_(what), path=path, byte=exc.start
            )
        ) from None


def _lines(path: Path, limit: int, what: str) -> list[str]:
    return _read_text(path, limit, what).splitlines()


def json_depth(text: str) -> int:
    """The deepest nesting of ``[`` / ``{`` in a JSON text, strings skipped; linear time."""
    depth = deepest = 0
    in_string = escaped = False
    for ch in text:
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif ch in "]}":
            depth -= 1
    return deepest


def read_json(path: Path, limit: int = MAX_JSON_BYTES, max_depth: int = MAX_JSON_DEPTH):
    """Parse a JSON file after checking its size and nesting depth.

    Raises:
        DatasetError: not a regular file, too large, too deep, or not valid JSON.
    """
    text = _read_text(path, limit, N_("JSON file"))
    # json recurses once per level: a hostile file a million brackets deep would overflow it.
    if json_depth(text) > max_depth:
        raise DatasetError(
            _("JSON file {path} nests deeper than {depth} levels").format(
                path=path, depth=max_depth
            )
        )
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise DatasetError(
            _("JSON file {path} is not valid JSON (line {line}, column {column}: {reason})").format(
                path=path, line=exc.lineno, column=exc.colno, reason=exc.msg
            )
        ) from None


def image_size(path: Path) -> tuple[int, int]:
    """(width, height) from the image file's header, without decoding its pixels.

    Raises:
        DatasetError: missing, not a regular file, too large, not an image, too many pixels.
    """
    _regular_file(path, MAX_IMAGE_BYTES, N_("image"))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as img:
                width, height = img.size
    except (UnidentifiedImageError, Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise DatasetError(
            _("image {path} is not an image file that can be read").format(path=path)
        ) from None
    except OSError as exc:
        raise DatasetError(
            _("{what} {path} cannot be read: {reason}").format(
                what=_("image"), path=path, reason=exc.strerror or exc
            )
        ) from None
    if width * height > MAX_IMAGE_PIXELS or width < 1 or height < 1:
        raise DatasetError(
            _("image {path} is {width} x {height} pixels; the limit is {mp:.0f} megapixels").format(
                path=path, width=width, height=height, mp=MAX_IMAGE_PIXELS / 1e6
            )
        )
    return width, height


def read_pixels(record: ImageRecord) -> np.ndarray:
    """Decode an image of the dataset.

    Returns:
        uint8 RGB array [H, W, 3] in the stored orientation (the boxes' frame).

    Raises:
        DatasetError: the file cannot be decoded or its size changed since it was listed.
    """
    data = _read_bytes(record.path, MAX_IMAGE_BYTES, N_("image"))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as img:
                if img.size != (record.width, record.height):
                    raise DatasetError(
                        _(
                            "image {path} is now {width} x {height}, was {old_width} x "
                            "{old_height} when the dataset was read"
                        ).format(
                            path=record.path,
                            width=img.size[0],
                            height=img.size[1],
                            old_width=record.width,
                            old_height=record.height,
                        )
                    )
                pixels = np.array(img.convert("RGB"), dtype=np.uint8)
    except DatasetError:
        raise
    except (UnidentifiedImageError, Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise DatasetError(
            _("image {path} is not an image file that can be read").format(path=record.path)
        ) from None
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise DatasetError(
            _("image {path} is damaged and cannot be decoded ({reason})").format(
                path=record.path, reason=exc
            )
        ) from None
    return pixels


# -- shared checks ---------------------------------------------------------------------------


def _number(text: str, where: str, what: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise DatasetError(
            _("{where}: {what} {text!r} is not a number").format(
                where=where, what=_(what), text=text
            )
        ) from None
    if not math.isfinite(value):
        raise DatasetError(
            _("{where}: {what} is {text}").format(where=where, what=_(what), text=text)
        )
    return value


def check_box(
    box: Sequence[float], width: int, height: int, where: str
) -> tuple[float, float, float, float]:
    """A box (x1, y1, x2, y2) checked against a ``width`` x ``height`` image, clipped to it when
    it is outside by at most ``BOX_TOLERANCE`` pixels (rounding in annotation tools).

    Raises:
        DatasetError: a coordinate is not finite, the box has no area, or it lies outside.
    """
    x1, y1, x2, y2 = (float(v) for v in box)
    if not all(math.isfinite(v) for v in (x1, y1, x2, y2)):
        raise DatasetError(_("{where}: the box has a non-finite coordinate").format(where=where))
    if x2 <= x1 or y2 <= y1:
        raise DatasetError(
            _(
                "{where}: the box ({x1:g}, {y1:g}, {x2:g}, {y2:g}) has no area "
                "(x2 <= x1 or y2 <= y1)"
            ).format(where=where, x1=x1, y1=y1, x2=x2, y2=y2)
        )
    tol = BOX_TOLERANCE
    if x1 < -tol or y1 < -tol or x2 > width + tol or y2 > height + tol:
        raise DatasetError(
            _(
                "{where}: the box ({x1:g}, {y1:g}, {x2:g}, {y2:g}) lies outside the "
                "{width} x {height} image"
            ).format(where=where, x1=x1, y1=y1, x2=x2, y2=y2, width=width, height=height)
        )
    x1, x2 = max(x1, 0.0), min(x2, float(width))
    y1, y2 = max(y1, 0.0), min(y2, float(height))
    if x2 <= x1 or y2 <= y1:
        raise DatasetError(
            _("{where}: the box has no area inside the {width} x {height} image").format(
                where=where, width=width, height=height
            )
        )
    return x1, y1, x2, y2


class _Annotations:
    """Boxes of one image as they are read: kept and ignored, with class indices."""

    def __init__(self, where: str) -> None:
        self.where = where
        self.boxes: list[tuple[float, float, float, float]] = []
        self.labels: list[int] = []
        self.ignored: list[tuple[float, float, float, float]] = []
        self.ignored_labels: list[int] = []

    def add(self, box, label: int, ignored: bool) -> None:
        if len(self.boxes) + len(self.ignored) >= MAX_BOXES_PER_IMAGE:
            raise DatasetError(
                _("{where}: more than {n} boxes in one image").format(
                    where=self.where, n=MAX_BOXES_PER_IMAGE
                )
            )
        if ignored or label == ANY_CLASS:
            self.ignored.append(box)
            self.ignored_labels.append(label)
        else:
            self.boxes.append(box)
            self.labels.append(label)

    def record(self, image_id: str, path: Path, width: int, height: int) -> ImageRecord:
        return ImageRecord(
            image_id=image_id,
            path=path,
            width=width,
            height=height,
            boxes=torch.tensor(self.boxes, dtype=torch.float32).reshape(-1, 4),
            labels=torch.tensor(self.labels, dtype=torch.int64),
            ignored_boxes=torch.tensor(self.ignored, dtype=torch.float32).reshape(-1, 4),
            ignored_labels=torch.tensor(self.ignored_labels, dtype=torch.int64),
        )


def parse_classes(text: str | Sequence[str] | None) -> tuple[str, ...] | None:
    """``"Car,Pedestrian"`` or a sequence of names -> a checked tuple; ``None`` stays ``None``.

    Raises:
        DatasetError: an empty name, a duplicate, or too many.
    """
    if text is None:
        return None
    names = [n.strip() for n in (text.split(",") if isinstance(text, str) else text)]
    return _check_class_list(names, "--classes")


def _check_class_list(names: Sequence[str], where: str) -> tuple[str, ...]:
    if not names:
        raise DatasetError(_("{where}: no class names").format(where=where))
    if len(names) > MAX_CLASSES:
        raise DatasetError(_("{where}: more than {n} classes").format(where=where, n=MAX_CLASSES))
    seen: set[str] = set()
    for name in names:
        if not name:
            raise DatasetError(_("{where}: an empty class name").format(where=where))
        if len(name) > MAX_CLASS_CHARS:
            raise DatasetError(
                _("{where}: class name {name!r}... is too long").format(where=where, name=name[:20])
            )
        if name in seen:
            raise DatasetError(
                _("{where}: class {name!r} is listed twice").format(where=where, name=name)
            )
        if name == "__background__":
            raise DatasetError(
                _("{where}: __background__ is not a class name to list").format(where=where)
            )
        seen.add(name)
    return tuple(names)


def _class_file(root: Path) -> Path | None:
    for name in CLASS_FILES:
        if (root / name).is_file():
            return root / name
    return None


def _read_class_file(path: Path) -> tuple[str, ...]:
    names = [line.strip() for line in _lines(path, MAX_LIST_BYTES, N_("class file"))]
    return _check_class_list([n for n in names if n], str(path))


def _find_image(folder: Path, stem: str) -> Path | None:
    for suffix in IMAGE_SUFFIXES:
        for candidate in (folder / f"{stem}{suffix}", folder / f"{stem}{suffix.upper()}"):
            if candidate.is_file():
                return candidate
    return None


def _stem(name: str) -> str:
    return Path(name.replace("\\", "/")).stem


def _read_split_file(path: Path) -> list[str]:
    ids: list[str] = []
    for line in _lines(path, MAX_LIST_BYTES, N_("split file")):
        line = line.strip()
        if line and not line.startswith("#"):
            ids.append(_stem(line))
    if len(ids) > MAX_IMAGES:
        raise DatasetError(
            _("split file {path} lists more than {n} images").format(path=path, n=MAX_IMAGES)
        )
    return list(dict.fromkeys(ids))


def _choose_split(split: str | None, files: dict[str, Path], root: Path) -> str:
    if split is None:
        return "val" if "val" in files else "all"
    if split not in SPLITS:
        raise DatasetError(_(UNKNOWN_SPLIT).format(split=split))
    if split != "all" and split not in files:
        raise DatasetError(
            _(
                "{root} has no {split} split (no {split}.txt listing image ids); use --split all"
            ).format(root=root, split=split)
        )
    return split


def _split_files(root: Path, extra: Iterable[Path] = ()) -> dict[str, Path]:
    found: dict[str, Path] = {}
    for folder in (root, *extra):
        for name in ("train", "val"):
            path = folder / f"{name}.txt"
            if name not in found and path.is_file():
                found[name] = path
    return found


def _selected_ids(split: str, files: dict[str, Path], available: list[str]) -> list[str]:
    """Ids of a split in ``available``'s terms: the split file's ids for train / val, every
    available id for all."""
    if split == "all":
        return available
    return _read_split_file(files[split])


def _finish(
    root: Path,
    fmt: str,
    classes: tuple[str, ...],
    split: str,
    records: list[ImageRecord],
    notes: list[str],
) -> DetectionDataset:
    if not records:
        raise DatasetError(
            _("{root}: the {split} split has no images (empty dataset)").format(
                root=root, split=split
            )
        )
    if len(records) > MAX_IMAGES:
        raise DatasetError(_("{root}: more than {n} images").format(root=root, n=MAX_IMAGES))
    records.sort(key=lambda r: r.image_id)
    return DetectionDataset(root, fmt, classes, split, tuple(records), tuple(notes))


# -- KITTI -----------------------------------------------------------------------------------


def _kitti_label(path: Path, width: int, height: int, index: dict[str, int]) -> _Annotations:
    ann = _Annotations(str(path))
    for number, line in enumerate(_lines(path, MAX_LABEL_BYTES, N_("label file")), start=1):
        fields = line.split()
        if not fields:
            continue
        where = f"{path}:{number}"
        if len(fields) < 8:
            raise DatasetError(
                _(
                    "{where}: a KITTI line needs at least 8 fields (class, truncated, occluded, "
                    "alpha, x1, y1, x2, y2), got {n}"
                ).format(where=where, n=len(fields))
            )
        for k, what in ((1, "truncated"), (2, "occluded"), (3, "alpha")):  # KITTI's field names
            _number(fields[k], where, what)
        coords = [_number(v, where, N_("a box coordinate")) for v in fields[4:8]]
        box = check_box(coords, width, height, where)
        label = index.get(fields[0], ANY_CLASS)
        ann.add(box, label, ignored=label == ANY_CLASS)
    return ann


def read_kitti(
    root: str | os.PathLike[str],
    classes: Sequence[str] | None = None,
    split: str | None = None,
) -> DetectionDataset:
    """Read the tutorial's KITTI layout (see the module docstring).

    Raises:
        DatasetError: missing folders or files, malformed lines, bad boxes, an empty split.
    """
    root = Path(root)
    image_dir, label_dir = root / "training" / "image_2", root / "training" / "label_2"
    for folder in (image_dir, label_dir):
        if not folder.is_dir():
            raise DatasetError(
                _("{root} is not a KITTI dataset: {folder} is missing").format(
                    root=root, folder=folder
                )
            )
    notes: list[str] = []
    if classes is not None:
        names = _check_class_list(list(classes), "--classes")
    elif (class_file := _class_file(root)) is not None:
        names = _read_class_file(class_file)
    else:
        names = KITTI_CLASSES
    index = {name: i for i, name in enumerate(names)}
    files = _split_files(root)
    split = _choose_split(split, files, root)
    labelled = sorted(p.stem for p in label_dir.glob("*.txt"))
    ids = _selected_ids(split, files, labelled)
    records = []
    for image_id in ids:
        label_path = label_dir / f"{image_id}.txt"
        image_path = _find_image(image_dir, image_id)
        if image_path is None:
            raise DatasetError(
                _("missing image: no {image}.jpeg|jpg|png for {label}").format(
                    image=image_dir / image_id, label=label_path
                )
            )
        if not label_path.exists():
            raise DatasetError(
                _("missing label file {label} for image {image}").format(
                    label=label_path, image=image_path
                )
            )
        width, height = image_size(image_path)
        ann = _kitti_label(label_path, width, height, index)
        records.append(ann.record(image_id, image_path, width, height))
    if split == "all":
        unlabelled = len({p.stem for p in image_dir.iterdir()} - set(labelled))
        if unlabelled:
            notes.append(
                ngettext(
                    "{n} image without a label file was left out",
                    "{n} images without a label file were left out",
                    unlabelled,
                ).format(n=unlabelled)
            )
    return _finish(root, "kitti", names, split, records, notes)


# -- COCO ------------------------------------------------------------------------------------


def _coco_json_files(root: Path) -> dict[str, Path]:
    """{"all": path} or {"train": path, "val": path}."""
    if root.is_file():
        return {"all": root}
    if not root.is_dir():
        raise DatasetError(_("{root} does not exist").format(root=root))
    for folder in (root, root / "annotations"):
        if not folder.is_dir():
            continue
        named = {}
        for split in ("train", "val"):
            hits = sorted(folder.glob(f"{split}.json")) or sorted(
                folder.glob(f"instances_{split}*.json")
            )
            if len(hits) == 1:
                named[split] = hits[0]
        if len(named) == 2:
            return named
        if (folder / "annotations.json").is_file():
            return {"all": folder / "annotations.json"}
        jsons = sorted(folder.glob("*.json"))
        if len(jsons) == 1:
            return {"all": jsons[0]}
        if len(jsons) > 1:
            raise DatasetError(
                _(
                    "{folder} holds {n} JSON files; name the annotations annotations.json "
                    "(or train.json and val.json), or pass the file with --data"
                ).format(folder=folder, n=len(jsons))
            )
    raise DatasetError(
        _("{root} is not a COCO dataset: no annotations JSON file found").format(root=root)
    )


def _coco_field(obj: dict, key: str, kinds: tuple[type, ...], where: str):
    value = obj.get(key)
    if not isinstance(value, kinds) or isinstance(value, bool):
        names = " or ".join(k.__name__ for k in kinds)  # Python's type names, as JSON has them
        raise DatasetError(
            _("{where}: {key!r} is missing or not a {types}").format(
                where=where, key=key, types=names
            )
        )
    return value


def _coco_categories(data: dict, path: Path) -> list[tuple[int, str]]:
    cats = data.get("categories")
    if not isinstance(cats, list) or not cats:
        raise DatasetError(_("{path}: no 'categories' list").format(path=path))
    out: dict[int, str] = {}
    for i, cat in enumerate(cats):
        where = f"{path}: categories[{i}]"
        if not isinstance(cat, dict):
            raise DatasetError(_(NOT_AN_OBJECT).format(where=where))
        cid = _coco_field(cat, "id", (int,), where)
        name = _coco_field(cat, "name", (str,), where).strip()
        if cid in out:
            raise DatasetError(
                _("{where}: category id {id} appears twice").format(where=where, id=cid)
            )
        out[cid] = name
    items = sorted(out.items())
    _check_class_list([name for _, name in items], f"{path}: categories")
    return items


def _read_coco_file(
    path: Path, names: tuple[str, ...] | None, want_ids: set[str] | None
) -> tuple[tuple[str, ...], list[ImageRecord]]:
    data = read_json(path)
    if not isinstance(data, dict):
        raise DatasetError(_("{path}: the top level is not an object").format(path=path))
    cats = _coco_categories(data, path)
    cat_names = [name for _, name in cats]
    if names is None:
        names = tuple(cat_names)
    else:
        missing = [n for n in names if n not in cat_names]
        if missing:
            raise DatasetError(
                _("class {name!r} is not a category of {path}").format(name=missing[0], path=path)
            )
    index = {name: i for i, name in enumerate(names)}
    cat_label = {cid: index.get(name, ANY_CLASS) for cid, name in cats}
    images = data.get("images")
    if not isinstance(images, list):
        raise DatasetError(_("{path}: no 'images' list").format(path=path))
    if len(images) > MAX_IMAGES:
        raise DatasetError(_("{root}: more than {n} images").format(root=path, n=MAX_IMAGES))
    folders = [path.parent, path.parent / "images", path.parent.parent / "images"]
    entries: dict[object, tuple[str, Path, int, int, _Annotations]] = {}
    stems: dict[str, object] = {}
    for i, img in enumerate(images):
        where = f"{path}: images[{i}]"
        if not isinstance(img, dict):
            raise DatasetError(_(NOT_AN_OBJECT).format(where=where))
        iid = _coco_field(img, "id", (int, str), where)
        file_name = _coco_field(img, "file_name", (str,), where)
        if iid in entries:
            raise DatasetError(
                _("{where}: image id {id!r} appears twice").format(where=where, id=iid)
            )
        stem = _stem(file_name)
        if stem in stems:
            raise DatasetError(
                _("{where}: two images are named {name} (ids must be unique)").format(
                    where=where, name=stem
                )
            )
        stems[stem] = iid
        if want_ids is not None and stem not in want_ids:
            entries[iid] = (stem, Path(), 0, 0, _Annotations(where))
            continue
        rel = Path(file_name.replace("\\", "/"))
        if rel.is_absolute() or ".." in rel.parts:
            raise DatasetError(
                _("{where}: file_name {name!r} leaves the dataset folder").format(
                    where=where, name=file_name
                )
            )
        found = next((f / rel for f in folders if (f / rel).is_file()), None)
        if found is None:
            found = next((f / rel.name for f in folders if (f / rel.name).is_file()), None)
        if found is None:
            raise DatasetError(
                _("missing image: {name} (images[{i}] of {path})").format(
                    name=file_name, i=i, path=path
                )
            )
        width, height = image_size(found)
        declared = (img.get("width"), img.get("height"))
        if declared != (None, None) and declared != (width, height):
            raise DatasetError(
                _(
                    "{where}: declares {declared_width} x {declared_height} but {name} is "
                    "{width} x {height}"
                ).format(
                    where=where,
                    declared_width=declared[0],
                    declared_height=declared[1],
                    name=found.name,
                    width=width,
                    height=height,
                )
            )
        entries[iid] = (stem, found, width, height, _Annotations(str(found)))
    anns = data.get("annotations", [])
    if not isinstance(anns, list):
        raise DatasetError(_("{path}: 'annotations' is not a list").format(path=path))
    for i, ann in enumerate(anns):
        if not isinstance(ann, dict):
            raise DatasetError(_(NOT_AN_OBJECT).format(where=f"{path}: annotations[{i}]"))
        where = f"{path}: annotations[{i}] (id {ann.get('id')!r})"
        iid = ann.get("image_id")
        if iid not in entries or isinstance(iid, bool):
            raise DatasetError(_("{where}: unknown image_id {id!r}").format(where=where, id=iid))
        cid = ann.get("category_id")
        if cid not in cat_label or isinstance(cid, bool):
            raise DatasetError(_("{where}: unknown category_id {id!r}").format(where=where, id=cid))
        stem, found, width, height, boxes = entries[iid]
        if want_ids is not None and stem not in want_ids:
            continue
        bbox = ann.get("bbox")
        if (
            not isinstance(bbox, list)
            or len(bbox) != 4
            or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in bbox)
        ):
            raise DatasetError(_(BBOX_NUMBERS).format(where=where))
        x, y, w, h = (float(v) for v in bbox)
        box = check_box((x, y, x + w, y + h), width, height, where)
        crowd = ann.get("iscrowd", 0)
        if crowd not in (0, 1) or isinstance(crowd, bool):
            raise DatasetError(_("{where}: iscrowd must be 0 or 1").format(where=where))
        boxes.add(box, cat_label[cid], ignored=crowd == 1)
    records = [
        boxes.record(stem, found, width, height)
        for stem, found, width, height, boxes in entries.values()
        if want_ids is None or stem in want_ids
    ]
    return names, records


def read_coco(
    root: str | os.PathLike[str],
    classes: Sequence[str] | None = None,
    split: str | None = None,
) -> DetectionDataset:
    """Read COCO JSON annotations (see the module docstring). ``iscrowd: 1`` boxes are ignored.

    Raises:
        DatasetError: a missing file or image, a malformed entry, an unknown image or category
            id, a bad box, an empty split.
    """
    root = Path(root)
    jsons = _coco_json_files(root)
    names = None if classes is None else _check_class_list(list(classes), "--classes")
    folder = root if root.is_dir() else root.parent
    notes: list[str] = []
    if "all" in jsons:
        files = _split_files(folder)
        split = _choose_split(split, files, folder)
        want = None if split == "all" else set(_read_split_file(files[split]))
        names, records = _read_coco_file(jsons["all"], names, want)
        if want is not None and len(records) < len(want):
            found = {r.image_id for r in records}
            missing = sorted(want - found)[0]
            raise DatasetError(
                _("{split_file} lists {id}, which {json} lacks").format(
                    split_file=files[split], id=missing, json=jsons["all"]
                )
            )
        return _finish(root, "coco", names, split, records, notes)
    split = split or "val"
    if split not in SPLITS:
        raise DatasetError(_(UNKNOWN_SPLIT).format(split=split))
    records = []
    result_names = None
    for part in ("train", "val") if split == "all" else (split,):
        part_names, part_records = _read_coco_file(jsons[part], names, None)
        if result_names is not None and part_names != result_names:
            raise DatasetError(
                _("{val} and {train} list different categories").format(
                    val=jsons["val"], train=jsons["train"]
                )
            )
        result_names = part_names
        records.extend(part_records)
    seen: set[str] = set()
    for rec in records:
        if rec.image_id in seen:
            raise DatasetError(_("image {id} is in both train and val").format(id=rec.image_id))
        seen.add(rec.image_id)
    assert result_names is not None
    return _finish(root, "coco", result_names, split, records, notes)


# -- Pascal VOC ------------------------------------------------------------------------------


def _xml_root(path: Path) -> ET.Element:
    data = _read_bytes(path, MAX_LABEL_BYTES, N_("annotation file"))
    # Entity declarations live in a DOCTYPE; without one, no entity can expand.
    if b"<!DOCTYPE" in data or b"<!ENTITY" in data:
        raise DatasetError(
            _("annotation file {path} has a DOCTYPE; VOC XML has none").format(path=path)
        )
    try:
        return ET.fromstring(data)
    except ET.ParseError as exc:
        raise DatasetError(
            _("annotation file {path} is not valid XML ({reason})").format(path=path, reason=exc)
        ) from None


def _xml_text(node: ET.Element, tag: str, where: str) -> str:
    child = node.find(tag)
    if child is None or child.text is None or not child.text.strip():
        raise DatasetError(_("{where}: <{tag}> is missing").format(where=where, tag=tag))
    return child.text.strip()


def _voc_objects(path: Path, xml: ET.Element) -> list[tuple[str, ET.Element, str]]:
    out = []
    for k, obj in enumerate(xml.findall("object"), start=1):
        where = _("{path}: object {k}").format(path=path, k=k)
        name = _xml_text(obj, "name", where)
        out.append((name, obj, f"{where} ({name})"))
    return out


def read_voc(
    root: str | os.PathLike[str],
    classes: Sequence[str] | None = None,
    split: str | None = None,
) -> DetectionDataset:
    """Read Pascal VOC XML (see the module docstring). ``<difficult>1`` boxes are ignored.
    Coordinates are taken as written (pixel corners, as MMDetection reads them).

    Raises:
        DatasetError: missing folders, files or tags, bad numbers or boxes, an empty split.
    """
    root = Path(root)
    ann_dir, image_dir = root / "Annotations", root / "JPEGImages"
    if not ann_dir.is_dir():
        raise DatasetError(
            _("{root} is not a VOC dataset: {folder} is missing").format(root=root, folder=ann_dir)
        )
    files = _split_files(root / "ImageSets" / "Main", (root,))
    split = _choose_split(split, files, root)
    available = sorted(p.stem for p in ann_dir.glob("*.xml"))
    ids = _selected_ids(split, files, available)
    parsed: dict[str, ET.Element] = {}
    if classes is not None:
        names = _check_class_list(list(classes), "--classes")
    elif (class_file := _class_file(root)) is not None:
        names = _read_class_file(class_file)
    else:
        # Every file, not only the split's: train and val must share one class list.
        found: set[str] = set()
        for stem in available:
            path = ann_dir / f"{stem}.xml"
            parsed[stem] = _xml_root(path)
            found.update(name for name, _, _ in _voc_objects(path, parsed[stem]))
        if not found:
            raise DatasetError(
                _("{folder}: no object in any annotation file").format(folder=ann_dir)
            )
        names = _check_class_list(sorted(found), str(ann_dir))
    index = {name: i for i, name in enumerate(names)}
    records = []
    for image_id in ids:
        path = ann_dir / f"{image_id}.xml"
        if not path.is_file():
            raise DatasetError(_("missing annotation file {path}").format(path=path))
        xml = parsed.get(image_id) or _xml_root(path)
        filename = xml.findtext("filename")
        image_path = None
        if filename and filename.strip():
            candidate = image_dir / Path(filename.strip().replace("\\", "/")).name
            image_path = candidate if candidate.is_file() else None
        image_path = image_path or _find_image(image_dir, image_id)
        if image_path is None:
            raise DatasetError(
                _("missing image: no {image}.jpg for {path}").format(
                    image=image_dir / image_id, path=path
                )
            )
        width, height = image_size(image_path)
        size = xml.find("size")
        if size is not None and size.findtext("width") and size.findtext("height"):
            declared = (
                _number(size.findtext("width") or "", str(path), "<width>"),
                _number(size.findtext("height") or "", str(path), "<height>"),
            )
            if declared != (width, height):
                raise DatasetError(
                    _(
                        "{path}: <size> says {declared_width:g} x {declared_height:g} but "
                        "{name} is {width} x {height}"
                    ).format(
                        path=path,
                        declared_width=declared[0],
                        declared_height=declared[1],
                        name=image_path.name,
                        width=width,
                        height=height,
                    )
                )
        ann = _Annotations(str(path))
        for name, obj, where in _voc_objects(path, xml):
            bnd = obj.find("bndbox")
            if bnd is None:
                raise DatasetError(
                    _("{where}: <{tag}> is missing").format(where=where, tag="bndbox")
                )
            coords = [
                _number(_xml_text(bnd, tag, where), where, f"<{tag}>")
                for tag in ("xmin", "ymin", "xmax", "ymax")
            ]
            box = check_box(coords, width, height, where)
            difficult = (obj.findtext("difficult") or "0").strip()
            if difficult not in ("0", "1"):
                raise DatasetError(
                    _("{where}: <difficult> must be 0 or 1, got {value!r}").format(
                        where=where, value=difficult
                    )
                )
            label = index.get(name, ANY_CLASS)
            ann.add(box, label, ignored=difficult == "1")
        records.append(ann.record(image_id, image_path, width, height))
    return _finish(root, "voc", names, split, records, [])


# -- YOLO ------------------------------------------------------------------------------------


def _yaml_names(text: str, path: Path) -> list[str]:
    """The ``names:`` entry of an Ultralytics data.yaml, in its three usual spellings:
    ``names: [a, b]``, a block list ``- a``, or a mapping ``0: a``."""
    lines = text.splitlines()
    for i, line in enumerate(lines):
        match = re.match(r"^names\s*:\s*(.*)$", line)
        if not match:
            continue
        rest = match.group(1).split("#")[0].strip()
        if rest.startswith("["):
            inner = rest.strip("[]")
            return [n.strip().strip("'\"") for n in inner.split(",") if n.strip()]
        out: dict[int, str] = {}
        seq: list[str] = []
        for follow in lines[i + 1 :]:
            if follow.strip() and not follow.startswith((" ", "\t", "-")):
                break
            item = follow.split("#")[0].strip()
            if not item:
                continue
            if item.startswith("-"):
                seq.append(item[1:].strip().strip("'\""))
            elif (m := re.match(r"^(\d+)\s*:\s*(.+)$", item)) is not None:
                out[int(m.group(1))] = m.group(2).strip().strip("'\"")
        if seq:
            return seq
        if out:
            if sorted(out) != list(range(len(out))):
                raise DatasetError(
                    _("{path}: names must be numbered 0..{last}").format(
                        path=path, last=len(out) - 1
                    )
                )
            return [out[k] for k in range(len(out))]
    raise DatasetError(_("{path}: no 'names:' list").format(path=path))


def _yolo_names(root: Path) -> tuple[str, ...]:
    class_file = _class_file(root)
    if class_file is not None:
        return _read_class_file(class_file)
    names_files = sorted(root.glob("*.names"))
    if len(names_files) == 1:
        return _read_class_file(names_files[0])
    for name in ("data.yaml", "dataset.yaml"):
        path = root / name
        if path.is_file():
            names = _yaml_names(_read_text(path, MAX_LIST_BYTES, N_("data file")), path)
            return _check_class_list(names, str(path))
    raise DatasetError(
        _("{root}: no class names for the YOLO ids (write one name a line to classes.txt)").format(
            root=root
        )
    )


def _yolo_label(
    path: Path, width: int, height: int, to_label: list[int], names: tuple[str, ...]
) -> _Annotations:
    ann = _Annotations(str(path))
    for number, line in enumerate(_lines(path, MAX_LABEL_BYTES, N_("label file")), start=1):
        fields = line.split()
        if not fields:
            continue
        where = f"{path}:{number}"
        if len(fields) != 5:
            raise DatasetError(
                _("{where}: a YOLO line is 'class cx cy w h' (5 fields), got {n}").format(
                    where=where, n=len(fields)
                )
            )
        try:
            cid = int(fields[0])
        except ValueError:
            raise DatasetError(
                _("{where}: class id {id!r} is not an integer").format(where=where, id=fields[0])
            ) from None
        if not 0 <= cid < len(names):
            raise DatasetError(
                _("{where}: unknown class id {id} (the names file lists {n} classes)").format(
                    where=where, id=cid, n=len(names)
                )
            )
        cx, cy, w, h = (_number(v, where, N_("a box value")) for v in fields[1:])
        if not all(-0.01 <= v <= 1.01 for v in (cx, cy, w, h)):
            raise DatasetError(
                _("{where}: YOLO values must be normalised to 0..1").format(where=where)
            )
        box = ((cx - w / 2) * width, (cy - h / 2) * height, (cx + w / 2) * width)
        box = check_box((*box, (cy + h / 2) * height), width, height, where)
        label = to_label[cid]
        ann.add(box, label, ignored=label == ANY_CLASS)
    return ann


def read_yolo(
    root: str | os.PathLike[str],
    classes: Sequence[str] | None = None,
    split: str | None = None,
) -> DetectionDataset:
    """Read YOLO txt labels (see the module docstring). An image without a label file has no
    objects (YOLO's convention).

    Raises:
        DatasetError: no class names, malformed lines, unknown class ids, bad boxes, missing
            images, an empty split.
    """
    root = Path(root)
    image_dir, label_dir = root / "images", root / "labels"
    if not image_dir.is_dir():
        raise DatasetError(
            _("{root} is not a YOLO dataset: {folder} is missing").format(
                root=root, folder=image_dir
            )
        )
    names_all = _yolo_names(root)
    names = names_all if classes is None else _check_class_list(list(classes), "--classes")
    missing = [n for n in names if n not in names_all]
    if missing:
        raise DatasetError(
            _("class {name!r} is not in the YOLO class names of {root}").format(
                name=missing[0], root=root
            )
        )
    index = {name: i for i, name in enumerate(names)}
    to_label = [index.get(name, ANY_CLASS) for name in names_all]
    # Ultralytics keeps splits as sub-folders: images/train, images/val, labels/train, ...
    sub = {s: image_dir / s for s in ("train", "val") if (image_dir / s).is_dir()}
    if len(sub) == 2:
        split = split or "val"
        if split not in SPLITS:
            raise DatasetError(_(UNKNOWN_SPLIT).format(split=split))
        parts = ["train", "val"] if split == "all" else [split]
        pairs = []
        for part in parts:
            for path in sorted(sub[part].iterdir()):
                if path.suffix.lower() in IMAGE_SUFFIXES:
                    pairs.append((path, label_dir / part / f"{path.stem}.txt"))
    else:
        files = _split_files(root)
        split = _choose_split(split, files, root)
        on_disk = {
            p.stem: p for p in sorted(image_dir.iterdir()) if p.suffix.lower() in IMAGE_SUFFIXES
        }
        ids = _selected_ids(split, files, sorted(on_disk))
        pairs = []
        for image_id in ids:
            if image_id not in on_disk:
                raise DatasetError(
                    _("missing image: {split_file} lists {id}, not found in {folder}").format(
                        split_file=files[split], id=image_id, folder=image_dir
                    )
                )
            pairs.append((on_disk[image_id], label_dir / f"{image_id}.txt"))
    records = []
    seen: set[str] = set()
    for image_path, label_path in pairs:
        if image_path.stem in seen:
            raise DatasetError(
                _("two images are named {name} in {root}").format(name=image_path.stem, root=root)
            )
        seen.add(image_path.stem)
        width, height = image_size(image_path)
        if label_path.is_file():
            ann = _yolo_label(label_path, width, height, to_label, names_all)
        else:
            ann = _Annotations(str(label_path))
        records.append(ann.record(image_path.stem, image_path, width, height))
    return _finish(root, "yolo", names, split, records, [])


# -- any format ------------------------------------------------------------------------------

READERS = {"kitti": read_kitti, "coco": read_coco, "voc": read_voc, "yolo": read_yolo}


def detect_format(root: str | os.PathLike[str]) -> str:
    """Which of ``FORMATS`` a folder holds, from its layout.

    Raises:
        DatasetError: none recognised.
    """
    root = Path(root)
    if root.is_file() and root.suffix.lower() == ".json":
        return "coco"
    if (root / "training" / "label_2").is_dir():
        return "kitti"
    if (root / "Annotations").is_dir():
        return "voc"
    if (root / "labels").is_dir() and (root / "images").is_dir():
        return "yolo"
    if any(root.glob("*.json")) or any((root / "annotations").glob("*.json")):
        return "coco"
    raise DatasetError(
        _(
            "{root} holds no dataset in a known layout (KITTI training/label_2, VOC Annotations, "
            "YOLO images + labels, or a COCO JSON)"
        ).format(root=root)
    )


def load_dataset(
    root: str | os.PathLike[str],
    format: str = "auto",
    classes: str | Sequence[str] | None = None,
    split: str | None = None,
) -> DetectionDataset:
    """Read a dataset in any of ``FORMATS`` (``"auto"``: :func:`detect_format`).

    Args:
        root: the dataset folder (or a COCO JSON file).
        format: ``"kitti"``, ``"coco"``, ``"voc"``, ``"yolo"`` or ``"auto"``.
        classes: class names (a list or ``"A,B,C"``); boxes of other classes become ignored.
        split: ``"train"``, ``"val"``, ``"all"`` or ``None`` (val where it exists, else all).

    Raises:
        DatasetError: anything wrong with the data, as one line.
    """
    path = Path(root)
    if not path.exists():
        raise DatasetError(_("dataset folder {path} does not exist").format(path=path))
    fmt = detect_format(path) if format == "auto" else format
    if fmt not in READERS:
        raise DatasetError(
            _("unknown dataset format {format!r}; use {formats}").format(
                format=format, formats=", ".join(FORMATS)
            )
        )
    return READERS[fmt](path, parse_classes(classes), split)


def has_split(root: str | os.PathLike[str], format: str, split: str) -> bool:
    """Whether ``split`` ("train" / "val") exists for the dataset, without reading it."""
    try:
        return _split_exists(Path(root), format, split)
    except DatasetError:
        return False


def _split_exists(root: Path, fmt: str, split: str) -> bool:
    if fmt == "auto":
        fmt = detect_format(root)
    if fmt == "coco":
        jsons = _coco_json_files(root)
        if split in jsons:
            return True
        folder = root if root.is_dir() else root.parent
        return "all" in jsons and split in _split_files(folder)
    if fmt == "voc":
        return split in _split_files(root / "ImageSets" / "Main", (root,))
    if fmt == "yolo" and (root / "images" / split).is_dir():
        return True
    return split in _split_files(root)


# -- comparing and summarising -----------------------------------------------------------------


def same_annotations(a: DetectionDataset, b: DetectionDataset, atol: float = 1e-3) -> bool:
    """Whether two datasets hold the same classes, split, images (ids and sizes), boxes,
    labels and ignored boxes, boxes equal to ``atol`` pixels (formats round differently)."""
    if (a.classes, a.split, len(a)) != (b.classes, b.split, len(b)):
        return False
    for x, y in zip(a.images, b.images, strict=True):
        if (x.image_id, x.width, x.height) != (y.image_id, y.width, y.height):
            return False
        if not (
            torch.equal(x.labels, y.labels) and torch.equal(x.ignored_labels, y.ignored_labels)
        ):
            return False
        for p, q in ((x.boxes, y.boxes), (x.ignored_boxes, y.ignored_boxes)):
            if p.shape != q.shape or not torch.allclose(p, q, rtol=0.0, atol=atol):
                return False
    return True


def _bin_labels(edges: Sequence[float], fmt: str) -> list[str]:
    labels = []
    for lo, hi in itertools.pairwise(edges):
        labels.append(
            f"{fmt.format(lo)}+" if math.isinf(hi) else f"{fmt.format(lo)}-{fmt.format(hi)}"
        )
    return labels


@dataclass(frozen=True)
class DatasetSummary:
    """What a dataset holds, for ``dataset-info`` and the app's dataset page.

    Attributes:
        images: number of images.
        classes: class names.
        boxes_per_class: boxes (not ignored) per class, in ``classes`` order.
        ignored: ignored boxes.
        images_without_boxes: images with no box that is not ignored.
        image_sizes: ((width, height), count) per distinct image size, most common first.
        size_bins, size_counts: sqrt(box area) histogram: bin labels and, per class, counts.
        aspect_bins, aspect_counts: box width / height histogram, the same way.
    """

    images: int
    classes: tuple[str, ...]
    boxes_per_class: tuple[int, ...]
    ignored: int
    images_without_boxes: int
    image_sizes: tuple[tuple[tuple[int, int], int], ...]
    size_bins: tuple[str, ...]
    size_counts: tuple[tuple[int, ...], ...]
    aspect_bins: tuple[str, ...]
    aspect_counts: tuple[tuple[int, ...], ...]
    split: str = "all"
    format: str = ""
    notes: tuple[str, ...] = field(default=())

    def to_dict(self) -> dict:
        """JSON-ready: ``{"images", "classes", "boxes_per_class": {name: n}, "ignored", ...}``."""
        return {
            "images": self.images,
            "classes": list(self.classes),
            "boxes_per_class": dict(zip(self.classes, self.boxes_per_class, strict=True)),
            "ignored": self.ignored,
            "images_without_boxes": self.images_without_boxes,
            "split": self.split,
            "format": self.format,
            "image_sizes": [
                {"width": w, "height": h, "images": n} for (w, h), n in self.image_sizes
            ],
            "box_size_histogram": {
                "bins": list(self.size_bins),
                "counts": {c: list(n) for c, n in zip(self.classes, self.size_counts, strict=True)},
            },
            "aspect_histogram": {
                "bins": list(self.aspect_bins),
                "counts": {
                    c: list(n) for c, n in zip(self.classes, self.aspect_counts, strict=True)
                },
            },
            "notes": list(self.notes),
        }


def summarize(dataset: DetectionDataset) -> DatasetSummary:
    """Counts and histograms of a dataset (ignored boxes are counted, not histogrammed)."""
    num = len(dataset.classes)
    per_class = [0] * num
    sizes = np.zeros((num, len(SIZE_EDGES) - 1), dtype=np.int64)
    aspects = np.zeros((num, len(ASPECT_EDGES) - 1), dtype=np.int64)
    ignored = empty = 0
    shapes: dict[tuple[int, int], int] = {}
    size_edges, aspect_edges = np.array(SIZE_EDGES), np.array(ASPECT_EDGES)
    for rec in dataset.images:
        shapes[(rec.width, rec.height)] = shapes.get((rec.width, rec.height), 0) + 1
        ignored += len(rec.ignored_boxes)
        if len(rec.boxes) == 0:
            empty += 1
            continue
        w = (rec.boxes[:, 2] - rec.boxes[:, 0]).double().numpy()
        h = (rec.boxes[:, 3] - rec.boxes[:, 1]).double().numpy()
        side = np.digitize(np.sqrt(w * h), size_edges[1:-1])
        ratio = np.digitize(w / h, aspect_edges[1:-1])
        for label, s, r in zip(rec.labels.tolist(), side, ratio, strict=True):
            per_class[label] += 1
            sizes[label, s] += 1
            aspects[label, r] += 1
    return DatasetSummary(
        images=len(dataset),
        classes=dataset.classes,
        boxes_per_class=tuple(per_class),
        ignored=ignored,
        images_without_boxes=empty,
        image_sizes=tuple(sorted(shapes.items(), key=lambda kv: (-kv[1], kv[0]))),
        size_bins=tuple(_bin_labels(SIZE_EDGES, "{:g}")),
        size_counts=tuple(tuple(int(v) for v in row) for row in sizes),
        aspect_bins=tuple(_bin_labels(ASPECT_EDGES, "{:.2f}")),
        aspect_counts=tuple(tuple(int(v) for v in row) for row in aspects),
        split=dataset.split,
        format=dataset.format,
        notes=dataset.notes,
    )


# -- zip uploads -----------------------------------------------------------------------------


def _member_path(name: str) -> Path | None:
    """The relative path a zip member may be written to, or None for members to skip.

    Raises:
        DatasetError: an absolute path or one that climbs out (``..``).
    """
    clean = name.replace("\\", "/")
    if clean.startswith("/") or re.match(r"^[A-Za-z]:", clean):
        raise DatasetError(
            _("the zip holds an absolute path ({name!r}); refused").format(name=name[:80])
        )
    parts = [p for p in clean.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise DatasetError(
            _("the zip holds a path that leaves its folder ({name!r}); refused").format(
                name=name[:80]
            )
        )
    if not parts or parts[0] == "__MACOSX" or parts[-1] in (".DS_Store", "Thumbs.db"):
        return None
    return Path(*parts)


def extract_zip(
    source: str | os.PathLike[str] | bytes,
    dest: str | os.PathLike[str],
    max_members: int = MAX_ZIP_MEMBERS,
    max_bytes: int = MAX_ZIP_BYTES,
) -> Path:
    """Extract a zip into ``dest`` (a new folder) safely: no absolute or climbing paths, no
    links or special files, at most ``max_members`` files and ``max_bytes`` bytes *written*
    (counted while writing, whatever the headers claim). On any failure nothing is left at
    ``dest``.

    Raises:
        DatasetError: not a zip, encrypted, unsafe, too large, or ``dest`` already exists.
    """
    dest = Path(dest)
    if dest.exists():
        raise DatasetError(_("{path} already exists; extract into a new folder").format(path=dest))
    try:
        archive = zipfile.ZipFile(io.BytesIO(source) if isinstance(source, bytes) else source)
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        raise DatasetError(
            _("the upload is not a readable zip file ({reason})").format(reason=exc)
        ) from None
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", dir=dest.parent))
    try:
        with archive:
            members = archive.infolist()
            if len(members) > max_members:
                raise DatasetError(
                    _("the zip holds {n} files; the limit is {limit}").format(
                        n=len(members), limit=max_members
                    )
                )
            if sum(m.file_size for m in members) > max_bytes:
                raise DatasetError(_(ZIP_TOO_LARGE).format(limit=human_bytes(max_bytes)))
            written = 0
            for member in members:
                rel = _member_path(member.filename)
                if rel is None or member.is_dir():
                    continue
                mode = member.external_attr >> 16
                if mode and not (stat.S_ISREG(mode) or stat.S_IFMT(mode) == 0):
                    raise DatasetError(
                        _("the zip holds a link or special file ({name}); refused").format(name=rel)
                    )
                if member.flag_bits & 0x1:
                    raise DatasetError(_("the zip is encrypted; upload an unencrypted zip"))
                target = tmp / rel
                target.parent.mkdir(parents=True, exist_ok=True)
                with archive.open(member) as src, open(target, "xb") as out:
                    while chunk := src.read(1 << 20):
                        written += len(chunk)
                        if written > max_bytes:
                            raise DatasetError(
                                _(ZIP_TOO_LARGE).format(limit=human_bytes(max_bytes))
                            )
                        out.write(chunk)
        os.replace(tmp, dest)
    except DatasetError:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    except (zipfile.BadZipFile, OSError, EOFError, RuntimeError, NotImplementedError) as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise DatasetError(_("the zip cannot be extracted ({reason})").format(reason=exc)) from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return dest


def find_dataset_root(folder: str | os.PathLike[str], max_depth: int = 3) -> Path:
    """The folder under ``folder`` (itself, or down a chain of single sub-folders, as zips of a
    folder make) whose layout :func:`detect_format` recognises.

    Raises:
        DatasetError: no dataset layout found.
    """
    current = Path(folder)
    for _depth in range(max_depth + 1):
        try:
            detect_format(current)
            return current
        except DatasetError:
            pass
        subdirs = [p for p in current.iterdir() if p.is_dir() and not p.name.startswith(".")]
        if len(subdirs) != 1:
            break
        current = subdirs[0]
    raise DatasetError(
        _(
            "the zip holds no dataset in a known layout (KITTI training/label_2, VOC Annotations, "
            "YOLO images + labels, or a COCO JSON)"
        )
    )


def import_zip(
    source: str | os.PathLike[str] | bytes,
    dest: str | os.PathLike[str],
    format: str = "auto",
    classes: str | Sequence[str] | None = None,
    split: str | None = None,
) -> DetectionDataset:
    """Extract an uploaded zip into ``dest`` (:func:`extract_zip`), find the dataset inside and
    read it (:func:`load_dataset`). If the dataset cannot be read, ``dest`` is removed again, so
    a bad upload leaves nothing behind and the caller keeps its previous dataset.

    Raises:
        DatasetError: an unsafe or unreadable zip, or a dataset with bad data.
    """
    root = extract_zip(source, dest)
    try:
        return load_dataset(find_dataset_root(root), format, classes, split)
    except BaseException:
        shutil.rmtree(root, ignore_errors=True)
        raise
