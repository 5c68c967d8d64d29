"""Figures of stages 10 and 11: the sampled RoIs on the image, and one RoI pooled to 7 x 7.

Feature-map figures use cell coordinates: cell ``i`` is drawn centred on ``i`` (from ``i - 0.5``
to ``i + 0.5``) and covers input pixels ``[16 i, 16 i + 16)``, so input pixel ``x`` sits at
``x / 16 - 0.5``. That is also the frame of RoI Align's sample points (``aligned=True``).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import plotly.graph_objects as go
import torch

from explorer.figures import (
    ACCENT_COLOUR,
    GT_COLOUR,
    NEGATIVE_COLOUR,
    POSITIVE_COLOUR,
    box_outline,
    image_figure,
)
from explorer.text import MAX_MESSAGE_CHARS, html_text
from explorer.views.inspect import clicked_indices
from frcnn_core.i18n import _
from frcnn_core.proposal_targets import ProposalTargetParams, ProposalTargetResult
from frcnn_core.roi_pool import POOL_METHODS, RoIPoolParams, pool_rois

METHOD_NAMES = {"pool": "RoI Pool", "align": "RoI Align"}
SELECTED_COLOUR = "#FFFFFF"


def roi_class(targets: ProposalTargetResult, i: int, class_names: tuple[str, ...]) -> str:
    """The class name of sampled RoI ``i`` ("background", in the session's language, for
    label 0)."""
    label = int(targets.labels[i])
    return class_names[label - 1] if label > 0 else _("background")


def roi_iou(targets: ProposalTargetResult, i: int) -> float:
    """Best IoU with any GT box of sampled RoI ``i``."""
    return float(targets.max_iou[targets.sample_index[i]])


def roi_descriptions(targets: ProposalTargetResult, class_names: tuple[str, ...]) -> list[str]:
    """One line per sampled RoI, for a picker: ``RoI 3 · positive: zebra · IoU 0.612`` (in the
    session's language)."""
    n_pos = targets.pos_index.numel()
    positive = _("RoI {i} · positive: {name} · IoU {iou:.3f}")
    negative = _("RoI {i} · negative · IoU {iou:.3f}")
    out = []
    for i in range(targets.sample_index.numel()):
        line = positive if i < n_pos else negative
        name = roi_class(targets, i, class_names) if i < n_pos else ""
        out.append(line.format(i=i, name=name, iou=roi_iou(targets, i)))
    return out


def _outlines(
    boxes: torch.Tensor | np.ndarray,
    colour: str,
    name: str,
    width: float,
    opacity: float = 1.0,
    dash: str | None = None,
) -> go.Scatter:
    """All ``boxes`` as one SVG line trace, gaps between boxes.

    Not ``figures.add_boxes`` (WebGL): Streamlit's bundled plotly.js draws ``Scattergl`` lines
    flat along the bottom edge when the y axis is reversed, as it is for images, so the
    outlines vanish. A few hundred boxes are cheap as one SVG path."""
    xs, ys = box_outline(boxes)
    return go.Scatter(
        x=xs,
        y=ys,
        mode="lines",
        name=name,
        line=dict(color=colour, width=width, dash=dash),
        opacity=opacity,
        hoverinfo="skip",
    )


def rois_figure(
    pixels: np.ndarray,
    targets: ProposalTargetResult,
    gt_boxes: torch.Tensor,
    gt_labels: tuple[str, ...],
    class_names: tuple[str, ...],
    selected: int | None = None,
) -> go.Figure:
    """Sampled positive (green) and negative (red) RoIs over the dimmed image.

    A marker at every RoI's centre carries its index in ``customdata`` and its description as
    hover text, so a click on it can pick the RoI (``st.plotly_chart(on_select=...)``)."""
    fig = image_figure(pixels, dim=0.6)
    rois = targets.rois.detach().cpu()
    n_pos = targets.pos_index.numel()
    text = roi_descriptions(targets, class_names)
    gt = gt_boxes.detach().cpu().reshape(-1, 4)
    traces = [
        _outlines(
            rois[n_pos:],
            NEGATIVE_COLOUR,
            _("negative: {n}").format(n=rois.shape[0] - n_pos),
            1,
            0.6,
        ),
        _outlines(rois[:n_pos], POSITIVE_COLOUR, _("positive: {n}").format(n=n_pos), 2),
        _outlines(gt, GT_COLOUR, _("ground truth"), 3),
        go.Scatter(
            x=gt[:, 0].numpy(),
            y=gt[:, 1].numpy(),
            mode="text",
            # Plotly reads a few HTML tags in text; labels are the user's.
            text=[html_text(label) for label in gt_labels],
            textposition="top right",
            textfont=dict(color=GT_COLOUR, size=13),
            hoverinfo="skip",
            showlegend=False,
        ),
    ]
    if rois.shape[0]:
        centres = ((rois[:, :2] + rois[:, 2:]) / 2).numpy()
        colours = [POSITIVE_COLOUR if i < n_pos else NEGATIVE_COLOUR for i in range(len(text))]
        # SVG markers: a few hundred at most, and no WebGL context for the browser to set up.
        traces.append(
            go.Scatter(
                x=centres[:, 0],
                y=centres[:, 1],
                mode="markers",
                name=_("RoI centres (click one to pick it)"),
                marker=dict(color=colours, size=7, line=dict(color="#000000", width=1)),
                customdata=np.arange(len(text)),
                text=[html_text(t, MAX_MESSAGE_CHARS) for t in text],
                hoverinfo="text",
            )
        )
    if selected is not None and 0 <= selected < rois.shape[0]:
        box = rois[selected : selected + 1]
        traces.append(_outlines(box, SELECTED_COLOUR, _("selected RoI"), 3, dash="dash"))
    fig.add_traces(traces)
    fig.layout.clickmode = "event+select"
    return fig


def clicked_rois(event: Mapping[str, Any] | None) -> list[int]:
    """RoI indices of the centre markers selected in ``rois_figure`` (a plotly_chart selection
    event); clicks on other traces carry no ``customdata`` and are ignored."""
    return clicked_indices(event)


def iou_histogram(
    targets: ProposalTargetResult, params: ProposalTargetParams, height: int = 260
) -> go.Figure:
    """Best IoU of every proposal, with the positive threshold and the negative range marked."""
    values = targets.max_iou.detach().cpu().numpy()
    lo, hi, pos = params.roi_neg_iou_lo, params.roi_neg_iou_hi, params.roi_pos_iou
    band = dict(type="rect", xref="x", yref="paper", y0=0, y1=1, opacity=0.15, line_width=0)
    shapes = [dict(band, x0=pos, x1=1.0, fillcolor=POSITIVE_COLOUR)]
    if hi > lo:
        shapes.append(dict(band, x0=lo, x1=hi, fillcolor=NEGATIVE_COLOUR))
    shapes.append(
        dict(
            type="line",
            xref="x",
            yref="paper",
            x0=pos,
            x1=pos,
            y0=0,
            y1=1,
            line=dict(color=POSITIVE_COLOUR, width=2),
        )
    )
    # One constructor call: plotly's update_* methods cost milliseconds each.
    return go.Figure(
        go.Histogram(
            x=values,
            xbins=dict(start=0.0, end=1.0, size=0.025),
            marker_color=ACCENT_COLOUR,
            name=_("proposals"),
            # A plotly template: %{x} and %{y} stay for plotly.
            hovertemplate=_("IoU %{x}: %{y} proposals") + "<extra></extra>",
        ),
        layout=dict(
            height=height,
            margin=dict(l=0, r=0, t=30, b=0),
            bargap=0.05,
            shapes=shapes,
            showlegend=False,
            xaxis=dict(range=[0, 1], title=_("best IoU of a proposal with any GT box")),
            yaxis=dict(type="log", title=_("proposals")),
            title=dict(
                text=_("Red band: negative range · green: positive (IoU ≥ threshold)"),
                x=0.01,
                font=dict(size=13),
            ),
        ),
    )


def feature_plane(features: torch.Tensor, channel: int | None) -> np.ndarray:
    """One channel of a [1, C, Hf, Wf] (or [C, Hf, Wf]) map, or the mean of all (None)."""
    f = features.detach().float().cpu()
    f = f[0] if f.dim() == 4 else f
    plane = f.mean(dim=0) if channel is None else f[channel]
    return plane.numpy()


def pool_both(
    features: torch.Tensor, roi: torch.Tensor, params: RoIPoolParams, stride: int
) -> dict[str, np.ndarray]:
    """One RoI [4] pooled by RoI Pool and by RoI Align: ``{method: [C, 7, 7]}``."""
    boxes = roi.reshape(1, 4)
    out = {}
    for method in POOL_METHODS:
        variant = dataclasses.replace(params, method=method)
        pooled = pool_rois(features, boxes, variant, 1.0 / stride).pooled
        out[method] = pooled[0].detach().float().cpu().numpy()
    return out


@dataclass(frozen=True)
class QuantisedRoI:
    """How ``torchvision.ops.roi_pool`` sees a RoI, in whole feature cells.

    Attributes:
        x_start, y_start, x_end, y_end: first and last cells pooled, both included: the
            rounded RoI (``round(x1 / 16)`` .. ``round(x2 / 16)``, halves away from zero)
            clamped to the map's cells ``0 .. Wf - 1`` and ``0 .. Hf - 1``, as ``roi_pool``
            clamps its bins.
        x_bins, y_bins: per bin, its first cell and one past its last cell (clipped to the map).
        rounded: the rounded RoI before clamping, ``(x_start, y_start, x_end, y_end)``: the
            bins are cut from it, so a RoI that reaches past the map has a last bin cut short.
    """

    x_start: int
    y_start: int
    x_end: int
    y_end: int
    x_bins: tuple[tuple[int, int], ...]
    y_bins: tuple[tuple[int, int], ...]
    rounded: tuple[int, int, int, int]

    @property
    def clamped(self) -> bool:
        """The rounded RoI reaches past the feature map."""
        return self.rounded != (self.x_start, self.y_start, self.x_end, self.y_end)


def _round_half_away(v: float) -> int:
    return math.floor(abs(v) + 0.5) * (1 if v >= 0 else -1)


def _bins(start: int, end: int, size: int, limit: int) -> tuple[tuple[int, int], ...]:
    # torchvision's roi_pool kernel: length end - start + 1 (at least 1), bins of length / size
    # cells, each from floor(i * bin) to ceil((i + 1) * bin): neighbours can share a cell.
    length = max(end - start + 1, 1)
    step = length / size
    out = []
    for i in range(size):
        a = min(max(math.floor(i * step) + start, 0), limit)
        b = min(max(math.ceil((i + 1) * step) + start, 0), limit)
        out.append((a, b))
    return tuple(out)


def quantise_roi(
    roi: torch.Tensor | list[float],
    params: RoIPoolParams,
    feature_size: tuple[int, int],
    stride: int,
) -> QuantisedRoI:
    """The cells and bins RoI max pooling uses for ``roi`` (x1, y1, x2, y2) in input pixels, on
    a feature map of ``stride`` pixels per cell."""
    x1, y1, x2, y2 = (float(v) for v in roi)
    s = 1.0 / stride
    xs, ys = _round_half_away(x1 * s), _round_half_away(y1 * s)
    xe, ye = _round_half_away(x2 * s), _round_half_away(y2 * s)
    hf, wf = feature_size

    def clamp(v: int, size: int) -> int:
        return min(max(v, 0), size - 1)

    return QuantisedRoI(
        clamp(xs, wf),
        clamp(ys, hf),
        clamp(xe, wf),
        clamp(ye, hf),
        _bins(xs, xe, params.output_size, wf),
        _bins(ys, ye, params.output_size, hf),
        (xs, ys, xe, ye),
    )


def crop_window(
    roi: torch.Tensor | list[float],
    params: RoIPoolParams,
    feature_size: tuple[int, int],
    stride: int,
    margin: int = 1,
) -> tuple[int, int, int, int]:
    """Cells ``(x0, x1, y0, y1)`` (end excluded) that show the RoI with ``margin`` cells around."""
    x1, y1, x2, y2 = (float(v) for v in roi)
    s = 1.0 / stride
    q = quantise_roi(roi, params, feature_size, stride)
    hf, wf = feature_size
    left = min(q.x_start, math.floor(x1 * s - 0.5))
    right = max(q.x_end + 1, math.ceil(x2 * s - 0.5) + 1)
    top = min(q.y_start, math.floor(y1 * s - 0.5))
    bottom = max(q.y_end + 1, math.ceil(y2 * s - 0.5) + 1)
    return (
        max(left - margin, 0),
        min(max(right + margin, left + 1), wf),
        max(top - margin, 0),
        min(max(bottom + margin, top + 1), hf),
    )


def _grid_lines(
    xs: list[float], ys: list[float], x_range: tuple[float, float], y_range: tuple[float, float]
) -> tuple[list[float | None], list[float | None]]:
    """Vertical lines at ``xs`` and horizontal lines at ``ys`` as one gapped polyline."""
    px: list[float | None] = []
    py: list[float | None] = []
    for x in xs:
        px += [x, x, None]
        py += [y_range[0], y_range[1], None]
    for y in ys:
        px += [x_range[0], x_range[1], None]
        py += [y, y, None]
    return px, py


def crop_figure(
    plane: np.ndarray,
    roi: torch.Tensor | list[float],
    method: str,
    params: RoIPoolParams,
    stride: int,
    zmin: float | None = None,
    zmax: float | None = None,
    height: int = 340,
) -> go.Figure:
    """The RoI's region of the feature map (one plane [Hf, Wf]) with the bins ``method`` uses.

    RoI Pool: the RoI rounded to whole cells and split into 7 x 7 bins of whole cells.
    RoI Align: the exact RoI split into 7 x 7 equal bins, with the bilinear sample points.
    The exact RoI (input pixels / stride) is the dashed white outline in both."""
    hf, wf = plane.shape
    x0, x1, y0, y1 = crop_window(roi, params, (hf, wf), stride)
    # Rows y0..y1-1 and columns x0..x1-1, in the order [y, x] (B9 swapped them).
    crop = plane[y0:y1, x0:x1]
    traces: list[go.Scatter | go.Heatmap] = [
        go.Heatmap(
            z=crop,
            x=np.arange(x0, x1),
            y=np.arange(y0, y1),
            colorscale="Viridis",
            zmin=zmin,
            zmax=zmax,
            showscale=False,
            hovertemplate=_("cell x %{x}, y %{y}: %{z:.3f}") + "<extra></extra>",
        )
    ]
    s = 1.0 / stride
    rx1, ry1, rx2, ry2 = (float(v) * s - 0.5 for v in roi)
    n = params.output_size
    if method == "pool":
        q = quantise_roi(roi, params, (hf, wf), stride)
        xs = [a - 0.5 for a, _end in q.x_bins] + [q.x_bins[-1][1] - 0.5]
        ys = [a - 0.5 for a, _end in q.y_bins] + [q.y_bins[-1][1] - 0.5]
        gx, gy = _grid_lines(xs, ys, (xs[0], xs[-1]), (ys[0], ys[-1]))
        name = _("quantised: cells x {x1}–{x2}, y {y1}–{y2}").format(
            x1=q.x_start, x2=q.x_end, y1=q.y_start, y2=q.y_end
        )
        traces.append(
            go.Scatter(x=gx, y=gy, mode="lines", line=dict(color=ACCENT_COLOUR, width=2), name=name)
        )
    else:
        bw, bh = (rx2 - rx1) / n, (ry2 - ry1) / n
        xs = [rx1 + i * bw for i in range(n + 1)]
        ys = [ry1 + i * bh for i in range(n + 1)]
        gx, gy = _grid_lines(xs, ys, (rx1, rx2), (ry1, ry2))
        traces.append(
            go.Scatter(
                x=gx,
                y=gy,
                mode="lines",
                line=dict(color=ACCENT_COLOUR, width=1.5),
                name=_("{n} × {n} equal bins (not rounded)").format(n=n),
            )
        )
        k = params.sampling_ratio
        offsets = (np.arange(k) + 0.5) / k
        sx = (rx1 + (np.arange(n)[:, None] + offsets[None, :]) * bw).reshape(-1)
        sy = (ry1 + (np.arange(n)[:, None] + offsets[None, :]) * bh).reshape(-1)
        mx, my = np.meshgrid(sx, sy)
        traces.append(
            go.Scatter(
                x=mx.reshape(-1),
                y=my.reshape(-1),
                mode="markers",
                marker=dict(color="#FFFFFF", size=3),
                name=_("{k} × {k} bilinear samples per bin").format(k=k),
                hoverinfo="skip",
            )
        )
    ox, oy = box_outline(np.array([[rx1, ry1, rx2, ry2]]))
    traces.append(
        go.Scatter(
            x=ox,
            y=oy,
            mode="lines",
            line=dict(color=SELECTED_COLOUR, width=2, dash="dash"),
            name=_("exact RoI ÷ {stride}").format(stride=stride),
            hoverinfo="skip",
        )
    )
    return go.Figure(
        traces,
        layout=dict(
            height=height,
            margin=dict(l=0, r=0, t=30, b=0),
            title=dict(
                text=_("{method}: the RoI on the {hf} × {wf} feature map (cells)").format(
                    method=METHOD_NAMES[method], hf=hf, wf=wf
                ),
                x=0.01,
                font=dict(size=13),
            ),
            legend=dict(orientation="h", yanchor="top", y=-0.1, xanchor="left", x=0),
            xaxis=dict(
                range=[x0 - 0.5, x1 - 0.5],
                showgrid=False,
                zeroline=False,
                constrain="domain",
            ),
            yaxis=dict(
                range=[y1 - 0.5, y0 - 0.5],
                showgrid=False,
                zeroline=False,
                scaleanchor="x",
                constrain="domain",
            ),
        ),
    )


def pooled_figure(
    pooled: np.ndarray, method: str, zmin: float | None = None, zmax: float | None = None
) -> go.Figure:
    """A 7 x 7 pooled plane as a heatmap (row 0 on top)."""
    n = pooled.shape[-1]
    return go.Figure(
        go.Heatmap(
            z=pooled,
            colorscale="Viridis",
            zmin=zmin,
            zmax=zmax,
            hovertemplate=_("bin (%{x}, %{y}): %{z:.3f}") + "<extra></extra>",
        ),
        layout=dict(
            height=280,
            margin=dict(l=0, r=0, t=30, b=0),
            title=dict(
                text=_("{method} output: {n} × {n}").format(method=METHOD_NAMES[method], n=n),
                x=0.01,
                font_size=13,
            ),
            xaxis=dict(showgrid=False, constrain="domain"),
            yaxis=dict(autorange="reversed", scaleanchor="x", showgrid=False, constrain="domain"),
        ),
    )
