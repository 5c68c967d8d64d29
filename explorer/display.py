"""How the app fits the screen it is shown on: the theme, a presentation setting, the width.

- **Theme**: Streamlit's own switch (the menu, top right: System / Light / Dark; the two themes
  are set in ``.streamlit/config.toml``). It works in the browser alone (no request leaves it).
  Figures are drawn with Streamlit's chart theme, which recolours their backgrounds, text and
  grid in the browser at once; the colours the app picks itself are chosen to read on both
  backgrounds, and :func:`style` adjusts the few that cannot (a near-black curve on a dark
  page), with the theme the browser last reported (:func:`theme`).
- **Presentation** (a sidebar toggle, per session): larger text in every figure (its fonts
  scaled by :data:`PRESENT_SCALE` when it is drawn, :func:`style`), in tables and in metrics.
- **Width**: :func:`main_width` mounts a tiny local component (no iframe, nothing fetched) that
  reports the width of the column it is in, so a page can size what cannot scale itself (the
  drawing canvas).

:func:`install` routes every ``st.plotly_chart`` (every page, every column) through
:func:`style`, so no page has to remember it; :func:`sidebar` (called by the router on every
run) draws the toggle and the page's CSS.
"""

from __future__ import annotations

import functools
import numbers
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import pandas as pd
import plotly.graph_objects as go
import streamlit as st
from pandas.api.types import is_bool_dtype, is_integer_dtype
from streamlit.delta_generator import DeltaGenerator

from frcnn_core.i18n import _

PRESENT = "display:presentation"  # session key: the presentation toggle
WIDTH = "display_width"  # key of the width probe (its container gets class st-key-display_width)
PRESENT_SCALE = 1.4
LIGHT, DARK = "light", "dark"
# On a dark page, a curve this dark vanishes; on a light one, a near-white curve does.
LIGHT_INK, DARK_INK = "#E5E7EB", "#1F2937"
DARK_LUMINANCE, LIGHT_LUMINANCE = 0.18, 0.92  # below / above: too dark / too light to read there
LEGEND_PROXY_COLOUR = "#9CA3AF"
# An image figure's legend sits on this chip: white and yellow legend lines read on it in both
# themes (drawn straight on a white page, a white dashed outline's legend entry was invisible).
LEGEND_CHIP = dict(bgcolor="rgba(17, 24, 39, 0.82)", font=dict(color="#F9FAFB"))


@dataclass(frozen=True)
class Display:
    """The session's display settings.

    Attributes:
        theme: ``"light"`` or ``"dark"``, as the browser last reported it.
        presentation: larger text for a projector.
    """

    theme: str = LIGHT
    presentation: bool = False

    @property
    def font_scale(self) -> float:
        return PRESENT_SCALE if self.presentation else 1.0


def theme() -> str:
    """The page's theme as the browser last reported it (light until it has)."""
    try:
        reported = st.context.theme.type
    except Exception:
        reported = None
    return DARK if reported == DARK else LIGHT


def current() -> Display:
    return Display(theme(), bool(st.session_state.get(PRESENT, False)))


# -- figures --------------------------------------------------------------------------------


def style(fig: Any, display: Display | None = None) -> Any:
    """``fig`` as this session shows it: fonts scaled for presentation, an image figure's legend
    on a dark chip, and curves that would vanish on the page recoloured.

    Never changes ``fig`` (it may be a cached figure other sessions show): returns ``fig``
    itself when nothing changes, else a styled copy that shares the traces' arrays. Anything
    but a plotly ``Figure`` passes through.
    """
    if not isinstance(fig, go.Figure):
        return fig
    display = display or current()
    is_image = bool(fig.layout.images)
    recolour = _recolour_map(fig, display.theme)
    k = display.font_scale
    if k == 1.0 and not is_image and not recolour:
        return fig
    # Shallow copies: the arrays (thousands of box outlines) are shared and never written.
    data = [dict(trace) for trace in fig._data]  # to_dict would copy every array
    layout = _tree_copy(fig._layout)
    if k != 1.0:
        scale_fonts(layout, data, k)
    if is_image:
        legend = layout.setdefault("legend", {})
        legend.setdefault("bgcolor", LEGEND_CHIP["bgcolor"])
        legend.setdefault("font", {}).setdefault("color", LEGEND_CHIP["font"]["color"])
        data = _legend_proxies(data)
    for trace in data:
        line = trace.get("line")
        if recolour and isinstance(line, dict) and line.get("color") in recolour:
            trace["line"] = {**line, "color": recolour[line["color"]]}
    return go.Figure({"data": data, "layout": layout}, _validate=False)


