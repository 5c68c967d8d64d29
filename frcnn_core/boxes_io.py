"""One image's boxes in and out of the formats people have them in.

- the command line's ``BOXES.json``: ``[{"box": [x1, y1, x2, y2], "label": "zebra"}, ...]``
  (or ``{"boxes": [...]}``), original-image pixels;
- COCO JSON: ``images`` / ``annotations`` (``bbox`` = ``[x, y, w, h]``) / ``categories``; a
  file with several images gives the boxes of the one named like the current image;
  ``iscrowd`` boxes are left out (they mark crowds, not objects), with a note;
- Pascal VOC XML: ``<object><name>`` and ``<bndbox>`` corners as written (as MMDetection and
  :func:`frcnn_core.datasets.read_voc` read them); ``<difficult>`` boxes are kept, with a note;
- YOLO txt: ``class cx cy w h`` per line, normalised to the image's size, with the class names
  from a names file (``classes.txt``) when there is one, else ``class <id>``.

Coordinates are checked for being numbers here; their geometry (inverted corners, boxes outside
the image) is cleaned by stage 1 with a note per box, as for boxes drawn in the app. Every
refusal is a :class:`BoxesError` naming the file and the line or annotation.
"""

from __future__ import annotations

import io
import json
import math
import xml.etree.ElementTree as ET
import zipfile
from dataclasses import dataclass
from pathlib import PurePath

from frcnn_core.ground_truth import MAX_BOXES, BoxesError, clean_label, parse_boxes
from frcnn_core.i18n import N_, _
from frcnn_core.safe_io import InputError, parse_json

FORMATS = ("boxes", "coco", "voc", "yolo")
# Shown translated: _(FORMAT_NAMES[kind]).
FORMAT_NAMES = {
    "boxes": N_("BOXES.json (this app's command line)"),
    "coco": "COCO JSON",
    "voc": "Pascal VOC XML",
    "yolo": N_("YOLO txt (+ classes.txt)"),
}
MAX_FILE_BYTES = 4 * 2**20


@dataclass(frozen=True)
class ImportedBoxes:
    """Boxes read from a file, in original-image pixels.

    Attributes:
        boxes: ``[{"box": [x1, y1, x2, y2], "label": str}, ...]``.
        notes: what was left out or assumed, one line each, for the user.
    """

    boxes: list[dict]
    notes: tuple[str, ...] = ()


def _number(value: object, where: str) -> float:
    if isinstance(value, bool):
        raise BoxesError(_("{where}: {value!r} is not a number").format(where=where, value=value))
    try:
        out = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise BoxesError(
            _("{where}: {value!r} is not a number").format(where=where, value=value)
        ) from None
    if not math.isfinite(out):
        raise BoxesError(
            _("{where}: {value!r} is not a finite number").format(where=where, value=value)
        )
    return out


def _stem(name: str) -> str:
    return PurePath(str(name).replace("\\", "/")).stem


def _limit(boxes: list[dict], name: str) -> list[dict]:
    if len(boxes) > MAX_BOXES:
        raise BoxesError(
            _("{name} holds {n} boxes; at most {limit} per image").format(
                name=name, n=len(boxes), limit=MAX_BOXES
            )
        )
    return boxes


def detect_format(name: str, data: bytes) -> str:
    """The format of a boxes file, from its name and first bytes."""
    suffix = PurePath(name).suffix.lower()
    if suffix == ".xml" or data.lstrip()[:1] == b"<":
        return "voc"
    if suffix == ".txt":
        return "yolo"
    if suffix == ".zip":
        return "yolo"  # this module's own YOLO export: labels and classes.txt together
    head = data.lstrip()[:4096]
    if head[:1] == b"{" and b'"images"' in data and b'"annotations"' in data:
        return "coco"
    return "boxes"


