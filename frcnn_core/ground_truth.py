"""Ground-truth boxes as users give them: parsed, checked and cleaned with a reason for each fix,
then scaled to the input frame (stage 1), and their class ids.

Class ids: 0 is background, 1..C index a class vocabulary: the user's labels in order of first
appearance, or the vocabulary of a trained model that knows them all.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

import torch

from frcnn_core.i18n import _
from frcnn_core.image import ResizeParams
from frcnn_core.safe_io import InputError, parse_json, read_file
from frcnn_core.text import one_line

MAX_LABEL_CHARS = 40
MAX_BOXES = 500
# 500 boxes with long labels are well under 1 MB.
MAX_BOXES_FILE_BYTES = 4 * 2**20
DEFAULT_LABEL = "object"


class BoxesError(ValueError):
    """Boxes that cannot be read at all; the message is meant for the user."""


@dataclass(frozen=True)
class GroundTruth:
    """Clean boxes in one frame with their labels.

    Attributes:
        boxes (Tensor[G, 4]): float32 (x1, y1, x2, y2), x1 < x2 and y1 < y2, inside the image.
        labels: G class names.
        notes: one line per box that was fixed or dropped, for the user.
    """

    boxes: torch.Tensor
    labels: tuple[str, ...]
    notes: tuple[str, ...] = ()

    @property
    def class_names(self) -> tuple[str, ...]:
        """The distinct labels in order of first appearance; class id = index + 1."""
        return tuple(dict.fromkeys(self.labels))

    @property
    def class_ids(self) -> torch.Tensor:
        """Tensor[G] int64 ids in 1..C of :attr:`class_names`."""
        return class_ids(self.labels, self.class_names).gt_labels

    def subset(self, keep: list[int]) -> GroundTruth:
        return GroundTruth(self.boxes[keep], tuple(self.labels[i] for i in keep), self.notes)


def clean_label(label: object) -> str:
    """Labels are plain text: one visible line of at most ``MAX_LABEL_CHARS`` (see
    :func:`frcnn_core.text.one_line`); empty -> "object"."""
    return one_line(label if label is not None else "", MAX_LABEL_CHARS) or DEFAULT_LABEL


def clean_boxes(
    raw: list[tuple[object, object, object, object]],
    labels: list[object],
    image_size: tuple[int, int],
) -> GroundTruth:
    """Make user boxes valid for an image of ``image_size = (H, W)``.

    Inverted corners are swapped; boxes are clipped to the image; a box that is not four
    numbers, has NaN, or has no area inside the image is dropped. Each fix is noted.
    """
    height, width = image_size
    kept: list[list[float]] = []
    kept_labels: list[str] = []
    notes: list[str] = []
    for i, (box, label) in enumerate(zip(raw, labels, strict=True)):
        name = f"box {i + 1}"
        if len(kept) >= MAX_BOXES:
            notes.append(f"only the first {MAX_BOXES} boxes are used")
            break
        try:
            x1, y1, x2, y2 = (float(v) for v in box)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            notes.append(f"{name} dropped: its coordinates are not four numbers")
            continue
        if not all(math.isfinite(v) for v in (x1, y1, x2, y2)):
            notes.append(f"{name} dropped: it has a missing or non-finite coordinate")
            continue
        if x1 > x2 or y1 > y2:
            x1, x2 = min(x1, x2), max(x1, x2)
            y1, y2 = min(y1, y2), max(y1, y2)
            notes.append(f"{name}: corners were inverted and have been swapped")
        cx1, cy1 = min(max(x1, 0.0), width), min(max(y1, 0.0), height)
        cx2, cy2 = min(max(x2, 0.0), width), min(max(y2, 0.0), height)
        if cx2 - cx1 < 1 or cy2 - cy1 < 1:
            notes.append(f"{name} dropped: it has no area inside the {width} x {height} image")
            continue
        if (cx1, cy1, cx2, cy2) != (x1, y1, x2, y2):
            notes.append(f"{name}: clipped to the image")
        kept.append([cx1, cy1, cx2, cy2])
        kept_labels.append(clean_label(label))
    boxes = torch.tensor(kept, dtype=torch.float32).reshape(-1, 4)
    return GroundTruth(boxes, tuple(kept_labels), tuple(notes))


def parse_boxes(data: object) -> tuple[list[object], list[object]]:
    """Read the boxes JSON of SPEC section 6: a list of ``{"box": [x1, y1, x2, y2], "label": s}``,
    or an object with such a list under ``"boxes"`` (the sample sidecars).

    Raises:
        BoxesError: the structure is not that.
    """
    if isinstance(data, dict) and "boxes" in data:
        data = data["boxes"]
    if not isinstance(data, list):
        raise BoxesError(
            _('boxes must be a JSON list of {"box": [x1, y1, x2, y2], "label": "..."}')
        )
    boxes: list[object] = []
    labels: list[object] = []
    for i, item in enumerate(data):
        if not isinstance(item, dict) or "box" not in item:
            raise BoxesError(_('boxes[{i}] is not an object with a "box" entry').format(i=i))
        box = item["box"]
        if not isinstance(box, list) or len(box) != 4:
            raise BoxesError(_("boxes[{i}].box must be a list of four numbers").format(i=i))
        if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in box):
            raise BoxesError(_("boxes[{i}].box must hold numbers only").format(i=i))
        boxes.append(box)
        labels.append(item.get("label", DEFAULT_LABEL))
    return boxes, labels


def read_boxes_file(path: str | os.PathLike[str]) -> tuple[list[object], list[object]]:
    """Read and parse a boxes JSON file (a regular file of at most ``MAX_BOXES_FILE_BYTES``,
    nested at most 64 levels deep); :class:`BoxesError` with a one-line reason otherwise."""
    try:
        data = parse_json(
            read_file(path, MAX_BOXES_FILE_BYTES, _("boxes file")),
            _("boxes file {path}").format(path=path),
        )
    except InputError as exc:
        raise BoxesError(str(exc)) from None
    return parse_boxes(data)


def scale_to_input(
    gt: GroundTruth, original_size: tuple[int, int], params: ResizeParams
) -> GroundTruth:
    """Stage 1 for the boxes: scale clean boxes on the original (``original_size = (H, W)``)
    by ``(width / W, height / H)`` and, like the tutorial, truncate them to whole pixels
    (unless ``truncate_boxes`` is false). A box that becomes empty is dropped with a note.

    Scaling runs in float64, so the tutorial's truncated corners come out exactly (SPEC
    section 3's reference boxes).
    """
    h, w = original_size
    sx, sy = params.width / w, params.height / h
    scale = torch.tensor([sx, sy, sx, sy], dtype=torch.float64)
    boxes = gt.boxes.to(torch.float64).reshape(-1, 4) * scale
    if params.truncate_boxes:
        boxes = boxes.trunc()
    boxes[:, 0::2] = boxes[:, 0::2].clamp(0, params.width)
    boxes[:, 1::2] = boxes[:, 1::2].clamp(0, params.height)
    ok = ((boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])).tolist()
    notes = list(gt.notes) + [
        f"box {label!r} vanished when scaled to the input frame"
        for label, kept in zip(gt.labels, ok, strict=True)
        if not kept
    ]
    keep = [i for i, kept in enumerate(ok) if kept]
    labels = tuple(gt.labels[i] for i in keep)
    return GroundTruth(boxes[keep].float().reshape(-1, 4), labels, tuple(notes))


def ground_truth(
    raw: list[object], labels: list[object], original_size: tuple[int, int], params: ResizeParams
) -> GroundTruth:
    """Stage 1 for the boxes: :func:`clean_boxes` on the original, then :func:`scale_to_input`.

    Args:
        raw: (x1, y1, x2, y2) per box in original pixels, as the user gave them.
        labels: one label per box.
        original_size: (H, W) of the upright original.
    """
    clean = clean_boxes(raw, labels, original_size)  # type: ignore[arg-type]
    return scale_to_input(clean, original_size, params)


@dataclass(frozen=True)
class ClassIds:
    """The class vocabulary and each GT box's id in it.

    Attributes:
        class_names: C names; class id = index + 1 (0 is background).
        gt_labels (Tensor[G]): int64 ids in 1..C.
    """

    class_names: tuple[str, ...]
    gt_labels: torch.Tensor


def class_ids(labels: tuple[str, ...], vocabulary: tuple[str, ...]) -> ClassIds:
    """Map labels to ids in ``vocabulary``, which must hold every label (a model's classes).

    Raises:
        ValueError: a label the vocabulary does not know.
    """
    index = {name: i + 1 for i, name in enumerate(vocabulary)}
    unknown = [x for x in labels if x not in index]
    if unknown:
        raise ValueError(_("the model does not know the class {label!r}").format(label=unknown[0]))
    return ClassIds(vocabulary, torch.tensor([index[x] for x in labels], dtype=torch.int64))
