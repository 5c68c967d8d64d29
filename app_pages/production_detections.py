"""The production detector's detections on the user's image, graded against their boxes."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from explorer.production import detector_picker, production_guard, run_or_stop, weights_notice
from explorer.text import plain
from explorer.views.production import (
    detection_rows,
    detections_figure,
    grading_counts,
    present_classes,
    shown_index,
)
from explorer.widgets import intro, param_widget, timing_caption
from frcnn_core.i18n import _, number

CLASSES = "production_classes"  # widget key of the class filter
HIDDEN = "production_hidden_classes"  # session key: classes the user took out of the filter

# COCO's class names are the model's own data: they stay in English in every language (the
# filter's options, the table, the figure), as the user labels their boxes with them.
intro(
    _("Production detections"),
    _(
        "The second half of the tutorial runs a **Faster R-CNN trained on COCO** (ResNet-50 with "
        "a feature pyramid) on an image and keeps the detections whose score is above **0.3**. "
        "Here it is torchvision's own model, on your image and your boxes: the same two stages "
        "as the tutorial's network, trained for days on 118 000 photos of 80 classes. When your "
        "boxes are labelled with COCO class names (zebra, person, cat, cup, …) each detection is "
        "graded: a **true positive** overlaps a box of its class at IoU ≥ 0.5 that no "
        "better-scored detection took."
    ),
    _(
        "image H × W → resized and padded [3, Hp, Wp] → P RoIs (1000) → scores [P, 91] → "
        "D detections (x1, y1, x2, y2, class, score) in original pixels"
    ),
)


def _keep_filter(present: list[str]) -> None:
    """Filter callback: remember what was taken out, so new classes show up when the
    threshold moves, and classes taken out stay out."""
    chosen = set(st.session_state[CLASSES])
    hidden = set(st.session_state.get(HIDDEN, ())) - chosen
    st.session_state[HIDDEN] = hidden | (set(present) - chosen)


with production_guard():
    with st.sidebar:
        option = detector_picker()
        st.subheader(_("Detections"))
        threshold = param_widget("production.box_score_thresh")  # i18n: keep (a setting's path)
        param_widget("match.match_iou")  # i18n: keep (a setting's path)
        st.subheader(_("Input size"))
        param_widget("production_input.shorter_side")  # i18n: keep (a setting's path)
        param_widget("production_input.longer_side")  # i18n: keep (a setting's path)
    run = run_or_stop(option)
    detector = run.detector
    weights_notice(detector)
    cached = run.forward()
    found = run["production_detections"]
    dets = found.detections
    truth = run["labelled_boxes"]
    match = run["production_match"] if truth.graded else None
    names = detector.class_names
    present = present_classes(dets, names)
    hidden = set(st.session_state.get(HIDDEN, ()))
    st.session_state[CLASSES] = [c for c in present if c not in hidden]
    with st.sidebar:
        st.subheader(_("Classes shown"))
        classes = st.multiselect(
            _("Classes"),
            present,
            format_func=plain,
            key=CLASSES,
            on_change=_keep_filter,
            args=(present,),
            help=_("The classes among the detections at this threshold, most detections first."),
            placeholder=_("No class shown"),
        )
    index = shown_index(dets, names, classes)

    m = st.columns(5)
    m[0].metric(
        _("Detections"),
        len(dets),
        help=_("score above {threshold:g}, after per-class NMS").format(threshold=threshold),
    )
    m[1].metric(_("Classes"), len(present))
    if match is not None:
        graded = grading_counts(match, truth, index)
        m[2].metric(_("True positives"), graded["true_positive"])
        m[3].metric(_("False positives"), graded["false_positive"])
        m[4].metric(_("Missed boxes"), f"{graded['missed']} / {graded['boxes']}")
    else:
        m[2].metric(_("Your boxes"), len(truth.all_labels))
    if truth.unknown:
        unknown = ", ".join(plain(x) for x in truth.unknown)
        if truth.graded:
            st.caption(
                _(
                    "Not graded: boxes labelled {labels} (not COCO class names). {n} of {total} "
                    "boxes are."
                ).format(labels=unknown, n=len(truth.labels), total=len(truth.all_labels))
            )
        else:
            st.info(
                _(
                    "Your boxes are labelled {labels}: no COCO class has such a name, so nothing "
                    "is graded. Label a box with a COCO name (zebra, person, cat, cup, …) on the "
                    "Image page to see true and false positives."
                ).format(labels=unknown)
            )
    if not len(dets):
        scores = run["class_candidates"].scores
        best = float(scores.max()) if scores.numel() else 0.0
        if detector.weights == "random":
            message = _(
                "No detection scores above {threshold:g} (the best class probability here is "
                "{best:.3f}): random weights give every class about 1 / {n}, so nothing passes; "
                "the stages on the next page are real all the same."
            )
        else:
            message = _(
                "No detection scores above {threshold:g} (the best class probability here is "
                "{best:.3f}): lower the score threshold in the sidebar."
            )
        st.warning(message.format(threshold=threshold, best=best, n=number(len(names))))
    st.plotly_chart(
        detections_figure(run["photo"].pixels, dets, names, index, truth, match),
        width="stretch",
        key="production_detections",
    )
    st.caption(run.forward_caption(cached))
    if index:
        st.dataframe(
            pd.DataFrame(detection_rows(dets, names, index, match)),
            hide_index=True,
            width="stretch",
        )
    timing_caption(run, ["staged_run", "class_candidates", "production_detections"])
