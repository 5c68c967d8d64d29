"""Stage 14: what the detector finds at test time, and how it matches the ground truth."""

from __future__ import annotations

import streamlit as st

from explorer.detection import detection
from explorer.views.detect import detection_rows, detections_figure
from explorer.widgets import intro, page_guard, param_slider, stages_or_stop, timing_caption

intro(
    "Detect",
    "At test time there is no ground truth to sample against: the RPN's top **6000** anchors "
    "go through NMS to **300** proposals, the head scores every proposal for every class and "
    "moves its box with that class's deltas, boxes under the score threshold are dropped, and "
    "NMS runs **per class**. The ground truth is used only to grade the result: a detection is "
    "a true positive when it overlaps a box of its class at IoU ≥ 0.5 that no better-scored "
    "detection took.",
    "300 proposals → scores [300, C+1] + deltas [300, C+1, 4] → 300·C candidates → "
    "threshold → per-class NMS → top 100",
)

with page_guard():
    stages = stages_or_stop()
    with st.sidebar:
        st.subheader("Detection")
        param_slider(
            "detect.score_threshold",
            "Score threshold",
            0.0,
            0.99,
            0.01,
            help="Drop class scores under this (tutorial: 0.05)",
        )
        param_slider(
            "detect.class_nms_iou",
            "Per-class NMS IoU",
            0.05,
            1.0,
            0.05,
            help="Suppress same-class boxes overlapping more than this (tutorial: 0.5)",
        )
        param_slider("detect.max_detections", "Max detections", 1, 300, 1)
        param_slider("detect.match_iou", "IoU for a true positive", 0.1, 0.95, 0.05)
        st.subheader("Test-time proposals")
        param_slider("proposals.pre_nms_test", "Pre-NMS top N (test)", 100, 12000, 100)
        param_slider("proposals.post_nms_test", "Post-NMS top N (test)", 10, 2000, 10)

    if not stages.heads.trained:
        st.info(
            "The heads are **untrained** (seeded random weights): every class score is close to "
            f"1 / (C + 1) = {1 / (len(stages.class_names) + 1):.2f} and the boxes are the "
            "proposals barely moved. Train on the **Train** page, then come back."
        )
    # The head's outputs on the test proposals are cached: these sliders re-run only stage 14.
    result = detection(stages)
    props, dets, match = result.proposals, result.detections, result.match
    prep = stages.prepared
    n_all, n_scored, n_nms = dets.candidates
    n_det = int(dets.boxes.shape[0])
    tp = int(match.true_positive.sum())
    n_gt = int(stages.gt_boxes.shape[0])
    found = int(match.gt_found.sum())
    m = st.columns(6)
    m[0].metric("Proposals", props.counts()["kept"])
    m[1].metric("Candidates", f"{n_all:,}", help="(proposal, class) pairs")
    m[2].metric("Above threshold", f"{n_scored:,}")
    m[3].metric("Detections", n_det, help=f"{n_nms} after per-class NMS")
    m[4].metric("True positives", tp, help=f"{n_det - tp} false positives")
    m[5].metric("GT found", f"{found} / {n_gt}")
    if n_det:
        st.caption(
            f"Precision {tp / n_det:.2f} · recall {found / n_gt:.2f}"
            if n_gt
            else "No ground truth to grade against."
        )
    if n_scored == 0:
        st.warning("No class score reaches the threshold: lower it to see detections.")
    st.plotly_chart(
        detections_figure(
            prep.image.pixels, dets, match, stages.class_names, stages.gt_boxes, prep.labels
        ),
        width="stretch",
        key="detections",
    )
    if n_det:
        st.dataframe(
            detection_rows(dets, match, stages.class_names, prep.labels),
            hide_index=True,
            width="stretch",
        )
    timing_caption(stages, ["detection"])
