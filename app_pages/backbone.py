"""Stage 2: VGG16 turns the 800 x 800 image into a 512 x 50 x 50 feature map."""

from __future__ import annotations

import time

import pandas as pd
import streamlit as st

from explorer import models, runtime
from explorer.views.backbone import (
    channel_overlay_figure,
    channel_ranking,
    feature_grid_figure,
    layer_table,
    ranking_figure,
)
from explorer.widgets import intro, page_guard, param_widget, run_or_stop, timing_caption
from frcnn_core.backbone import WEIGHTS_ENV, imagenet_cache_path
from frcnn_core.i18n import N_, _, number
from frcnn_core.render import most_active_channels

# The radio's values (compared below and by the tests); shown translated.
MOST_ACTIVE = N_("most active")
CHOSEN = N_("chosen")
FIGURES = N_("figures")  # this page's own step in the timing caption

intro(
    _("Backbone: VGG16"),
    _(
        "The backbone is the first 30 layers of **VGG16**, an image classifier: thirteen 3 × 3 "
        "convolutions, each followed by a ReLU, and four 2 × 2 max-pools. Every pool halves the "
        "picture, so after four of them one **cell** of the output stands for a 16 × 16 patch "
        "of the input (the **stride**). Each of the 512 output **channels** is a detector of "
        "some pattern; a bright cell means the pattern is there. Everything after this page "
        "works on this feature map, not on the pixels."
    ),
    _("image [H, W, 3] → 13 × (conv 3×3 + ReLU), 4 × max-pool 2×2 → features [1, 512, H/16, W/16]"),
)

