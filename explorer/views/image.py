"""Stage 1 on the page: the drawing canvas's geometry, the box table, uploads, the input frame.

Three frames meet here:

- **original** pixels of the upright decoded image: where the session's boxes live
  (``state.boxes()``, ``[{"box": [x1, y1, x2, y2], "label": str}]``);
- **canvas** pixels of the drawing canvas: the picture, at most ``CANVAS_MAX_WIDTH`` wide (less
  in a narrow column), same aspect, inside a grey margin of ``CANVAS_MARGIN`` pixels; the
  canvas reports boxes as ``{"label", "left", "top", "width", "height"}`` from its corner;
- the **input frame** (800 x 800 by default) that the network sees (stage 1's ``image`` and
  ``ground_truth``).

Nothing here imports streamlit, so the conversions are tested without a browser.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np
import pandas as pd
import plotly.graph_objects as go

from explorer.figures import GT_COLOUR, box_outline, image_figure, image_source
from explorer.text import html_text
from frcnn_core.ground_truth import DEFAULT_LABEL, GroundTruth, clean_label
from frcnn_core.i18n import N_, _
from frcnn_core.image import ImageError, InputImage, LoadedImage

CANVAS_MAX_WIDTH = 760
CANVAS_MAX_HEIGHT = 620
CANVAS_MIN_SIDE = 40
CANVAS_MIN_WIDTH = 240  # a canvas in less room than this scrolls sideways
# The canvas only sees the mouse while it is over the canvas, so a box dragged past the
# picture's edge used to end where the last mouse event inside fell, short of the edge. In this
# grey margin the pointer is still on the canvas; a box drawn into it is clipped to the picture.
CANVAS_MARGIN = 16
CANVAS_SNAP = 8  # canvas pixels: a drawn edge this close to the picture's edge goes onto it
MARGIN_GREY = 128
# Boxes drawn with the mouse are stored to a tenth of an original pixel: finer than a hand can
# place them, coarse enough that a box survives canvas -> original -> canvas unchanged.
DECIMALS = 1
COORDS = ("x1", "y1", "x2", "y2")
TABLE_COLUMNS = ("label", *COORDS)
Box = dict[str, Any]
Row = dict[str, Any]


# -- canvas <-> original pixels ---------------------------------------------------------------


@dataclass(frozen=True)
class CanvasFrame:
    """The drawing canvas for an image of ``W x H`` original pixels.

    Attributes:
        width, height: the picture's size in canvas pixels (same aspect as the image, up to
            rounding).
        fx, fy: original pixels per canvas pixel along x and y (the picture is stretched to
            ``width x height`` exactly, so each axis has its own factor).
        margin: canvas pixels of grey around the picture; the canvas is
            ``(width + 2 margin) x (height + 2 margin)``.
    """

    width: int
    height: int
    fx: float
    fy: float
    margin: int = 0

    @property
    def canvas_size(self) -> tuple[int, int]:
        """The canvas's ``(width, height)``, margins included."""
        return self.width + 2 * self.margin, self.height + 2 * self.margin

    def clip(self, box: Box) -> Box:
        """``box`` (original pixels), drawn or moved on the canvas, clipped to the picture; an
        edge within ``CANVAS_SNAP`` canvas pixels of the picture's edge goes onto it (a drag
        towards a corner often leaves the canvas through one side before reaching the other).
        """
        c = _coords(box)
        if c is None:
            return box
        w, h = self.width * self.fx, self.height * self.fy
        sx, sy = CANVAS_SNAP * self.fx, CANVAS_SNAP * self.fy

        def fit(v: float, size: float, snap: float) -> float:
            v = min(max(v, 0.0), size)
            return 0.0 if v < snap else size if v > size - snap else v

        x1, y1, x2, y2 = c
        clipped = [fit(x1, w, sx), fit(y1, h, sy), fit(x2, w, sx), fit(y2, h, sy)]
        return {**box, "box": [round(v, DECIMALS) + 0.0 for v in clipped]}


