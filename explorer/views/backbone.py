"""Figures and tables of stage 2: VGG16's layers and shapes, feature channels, a channel over
the image.

The layer table is plain arithmetic over the module's layers (a 3 x 3 convolution with padding 1
keeps the size, a 2 x 2 max-pool with stride 2 halves it, rounding down), so it never runs the
network again.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import plotly.graph_objects as go
import torch
from torch import nn

from explorer.figures import image_figure
from frcnn_core.i18n import _


@dataclass(frozen=True)
class LayerRow:
    """One layer of the backbone and what comes out of it for a given input size.

    Attributes:
        index: position in ``vgg16().features``.
        name: the paper's name (``conv1_1``, ``relu1_1``, ``pool1`` ...).
        kind: the module (``Conv2d(3→64, 3×3, pad 1)`` ...).
        shape: (C, H, W) of the output.
        parameters: weights and biases of this layer.
        stride: input pixels per output cell (16 after the fourth pool).
        receptive_field: input pixels one output cell sees, along each side.
    """

    index: int
    name: str
    kind: str
    shape: tuple[int, int, int]
    parameters: int
    stride: int
    receptive_field: int

    def as_dict(self) -> dict[str, object]:
        """The row for a table, headers in the session's language (the Parameters column's
        ``column_config`` key is ``_("parameters")`` too)."""
        c, h, w = self.shape
        return {
            _("index"): self.index,
            _("layer"): self.name,
            _("module"): self.kind,
            _("output shape (C × H × W)"): f"{c} × {h} × {w}",
            _("parameters"): self.parameters,
            _("stride"): self.stride,
            _("receptive field"): self.receptive_field,
        }


def _pair(v: int | tuple[int, ...]) -> int:
    """Square kernels only (VGG16's are): one number for both sides."""
    return int(v[0]) if isinstance(v, tuple) else int(v)


def _out_size(size: int, kernel: int, stride: int, padding: int, ceil: bool = False) -> int:
    span = size + 2 * padding - kernel
    steps = math.ceil(span / stride) if ceil else span // stride
    return steps + 1


def layer_table(
    module: nn.Sequential, input_size: tuple[int, int], in_channels: int = 3
) -> list[LayerRow]:
    """The output shape of every layer of ``module`` for an ``input_size = (H, W)`` image.

    Args:
        module: VGG16 ``features[:30]`` (Conv2d, ReLU and MaxPool2d layers).
        input_size: (H, W) of the input frame, e.g. (800, 800).

    Returns:
        One row per layer; the last row's shape is the feature map's, (512, H // 16, W // 16).

    Raises:
        TypeError: a layer this arithmetic does not know.
    """
    c, h, w = in_channels, *input_size
    block, conv_in_block = 1, 0
    jump, field = 1, 1
    rows = []
    for index, layer in enumerate(module):
        if isinstance(layer, nn.Conv2d):
            conv_in_block += 1
            k, s, p = _pair(layer.kernel_size), _pair(layer.stride), _pair(layer.padding)
            h, w = _out_size(h, k, s, p), _out_size(w, k, s, p)
            kind = f"Conv2d({c}→{layer.out_channels}, {k}×{k}, pad {p})"
            c = layer.out_channels
            name = f"conv{block}_{conv_in_block}"
        elif isinstance(layer, nn.ReLU):
            k, s = 1, 1
            kind, name = "ReLU", f"relu{block}_{conv_in_block}"
        elif isinstance(layer, nn.MaxPool2d):
            k, s, p = _pair(layer.kernel_size), _pair(layer.stride), _pair(layer.padding)
            h = _out_size(h, k, s, p, bool(layer.ceil_mode))
            w = _out_size(w, k, s, p, bool(layer.ceil_mode))
            kind, name = f"MaxPool2d({k}×{k}, stride {s})", f"pool{block}"
            block, conv_in_block = block + 1, 0
        else:
            raise TypeError(f"layer {index} ({type(layer).__name__}) is not Conv2d/ReLU/MaxPool2d")
        # Receptive field: each layer widens it by (k - 1) input strides so far.
        field += (k - 1) * jump
        jump *= s
        params = sum(int(t.numel()) for t in layer.parameters())
        rows.append(LayerRow(index, name, kind, (c, h, w), params, jump, field))
    return rows


def channel_ranking(features: torch.Tensor) -> np.ndarray:
    """Mean activation of every channel of a [1, C, Hf, Wf] map, as a float array [C]."""
    return features[0].detach().float().mean(dim=(1, 2)).cpu().numpy()


def _minmax(x: np.ndarray) -> np.ndarray:
    lo, hi = float(x.min()), float(x.max())
    return (x - lo) / (hi - lo) if hi > lo else np.zeros_like(x)


def tiled_heatmap(
    maps: np.ndarray,
    titles: list[str],
    cols: int = 4,
    raw: np.ndarray | None = None,
    colorscale: str | list = "Viridis",
    zmin: float = 0.0,
    zmax: float = 1.0,
    hover_name: str = "value",
    tile_px: int = 230,
    showscale: bool = True,
) -> go.Figure:
    """Several [Hf, Wf] maps as tiles of ONE heatmap (NaN gaps between them, a title above
    each): a single trace and axis, so it builds in milliseconds where ``make_subplots`` with a
    dozen panels takes hundreds. ``raw`` (same shape as ``maps``) is shown on hover."""
    n, hf, wf = maps.shape
    cols = max(1, min(cols, n))
    rows = max(1, math.ceil(n / cols))
    gap_x, gap_y = max(2, wf // 12), max(6, hf // 5)  # room for the titles above each tile
    height, width = rows * (hf + gap_y), cols * (wf + gap_x) - gap_x
    z = np.full((height, width), np.nan)
    # customdata per pixel: map index, iy, ix, raw value (NaN in the gaps).
    custom = np.full((height, width, 4), np.nan)
    raw = maps if raw is None else raw
    iy, ix = np.mgrid[0:hf, 0:wf]
    annotations = []
    for k in range(n):
        r, q = divmod(k, cols)
        y0, x0 = r * (hf + gap_y) + gap_y, q * (wf + gap_x)
        z[y0 : y0 + hf, x0 : x0 + wf] = maps[k]
        custom[y0 : y0 + hf, x0 : x0 + wf] = np.stack(
            (np.full((hf, wf), k), iy, ix, raw[k]), axis=-1
        )
        annotations.append(
            dict(
                x=x0 + wf / 2 - 0.5,
                y=y0 - 1,
                text=titles[k],
                showarrow=False,
                yanchor="bottom",
                font=dict(size=12),
            )
        )
    fig = go.Figure(
        go.Heatmap(
            z=z,
            customdata=custom,
            colorscale=colorscale,
            zmin=zmin,
            zmax=zmax,
            hoverongaps=False,
            showscale=showscale,
            colorbar=dict(thickness=12),
            hovertemplate=_(
                "cell (iy %{{customdata[1]}}, ix %{{customdata[2]}})<br>"
                "{name} %{{customdata[3]:.3f}}"
            ).format(name=hover_name)
            + "<extra></extra>",
        )
    )
    fig.update_yaxes(
        autorange="reversed", scaleanchor="x", visible=False, showgrid=False, constrain="domain"
    )
    fig.update_xaxes(visible=False, showgrid=False, constrain="domain")
    fig.update_layout(
        annotations=annotations,
        height=int(tile_px * rows * (hf + gap_y) / hf) + 10,
        margin=dict(l=0, r=0, t=0, b=0),
        plot_bgcolor="rgba(0,0,0,0)",
    )
    return fig


def feature_grid_figure(features: torch.Tensor, channels: list[int], cols: int = 4) -> go.Figure:
    """The chosen channels of a [1, C, Hf, Wf] map as a grid, each min-max scaled to 0..1 on
    its own (so a weak channel still shows its pattern); hover gives the raw activation."""
    fmap = features[0].detach().float().cpu().numpy()
    raw = fmap[list(channels)]  # [K, Hf, Wf]
    scaled = np.stack([_minmax(x) for x in raw])
    titles = [
        _("ch {ch} · max {top:.2f}").format(ch=ch, top=x.max())
        for ch, x in zip(channels, raw, strict=True)
    ]
    return tiled_heatmap(scaled, titles, cols, raw=raw, hover_name=_("activation"))


def channel_overlay_figure(
    pixels: np.ndarray,
    channel_map: np.ndarray,
    channel: int,
    opacity: float = 0.5,
    height: int = 560,
) -> go.Figure:
    """One [Hf, Wf] channel stretched over the image it came from, as a translucent heatmap.

    Cell (iy, ix) covers input pixels ``[16 iy, 16 iy + 16) x [16 ix, 16 ix + 16)`` (for a
    stride of ``H / Hf``); the browser smooths between cell centres, as an upsampling would.
    """
    h, w = pixels.shape[:2]
    hf, wf = channel_map.shape
    sy, sx = h / hf, w / wf
    fig = image_figure(
        pixels, height=height, title=_("channel {ch} over the image").format(ch=channel)
    )
    fig.add_trace(
        go.Heatmap(
            z=_minmax(channel_map.astype(np.float64)),
            customdata=channel_map,
            x0=sx / 2,
            dx=sx,
            y0=sy / 2,
            dy=sy,
            zmin=0,
            zmax=1,
            zsmooth="best",
            colorscale="Inferno",
            opacity=opacity,
            showscale=False,
            hovertemplate=_("pixel (x %{x:.0f}, y %{y:.0f})<br>activation %{customdata:.3f}")
            + "<extra></extra>",
        )
    )
    fig.update_layout(showlegend=False)
    return fig


def ranking_figure(means: np.ndarray, highlight: list[int]) -> go.Figure:
    """Mean activation of every channel, sorted, with the shown channels marked."""
    order = np.argsort(-means)
    rank = {int(ch): r for r, ch in enumerate(order)}
    fig = go.Figure(
        go.Scattergl(
            x=np.arange(len(means)),
            y=means[order],
            mode="lines",
            line=dict(color="#64748B"),
            name=_("all channels"),
            customdata=order,
            hovertemplate=_("rank %{x}: ch %{customdata}, mean %{y:.3f}") + "<extra></extra>",
        )
    )
    if highlight:
        fig.add_trace(
            go.Scattergl(
                x=[rank[c] for c in highlight],
                y=[float(means[c]) for c in highlight],
                mode="markers",
                marker=dict(color="#A855F7", size=8),
                name=_("shown"),
                text=[_("ch {ch}").format(ch=c) for c in highlight],
                hovertemplate=_("%{text}: mean %{y:.3f}") + "<extra></extra>",
            )
        )
    fig.update_layout(
        height=220,
        margin=dict(l=0, r=0, t=30, b=0),
        title=dict(text=_("Mean activation per channel, sorted"), x=0.01, font=dict(size=13)),
        xaxis_title=_("rank"),
        yaxis_title=_("mean"),
        showlegend=False,
    )
    return fig
