"""Figures of the Fine-tune pages: dataset thumbnails and histograms, training curves, and the
results (precision-recall curves, detections matched to the ground truth).

Thumbnails are drawn on the server (PIL) into small pictures: a grid of a dozen images costs the
browser one JPEG each, not a dozen plotly figures. Class names drawn into a picture are pixels,
inert whatever they hold; those in plotly figures go through :func:`explorer.text.html_text`.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

# Imported here, whole, before any figure is built: plotly looks pandas up in sys.modules, and a
# page thread that builds a figure while another thread is still importing pandas finds half a
# module (AttributeError: partially initialized module 'pandas' has no attribute 'Series').
import pandas  # noqa: F401
import plotly.graph_objects as go
from PIL import Image, ImageDraw, ImageFont

from explorer.figures import add_boxes, image_figure
from explorer.text import html_text, shown
from frcnn_core.datasets import DatasetSummary, ImageRecord
from frcnn_core.evaluate import ClassResult, ImageOutcome, Prediction
from frcnn_core.finetune import LOSS_NAMES
from frcnn_core.i18n import N_, _

# Class colours, far apart, with the names the legend uses (translated where shown).
PALETTE = (
    ("#E6194B", N_("red")),
    ("#4363D8", N_("blue")),
    ("#3CB44B", N_("green")),
    ("#F58231", N_("orange")),
    ("#911EB4", N_("purple")),
    ("#42D4F4", N_("cyan")),
    ("#F032E6", N_("magenta")),
    ("#9A6324", N_("brown")),
    ("#808000", N_("olive")),
    ("#000075", N_("navy")),
)
IGNORED = ("#94A3B8", N_("grey, dashed"))
TP_COLOUR, FP_COLOUR, MISS_COLOUR = "#22C55E", "#EF4444", "#FACC15"
LOSS_LABELS = {
    "loss": N_("total"),
    "loss_classifier": N_("box head: class"),
    "loss_box_reg": N_("box head: box"),
    "loss_objectness": N_("RPN: objectness"),
    "loss_rpn_box_reg": N_("RPN: box"),
}
LOSS_LINE_COLOURS = {
    "loss": "#111827",
    "loss_classifier": "#F97316",
    "loss_box_reg": "#EAB308",
    "loss_objectness": "#2563EB",
    "loss_rpn_box_reg": "#06B6D4",
}


def class_colour(index: int) -> str:
    return PALETTE[index % len(PALETTE)][0]


def legend_text(classes: Sequence[str]) -> str:
    """``Car: red · Pedestrian: blue · ...`` (plain text: pass through ``plain_message``)."""
    parts = [
        _("{name}: {colour}").format(name=shown(c, 40), colour=_(PALETTE[k % len(PALETTE)][1]))
        for k, c in enumerate(classes)
    ]
    return " · ".join(parts)


def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, OSError):  # Pillow without FreeType: the small bitmap font
        return ImageFont.load_default()


def _scaled(pixels: np.ndarray, max_side: int) -> tuple[Image.Image, float]:
    h, w = pixels.shape[:2]
    scale = min(1.0, max_side / max(h, w)) if max_side else 1.0
    img = Image.fromarray(pixels)
    if scale < 1.0:
        img = img.resize((max(1, round(w * scale)), max(1, round(h * scale))), Image.BILINEAR)
    return img, scale


def _dashed_rectangle(draw: ImageDraw.ImageDraw, box, colour: str, width: int, dash: int = 5):
    x1, y1, x2, y2 = box
    for a, b, horizontal, fixed in (
        (x1, x2, True, y1),
        (x1, x2, True, y2),
        (y1, y2, False, x1),
        (y1, y2, False, x2),
    ):
        pos = a
        while pos < b:
            end = min(pos + dash, b)
            if horizontal:
                draw.line([(pos, fixed), (end, fixed)], fill=colour, width=width)
            else:
                draw.line([(fixed, pos), (fixed, end)], fill=colour, width=width)
            pos += 2 * dash


def _label(draw: ImageDraw.ImageDraw, xy, text: str, colour: str, font) -> None:
    """``text`` in white on a ``colour`` tag above the point ``xy`` (inside the image)."""
    try:
        left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
    except UnicodeEncodeError:  # the bitmap font knows Latin-1 only
        text = text.encode("ascii", "replace").decode("ascii")
        left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
    x, y = xy
    y0 = y - (bottom - top) - 4
    if y0 < 0:
        y0 = y
    draw.rectangle([x, y0, x + (right - left) + 4, y0 + (bottom - top) + 4], fill=colour)
    draw.text((x + 2 - left, y0 + 2 - top), text, fill="white", font=font)


def with_margin(pixels: np.ndarray, margin: int = 8) -> np.ndarray:
    """An RGB picture [H, W, 3] inside a transparent ``margin`` [H + 2m, W + 2m, 4]: the gap
    between pictures laid out in a row, on a light or a dark page alike."""
    h, w = pixels.shape[:2]
    out = np.zeros((h + 2 * margin, w + 2 * margin, 4), np.uint8)
    out[margin : margin + h, margin : margin + w, :3] = pixels
    out[margin : margin + h, margin : margin + w, 3] = 255
    return out


def dataset_thumbnail(
    pixels: np.ndarray, record: ImageRecord, classes: Sequence[str], max_side: int = 320
) -> np.ndarray:
    """An image with its boxes (class colours, class names above) and its ignored boxes (grey,
    dashed), scaled so its longer side is at most ``max_side``: [h + 16, w + 16, 4] uint8 RGBA
    with a transparent margin (:func:`with_margin`)."""
    img, scale = _scaled(pixels, max_side)
    draw = ImageDraw.Draw(img)
    font = _font(11)
    for box in (record.ignored_boxes * scale).tolist():
        _dashed_rectangle(draw, box, IGNORED[0], 2)
    for box, label in zip((record.boxes * scale).tolist(), record.labels.tolist(), strict=True):
        colour = class_colour(label)
        draw.rectangle(box, outline=colour, width=2)
        _label(draw, (box[0], box[1]), shown(classes[label], 20), colour, font)
    return with_margin(np.asarray(img))


def outcome_thumbnail(
    pixels: np.ndarray,
    record: ImageRecord,
    prediction: Prediction,
    outcome: ImageOutcome,
    classes: Sequence[str],
    max_side: int = 320,
) -> np.ndarray:
    """An image with its true positives (green), false positives (red), misses (yellow,
    dashed) and ignored boxes (grey, dashed) at one score threshold."""
    img, scale = _scaled(pixels, max_side)
    draw = ImageDraw.Draw(img)
    for box in (record.ignored_boxes * scale).tolist():
        _dashed_rectangle(draw, box, IGNORED[0], 1)
    boxes = (record.boxes * scale).tolist()
    for k in outcome.missed:
        _dashed_rectangle(draw, boxes[k], MISS_COLOUR, 2)
    detections = (prediction.boxes * scale).tolist()
    for indices, colour in (
        (outcome.false_positives, FP_COLOUR),
        (outcome.true_positives, TP_COLOUR),
    ):
        for i in indices:
            draw.rectangle(detections[i], outline=colour, width=2)
    return with_margin(np.asarray(img))


# -- dataset -------------------------------------------------------------------------------------


def class_counts_figure(summary: DatasetSummary, height: int = 300) -> go.Figure:
    """Boxes per class (in the class colours) and the ignored boxes (grey)."""
    names = [html_text(c, 40) for c in summary.classes]
    fig = go.Figure(
        go.Bar(
            x=[*names, html_text(_("ignored"))],
            y=[*summary.boxes_per_class, summary.ignored],
            marker_color=[class_colour(k) for k in range(len(names))] + [IGNORED[0]],
            text=[*summary.boxes_per_class, summary.ignored],
            textposition="outside",
            cliponaxis=False,
            hovertemplate=_("%{x}: %{y} boxes") + "<extra></extra>",
        )
    )
    fig.update_layout(
        height=height,
        margin=dict(l=0, r=0, t=30, b=0),
        title=dict(text=_("Boxes per class"), x=0.01, font=dict(size=14)),
        yaxis_title=_("boxes"),
        showlegend=False,
    )
    return fig


def histogram_figure(
    bins: Sequence[str],
    counts: Sequence[Sequence[int]],
    classes: Sequence[str],
    title: str,
    x_title: str,
    height: int = 300,
) -> go.Figure:
    """Stacked bars: per bin, the boxes of each class."""
    fig = go.Figure()
    for k, (name, row) in enumerate(zip(classes, counts, strict=True)):
        fig.add_trace(
            go.Bar(
                x=list(bins),
                y=list(row),
                name=html_text(name, 40),
                marker_color=class_colour(k),
                hovertemplate="%{x}: %{y}<extra>%{fullData.name}</extra>",  # i18n: keep (no words)
            )
        )
    fig.update_layout(
        barmode="stack",
        height=height,
        margin=dict(l=0, r=0, t=30, b=0),
        title=dict(text=title, x=0.01, font=dict(size=14)),
        xaxis_title=x_title,
        yaxis_title=_("boxes"),
        legend=dict(
            orientation="h", yanchor="bottom", y=1.0, xanchor="right", x=1, traceorder="normal"
        ),
        xaxis=dict(type="category"),
    )
    return fig


# -- training ------------------------------------------------------------------------------------


def loss_figure(history: Sequence[tuple[int, dict]], height: int = 340) -> go.Figure:
    """The logged losses over the iterations (each point: the mean over a log interval)."""
    fig = go.Figure()
    steps = [it for it, _ in history]
    for name in ("loss", *LOSS_NAMES):
        fig.add_trace(
            go.Scatter(
                x=steps,
                y=[losses.get(name) for _, losses in history],
                mode="lines+markers" if len(history) < 40 else "lines",
                name=_(LOSS_LABELS[name]),
                line=dict(color=LOSS_LINE_COLOURS[name], width=3 if name == "loss" else 1.6),
            )
        )
    fig.update_layout(
        height=height,
        margin=dict(l=0, r=0, t=30, b=0),
        title=dict(text=_("Training losses"), x=0.01, font=dict(size=14)),
        xaxis_title=_("iteration"),
        yaxis_title=_("loss"),
        legend=dict(orientation="h", yanchor="bottom", y=1.0, xanchor="right", x=1),
        uirevision="losses",
    )
    fig.update_xaxes(rangemode="tozero")
    fig.update_yaxes(rangemode="tozero")
    return fig


def map_figure(
    evaluations: Sequence[tuple[int, int, float | None, float | None]], height: int = 340
) -> go.Figure:
    """mAP@0.5 and COCO mAP@[.5:.95] on the validation images at each evaluation."""
    fig = go.Figure()
    steps = [it for _, it, _, _ in evaluations]
    hover = [_("epoch {epoch}").format(epoch=e[0]) for e in evaluations]
    for k, (name, colour) in enumerate((("mAP@0.5", "#2563EB"), ("mAP@[.5:.95]", "#A855F7"))):
        fig.add_trace(
            go.Scatter(
                x=steps,
                y=[e[2 + k] for e in evaluations],
                text=hover,
                mode="lines+markers",
                name=name,
                line=dict(color=colour, width=2.5 if k == 0 else 1.6),
                hovertemplate=f"%{{text}}: %{{y:.3f}}<extra>{name}</extra>",  # i18n: keep
            )
        )
    fig.update_layout(
        height=height,
        margin=dict(l=0, r=0, t=30, b=0),
        title=dict(text=_("mAP on the validation images"), x=0.01, font=dict(size=14)),
        xaxis_title=_("iteration"),
        yaxis=dict(title="mAP", range=[0, 1]),
        legend=dict(orientation="h", yanchor="bottom", y=1.0, xanchor="right", x=1),
        uirevision="map",
    )
    fig.update_xaxes(rangemode="tozero")
    return fig


# -- results -------------------------------------------------------------------------------------


def pr_figure(per_class: Sequence[ClassResult], height: int = 420) -> go.Figure:
    """Interpolated precision against recall at IoU 0.5, one line per class with ground truth
    (its area is the class's AP@0.5)."""
    fig = go.Figure()
    for k, result in enumerate(per_class):
        if result.ap50 is None:
            continue
        name = html_text(result.name, 40)
        fig.add_trace(
            go.Scatter(
                x=list(result.recall),
                y=[max(p, 0.0) for p in result.precision],
                mode="lines",
                line=dict(color=class_colour(k), width=2, shape="hv"),
                name=f"{name} (AP@0.5 {result.ap50:.2f})",
                customdata=list(result.scores),
                hovertemplate=_("recall %{x:.2f}, precision %{y:.2f}, score ≥ %{customdata:.2f}")
                + f"<extra>{name}</extra>",
            )
        )
    fig.update_layout(
        height=height,
        margin=dict(l=0, r=0, t=30, b=60),
        title=dict(text=_("Precision-recall at IoU 0.5"), x=0.01, font=dict(size=14)),
        xaxis=dict(title=_("recall"), range=[0, 1.01]),
        yaxis=dict(title=_("precision"), range=[0, 1.05]),
        legend=dict(orientation="h", yanchor="top", y=-0.18, xanchor="left", x=0),
    )
    return fig


def matches_figure(
    pixels: np.ndarray,
    record: ImageRecord,
    prediction: Prediction,
    outcome: ImageOutcome,
    classes: Sequence[str],
    height: int = 520,
) -> go.Figure:
    """One validation image: true positives, false positives, misses and ignored boxes, each
    with its class (and score) on hover."""
    fig = image_figure(pixels, height=height, dim=0.85)
    labels = prediction.labels.tolist()
    scores = prediction.scores.tolist()
    if len(record.ignored_boxes):
        add_boxes(fig, record.ignored_boxes, IGNORED[0], _("ignored"), width=1.5, dash="dot")
    for indices, colour, hover_text, legend in (
        (
            outcome.true_positives,
            TP_COLOUR,
            N_("true positive: {name} {score:.2f}"),
            N_("true positives ({n})"),
        ),
        (
            outcome.false_positives,
            FP_COLOUR,
            N_("false positive: {name} {score:.2f}"),
            N_("false positives ({n})"),
        ),
    ):
        idx = list(indices)
        hover = [
            _(hover_text).format(name=html_text(classes[labels[i]], 40), score=scores[i])
            for i in idx
        ]
        add_boxes(
            fig,
            prediction.boxes[idx] if idx else np.zeros((0, 4)),
            colour,
            _(legend).format(n=len(idx)),
            width=2.5,
            hover=hover,
        )
    missed = list(outcome.missed)
    gt_labels = record.labels.tolist()
    add_boxes(
        fig,
        record.boxes[missed] if missed else np.zeros((0, 4)),
        MISS_COLOUR,
        _("misses ({n})").format(n=len(missed)),
        width=2.5,
        dash="dash",
        hover=[
            _("missed: {name}").format(name=html_text(classes[gt_labels[k]], 40)) for k in missed
        ],
    )
    return fig
