"""Figures of the Train page: the loss curves."""

from __future__ import annotations

import plotly.graph_objects as go

from explorer.figures import LOSS_COLOURS
from frcnn_core.i18n import _
from frcnn_core.train import LOSS_NAMES


def loss_curves(history: list[dict[str, float]], height: int = 380) -> go.Figure:
    """One line per loss term over the iterations (total thicker)."""
    fig = go.Figure()
    steps = list(range(1, len(history) + 1))
    for name in LOSS_NAMES:
        fig.add_trace(
            go.Scatter(
                x=steps,
                y=[h[name] for h in history],
                mode="lines+markers" if len(history) < 40 else "lines",
                name=name,
                line=dict(color=LOSS_COLOURS[name], width=3 if name == "total" else 1.8),
            )
        )
    fig.update_layout(
        height=height,
        margin=dict(l=0, r=0, t=10, b=0),
        xaxis_title=_("iteration"),
        yaxis_title=_("loss"),
        legend=dict(orientation="h", yanchor="bottom", y=1.0, x=0),
        uirevision="losses",
    )
    fig.update_xaxes(rangemode="tozero")
    fig.update_yaxes(rangemode="tozero")
    return fig