with page_guard():
    # Settings first: the run reads them when it is built.
    with st.sidebar:
        st.subheader(_("Backbone"))
        normalize = param_widget("backbone.normalize")  # i18n: keep
        st.subheader(_("Feature channels"))
        # Shown through a dict made in this run's language, not through _ itself: Streamlit
        # (and AppTest, outside the script's thread) may call format_func later.
        modes = {MOST_ACTIVE: _(MOST_ACTIVE), CHOSEN: _(CHOSEN)}
        mode = st.radio(
            _("Show"),
            list(modes),
            horizontal=True,
            key="backbone_channel_mode",
            format_func=modes.__getitem__,
            help=_("Most active: highest mean activation over the map."),
        )
    run = run_or_stop()

    image = run.image
    h, w = image.size
    features = run.backbone.features.cpu()  # [1, C, Hf, Wf]
    c, hf, wf = (int(v) for v in features.shape[1:])
    seconds = run.backbone.seconds
    backbone = models.backbone()
    stride = run.spec.stride

    with st.sidebar:
        if mode == MOST_ACTIVE:
            count = st.slider(_("How many channels"), 4, 32, 16, 4, key="backbone_n_channels")
            channels = most_active_channels(features, count)
        else:
            channels = st.multiselect(
                _("Channels"),
                list(range(c)),
                default=list(range(8)),
                max_selections=32,
                key="backbone_channels",
                help=_("Any of the {c} channels (0..{last}), at most 32").format(c=c, last=c - 1),
            )
    started = time.perf_counter()
    top = most_active_channels(features, c)

    cols = st.columns([2, 2, 1, 1.3, 1.3])
    cols[0].metric(_("Input"), f"{h} × {w} × 3", help=_("Height × width × colour channels"))
    cols[1].metric(_("Feature map"), f"{c} × {hf} × {wf}", help=_("Channels × height × width"))
    cols[2].metric(_("Stride"), f"{stride}", help=_("Input pixels per feature-map cell, per side"))
    rows = layer_table(backbone.features, (h, w))
    n_params = sum(r.parameters for r in rows)
    cols[3].metric(
        _("Parameters"),
        f"{n_params / 1e6:.1f} M",
        help=_("{n} weights").format(n=number(n_params)),
    )
    cols[4].metric(
        _("Forward pass"),
        f"{seconds:.2f} s",
        help=_("Computed once per image (and per normalisation setting), then cached"),
    )
    st.caption(
        _(
            "The forward pass took {seconds:.2f} s on {device}. It is computed once per image: "
            "every page and every slider after this reuses the cached feature map."
        ).format(seconds=seconds, device=runtime.device_label())
    )

    if backbone.weights == "random":
        st.warning(
            _(
                "**Random weights.** ImageNet weights were not found, so the channels below "
                "show no learned patterns (every shape and count on these pages is still "
                "right). {note}"
            ).format(note=backbone.describe()),
            icon="⚠️",
        )
        with st.expander(_("How to get the ImageNet weights")):
            st.markdown(
                _("Either let torchvision download them once into its cache (needs internet):")
            )
            st.code(
                "python -c 'from torchvision.models import vgg16, VGG16_Weights; "
                "vgg16(weights=VGG16_Weights.IMAGENET1K_V1)'",
                language="bash",
            )
            st.markdown(_("which writes the file the explorer looks for:"))
            st.code(str(imagenet_cache_path()), language="text")
            st.markdown(
                _("or point the explorer at a VGG16 `state_dict` you already have, then restart:")
            )
            st.code(f"export {WEIGHTS_ENV}=/path/to/vgg16.pth", language="bash")
    elif backbone.weights == "imagenet":
        st.success(_("**ImageNet weights.** {note}").format(note=backbone.describe()), icon="✅")
    else:
        st.success(
            _("**Weights from a file** ({env}). {note}").format(
                env=WEIGHTS_ENV, note=backbone.describe()
            ),
            icon="✅",
        )

    if not normalize:
        st.info(
            _(
                "**Bug B13 reproduced:** the pixels go in as raw values in [0, 1], without "
                "ImageNet's mean/std normalisation. Pretrained VGG16 expects normalised input, "
                "so its features drift off what it learned. These features were computed "
                "separately (and cached): turn normalisation back on to compare."
            )
        )

    st.subheader(_("Layers"))
    st.dataframe(
        pd.DataFrame([r.as_dict() for r in rows]),
        hide_index=True,
        width="stretch",
        height=36 * 12,
        # The header of LayerRow.as_dict, in the same language.
        column_config={_("parameters"): st.column_config.NumberColumn(format="localized")},
    )
    st.caption(
        _(
            "Shapes worked out from the input size ({h} × {w}) without running the network: "
            "a 3 × 3 convolution with padding 1 keeps the size, a 2 × 2 max-pool with stride 2 "
            "halves it (rounding down). `vgg16().features[:30]` stops before the fifth pool, "
            "so the map is {h}/{stride} × {w}/{stride} = {hf} × {wf}. Receptive field: how "
            "many input pixels (per side) one cell can see."
        ).format(h=h, w=w, stride=stride, hf=hf, wf=wf)
    )

    st.subheader(_("Feature channels ({shown} of {c})").format(shown=len(channels), c=c))
    rank_col, stats_col = st.columns([2, 1])
    with rank_col:
        means = channel_ranking(features)
        st.plotly_chart(ranking_figure(means, channels), width="stretch", key="channel_ranking")
    with stats_col:
        zeros = float((features == 0).float().mean())
        a, b = st.columns(2)
        a.metric(_("Zero activations"), f"{100 * zeros:.0f} %", help=_("The last ReLU clips at 0"))
        b.metric(_("Max activation"), f"{float(features.max()):.2f}")
        st.caption(
            _(
                "A ReLU ends the backbone, so many cells of many channels are exactly 0: a "
                "channel lights up only where its pattern appears. Purple dots: the channels "
                "shown below."
            )
        )
    if not channels:
        st.info(_("Pick at least one channel in the sidebar."))
    else:
        st.caption(
            _(
                "Each tile is one {hf} × {wf} channel, scaled to its own min..max (so a weak "
                "channel still shows its pattern). Hover for the raw activation."
            ).format(hf=hf, wf=wf)
        )
        st.plotly_chart(feature_grid_figure(features, channels), width="stretch", key="grid")

    st.subheader(_("A channel over the image"))
    ctl, fig_col = st.columns([1, 3])
    with ctl:
        # A dict's lookup, not a lambda: Streamlit keeps format_func for the whole session,
        # and a function defined here would keep this run's namespace (features, image) alive.
        name = _("ch {ch} (rank {rank})")
        names = {ch: name.format(ch=ch, rank=i + 1) for i, ch in enumerate(top)}
        overlay = st.selectbox(
            _("Channel"),
            top,
            index=0,
            key="backbone_overlay_channel",
            format_func=names.__getitem__,
            help=_("Ordered by mean activation, most active first"),
        )
        opacity = st.slider(_("Heatmap opacity"), 0.1, 0.9, 0.55, 0.05, key="backbone_opacity")
        st.caption(
            _(
                "The {hf} × {wf} channel is stretched over the {h} × {w} image: each cell "
                "covers a {stride} × {stride} patch, smoothed between cell centres. "
                "Bright = strong."
            ).format(hf=hf, wf=wf, h=h, w=w, stride=stride)
        )
    with fig_col:
        channel_map = features[0, overlay].numpy()
        st.plotly_chart(
            channel_overlay_figure(image.pixels, channel_map, overlay, opacity),
            width="stretch",
            key="overlay",
        )
    # The step's name is shown translated (timing_caption calls _ on it).
    run.timings[FIGURES] = time.perf_counter() - started
    timing_caption(run, [FIGURES])
