"""Stages 3 and 4: A anchors at every feature-map cell, and the ones that lie inside the image."""

from __future__ import annotations

import time

import pandas as pd
import streamlit as st

from explorer.views.anchors import (
    cell_anchors,
    cell_anchors_figure,
    cell_table,
    centres_figure,
    inside_by_shape,
    inside_heatmap,
    shape_maps_figure,
    shape_table,
)
from explorer.widgets import intro, page_guard, param_widget, run_or_stop, timing_caption
from frcnn_core.i18n import N_, _, number

CENTRES_KEY = "anchor_centres"
LAST_CLICK = "anchors_last_click"
IY, IX = "anchors_iy", "anchors_ix"
FIGURES = N_("figures")  # this page's own step in the timing caption


def apply_click(stride: float, feature_size: tuple[int, int]) -> None:
    """A click on a centre (the chart's selection) moves the cell sliders there, once."""
    event = st.session_state.get(CENTRES_KEY)
    points = list(event["selection"]["points"]) if event else []
    points = [p for p in points if "x" in p and "y" in p]
    if not points:
        st.session_state.pop(LAST_CLICK, None)
        return
    hf, wf = feature_size
    ix = round((float(points[0]["x"]) - stride / 2) / stride)
    iy = round((float(points[0]["y"]) - stride / 2) / stride)
    if (iy, ix) == st.session_state.get(LAST_CLICK) or not (0 <= iy < hf and 0 <= ix < wf):
        return
    st.session_state[LAST_CLICK] = (iy, ix)
    st.session_state[IY], st.session_state[IX] = iy, ix


intro(
    _("Anchors"),
    _(
        "An **anchor** is a reference box the detector starts from. Every cell of the feature "
        "map has a centre on the image (every *stride* = 16 pixels) and a fixed set of **A** "
        "anchors around it: each **scale** (size) in each **ratio** (height / width). The RPN "
        "predicts, for every anchor, whether it holds an object and how to nudge it onto the "
        "object. Anchors that stick out of the image are left out of training (the **inside** "
        "filter)."
    ),
    _("feature map Hf × Wf → anchors [Hf·Wf·A, 4] as (x1, y1, x2, y2) → inside index [K]"),
)

