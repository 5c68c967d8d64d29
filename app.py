"""Faster R-CNN Explorer: the router. Shared sidebar, then the page the user picked.

The pages live in ``app_pages/``, a folder Streamlit does not discover on its own: this file is
the only way in, so every request (a deep link included) sets up the session here first.
"""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from explorer import models, runtime, state, training
from explorer.text import plain

# A local icon: a ":material/...:" one is fetched from Google's font server by every browser.
ICON = Path(__file__).resolve().parent / "assets" / "favicon.png"
st.set_page_config(page_title="Faster R-CNN Explorer", page_icon=str(ICON), layout="wide")
state.init()
if training.collect():  # a training that ended while the student was elsewhere
    st.toast("Training finished: every page now uses the trained heads.")

# (file, url path, title, icon): the order of the sidebar, the order of the pipeline.
PAGE_TABLE = [
    ("image", "image", "Image & ground truth", "image"),
    ("backbone", "backbone", "Backbone", "layers"),
    ("anchors", "anchors", "Anchors", "anchor"),
    ("labelling", "labelling", "Anchor labelling", "label"),
    ("rpn", "rpn", "RPN outputs", "target"),
    ("proposals", "proposals", "Proposals & NMS", "filter_alt"),
    ("roi", "roi", "RoI sampling & pooling", "crop_free"),
    ("head", "head", "Head & losses", "functions"),
    ("train", "train", "Train", "model_training"),
    ("detect", "detect", "Detect", "select_all"),
    ("bugs", "bugs", "Tutorial bugs", "bug_report"),
]
PAGES = [
    st.Page(
        f"app_pages/{file}.py",
        url_path=url,
        title=title,
        icon=f":material/{icon}:",
        default=i == 0,
    )
    for i, (file, url, title, icon) in enumerate(PAGE_TABLE)
]

page = st.navigation(PAGES)

with st.sidebar:
    choice = state.image()
    if choice is not None:
        n = len(state.boxes())
        st.caption(f"Image: **{plain(choice.name)}** · {n} box{'es' if n != 1 else ''}")
    st.caption(f"Device: {runtime.device_label()}")
    backbone = models.backbone()
    if backbone.weights == "random":
        st.warning(
            "VGG16 runs on **random weights**: feature maps look like noise, but every count, "
            "shape and loss formula is real.",
            icon=":material/warning:",
        )
        with st.expander("How to get ImageNet weights"):
            st.caption(backbone.note)
    else:
        st.caption(f"Backbone weights: {backbone.weights}")
    own = models.session_model()
    if training.running():
        st.caption("Heads: **training…** (see the Train page)")
    elif own is None:
        st.caption("Heads: initial (seeded)")
    elif own.source == "trained":
        st.caption(f"Heads: **trained in this session** ({len(own.class_names)} classes)")
    else:
        st.caption(f"Heads: **loaded from {plain(own.source)}** ({len(own.class_names)} classes)")
    st.button(
        "Reset to tutorial defaults",
        width="stretch",
        help="Every threshold and count back to the tutorial's values",
        on_click=state.reset_params,
    )

page.run()