def _tree_copy(value: Any) -> Any:
    """A copy of the dicts and lists of a figure's layout; the values in them (numbers, text,
    arrays) are shared, as they are never written. ``copy.deepcopy`` took a tenth of every
    figure's serving time under a class's load."""
    if isinstance(value, dict):
        return {k: _tree_copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_tree_copy(v) for v in value]
    return value


def _legend_proxies(data: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A near-black line (an image border drawn on a grey margin) would vanish on the legend
    chip: its legend entry becomes a grey line of the same dash, grouped with it (a click on
    the entry still hides and shows the line)."""
    out: list[dict[str, Any]] = []
    for i, trace in enumerate(data):
        line = trace.get("line") if isinstance(trace.get("line"), dict) else {}
        lum = _luminance(line.get("color"))
        shown = trace.get("showlegend") is not False and trace.get("name")
        if shown and lum is not None and lum < DARK_LUMINANCE and "lines" in str(trace.get("mode")):
            group = trace.get("legendgroup") or f"legend-proxy-{i}"
            out.append(
                {
                    "type": "scatter",
                    "x": [None],
                    "y": [None],
                    "mode": "lines",
                    "name": trace["name"],
                    "legendgroup": group,
                    "line": {**line, "color": LEGEND_PROXY_COLOUR},
                    "hoverinfo": "skip",
                }
            )
            trace = {**trace, "legendgroup": group, "showlegend": False}
        out.append(trace)
    return out


# The sizes (px) Streamlit's chart theme gives what a figure leaves unset: those are scaled too.
THEME_SIZES = {"base": 12, "title": 16, "axis_title": 14, "legend": 12, "tick": 12}
COLORBAR_TRACES = {"heatmap", "contour", "histogram2d", "histogram2dcontour"}


def _scale(font: Any, k: float, default: float) -> dict[str, Any]:
    """A copy of ``font`` with its size (or ``default``) times ``k``."""
    out = dict(font) if isinstance(font, dict) else {}
    size = out.get("size")
    out["size"] = round((size if isinstance(size, int | float) else default) * k, 1)
    return out


def scale_fonts(layout: dict[str, Any], data: list[dict[str, Any]], k: float) -> None:
    """Every text of a figure ``k`` times larger (in place, on copies): the base font, the
    title, the legend, each axis's ticks and title, annotations, colour bars, hover labels and
    the traces' text labels."""
    layout["font"] = _scale(layout.get("font"), k, THEME_SIZES["base"])
    base = layout["font"]["size"] / k
    title = layout.get("title")
    if isinstance(title, dict) and title.get("text"):
        layout["title"] = {**title, "font": _scale(title.get("font"), k, THEME_SIZES["title"])}
    legend = layout.get("legend") if isinstance(layout.get("legend"), dict) else {}
    layout["legend"] = {**legend, "font": _scale(legend.get("font"), k, THEME_SIZES["legend"])}
    layout["hoverlabel"] = {
        **(layout.get("hoverlabel") or {}),
        "font": _scale((layout.get("hoverlabel") or {}).get("font"), k, base),
    }
    for key, axis in list(layout.items()):
        if key.startswith(("xaxis", "yaxis")) and isinstance(axis, dict):
            axis = {**axis, "tickfont": _scale(axis.get("tickfont"), k, THEME_SIZES["tick"])}
            if isinstance(axis.get("title"), dict) and axis["title"].get("text"):
                axis["title"] = {
                    **axis["title"],
                    "font": _scale(axis["title"].get("font"), k, THEME_SIZES["axis_title"]),
                }
            axis.setdefault("automargin", True)  # larger labels take room from the plot
            layout[key] = axis
    layout["annotations"] = [
        {**a, "font": _scale(a.get("font"), k, base)} if isinstance(a, dict) else a
        for a in layout.get("annotations") or []
    ]
    for trace in data:
        if trace.get("text") is not None or "textfont" in trace:
            trace["textfont"] = _scale(trace.get("textfont"), k, base)
        if trace.get("type") in COLORBAR_TRACES or isinstance(trace.get("colorbar"), dict):
            bar = trace.get("colorbar") or {}
            trace["colorbar"] = {**bar, "tickfont": _scale(bar.get("tickfont"), k, base)}
        marker = trace.get("marker")
        if isinstance(marker, dict) and isinstance(marker.get("colorbar"), dict):
            bar = marker["colorbar"]
            trace["marker"] = {
                **marker,
                "colorbar": {**bar, "tickfont": _scale(bar.get("tickfont"), k, base)},
            }


def _luminance(colour: Any) -> float | None:
    """Relative luminance of a ``#RRGGBB`` colour (0 black .. 1 white); None for others."""
    if not isinstance(colour, str) or len(colour) != 7 or not colour.startswith("#"):
        return None
    try:
        r, g, b = (int(colour[i : i + 2], 16) / 255 for i in (1, 3, 5))
    except ValueError:
        return None
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def _recolour_map(fig: go.Figure, page_theme: str) -> dict[str, str]:
    """Line colours of a chart drawn on the page's own background (not on a picture, not on a
    plot background of its own) that would vanish there: a map to the theme's ink."""
    if fig.layout.images or fig.layout.plot_bgcolor:
        return {}
    out: dict[str, str] = {}
    for colour in _line_colours(fig.data):
        lum = _luminance(colour)
        if lum is None:
            continue
        if page_theme == DARK and lum < DARK_LUMINANCE:
            out[colour] = LIGHT_INK
        elif page_theme == LIGHT and lum > LIGHT_LUMINANCE:
            out[colour] = DARK_INK
    return out


def _line_colours(traces: Iterable[Any]) -> set[str]:
    found: set[str] = set()
    for trace in traces:
        line = getattr(trace, "line", None)
        colour = getattr(line, "color", None) if line is not None else None
        if isinstance(colour, str):
            found.add(colour)
    return found


# -- every chart, metric and table through here -----------------------------------------------

_INSTALLED = "_frcnn_display"


def metric_value(value: Any) -> Any:
    """A whole number as the pages write counts, with thousands separators ("7,469", never
    "7469" next to "8,940"); anything else (text, a float a page formatted) unchanged."""
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        return f"{int(value):,}"
    return value


def table_columns(data: Any, column_config: Any) -> tuple[Any, Any]:
    """Whole-number columns of a table (a DataFrame or a dict of columns) that reach 1,000 get
    thousands separators like every metric, unless the page configured the column itself."""
    if isinstance(data, dict):
        try:
            data = pd.DataFrame(data)
        except (ValueError, TypeError):
            return data, column_config
    if not isinstance(data, pd.DataFrame) or not isinstance(column_config, dict | None):
        return data, column_config
    config = dict(column_config or {})
    for name in data.columns:
        column = data[name]
        if str(name) in config or name in config or not is_integer_dtype(column):
            continue
        if is_bool_dtype(column) or not len(column) or column.abs().max() < 1000:
            continue
        config[name] = st.column_config.NumberColumn(format="localized")
    return data, config or column_config


def install() -> None:
    """Route ``plotly_chart``, ``metric`` and ``dataframe`` (``st.*`` and every container's)
    through :func:`style`, :func:`metric_value` and :func:`table_columns`.

    Idempotent (the router calls it on every run). The one place that knows: pages keep calling
    them as Streamlit documents them.
    """
    if getattr(DeltaGenerator.plotly_chart, _INSTALLED, False):
        return

    def plotly_chart(original: Any, self: Any, figure_or_data: Any, *args: Any, **kw: Any) -> Any:
        return original(self, style(figure_or_data), *args, **kw)

    def metric(original: Any, self: Any, *args: Any, **kw: Any) -> Any:
        if len(args) >= 2:
            args = (args[0], metric_value(args[1]), *args[2:])
        elif "value" in kw:
            kw["value"] = metric_value(kw["value"])
        return original(self, *args, **kw)

    def dataframe(original: Any, self: Any, *args: Any, **kw: Any) -> Any:
        data = args[0] if args else kw.pop("data", None)
        data, config = table_columns(data, kw.get("column_config"))
        if config is not None:
            kw["column_config"] = config
        return original(self, data, *args[1:], **kw)

    for name, wrapper in (("plotly_chart", plotly_chart), ("metric", metric)):
        _patch(name, wrapper)
    _patch("dataframe", dataframe)


def _patch(name: str, wrapper: Any) -> None:
    original = getattr(DeltaGenerator, name)

    @functools.wraps(original)
    def method(self: DeltaGenerator, *args: Any, **kwargs: Any) -> Any:
        return wrapper(original, self, *args, **kwargs)

    setattr(method, _INSTALLED, True)
    setattr(DeltaGenerator, name, method)
    # ``st.<name>`` was bound to the main container when streamlit was imported.
    setattr(st, name, functools.partial(method, st._main))


# -- the width probe ---------------------------------------------------------------------------

# Reports the width (CSS px) of the column it is mounted in, once and then whenever it changes
# by HYSTERESIS_PX or more: a scroll bar coming and going (15 px) never makes a page re-fit.
PROBE_JS = """
export default function (component) {
  const { setStateValue, parentElement, data } = component;
  const host = parentElement.closest('[data-testid="stVerticalBlock"]') || parentElement;
  const step = (data && data.hysteresis) || 32;
  let sent = null;
  const report = () => {
    const width = Math.floor(host.getBoundingClientRect().width);
    if (width > 0 && (sent === null || Math.abs(width - sent) >= step)) {
      sent = width;
      setStateValue('width', width);
    }
  };
  const observer = new ResizeObserver(report);
  observer.observe(host);
  report();
  return () => observer.disconnect();
}
"""
HYSTERESIS_PX = 32
_probe = st.components.v2.component(
    "frcnn_explorer.width_probe", html="<span></span>", js=PROBE_JS, isolate_styles=False
)


def main_width(key: str = WIDTH) -> int | None:
    """The width (CSS px) of the column this is called in, as the browser last reported it;
    None before it has (the first run of a page in a session, and in AppTest)."""
    result = _probe(
        key=key,
        data={"hysteresis": HYSTERESIS_PX},
        default={"width": None},
        on_width_change=_ignore,
        width="stretch",
        height="content",
    )
    width = result.get("width") if isinstance(result, Mapping) else getattr(result, "width", None)
    return int(width) if isinstance(width, int | float) and width > 0 else None


def _ignore() -> None:
    """The probe's callback: its value is read where the page needs it."""


# Scales every display formula down (to 55 % at most) until it fits its column: KaTeX cannot wrap,
# and a formula cut at the column's edge hid half of what it says. Installed once per page load;
# it only restyles, it never reports (no rerun).
FIT_JS = """
export default function (component) {
  const doc = component.parentElement.ownerDocument || document;
  const win = doc.defaultView || window;
  if (win.__frcnnFitFormulas) return;
  win.__frcnnFitFormulas = true;
  const fit = (box) => {
    const formula = box.querySelector(':scope > .katex');
    if (!formula) return;
    formula.style.fontSize = '';
    const room = box.clientWidth, need = formula.scrollWidth;
    if (room > 0 && need > room) {
      const k = Math.max(0.55, (room / need) * 0.98);
      formula.style.fontSize = (k * parseFloat(win.getComputedStyle(formula).fontSize)) + 'px';
    }
  };
  let queued = false;
  const watched = new WeakSet();
  const resized = new win.ResizeObserver((entries) => entries.forEach((e) => fit(e.target)));
  const all = () => {
    if (queued) return;
    queued = true;
    win.requestAnimationFrame(() => {
      queued = false;
      doc.querySelectorAll('.katex-display').forEach((box) => {
        if (!watched.has(box)) { watched.add(box); resized.observe(box); }
        fit(box);
      });
    });
  };
  new win.MutationObserver(all).observe(doc.body, { childList: true, subtree: true });
  all();
}
"""
_fitter = st.components.v2.component(
    "frcnn_explorer.fit_formulas", html="<span></span>", js=FIT_JS, isolate_styles=False
)


# -- sidebar and CSS ---------------------------------------------------------------------------

# Always: metric values and labels wrap instead of ending in "…"; columns too narrow for their
# content go under each other (at 150 % zoom of a 1280 px window the main column is ~550 px);
# a formula wider than its column scrolls instead of being cut; the probe takes no room.
CSS = """
[data-testid="stMetricValue"] .stMarkdownEllipsis, [data-testid="stMetricValue"] p,
[data-testid="stMetricLabel"] .stMarkdownEllipsis, [data-testid="stMetricLabel"] p {
  white-space: normal !important; overflow: visible !important;
  text-overflow: clip !important; overflow-wrap: anywhere;
}
[data-testid="stMetricValue"] { font-size: clamp(1.35rem, 2.6vw, 2.25rem); line-height: 1.2; }
[data-testid="stHorizontalBlock"] { flex-wrap: wrap; row-gap: 0.75rem; }
[data-testid="stHorizontalBlock"] > [data-testid="stColumn"] { min-width: min(100%, 19rem); }
[data-testid="stHorizontalBlock"] > [data-testid="stColumn"]:has([data-testid="stMetric"]),
[data-testid="stHorizontalBlock"] > [data-testid="stColumn"]:has(.stButton),
[data-testid="stHorizontalBlock"] > [data-testid="stColumn"]:has(.stDownloadButton) {
  min-width: min(100%, 7.5rem);
}
.katex-display { overflow-x: auto; overflow-y: hidden; padding: 0.1rem 0; }
.st-key-display_width, .st-key-display_fit { display: none; }
"""
# Presentation: larger table text (a grid draws on a canvas, so the whole read-only table is
# zoomed; the box editor keeps its size, so a click lands on the cell under the pointer) and
# larger metric values.
PRESENT_CSS = """
:not([class*="st-key-image_page-table"]) > .stDataFrame { zoom: 1.3; }
[data-testid="stMetricValue"] { font-size: clamp(1.6rem, 3.2vw, 2.75rem); }
[data-testid="stMetricLabel"] p { font-size: 1.05rem; }
"""


def sidebar() -> Display:
    """The presentation toggle (in the sidebar, where the router calls this) and the page's CSS;
    returns the session's display settings."""
    st.toggle(
        _("Presentation (larger plot and table text)"),
        key=PRESENT,
        help=_(
            "For a projector: larger text in every figure, table and metric of this session. "
            "The light/dark theme is in the menu at the top right."
        ),
    )
    display = current()
    st.html(f"<style>{CSS}{PRESENT_CSS if display.presentation else ''}</style>")
    _fitter(key="display_fit", height="content")
    return display
