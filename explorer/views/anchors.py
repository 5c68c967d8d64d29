"""Figures and tables of stages 3 and 4: the anchor centres, the anchors of one cell, and which
anchors lie inside the image.

Anchor order (SPEC section 1): ``index = (iy * Wf + ix) * A + a`` with
``a = ratio_index * n_scales + scale_index``. With the tutorial's bug B1 the grid is x-outer,
``index = (ix * Hf + iy) * A + a``; :func:`cell_indices` follows whichever the params ask for.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import plotly.graph_objects as go
import torch

from explorer.figures import image_figure
from explorer.views.backbone import tiled_heatmap
from frcnn_core.anchors import AnchorParams, AnchorResult
from frcnn_core.i18n import _

# One colour per ratio (up to eight ratios), line style per scale.
RATIO_COLOURS = (
    "#EF4444",
    "#22C55E",
    "#3B82F6",
    "#F59E0B",
    "#A855F7",
    "#06B6D4",
    "#EC4899",
    "#84CC16",
)
SCALE_DASHES = ("solid", "dash", "dot", "dashdot", "longdash", "longdashdot")
PAD_COLOUR = "#EBEBEB"  # light grey around the image, so anchors crossing the border show
CENTRE_COLOUR = "#FACC15"
PICKED_COLOUR = "#F43F5E"


@dataclass(frozen=True)
class CellAnchor:
    """One anchor of a cell: its place in the anchor list and its box.

    Attributes:
        index: position in the full anchor list (and in the RPN head's flattened output).
        a: position within the cell, ``ratio_index * n_scales + scale_index``.
        ratio, scale: its shape parameters; ``width``, ``height`` in input pixels.
        box: (x1, y1, x2, y2) in the input frame (may cross the border).
        inside: whether the box lies wholly inside the image.
    """

    index: int
    a: int
    ratio_index: int
    scale_index: int
    ratio: float
    scale: float
    width: float
    height: float
    box: tuple[float, float, float, float]
    inside: bool


def cell_indices(
    feature_size: tuple[int, int], per_cell: int, iy: int, ix: int, x_outer: bool = False
) -> list[int]:
    """The anchor indices of cell (iy, ix): ``(iy * Wf + ix) * A + a`` for a = 0..A-1 (or the
    tutorial's x-outer order ``(ix * Hf + iy) * A + a`` when ``x_outer``)."""
    hf, wf = feature_size
    cell = ix * hf + iy if x_outer else iy * wf + ix
    return [cell * per_cell + a for a in range(per_cell)]


def cell_anchors(grid: AnchorResult, params: AnchorParams, iy: int, ix: int) -> list[CellAnchor]:
    """The A anchors of cell (iy, ix), in index order."""
    scales, ratios = params.scales, params.ratios
    indices = cell_indices(grid.feature_size, params.per_cell, iy, ix, params.bug_b1_x_outer)
    inside = torch.isin(torch.tensor(indices), grid.inside_index.cpu()).tolist()
    out = []
    for a, index in enumerate(indices):
        ri, si = divmod(a, len(scales))
        x1, y1, x2, y2 = (float(v) for v in grid.anchors[index].tolist())
        out.append(
            CellAnchor(
                index=index,
                a=a,
                ratio_index=ri,
                scale_index=si,
                ratio=float(ratios[ri]),
                scale=float(scales[si]),
                width=x2 - x1,
                height=y2 - y1,
                box=(x1, y1, x2, y2),
                inside=bool(inside[a]),
            )
        )
    return out


def cell_table(anchors: list[CellAnchor]) -> list[dict[str, object]]:
    """Rows for a table of one cell's anchors (headers and yes/no in the session's language)."""
    index, ratio, scale = _("index"), _("ratio h/w"), _("scale")
    box, inside, yes, no = _("box (x1, y1, x2, y2)"), _("inside"), _("yes"), _("no")
    return [
        {
            "a": c.a,
            index: c.index,
            ratio: f"{c.ratio:g}",
            scale: f"{c.scale:g}",
            "w × h": f"{c.width:.0f} × {c.height:.0f}",
            box: "(" + ", ".join(f"{v:.1f}" for v in c.box) + ")",
            inside: yes if c.inside else no,
        }
        for c in anchors
    ]


def centres_figure(
    pixels: np.ndarray,
    centres: torch.Tensor,
    feature_size: tuple[int, int],
    picked: tuple[int, int],
) -> go.Figure:
    """Every cell centre over the dimmed image (one WebGL trace, clickable), the picked one
    ringed. Each point's ``customdata`` is its (iy, ix)."""
    hf, wf = feature_size
    xy = centres.detach().cpu().numpy()
    iy, ix = np.divmod(np.arange(hf * wf), wf)
    fig = image_figure(pixels, height=520, dim=0.55)
    fig.add_trace(
        go.Scattergl(
            x=xy[:, 0],
            y=xy[:, 1],
            mode="markers",
            name=_("{hf} × {wf} = {n} centres").format(hf=hf, wf=wf, n=hf * wf),
            marker=dict(color=CENTRE_COLOUR, size=4),
            customdata=np.stack((iy, ix), axis=1),
            hovertemplate=_(
                "cell (iy %{customdata[0]}, ix %{customdata[1]})<br>centre (%{x:.0f}, %{y:.0f})"
            )
            + "<extra></extra>",
        )
    )
    py, px = picked
    cx, cy = xy[py * wf + px]
    fig.add_trace(
        go.Scatter(
            x=[cx],
            y=[cy],
            mode="markers",
            name=_("picked cell ({iy}, {ix})").format(iy=py, ix=px),
            marker=dict(color="rgba(0,0,0,0)", size=16, line=dict(color=PICKED_COLOUR, width=3)),
            hoverinfo="skip",
        )
    )
    fig.update_layout(
        dragmode="zoom",
        clickmode="event+select",
        legend=dict(orientation="h", yanchor="top", y=-0.1, xanchor="left", x=0),
    )
    return fig


def cell_anchors_figure(
    pixels: np.ndarray, anchors: list[CellAnchor], centre: tuple[float, float], height: int = 640
) -> go.Figure:
    """The anchors of one cell on the image padded (grey) just enough that anchors crossing
    the border show in full, like the tutorial's ``cv2.copyMakeBorder``. Colour = ratio, line
    style = scale; the image border is the dashed white rectangle."""
    h, w = pixels.shape[:2]
    boxes = np.array([c.box for c in anchors], dtype=np.float64).reshape(-1, 4)
    margin = 12
    left = math.ceil(max(0.0, -boxes[:, 0].min())) + margin
    top = math.ceil(max(0.0, -boxes[:, 1].min())) + margin
    right = math.ceil(max(0.0, boxes[:, 2].max() - w)) + margin
    bottom = math.ceil(max(0.0, boxes[:, 3].max() - h)) + margin
    # The grey plot background around the image is the padding: no bigger picture to encode,
    # however far a large anchor reaches.
    fig = image_figure(pixels, height=height)
    fig.update_layout(plot_bgcolor=PAD_COLOUR)
    fig.update_xaxes(range=[-left, w + right])
    fig.update_yaxes(range=[h + bottom, -top])
    fig.add_trace(
        go.Scatter(
            x=[0, w, w, 0, 0],
            y=[0, 0, h, h, 0],
            mode="lines",
            line=dict(color="#111827", width=1.5, dash="dot"),
            name=_("image border"),
            hoverinfo="skip",
        )
    )
    for c in anchors:
        x1, y1, x2, y2 = c.box
        colour = RATIO_COLOURS[c.ratio_index % len(RATIO_COLOURS)]
        dash = SCALE_DASHES[c.scale_index % len(SCALE_DASHES)]
        label = f"#{c.index}: r {c.ratio:g}, s {c.scale:g} · {c.width:.0f}×{c.height:.0f}"
        fig.add_trace(
            go.Scatter(
                x=[x1, x2, x2, x1, x1],
                y=[y1, y1, y2, y2, y1],
                mode="lines",
                line=dict(color=colour, width=2.5, dash=dash),
                name=label if c.inside else _("{anchor} (outside)").format(anchor=label),
                hovertemplate=f"{label}<br>({x1:.1f}, {y1:.1f}, {x2:.1f}, {y2:.1f})<extra></extra>",
            )
        )
    fig.add_trace(
        go.Scatter(
            x=[centre[0]],
            y=[centre[1]],
            mode="markers",
            marker=dict(color=PICKED_COLOUR, size=9, symbol="x"),
            name=_("centre ({x:.0f}, {y:.0f})").format(x=centre[0], y=centre[1]),
            hoverinfo="skip",
        )
    )
    fig.update_layout(
        showlegend=True,
        legend=dict(
            orientation="h",
            yanchor="top",
            y=-0.1,
            xanchor="left",
            x=0,
            font=dict(size=11),
            entrywidth=210,
            title=dict(text=_("#index: r ratio, s scale · w×h"), side="top"),
        ),
        margin=dict(l=0, r=0, t=0, b=0),
    )
    return fig


def inside_by_shape(grid: AnchorResult, params: AnchorParams) -> np.ndarray:
    """Inside flags per anchor shape as a 0/1 int array [A, Hf, Wf]; summed over A, how many
    of each cell's anchors lie inside the image."""
    hf, wf = grid.feature_size
    flags = torch.zeros(grid.total, dtype=torch.int64)
    flags[grid.inside_index.cpu()] = 1
    if params.bug_b1_x_outer:
        return flags.reshape(wf, hf, params.per_cell).permute(2, 1, 0).numpy()  # [Wf, Hf, A]
    return flags.reshape(hf, wf, params.per_cell).permute(2, 0, 1).numpy()  # [Hf, Wf, A]


def shape_sizes(params: AnchorParams, stride: int) -> list[tuple[float, float, float, float]]:
    """(ratio, scale, width, height) of each anchor shape, ``a = ratio_index * n_scales +
    scale_index``, in input pixels at the backbone's ``stride``."""
    return [
        (r, s, stride * s / math.sqrt(r), stride * s * math.sqrt(r))
        for r in params.ratios
        for s in params.scales
    ]


def shape_names(params: AnchorParams, stride: int) -> list[str]:
    """One name per anchor shape, e.g. "ratio 0.5, scale 8 (181×91)"."""
    name = _("ratio {r:g}, scale {s:g} ({w:.0f}×{h:.0f})")
    return [name.format(r=r, s=s, w=w, h=h) for r, s, w, h in shape_sizes(params, stride)]


def shape_heatmaps(
    maps: np.ndarray,
    params: AnchorParams,
    stride: int,
    *,
    zmin: float,
    zmax: float,
    hover: str,
    colorbar: str | None = None,
    title: str = "",
    fixed_ranges: bool = False,
    blank_colour: str | None = None,
) -> go.Figure:
    """One heatmap per anchor shape (rows: ratio, columns: scale) on one colour scale, each
    titled with its shape; ``maps`` is [A, Hf, Wf].

    ``hover`` is a plotly hover template for a cell (``%{x}``, ``%{y}``, ``%{z}``), after the
    shape's name. ``fixed_ranges``: each axis spans the whole grid whatever the data (NaN cells
    stay blank, in ``blank_colour``); otherwise each map keeps square cells. The grid of axes is
    laid out by hand and the figure is not validated (plotly's ``make_subplots`` and checks took
    85 ms for the nine 50 x 50 maps, a fifth of a labelling rerun under a class's load; this
    takes 9 ms)."""
    n_r, n_s = len(params.ratios), len(params.scales)
    hf, wf = maps.shape[1:]
    h_gap, v_gap = 0.03, 0.08
    width = (1 - (n_s - 1) * h_gap) / n_s
    height = (1 - (n_r - 1) * v_gap) / n_r
    data: list[dict[str, object]] = []
    layout: dict[str, object] = {}
    notes: list[dict[str, object]] = []
    bar = dict(thickness=14) | ({"title": dict(text=colorbar, side="right")} if colorbar else {})
    for k, name in enumerate(shape_names(params, stride)):
        r, c = divmod(k, n_s)
        suffix = "" if k == 0 else str(k + 1)
        x0 = c * (width + h_gap)
        y1 = 1 - r * (height + v_gap)
        data.append(
            dict(
                type="heatmap",
                z=maps[k],
                zmin=zmin,
                zmax=zmax,
                colorscale="Viridis",
                showscale=k == 0,
                colorbar=bar,
                xaxis=f"x{suffix}",
                yaxis=f"y{suffix}",
                hovertemplate=f"{name}<br>{hover}<extra></extra>",
            )
        )
        axis = dict(showticklabels=False, showgrid=False, zeroline=False)
        x_axis = dict(domain=[x0, x0 + width], anchor=f"y{suffix}", **axis)
        y_axis = dict(domain=[y1 - height, y1], anchor=f"x{suffix}", **axis)
        if fixed_ranges:
            x_axis["range"] = [-0.5, wf - 0.5]
            y_axis["range"] = [hf - 0.5, -0.5]
        else:
            y_axis |= dict(autorange="reversed", scaleanchor=f"x{suffix}", constrain="domain")
        layout[f"xaxis{suffix}"] = x_axis
        layout[f"yaxis{suffix}"] = y_axis
        notes.append(
            dict(
                text=name,
                x=x0 + width / 2,
                y=y1,
                xref="paper",
                yref="paper",
                xanchor="center",
                yanchor="bottom",
                showarrow=False,
                font=dict(size=11),
            )
        )
    layout.update(
        annotations=notes,
        height=260 * n_r,
        margin=dict(l=0, r=0, t=60 if title else 30, b=0),
        title=dict(text=title, x=0.01) if title else None,
    )
    if blank_colour:
        layout["plot_bgcolor"] = blank_colour
    return go.Figure({"data": data, "layout": layout}, _validate=False)


def shape_table(by_shape: np.ndarray, params: AnchorParams, stride: int) -> list[dict[str, object]]:
    """One row per anchor shape: its size and at how many cells it lies inside the image."""
    cells = by_shape.shape[1] * by_shape.shape[2]
    ratio, scale, inside, share = _("ratio h/w"), _("scale"), _("inside at cells"), _("share")
    rows = []
    for a, (r, s, w, h) in enumerate(shape_sizes(params, stride)):
        n = int(by_shape[a].sum())
        rows.append(
            {
                "a": a,
                ratio: f"{r:g}",
                scale: f"{s:g}",
                "w × h": f"{w:.0f} × {h:.0f}",
                inside: n,
                share: f"{100 * n / cells:.1f} %",
            }
        )
    return rows


def inside_heatmap(counts: np.ndarray, per_cell: int, picked: tuple[int, int]) -> go.Figure:
    """How many of each cell's anchors are inside (0..A), the picked cell ringed."""
    fig = go.Figure(
        go.Heatmap(
            z=counts,
            zmin=0,
            zmax=per_cell,
            colorscale="Viridis",
            colorbar=dict(title=dict(text=_("inside")), thickness=12),
            hovertemplate=_("cell (iy %{{y}}, ix %{{x}}): %{{z}} of {a}").format(a=per_cell)
            + "<extra></extra>",
        )
    )
    py, px = picked
    fig.add_trace(
        go.Scatter(
            x=[px],
            y=[py],
            mode="markers",
            marker=dict(color="rgba(0,0,0,0)", size=12, line=dict(color=PICKED_COLOUR, width=2)),
            hoverinfo="skip",
            showlegend=False,
        )
    )
    fig.update_yaxes(autorange="reversed", scaleanchor="x", showgrid=False, constrain="domain")
    fig.update_xaxes(showgrid=False, constrain="domain")
    fig.update_layout(
        height=420,
        margin=dict(l=0, r=0, t=30, b=0),
        title=dict(
            text=_("Anchors inside the image per cell (of {a})").format(a=per_cell),
            x=0.01,
            font=dict(size=13),
        ),
        xaxis_title="ix",  # i18n: keep (the cell's column index, as in the formulas)
        yaxis_title="iy",  # i18n: keep
    )
    return fig


def shape_maps_figure(by_shape: np.ndarray, params: AnchorParams, stride: int) -> go.Figure:
    """Per anchor shape (rows: ratio, columns: scale), the cells where it lies inside."""
    names = [
        f"r {r:g}, s {s:g} ({w:.0f}×{h:.0f}): {int(by_shape[a].sum())}"
        for a, (r, s, w, h) in enumerate(shape_sizes(params, stride))
    ]
    return tiled_heatmap(
        by_shape.astype(np.float64),
        names,
        cols=len(params.scales),
        colorscale=[[0, "#E5E7EB"], [1, "#16A34A"]],
        hover_name=_("inside (1 = yes)"),
        tile_px=200,
        showscale=False,
    )