def canvas_frame(image_size: tuple[int, int], room: int | None = None) -> CanvasFrame:
    """The canvas for an image of ``image_size = (H, W)``: the picture ``CANVAS_MAX_WIDTH``
    wide (or, when ``room``, the width the page has for the whole canvas, is less, what fits
    in it with the margins; never under ``CANVAS_MIN_WIDTH``) unless that would make it taller
    than ``CANVAS_MAX_HEIGHT`` (e.g. 2000 x 1333 -> 760 x 507; in 532 px of room, 500 x 333).
    """
    h, w = image_size
    largest = CANVAS_MAX_WIDTH
    if room is not None:
        largest = max(min(room - 2 * CANVAS_MARGIN, CANVAS_MAX_WIDTH), CANVAS_MIN_WIDTH)
    factor = max(w / largest, h / CANVAS_MAX_HEIGHT)
    width = max(round(w / factor), CANVAS_MIN_SIDE)
    height = max(round(h / factor), CANVAS_MIN_SIDE)
    return CanvasFrame(width, height, w / width, h / height, CANVAS_MARGIN)


def _coords(box: Box) -> tuple[float, float, float, float] | None:
    """A box's four coordinates as finite floats, corners ordered; None when it has no such."""
    try:
        x1, y1, x2, y2 = (float(v) for v in box["box"])
    except (KeyError, TypeError, ValueError):
        return None
    if not all(math.isfinite(v) for v in (x1, y1, x2, y2)):
        return None
    return min(x1, x2), min(y1, y2), max(x1, x2), max(y1, y2)


def drawable(box: Box) -> bool:
    return _coords(box) is not None


def boxes_to_canvas(boxes: Iterable[Box], frame: CanvasFrame) -> list[Box]:
    """Original-pixel boxes as canvas boxes (``left, top, width, height`` = original / factor).

    Inverted corners are drawn ordered; boxes that are not four finite numbers are skipped.
    """
    out = []
    for b in boxes:
        c = _coords(b)
        if c is None:
            continue
        x1, y1, x2, y2 = c
        out.append(
            {
                "label": str(b.get("label", "")),
                "left": x1 / frame.fx + frame.margin,
                "top": y1 / frame.fy + frame.margin,
                "width": (x2 - x1) / frame.fx,
                "height": (y2 - y1) / frame.fy,
            }
        )
    return out


def canvas_to_boxes(canvas_boxes: Iterable[Box], frame: CanvasFrame) -> list[Box]:
    """Canvas boxes back in original pixels, rounded to ``DECIMALS``; labels cleaned. Not
    clipped: a box the user did not touch comes back as it was, wherever it lies (see
    :func:`merge_drawn`)."""
    out = []
    for c in canvas_boxes:
        left, top = float(c["left"]) - frame.margin, float(c["top"]) - frame.margin
        right, bottom = left + float(c["width"]), top + float(c["height"])
        xs = sorted((left * frame.fx, right * frame.fx))
        ys = sorted((top * frame.fy, bottom * frame.fy))
        box = [round(v, DECIMALS) + 0.0 for v in (xs[0], ys[0], xs[1], ys[1])]
        out.append({"box": box, "label": clean_label(c.get("label"))})
    return out


def signature(boxes: Iterable[Box]) -> tuple[tuple[str, tuple[float, ...]], ...]:
    """What the canvas shows of ``boxes``, comparable across the round trip: the drawable
    boxes, corners ordered and rounded to ``DECIMALS``, with their labels."""
    out = []
    for b in boxes:
        c = _coords(b)
        if c is not None:
            # The label as the canvas gives it back (cleaned), so a round trip compares equal.
            label = clean_label(b.get("label", ""))
            out.append((label, tuple(round(v, DECIMALS) + 0.0 for v in c)))
    return tuple(out)


def merge_drawn(
    current: Sequence[Box], drawn: Sequence[Box], clip: Callable[[Box], Box] | None = None
) -> list[Box]:
    """The canvas's boxes (``drawn``), keeping the exact values of every current box that the
    canvas still shows unchanged, so a round trip through the canvas never nudges a box; the
    boxes drawn or moved go through ``clip`` (e.g. :meth:`CanvasFrame.clip`)."""
    unused = list(current)
    out = []
    for d in drawn:
        sig = signature([d])
        match = next((c for c in unused if signature([c]) == sig), None)
        if match is not None:
            unused.remove(match)
            out.append({"box": list(match["box"]), "label": match["label"]})
        else:
            out.append(clip(d) if clip is not None else d)
    return out


