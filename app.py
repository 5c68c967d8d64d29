"""Faster R-CNN Explorer: the router. Shared sidebar, then the page the user picked."""

from __future__ import annotations

import streamlit as st

from explorer import compute, state

st.set_page_config(page_title="Faster R-CNN Explorer", page_icon="🔍", layout="wide")
state.init()

PAGES = [
    st.Page(
        "pages/1_image.py", url_path="image", title="Image & ground truth", icon="🖼️", default=True
    ),
    st.Page("pages/2_backbone.py", url_path="backbone", title="Backbone", icon="🧱"),
    st.Page("pages/3_anchors.py", url_path="anchors", title="Anchors", icon="⚓"),
    st.Page("pages/4_labelling.py", url_path="labelling", title="Anchor labelling", icon="🏷️"),
    st.Page("pages/5_rpn.py", url_path="rpn", title="RPN outputs", icon="🎯"),
    st.Page("pages/6_proposals.py", url_path="proposals", title="Proposals & NMS", icon="🧹"),
    st.Page("pages/7_roi.py", url_path="roi", title="RoI sampling & pooling", icon="🔲"),
    st.Page("pages/8_head.py", url_path="head", title="Head & losses", icon="🧮"),
    st.Page("pages/10_train.py", url_path="train", title="Train", icon="🏋️"),
    st.Page("pages/11_detect.py", url_path="detect", title="Detect", icon="📦"),
    st.Page("pages/9_bugs.py", url_path="bugs", title="Tutorial bugs", icon="🐞"),
]

page = st.navigation(PAGES)

with st.sidebar:
    choice = state.image()
    if choice is not None:
        st.caption(f"Image: **{choice.name}** · {len(state.boxes())} boxes")
    st.caption(f"Device: {compute.device_label()}")
    backbone = compute.backbone()
    if backbone.weights == "random":
        st.warning(
            "VGG16 runs on **random weights**: feature maps are not meaningful, but every "
            "count and shape is. " + backbone.note,
            icon="⚠️",
        )
    else:
        st.caption(f"Backbone weights: {backbone.weights}")
    trained = compute.trained_model()
    st.caption(
        "Heads: **trained in this session**" if trained is not None else "Heads: initial (seeded)"
    )
    if st.button(
        "Reset to tutorial defaults",
        width="stretch",
        help="Every threshold and count back to the tutorial's values",
    ):
        state.reset_params()
        st.toast("Parameters reset to the tutorial's defaults")

page.run()
