"""Click to inspect, shared by the pages: a clickable marker at the centre of every drawn box,
reading which marker was clicked, and turning a new click into the page's pick.

A figure's markers are one SVG ``Scatter`` trace whose ``customdata`` is each box's index (an
anchor, a RoI, a detection). ``st.plotly_chart(fig, key=K, on_select="rerun",
selection_mode="points")`` puts the clicked points in ``st.session_state[K]["selection"]
["points"]``; :func:`take_click` moves the page's picker (a selectbox or number input keyed
``pick``) there once, so that the picker can still change the pick afterwards.
"""

from __future__ import annotations

from collections.abc import Mapping, MutableMapping, Sequence
from typing import Any

import numpy as np
import plotly.graph_objects as go
import torch

from explorer.text import MAX_MESSAGE_CHARS, html_text
from frcnn_core.i18n import _

PICKED_COLOUR = "#FFFFFF"
PARTNER_COLOUR = "#F97316"  # the box that explains the picked one (its suppressor, its GT)


def centre_markers(
    boxes: torch.Tensor | np.ndarray,
    index: Sequence[int] | np.ndarray | torch.Tensor,
    text: Sequence[str],
    colours: str | Sequence[str],
    name: str,
    size: float = 7.0,
    escape: bool = True,
) -> go.Scatter:
    """One marker at the centre of each box, for clicking: ``customdata`` is ``index``.

    SVG, not WebGL: a few hundred markers cost nothing, and no WebGL context is set up. Per-
    marker colours travel as numbers into a colour scale of the few colours used: plotly checks
    every colour string of a list one by one, which took longer than the rest of a figure of
    4,000 markers.

    Args:
        boxes (Tensor[B, 4]): (x1, y1, x2, y2).
        index: the B indices a click reports.
        text: B hover texts.
        colours: one colour, or one per marker.
        escape: ``text`` holds the user's text (labels, class names): make it inert. Text the
            app wrote itself from numbers can skip this.
    """
    b = boxes.detach().cpu().numpy() if isinstance(boxes, torch.Tensor) else np.asarray(boxes)
    b = b.reshape(-1, 4).astype(np.float64)
    if isinstance(index, torch.Tensor):
        index = index.detach().cpu().numpy()
    marker: dict[str, Any] = dict(size=size, line=dict(color="#000000", width=1))
    if isinstance(colours, str):
        marker["color"] = colours
    else:
        palette = sorted(set(colours))
        if len(palette) == 1:
            marker["color"] = palette[0]
        else:
            code = {c: i for i, c in enumerate(palette)}
            last = len(palette) - 1
            marker.update(
                color=np.array([code[c] for c in colours], dtype=np.int16),
                colorscale=[[i / last, c] for i, c in enumerate(palette)],
                cmin=0,
                cmax=last,
                showscale=False,
            )
    return go.Scatter(
        x=(b[:, 0] + b[:, 2]) / 2,
        y=(b[:, 1] + b[:, 3]) / 2,
        mode="markers",
        name=name,
        marker=marker,
        customdata=np.asarray(index, dtype=np.int64),
        text=[html_text(t, MAX_MESSAGE_CHARS) for t in text] if escape else list(text),
        hoverinfo="text",
        showlegend=False,  # the page's caption says what the dots are for
        # A selected marker must not fade the others out: they stay clickable and readable.
        unselected=dict(marker=dict(opacity=0.85)),
    )


def clickable(fig: go.Figure) -> go.Figure:
    """A click selects the marker under the pointer (and tells the app)."""
    fig.layout.clickmode = "event+select"
    return fig


def clicked_indices(event: Mapping[str, Any] | None) -> list[int]:
    """The ``customdata`` indices of the selected points of a ``plotly_chart`` selection event;
    points of traces without ``customdata`` (outlines, text) are ignored."""
    points = ((event or {}).get("selection") or {}).get("points") or []
    out = []
    for point in points:
        value = point.get("customdata") if isinstance(point, Mapping) else None
        if isinstance(value, list | tuple):
            value = value[0] if value else None
        if isinstance(value, int | float) and not isinstance(value, bool):
            out.append(int(value))
    return out


def take_click(state: MutableMapping[str, Any], figures: Sequence[str], pick: str) -> bool:
    """Set ``state[pick]`` to a newly clicked marker of any of the ``figures`` (chart keys).

    A click is taken once: the clicked indices of each chart are remembered under
    ``"<chart key>:seen"``, and only a change sets the pick, so a pick made with the picker
    afterwards stays. Returns whether the pick was set.
    """
    taken = False
    for key in figures:
        clicked = clicked_indices(state.get(key))
        seen = f"{key}:seen"
        if clicked and clicked != state.get(seen) and not taken:
            state[pick] = clicked[0]
            taken = True
        state[seen] = clicked
    return taken


def class_probs_figure(
    probs: Sequence[float],
    names: Sequence[str],
    true_class: int | None = None,
    height: int = 240,
    title: str | None = None,
) -> go.Figure:
    """The head's softmax over background and the C classes as bars, the true class marked.
    ``title`` defaults to "Class probabilities" in the session's language."""
    if title is None:
        title = _("Class probabilities")
    values = [float(p) for p in probs]
    labels = [f"{i}: {html_text(n, 40)}" for i, n in enumerate(names)]
    colours = ["#94A3B8" if i == 0 else "#2563EB" for i in range(len(values))]
    if true_class is not None and 0 <= true_class < len(values):
        colours[true_class] = "#22C55E"
    return go.Figure(
        go.Bar(
            x=labels,
            y=values,
            marker_color=colours,
            text=[f"{v:.3f}" for v in values],
            textposition="outside",
            cliponaxis=False,
            hovertemplate="%{x}: %{y:.4f}<extra></extra>",
        ),
        layout=dict(
            height=height,
            margin=dict(l=0, r=0, t=30, b=0),
            yaxis=dict(range=[0, 1.15], title=_("probability")),
            title=dict(text=title, x=0.01, font=dict(size=13)),
            showlegend=False,
        ),
    )