def background_uri(pixels: np.ndarray, frame: CanvasFrame) -> str:
    """The upright image downscaled to the picture's size in its grey margin, the whole canvas,
    as a JPEG data URI (tens of kB, not MB)."""
    small = cv2.resize(pixels, (frame.width, frame.height), interpolation=cv2.INTER_AREA)
    m = frame.margin
    if m:
        small = np.pad(small, ((m, m), (m, m), (0, 0)), constant_values=MARGIN_GREY)
    return image_source(small, quality=85)


# -- the box table ----------------------------------------------------------------------------


@dataclass(frozen=True)
class TableResult:
    """The table after the user's edits.

    Attributes:
        boxes: rows with four numbers: the session's boxes, in table order.
        pending: rows still missing a number, kept in the table but not used.
        messages: one line per pending row, for the user.
    """

    boxes: list[Box]
    pending: list[Row]
    messages: list[str]


def boxes_to_rows(boxes: Iterable[Box]) -> list[Row]:
    """Session boxes as table rows ``{"label", "x1", "y1", "x2", "y2"}``."""
    rows = []
    for b in boxes:
        coords = list(b["box"]) + [None] * 4
        label = clean_label(b.get("label"))
        rows.append({"label": label, **dict(zip(COORDS, coords[:4], strict=True))})
    return rows


def _number(value: Any) -> float | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def apply_edits(rows: Sequence[Row], edits: dict[str, Any] | None) -> list[Row]:
    """Apply ``st.data_editor``'s edit state (``edited_rows``, ``added_rows``, ``deleted_rows``)
    to the rows it was given."""
    edits = edits or {}
    out = [dict(r) for r in rows]
    for index, change in (edits.get("edited_rows") or {}).items():
        i = int(index)
        if 0 <= i < len(out):
            out[i].update({k: v for k, v in change.items() if k in TABLE_COLUMNS})
    deleted = {int(i) for i in edits.get("deleted_rows") or []}
    out = [r for i, r in enumerate(out) if i not in deleted]
    for added in edits.get("added_rows") or []:
        out.append({c: added.get(c) for c in TABLE_COLUMNS})
    return out


def split_rows(rows: Sequence[Row], default_label: str = DEFAULT_LABEL) -> TableResult:
    """Rows with four numbers become boxes; the others stay pending with a message each
    (nothing the user typed is lost). A missing label becomes ``default_label``."""
    boxes: list[Box] = []
    pending: list[Row] = []
    messages: list[str] = []
    for number, row in enumerate(rows, start=1):
        raw_label = row.get("label")
        has_label = raw_label is not None and str(raw_label).strip() != ""
        label = clean_label(raw_label) if has_label else default_label
        values = {c: _number(row.get(c)) for c in COORDS}
        missing = [c for c in COORDS if values[c] is None]
        if not missing:
            boxes.append({"box": [values[c] for c in COORDS], "label": label})
            continue
        pending.append({"label": label if has_label else None, **values})
        if has_label:
            message = _(
                "Row {row} (“{label}”) has no number in {columns}: it stays in the table but "
                "is not used until all four are filled in."
            )
        else:
            message = _(
                "Row {row} has no number in {columns}: it stays in the table but is not used "
                "until all four are filled in."
            )
        messages.append(message.format(row=number, label=label, columns=", ".join(missing)))
    return TableResult(boxes, pending, messages)


def rows_table(rows: Sequence[Row]) -> pd.DataFrame:
    """Rows as the editor's table: label as text, coordinates as floats (missing: NaN), so the
    column types hold even with no rows."""
    table = {"label": pd.Series([str(r.get("label") or "") for r in rows], dtype="object")}
    for c in COORDS:
        values = [_number(r.get(c)) for r in rows]
        table[c] = pd.Series([float("nan") if v is None else v for v in values], dtype="float64")
    return pd.DataFrame(table)


