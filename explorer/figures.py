"""Plotly building blocks shared by the pages: an image with boxes drawn as single WebGL traces.

Many boxes (thousands of anchors) are one trace of closed outlines separated by NaN gaps, never
one layout shape per box, so the browser stays fast. Box outlines use SVG ``Scatter`` (one path
per trace): Streamlit's bundled plotly.js draws WebGL *lines* flat along the bottom edge on a
reversed y axis under software WebGL (headless Chromium), and a projector laptop may have no GPU.
"""

from __future__ import annotations

import base64
import hashlib
import io
import threading
from collections import OrderedDict

import numpy as np
import plotly.graph_objects as go
import torch
from PIL import Image

from explorer.text import html_text
from frcnn_core.i18n import _

GT_COLOUR = "#FFD400"
POSITIVE_COLOUR = "#22C55E"
NEGATIVE_COLOUR = "#EF4444"
IGNORED_COLOUR = "#94A3B8"
PROPOSAL_COLOUR = "#06B6D4"
ACCENT_COLOUR = "#A855F7"
LOSS_COLOURS = {
    "rpn_cls": "#2563EB",
    "rpn_loc": "#06B6D4",
    "roi_cls": "#F97316",
    "roi_loc": "#EAB308",
    "total": "#111827",
}


# JPEG data URIs kept by the pixels' content: most figures of a rerun, and of every student of a
# sample, show the same picture; encoding it took 10-30 ms each time, under the interpreter lock.
IMAGE_URIS = 48
_uris: OrderedDict[tuple[object, ...], str] = OrderedDict()
_uris_lock = threading.Lock()


def image_source(pixels: np.ndarray, quality: int = 85, dim: float = 1.0) -> str:
    """An RGB array as a JPEG data URI (a tenth of the bytes of a raw ``z`` array), darkened by
    ``dim`` < 1; the last :data:`IMAGE_URIS` are kept by the pixels' content."""
    pixels = np.ascontiguousarray(pixels)
    digest = hashlib.blake2b(memoryview(pixels).cast("B"), digest_size=20).digest()
    key = (pixels.shape, pixels.dtype.str, quality, round(dim, 4), digest)
    with _uris_lock:
        uri = _uris.get(key)
        if uri is not None:
            _uris.move_to_end(key)
            return uri
    if dim < 1.0:
        pixels = (pixels.astype(np.float32) * dim).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="JPEG", quality=quality)
    uri = "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode("ascii")
    with _uris_lock:
        _uris[key] = uri
        while len(_uris) > IMAGE_URIS:
            _uris.popitem(last=False)
    return uri


def image_figure(
    pixels: np.ndarray, height: int = 560, dim: float = 1.0, title: str | None = None
) -> go.Figure:
    """An image in pixel coordinates (y down), equal aspect, no axes clutter.

    ``dim`` < 1 darkens the picture so coloured boxes stand out. The picture is a layout image
    (an SVG ``<image>`` behind the axes), not a ``go.Image`` trace: the browser then only shows
    the JPEG, where an image trace also decodes it into a canvas for pixel hover (in headless
    Chromium on 2 cores the browser's work per labelling-slider change fell from 476 to 307 ms).
    """
    h, w = pixels.shape[:2]
    axis = dict(showgrid=False, zeroline=False, constrain="domain")
    layout = dict(
        images=[
            dict(
                source=image_source(pixels, dim=dim),
                xref="x",
                yref="y",
                x=0,
                y=0,
                sizex=w,
                sizey=h,
                xanchor="left",
                yanchor="top",
                sizing="stretch",
                layer="below",
            )
        ],
        xaxis=dict(range=[0, w], **axis),
        yaxis=dict(range=[h, 0], scaleanchor="x", scaleratio=1, **axis),
        height=height,
        margin=dict(l=0, r=0, t=30 if title else 0, b=0),
        title=dict(text=title, x=0.01, font=dict(size=14)) if title else None,
        legend=dict(orientation="h", yanchor="bottom", y=1.0, xanchor="left", x=0),
        dragmode="pan",
        uirevision="keep",
    )
    # An empty trace keeps a figure with no boxes drawing its axes (and the picture on them).
    anchor = go.Scatter(x=[], y=[], mode="none", hoverinfo="skip", showlegend=False)
    return go.Figure(anchor, layout)


