"""Faster R-CNN Explorer: the router. Shared sidebar, then the page the user picked."""

from __future__ import annotations

import streamlit as st

from explorer import compute, state
from explorer.text import plain

st.set_page_config(page_title="Faster R-CNN Explorer", page_icon=":material/search:", layout="wide")
state.init()

# (file, url path, title, icon): the order of the sidebar, the order of the pipeline.
PAGE_TABLE = [
    ("1_image", "image", "Image & ground truth", "image"),
    ("2_backbone", "backbone", "Backbone", "layers"),
    ("3_anchors", "anchors", "Anchors", "anchor"),
    ("4_labelling", "labelling", "Anchor labelling", "label"),
    ("5_rpn", "rpn", "RPN outputs", "target"),
    ("6_proposals", "proposals", "Proposals & NMS", "filter_alt"),
    ("7_roi", "roi", "RoI sampling & pooling", "crop_free"),
    ("8_head", "head", "Head & losses", "functions"),
    ("10_train", "train", "Train", "model_training"),
    ("11_detect", "detect", "Detect", "select_all"),
    ("9_bugs", "bugs", "Tutorial bugs", "bug_report"),
]
PAGES = [
    st.Page(
        f"pages/{file}.py", url_path=url, title=title, icon=f":material/{icon}:", default=i == 0
    )
    for i, (file, url, title, icon) in enumerate(PAGE_TABLE)
]

page = st.navigation(PAGES)

with st.sidebar:
    choice = state.image()
    if choice is not None:
        n = len(state.boxes())
        st.caption(f"Image: **{plain(choice.name)}** · {n} box{'es' if n != 1 else ''}")
    st.caption(f"Device: {compute.device_label()}")
    backbone = compute.backbone()
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
    trained = compute.trained_model()
    st.caption(
        "Heads: **trained in this session**" if trained is not None else "Heads: initial (seeded)"
    )
    st.button(
        "Reset to tutorial defaults",
        width="stretch",
        help="Every threshold and count back to the tutorial's values",
        on_click=state.reset_params,
    )

page.run()