# -- uploads ----------------------------------------------------------------------------------


# An upload that cannot be used; ``{reason}`` is the image's problem, one sentence.
UNUSABLE_UPLOAD = N_("“{name}” cannot be used: {reason} The previous image and its boxes are kept.")


@dataclass(frozen=True)
class UploadResult:
    """An upload checked: ``loaded`` when usable, else ``error`` (a sentence for the user,
    :data:`UNUSABLE_UPLOAD` in the caller's language) and its ``reason``."""

    name: str
    loaded: LoadedImage | None = None
    error: str | None = None
    reason: str | None = None


def check_upload(name: str, data: bytes, decode: Callable[[bytes], LoadedImage]) -> UploadResult:
    """Decode an upload with ``decode`` (e.g. the cached ``compute.decode``); an unusable file
    gives an error message instead of raising. The session is not touched here."""
    try:
        loaded = decode(data)
    except ImageError as exc:
        reason = str(exc)
        error = _(UNUSABLE_UPLOAD).format(name=name, reason=reason)
        return UploadResult(name, error=error, reason=reason)
    return UploadResult(name, loaded=loaded)


# -- plain text and the input frame -----------------------------------------------------------


def input_frame_text(image: InputImage, truncate: bool) -> str:
    """E.g. "2000 x 1333 -> 800 x 800, sx = 0.4, sy = 0.6002; boxes truncated to whole
    pixels as the tutorial does" (sizes as W x H)."""
    h, w = image.original_size
    ih, iw = image.size
    sx, sy = image.scale
    if truncate:
        text = _(
            "{w} x {h} -> {iw} x {ih}, sx = {sx:.4g}, sy = {sy:.4g}; boxes truncated to whole "
            "pixels as the tutorial does"
        )
    else:
        text = _(
            "{w} x {h} -> {iw} x {ih}, sx = {sx:.4g}, sy = {sy:.4g}; boxes kept as floats (not "
            "truncated)"
        )
    return text.format(w=w, h=h, iw=iw, ih=ih, sx=sx, sy=sy)


def input_frame_rows(gt: GroundTruth) -> dict[str, list[Any]]:
    """The boxes the network sees, as table columns."""
    b = gt.boxes.reshape(-1, 4).tolist()
    table: dict[str, list[Any]] = {"label": list(gt.labels)}
    for k, c in enumerate(COORDS):
        table[c] = [row[k] for row in b]
    return table


def input_frame_figure(image: InputImage, gt: GroundTruth, height: int = 520) -> go.Figure:
    """The image resized to the input frame with its scaled GT boxes and labels (as text).

    The few GT boxes are one SVG trace: Streamlit's plotly build draws WebGL lines at the wrong
    height in headless Chromium, and a handful of boxes does not need WebGL.
    """
    fig = image_figure(image.pixels, height=height)
    xs, ys = box_outline(gt.boxes)
    fig.add_trace(
        go.Scatter(
            x=xs,
            y=ys,
            mode="lines",
            name=_("ground truth"),
            line=dict(color=GT_COLOUR, width=3),
            hoverinfo="skip",
            connectgaps=False,
        )
    )
    boxes = gt.boxes.reshape(-1, 4).tolist()
    if boxes:
        # Plotly reads a few HTML tags in text; labels are the user's, so escape them.
        fig.add_trace(
            go.Scatter(
                x=[b[0] for b in boxes],
                y=[b[1] for b in boxes],
                mode="text",
                text=[html_text(label) for label in gt.labels],
                # Above the box, or inside it when the box touches the top of the frame.
                textposition=["top right" if b[1] > 24 else "bottom right" for b in boxes],
                textfont=dict(color=GT_COLOUR, size=13),
                hovertext=[
                    f"{html_text(label)}: ({b[0]:g}, {b[1]:g}, {b[2]:g}, {b[3]:g})"
                    for label, b in zip(gt.labels, boxes, strict=True)
                ],
                hoverinfo="text",
                showlegend=False,
            )
        )
    fig.update_layout(showlegend=False)
    return fig
