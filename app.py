"""Faster R-CNN Explorer: the router. Shared sidebar, then the page the user picked.

The pages live in ``app_pages/``, a folder Streamlit does not discover on its own: this file is
the only way in, so every request (a deep link included) sets up the session here first.
"""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from explorer import (
    classroom,
    display,
    finetune,
    i18n,
    models,
    project_panel,
    projects,
    runtime,
    state,
    training,
    warmup,
)
from explorer.text import plain, plain_message
from frcnn_core.i18n import N_, _, ngettext

# A local icon: a ":material/...:" one is fetched from Google's font server by every browser.
ICON = Path(__file__).resolve().parent / "assets" / "favicon.png"
st.set_page_config(page_title="Faster R-CNN Explorer", page_icon=str(ICON), layout="wide")
display.install()  # every chart drawn for this session's theme and presentation setting
language = i18n.init()  # this session's language, before any text
state.init()
warmup.start()  # once per server: the samples' feature maps, before a class asks for them
if training.collect():  # a training that ended while the student was elsewhere
    st.toast(_("Training finished: every page now uses the trained heads."))
if finetune.collect():  # a fine-tuning run that ended: its model joins the production menu
    st.toast(_("Fine-tuning ended: its model is on the Fine-tune: results page."))

# (file, url path, title, icon): the order of the sidebar, the order of the pipeline.
PAGE_TABLE = [
    ("image", "image", N_("Image & ground truth"), "image"),
    ("backbone", "backbone", N_("Backbone"), "layers"),
    ("anchors", "anchors", N_("Anchors"), "anchor"),
    ("labelling", "labelling", N_("Anchor labelling"), "label"),
    ("rpn", "rpn", N_("RPN outputs"), "target"),
    ("proposals", "proposals", N_("Proposals & NMS"), "filter_alt"),
    ("roi", "roi", N_("RoI sampling & pooling"), "crop_free"),
    ("head", "head", N_("Head & losses"), "functions"),
    ("train", "train", N_("Train"), "model_training"),
    ("detect", "detect", N_("Detect"), "select_all"),
    ("bugs", "bugs", N_("Tutorial bugs"), "bug_report"),
    ("glossary", "glossary", N_("Glossary"), "translate"),
]
PAGES = [
    st.Page(
        f"app_pages/{file}.py",
        url_path=url,
        title=_(title),
        icon=f":material/{icon}:",
        default=i == 0,
    )
    for i, (file, url, title, icon) in enumerate(PAGE_TABLE)
]
# torchvision's COCO-trained Faster R-CNN: the tutorial's second half.
PRODUCTION_TABLE = [
    ("production_detections", "production", N_("Detections"), "visibility"),
    (
        "production_inside",
        "production-inside",
        N_("Inside the production detector"),
        "account_tree",
    ),
    ("production_compare", "production-vs-tutorial", N_("Tutorial vs production"), "compare"),
]
PRODUCTION_PAGES = [
    st.Page(f"app_pages/{file}.py", url_path=url, title=_(title), icon=f":material/{icon}:")
    for file, url, title, icon in PRODUCTION_TABLE
]
# Fine-tuning a production detector on a dataset: the tutorial's last part.
FINETUNE_TABLE = [
    ("finetune_dataset", "finetune-dataset", N_("Fine-tune: dataset"), "dataset"),
    ("finetune_train", "finetune-train", N_("Fine-tune: train"), "model_training"),
    ("finetune_results", "finetune-results", N_("Fine-tune: results"), "leaderboard"),
]
FINETUNE_PAGES = [
    st.Page(f"app_pages/{file}.py", url_path=url, title=_(title), icon=f":material/{icon}:")
    for file, url, title, icon in FINETUNE_TABLE
]
PAGE_BY_URL = {p.url_path: p for p in PAGES + PRODUCTION_PAGES + FINETUNE_PAGES}

page = st.navigation(
    {
        _("Tutorial"): PAGES,
        _("Production detector"): PRODUCTION_PAGES,
        _("Fine-tune"): FINETUNE_PAGES,
    },
    expanded=True,  # every section in view: collapsed, the later sections hide under "View more"
)
# A new session: this browser's saved project comes back, and a shared link applies on top.
first_run = not st.session_state.get(projects.STARTED)
restore_to = projects.start(page.url_path)
if i18n.current() != language:  # the restored project's language: draw it all again in it
    st.rerun()
if first_run:  # a ?class= link joins; a reload keeps this browser's part in a class
    classroom.resume(st.query_params.get("class"))
if restore_to is not None and page.url_path != PAGES[0].url_path:
    restore_to = None  # a deep link names its page
# Following the instructor: their page, image and settings, applied before this page runs.
go_to = classroom.follow(page.url_path) or restore_to
if go_to is not None and go_to in PAGE_BY_URL and go_to != page.url_path:
    st.switch_page(PAGE_BY_URL[go_to])
said = projects.notes()
if said is not None:
    kind, lines = said
    show = st.warning if kind == "error" or kind == "link" else st.info
    opening = {"error": "", "link": _("From the link: "), "restored": _("Restored: ")}[kind]
    show(plain_message(opening + "; ".join(lines) + "."), icon=":material/info:")

with st.sidebar:
    i18n.switch()
    in_class = classroom.member()
    if in_class:  # following or teaching: the class comes first
        classroom.panel(project_panel.base_url())
    choice = state.image()
    if choice is not None:
        n = len(state.boxes())
        boxes = ngettext("{n} box", "{n} boxes", n).format(n=n)
        st.caption(_("Image: **{name}** · {boxes}").format(name=plain(choice.name), boxes=boxes))
    replica = runtime.replica_name()  # which server of several (an operator's label)
    device = _("Device: {device}").format(device=runtime.device_label())
    server = _(" · server {name}").format(name=plain(replica)) if replica else ""
    st.caption(device + server)
    backbone = models.backbone()
    if backbone.weights == "random":
        st.warning(
            _(
                "VGG16 runs on **random weights**: feature maps look like noise, but every "
                "count, shape and loss formula is real."
            ),
            icon=":material/warning:",
        )
        with st.expander(_("How to get ImageNet weights")):
            st.caption(backbone.describe())
    else:
        st.caption(_("Backbone weights: {weights}").format(weights=backbone.weights))
    own = models.session_model()
    if training.running():
        st.caption(_("Heads: **training…** (see the Train page)"))
    elif own is None:
        st.caption(_("Heads: initial (seeded)"))
    elif own.source == "trained":
        n = len(own.class_names)
        st.caption(
            ngettext(
                "Heads: **trained in this session** ({n} class)",
                "Heads: **trained in this session** ({n} classes)",
                n,
            ).format(n=n)
        )
    else:
        n = len(own.class_names)
        st.caption(
            ngettext(
                "Heads: **loaded from {source}** ({n} class)",
                "Heads: **loaded from {source}** ({n} classes)",
                n,
            ).format(source=plain(own.source), n=n)
        )
    st.button(
        _("Reset to tutorial defaults"),
        width="stretch",
        help=_("Every threshold and count back to the tutorial's values"),
        on_click=state.reset_params,
    )
    display.sidebar()  # presentation toggle, the page's CSS
    project_panel.sidebar(page.url_path)
    if not in_class:
        classroom.panel(project_panel.base_url())

try:
    with runtime.SCRIPTS.running():
        page.run()
finally:  # also after st.stop() or st.rerun() in the page: what it changed is saved
    classroom.finish(page.url_path)  # the instructor's view goes to the class
    if classroom.saves_own_project():
        projects.autosave(page.url_path)
