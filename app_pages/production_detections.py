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

CLASSES = "production_classes"  # widget key of the class filter
HIDDEN = "production_hidden_classes"  # session key: classes the user took out of the filter

intro(
    "Production detections",
    "The second half of the tutorial runs a **Faster R-CNN trained on COCO** (ResNet-50 with a "
    "feature pyramid) on an image and keeps the detections whose score is above **0.3**. Here "
    "it is torchvision's own model, on your image and your boxes: the same two stages as the "
    "tutorial's network, trained for days on 118 000 photos of 80 classes. When your boxes are "
    "labelled with COCO class names (zebra, person, cat, cup, …) each detection is graded: a "
    "**true positive** overlaps a box of its class at IoU ≥ 0.5 that no better-scored "
    "detection took.",
    "image H × W → resized and padded [3, Hp, Wp] → P RoIs (1000) → scores [P, 91] → "
    "D detections (x1, y1, x2, y2, class, score) in original pixels",
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
        st.subheader("Detections")
        threshold = param_widget("production.box_score_thresh")
        param_widget("match.match_iou")
        st.subheader("Input size")
        param_widget("production_input.shorter_side")
        param_widget("production_input.longer_side")
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
        st.subheader("Classes shown")
        classes = st.multiselect(
            "Classes",
            present,
            format_func=plain,
            key=CLASSES,
            on_change=_keep_filter,
            args=(present,),
            help="The classes among the detections at this threshold, most detections first.",
            placeholder="No class shown",
        )
    index = shown_index(dets, names, classes)

    m = st.columns(5)
    m[0].metric("Detections", len(dets), help=f"score above {threshold:g}, after per-class NMS")
    m[1].metric("Classes", len(present))
    if match is not None:
        graded = grading_counts(match, truth, index)
        m[2].metric("True positives", graded["true_positive"])
        m[3].metric("False positives", graded["false_positive"])
        m[4].metric("Missed boxes", f"{graded['missed']} / {graded['boxes']}")
    else:
        m[2].metric("Your boxes", len(truth.all_labels))
    if truth.unknown:
        unknown = ", ".join(plain(x) for x in truth.unknown)
        if truth.graded:
            st.caption(
                f"Not graded: boxes labelled {unknown} (not COCO class names). "
                f"{len(truth.labels)} of {len(truth.all_labels)} boxes are."
            )
        else:
            st.info(
                f"Your boxes are labelled {unknown}: no COCO class has such a name, so nothing "
                "is graded. Label a box with a COCO name (zebra, person, cat, cup, …) on the "
                "Image page to see true and false positives."
            )
    if not len(dets):
        scores = run["class_candidates"].scores
        best = float(scores.max()) if scores.numel() else 0.0
        if detector.weights == "random":
            advice = (
                f"random weights give every class about 1 / {len(names)}, so nothing passes; the "
                "stages on the next page are real all the same"
            )
        else:
            advice = "lower the score threshold in the sidebar"
        st.warning(
            f"No detection scores above {threshold:g} (the best class probability here is "
            f"{best:.3f}): {advice}."
        )
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