def box_outline(boxes: torch.Tensor | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """x and y arrays tracing every box's outline, ``NaN`` between boxes (one trace for all)."""
    b = boxes.detach().cpu().numpy() if isinstance(boxes, torch.Tensor) else np.asarray(boxes)
    b = b.reshape(-1, 4).astype(np.float64)
    n = b.shape[0]
    xs = np.full((n, 6), np.nan)
    ys = np.full((n, 6), np.nan)
    xs[:, :5] = b[:, [0, 2, 2, 0, 0]]
    ys[:, :5] = b[:, [1, 1, 3, 3, 1]]
    return xs.reshape(-1), ys.reshape(-1)


def add_boxes(
    fig: go.Figure,
    boxes: torch.Tensor | np.ndarray,
    colour: str,
    name: str,
    width: float = 1.0,
    opacity: float = 1.0,
    hover: list[str] | None = None,
    dash: str | None = None,
) -> go.Figure:
    """All ``boxes`` as one line trace; ``hover`` gives each box a hover text."""
    xs, ys = box_outline(boxes)
    text = None
    if hover is not None:
        text = np.repeat(np.asarray(hover, dtype=object), 6)
    fig.add_trace(
        go.Scatter(
            x=xs,
            y=ys,
            mode="lines",
            name=name,
            line=dict(color=colour, width=width, dash=dash),
            opacity=opacity,
            text=text,
            hoverinfo="text" if hover is not None else "skip",
            connectgaps=False,
        )
    )
    return fig


def add_gt(fig: go.Figure, boxes: torch.Tensor, labels: tuple[str, ...] | list[str]) -> go.Figure:
    """Ground-truth boxes (thick, yellow) with their labels as plain text above each."""
    add_boxes(fig, boxes, GT_COLOUR, _("ground truth"), width=3)
    if len(labels):
        b = boxes.detach().cpu().numpy().reshape(-1, 4)
        fig.add_trace(
            go.Scatter(
                x=b[:, 0],
                y=b[:, 1],
                mode="text",
                text=[html_text(x) for x in labels],
                textposition="top right",
                textfont=dict(color=GT_COLOUR, size=13),
                hoverinfo="skip",
                showlegend=False,
            )
        )
    return fig


def add_points(
    fig: go.Figure, xy: torch.Tensor | np.ndarray, colour: str, name: str, size: float = 3.0
) -> go.Figure:
    p = xy.detach().cpu().numpy() if isinstance(xy, torch.Tensor) else np.asarray(xy)
    fig.add_trace(
        go.Scattergl(
            x=p[:, 0],
            y=p[:, 1],
            mode="markers",
            name=name,
            marker=dict(color=colour, size=size),
            hoverinfo="skip",
        )
    )
    return fig


def heatmap(
    values: np.ndarray,
    title: str,
    colorscale: str = "Viridis",
    zmin: float | None = None,
    zmax: float | None = None,
    height: int = 300,
    colorbar: bool = True,
) -> go.Figure:
    """A small heatmap in feature-map coordinates (row 0 on top)."""
    fig = go.Figure(
        go.Heatmap(z=values, colorscale=colorscale, zmin=zmin, zmax=zmax, showscale=colorbar)
    )
    fig.update_yaxes(autorange="reversed", scaleanchor="x", showgrid=False, constrain="domain")
    fig.update_xaxes(showgrid=False, constrain="domain")
    fig.update_layout(
        height=height,
        margin=dict(l=0, r=0, t=30, b=0),
        title=dict(text=title, x=0.01, font=dict(size=13)),
    )
    return fig