def read_boxes(
    data: bytes,
    name: str,
    image_size: tuple[int, int],
    image_name: str = "",
    classes: bytes | None = None,
) -> ImportedBoxes:
    """The boxes of a file in any of :data:`FORMATS`, for an image of ``image_size = (H, W)``
    called ``image_name`` (used to pick the image in a COCO file with several).

    Args:
        classes: a names file (one class per line) for YOLO.

    Raises:
        BoxesError: the file cannot be read as boxes; one line naming the file and place.
    """
    if len(data) > MAX_FILE_BYTES:
        raise BoxesError(
            _("{name} is larger than {mb} MB").format(name=name, mb=MAX_FILE_BYTES // 2**20)
        )
    kind = detect_format(name, data)
    if kind == "voc":
        return _read_voc(data, name)
    if kind == "yolo":
        if PurePath(name).suffix.lower() == ".zip":
            data, classes = _yolo_zip(data, name)
        return _read_yolo(data, name, image_size, classes)
    try:
        parsed = parse_json(data, name)
    except InputError as exc:
        raise BoxesError(str(exc)) from None
    if kind == "coco":
        return _read_coco(parsed, name, image_name)
    raw, labels = parse_boxes(parsed)
    boxes = [
        {"box": [_number(v, f"{name}: boxes[{i}]") for v in box], "label": clean_label(label)}
        for i, (box, label) in enumerate(zip(raw, labels, strict=True))
    ]
    return ImportedBoxes(_limit(boxes, name))


def _read_coco(data: object, name: str, image_name: str) -> ImportedBoxes:
    if not isinstance(data, dict):
        raise BoxesError(_("{name} is not a COCO object").format(name=name))
    images = data.get("images")
    annotations = data.get("annotations")
    categories = data.get("categories", [])
    if not isinstance(images, list) or not isinstance(annotations, list):
        raise BoxesError(
            _('{name}: a COCO file needs "images" and "annotations" lists').format(name=name)
        )
    if not isinstance(categories, list):
        raise BoxesError(_('{name}: "categories" must be a list').format(name=name))
    names: dict[object, str] = {}
    for i, cat in enumerate(categories):
        if not isinstance(cat, dict) or "id" not in cat or "name" not in cat:
            raise BoxesError(
                _('{name}: categories[{i}] needs an "id" and a "name"').format(name=name, i=i)
            )
        names[cat["id"]] = clean_label(cat["name"])
    valid = [img for img in images if isinstance(img, dict) and "id" in img]
    if len(valid) != len(images):
        raise BoxesError(_('{name}: every entry of "images" needs an "id"').format(name=name))
    if not valid:
        raise BoxesError(_("{name} describes no image").format(name=name))
    if len(valid) == 1:
        image = valid[0]
    else:
        wanted = _stem(image_name)
        matches = [img for img in valid if _stem(str(img.get("file_name", ""))) == wanted]
        if len(matches) != 1:
            if image_name:
                message = _("{name} describes {n} images and none is named like {image}")
            else:
                message = _("{name} describes {n} images and none is named like the current image")
            raise BoxesError(message.format(name=name, n=len(valid), image=image_name))
        image = matches[0]
    boxes, notes = [], []
    crowd = 0
    for i, ann in enumerate(annotations):
        where = f"{name}: annotations[{i}]"
        if not isinstance(ann, dict):
            raise BoxesError(_("{where} is not an object").format(where=where))
        if ann.get("image_id") != image["id"]:
            continue
        bbox = ann.get("bbox")
        if not isinstance(bbox, list) or len(bbox) != 4:
            raise BoxesError(_('{where}: "bbox" must be [x, y, width, height]').format(where=where))
        x, y, w, h = (_number(v, f"{where}.bbox") for v in bbox)
        if ann.get("iscrowd"):
            crowd += 1
            continue
        category = ann.get("category_id")
        if category not in names:
            raise BoxesError(
                _("{where}: category_id {category!r} is not in the categories").format(
                    where=where, category=category
                )
            )
        boxes.append({"box": [x, y, x + w, y + h], "label": names[category]})
    if crowd:
        notes.append(
            _("{n} crowd region(s) (iscrowd) left out: they are not objects").format(n=crowd)
        )
    return ImportedBoxes(_limit(boxes, name), tuple(notes))


def _read_voc(data: bytes, name: str) -> ImportedBoxes:
    try:
        root = ET.fromstring(data)
    except ET.ParseError as exc:
        line, column = exc.position
        raise BoxesError(
            _("{name} is not valid XML (line {line}, column {column})").format(
                name=name, line=line, column=column
            )
        ) from None
    if root.tag != "annotation":
        raise BoxesError(
            _("{name} is not a Pascal VOC annotation (<annotation> missing)").format(name=name)
        )
    boxes, difficult = [], 0
    for i, obj in enumerate(root.findall("object")):
        where = f"{name}: <object> {i + 1}"
        label = obj.findtext("name")
        bndbox = obj.find("bndbox")
        if not label or bndbox is None:
            raise BoxesError(_("{where} needs a <name> and a <bndbox>").format(where=where))
        corners = []
        for tag in ("xmin", "ymin", "xmax", "ymax"):
            text = bndbox.findtext(tag)
            if text is None:
                raise BoxesError(_("{where}: <{tag}> is missing").format(where=where, tag=tag))
            corners.append(_number(text.strip(), f"{where} <{tag}>"))
        if (obj.findtext("difficult") or "0").strip() == "1":
            difficult += 1
        boxes.append({"box": corners, "label": clean_label(label)})
    notes = (
        (_("{n} box(es) marked difficult kept as objects").format(n=difficult),)
        if difficult
        else ()
    )
    return ImportedBoxes(_limit(boxes, name), notes)


def _yolo_zip(data: bytes, name: str) -> tuple[bytes, bytes | None]:
    """The labels file and the class names of a zip written by :func:`write_boxes` ("yolo")."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            members = {PurePath(m).name: m for m in archive.namelist()}
            labels = [m for n, m in members.items() if n.endswith(".txt") and n != "classes.txt"]
            if len(labels) != 1:
                raise BoxesError(
                    _("{name} must hold one labels .txt file and classes.txt").format(name=name)
                )
            read = archive.read
            classes = read(members["classes.txt"]) if "classes.txt" in members else None
            return read(labels[0]), classes
    except (zipfile.BadZipFile, KeyError, OSError):
        raise BoxesError(_("{name} is not a readable zip file").format(name=name)) from None


def _read_yolo(
    data: bytes, name: str, image_size: tuple[int, int], classes: bytes | None
) -> ImportedBoxes:
    height, width = image_size
    names: list[str] = []
    notes: list[str] = []
    if classes is not None:
        try:
            names = [clean_label(n) for n in classes.decode("utf-8-sig").splitlines() if n.strip()]
        except UnicodeDecodeError:
            raise BoxesError(_("the class names file is not UTF-8 text")) from None
    else:
        notes.append(_("no class names file: labels are 'class <id>'"))
    try:
        lines = data.decode("utf-8-sig").splitlines()
    except UnicodeDecodeError:
        raise BoxesError(_("{name} is not UTF-8 text").format(name=name)) from None
    boxes = []
    for number, line in enumerate(lines, start=1):
        fields = line.split()
        if not fields:
            continue
        where = _("{name} line {number}").format(name=name, number=number)
        if len(fields) != 5:
            raise BoxesError(
                _("{where}: expected 'class cx cy w h', got {n} fields").format(
                    where=where, n=len(fields)
                )
            )
        try:
            class_id = int(fields[0])
        except ValueError:
            raise BoxesError(
                _("{where}: class {value!r} is not a whole number").format(
                    where=where, value=fields[0]
                )
            ) from None
        cx, cy, w, h = (_number(v, where) for v in fields[1:])
        if not all(0.0 <= v <= 1.0 for v in (cx, cy, w, h)):
            raise BoxesError(
                _("{where}: YOLO coordinates are fractions of the image (0..1)").format(where=where)
            )
        if names and not 0 <= class_id < len(names):
            raise BoxesError(
                _("{where}: class {class_id} is not in the {n} class names").format(
                    where=where, class_id=class_id, n=len(names)
                )
            )
        label = names[class_id] if names else f"class {class_id}"
        x1, y1 = (cx - w / 2) * width, (cy - h / 2) * height
        boxes.append({"box": [x1, y1, x1 + w * width, y1 + h * height], "label": label})
    return ImportedBoxes(_limit(boxes, name), tuple(notes))


def _writable(box: object) -> bool:
    """A box with four finite numbers, x2 > x1 and y2 > y1 (what the pipeline uses); a row
    being typed (text, a blank) is left out of an export, not an error."""
    if not isinstance(box, dict) or not isinstance(box.get("box"), (list, tuple)):
        return False
    values = box["box"]
    if len(values) != 4 or not all(
        isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in values
    ):
        return False
    x1, y1, x2, y2 = values
    return x2 > x1 and y2 > y1


def write_boxes(
    kind: str, boxes: list[dict], image_name: str, image_size: tuple[int, int]
) -> tuple[bytes, str]:
    """``boxes`` (original-image pixels) as a file of format ``kind``; returns its bytes and a
    file name. YOLO is a zip of the labels and ``classes.txt``."""
    height, width = image_size
    stem = _stem(image_name) or "image"
    boxes = [
        {"box": list(b["box"]), "label": clean_label(b.get("label"))} for b in boxes if _writable(b)
    ]
    labels = [b["label"] for b in boxes]
    classes = list(dict.fromkeys(labels))
    if kind == "boxes":
        rows = [{"box": [float(v) for v in b["box"]], "label": b["label"]} for b in boxes]
        return json.dumps(rows, indent=1).encode(), f"{stem}_boxes.json"
    if kind == "coco":
        coco = {
            "images": [{"id": 1, "file_name": image_name, "width": width, "height": height}],
            "categories": [{"id": i + 1, "name": c} for i, c in enumerate(classes)],
            "annotations": [
                {
                    "id": k + 1,
                    "image_id": 1,
                    "category_id": classes.index(b["label"]) + 1,
                    "bbox": [x1, y1, x2 - x1, y2 - y1],
                    "area": (x2 - x1) * (y2 - y1),
                    "iscrowd": 0,
                }
                for k, b in enumerate(boxes)
                for x1, y1, x2, y2 in [[float(v) for v in b["box"]]]
            ],
        }
        return json.dumps(coco, indent=1).encode(), f"{stem}_coco.json"
    if kind == "voc":
        root = ET.Element("annotation")
        ET.SubElement(root, "filename").text = image_name
        size = ET.SubElement(root, "size")
        for tag, value in (("width", width), ("height", height), ("depth", 3)):
            ET.SubElement(size, tag).text = str(value)
        for b in boxes:
            obj = ET.SubElement(root, "object")
            ET.SubElement(obj, "name").text = str(b["label"])
            ET.SubElement(obj, "difficult").text = "0"
            box = ET.SubElement(obj, "bndbox")
            for tag, value in zip(("xmin", "ymin", "xmax", "ymax"), b["box"], strict=True):
                ET.SubElement(box, tag).text = f"{float(value):g}"
        ET.indent(root)
        return ET.tostring(root, encoding="utf-8", xml_declaration=True), f"{stem}.xml"
    if kind == "yolo":
        lines = []
        for b in boxes:
            x1, y1, x2, y2 = (float(v) for v in b["box"])
            cx, cy = (x1 + x2) / 2 / width, (y1 + y2) / 2 / height
            w, h = (x2 - x1) / width, (y2 - y1) / height
            lines.append(f"{classes.index(b['label'])} {cx:.6f} {cy:.6f} {w:.6f} {h:.6f}")
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as archive:
            archive.writestr(f"{stem}.txt", "\n".join(lines) + "\n")
            archive.writestr("classes.txt", "\n".join(classes) + "\n")
        return buf.getvalue(), f"{stem}_yolo.zip"
    raise ValueError(_("unknown boxes format {kind!r}").format(kind=kind))