with page_guard():
    # Settings first: the run reads them when it is built.
    with st.sidebar:
        st.subheader(_("Anchor shapes"))
        scales = param_widget("anchors.scales")  # i18n: keep
        ratios = param_widget("anchors.ratios")  # i18n: keep
    run = run_or_stop()
    params = run.params.anchors
    stride = run.anchors.stride
    hf, wf = run.anchors.feature_size
    image = run.image
    h, w = image.size
    a_per_cell = params.per_cell

    started = time.perf_counter()
    grid = run.anchors
    apply_click(stride, (hf, wf))
    for key, size in ((IY, hf), (IX, wf)):
        # First visit: the middle cell; a smaller image since: the last row or column.
        value = st.session_state.get(key)
        if value is None or value > size - 1:
            st.session_state[key] = size // 2 if value is None else size - 1
    with st.sidebar:
        st.subheader(_("Picked cell"))
        st.caption(_("Click a centre on the image, or move these."))
        iy = st.slider(_("Row iy"), 0, hf - 1, key=IY)
        ix = st.slider(_("Column ix"), 0, wf - 1, key=IX)
        st.caption(
            _("Stride {stride} px is set by the backbone (four 2 × 2 pools), not here.").format(
                stride=stride
            )
        )

    cols = st.columns(5)
    cols[0].metric(
        _("Feature map"),
        f"{hf} × {wf}",
        help=_("{h} × {w} input / stride {stride}").format(h=h, w=w, stride=stride),
    )
    cols[1].metric(
        _("Anchors per cell (A)"),
        a_per_cell,
        help=_("{r} ratios × {s} scales").format(r=len(ratios), s=len(scales)),
    )
    cols[2].metric(_("Anchors"), number(grid.total), help=f"{hf} × {wf} × {a_per_cell}")
    cols[3].metric(_("Inside"), number(grid.inside), help="x1 ≥ 0, y1 ≥ 0, x2 ≤ W, y2 ≤ H")
    cols[4].metric(_("Outside"), number(grid.total - grid.inside), help=_("Cross the image border"))
    if grid.inside == 0:
        st.warning(
            _(
                "No anchor lies wholly inside the image: every anchor is larger than the image "
                "allows. Choose smaller scales."
            )
        )
    if a_per_cell != 9:
        st.info(
            _(
                "With A = {a} the RPN head's 1 × 1 convolutions output {scores} scores and "
                "{deltas} deltas per cell (the tutorial: 18 and 36). The RPN pages build a "
                "fresh, untrained head of that shape; a head trained with another A does not "
                "fit and is not used."
            ).format(a=a_per_cell, scores=2 * a_per_cell, deltas=4 * a_per_cell)
        )
    if params.bug_b1_x_outer:
        st.warning(
            _(
                "Bug B1 is on (Tutorial bugs page): anchors are numbered x-outer, "
                "(ix · Hf + iy) · A + a, so each is paired with the RPN output of the mirrored "
                "cell."
            )
        )

    picked = cell_anchors(grid, params, iy, ix)
    centre = tuple(float(v) for v in grid.centres[iy * wf + ix].tolist())
    left, right = st.columns(2)
    with left:
        st.markdown(
            _(
                "**{hf} × {wf} = {n} centres**, one per cell, every {stride} px: click one to "
                "pick its cell"
            ).format(hf=hf, wf=wf, n=number(hf * wf), stride=stride)
        )
        st.plotly_chart(
            centres_figure(image.pixels, grid.centres, (hf, wf), (iy, ix)),
            width="stretch",
            key=CENTRES_KEY,
            on_select="rerun",
            selection_mode="points",
        )
    with right:
        n_in = sum(c.inside for c in picked)
        st.markdown(
            _(
                "**The {a} anchors of cell (iy {iy}, ix {ix})**, centre ({x:.0f}, {y:.0f}): "
                "{inside} inside, {outside} outside"
            ).format(
                a=a_per_cell,
                iy=iy,
                ix=ix,
                x=centre[0],
                y=centre[1],
                inside=n_in,
                outside=a_per_cell - n_in,
            )
        )
        st.plotly_chart(
            cell_anchors_figure(image.pixels, picked, centre),
            width="stretch",
            key="cell_anchors",
        )
        st.caption(
            _(
                "Colour = ratio, line style = scale. Grey is padding around the image (dotted "
                "border) so anchors that cross it show in full."
            )
        )

    st.subheader(_("Where each anchor sits in the list"))
    if params.bug_b1_x_outer:
        order, numbers = r"(ix \cdot H_f + iy)", f"{ix} × {hf} + {iy}"
    else:
        order, numbers = r"(iy \cdot W_f + ix)", f"{iy} × {wf} + {ix}"
    st.markdown(
        _(
            "All anchors form one list, in the same order as the RPN's output after "
            "`permute(0, 2, 3, 1).reshape(1, -1, 4)`: row by row over the cells, and within a "
            "cell ratio by ratio, scale by scale."
        )
    )
    st.latex(
        rf"\text{{index}} = {order} \cdot A + a,\qquad "
        r"a = \text{ratio\_index} \cdot n_\text{scales} + \text{scale\_index}"
    )
    first = picked[0].index
    cell_number = first // a_per_cell
    st.markdown(
        _(
            "Cell (iy {iy}, ix {ix}) is cell number {numbers} = {cell}, so its anchors are "
            "**{first} … {last}** ({cell} × {a} + a)."
        ).format(
            iy=iy,
            ix=ix,
            numbers=numbers,
            cell=cell_number,
            first=number(first),
            last=number(picked[-1].index),
            a=a_per_cell,
        )
    )
    st.dataframe(pd.DataFrame(cell_table(picked)), hide_index=True, width="stretch")

    st.subheader(_("Inside or outside"))
    st.markdown(
        _(
            "**{inside} of {total}** anchors lie wholly inside the {h} × {w} image "
            "({share:.1f} %). Only these are labelled and trained on; large anchors near the "
            "border are the ones that drop out."
        ).format(
            inside=number(grid.inside),
            total=number(grid.total),
            h=h,
            w=w,
            share=100 * grid.inside / max(grid.total, 1),
        )
    )
    by_shape = inside_by_shape(grid, params)
    heat, table = st.columns([3, 2])
    with heat:
        st.plotly_chart(
            inside_heatmap(by_shape.sum(axis=0), a_per_cell, (iy, ix)),
            width="stretch",
            key="inside_heatmap",
        )
    with table:
        st.markdown(_("**Per anchor shape**: at how many of the cells it fits"))
        st.dataframe(
            pd.DataFrame(shape_table(by_shape, params, stride)), hide_index=True, width="stretch"
        )
    if st.toggle(_("Show a map per anchor shape"), key="anchors_shape_maps"):
        st.plotly_chart(
            shape_maps_figure(by_shape, params, stride), width="stretch", key="shape_maps"
        )
    # The step's name is shown translated (timing_caption calls _ on it).
    run.timings[FIGURES] = time.perf_counter() - started
    timing_caption(run, [FIGURES])
