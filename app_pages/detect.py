"""Stage 14: what the detector finds at test time, and how it matches the ground truth."""

from __future__ import annotations

import streamlit as st

from explorer.views.detect import (
    ROW_LABELS,
    detection_names,
    detection_rows,
    detections_figure,
    source_lines,
    verdict_lines,
)
from explorer.views.head import class_names_with_background
from explorer.views.inspect import class_probs_figure, take_click
from explorer.widgets import (
    intro,
    no_boxes_notice,
    page_guard,
    param_widget,
    run_or_stop,
    timing_caption,
)
from frcnn_core.detect import explain_match
from frcnn_core.i18n import _

PICK = "detect:pick"  # the inspected detection (a shared link can set it)
FIGURE = "detections"

intro(
    _("Detect"),
    _(
        "At test time there is no ground truth to sample against: the RPN's top **6000** "
        "anchors go through NMS to **300** proposals, the head scores every proposal for every "
        "class and moves its box with that class's deltas, boxes under the score threshold are "
        "dropped, and NMS runs **per class**. The ground truth is used only to grade the "
        "result: a detection is a true positive when it overlaps a box of its class at IoU ≥ "
        "0.5 that no better-scored detection took."
    ),
    _(
        "300 proposals → scores [300, C+1] + deltas [300, C+1, 4] → 300·C candidates → "
        "threshold → per-class NMS → top 100"
    ),
)

with page_guard():
    with st.sidebar:
        st.subheader(_("Detection"))
        param_widget("detect.score_threshold")
        param_widget("detect.class_nms_iou")
        param_widget("detect.max_detections")
        param_widget("match.match_iou")
        st.subheader(_("Test-time proposals"))
        param_widget("test_proposals.pre_nms")
        param_widget("test_proposals.post_nms")

    run = run_or_stop()
    no_boxes_notice(run, _("the detections have nothing to be graded against"))
    n_classes = len(run.classes.class_names)
    if not run.trained:
        st.info(
            _(
                "The heads are **untrained** (seeded random weights): every class score is "
                "close to 1 / (C + 1) = {p:.2f} and the boxes are the proposals barely moved. "
                "Train on the **Train** page, then come back."
            ).format(p=1 / (n_classes + 1))
        )
    # The head's outputs on the test proposals are cached: the detection sliders re-run only
    # the cheap tail (softmax, decode, threshold, per-class NMS, matching).
    props, dets, match = run.test_proposals, run.detections, run.detection_match
    n_all, n_scored, n_nms = dets.candidates
    n_det = int(dets.boxes.shape[0])
    tp = int(match.true_positive.sum())
    gt = run.ground_truth
    n_gt = int(gt.boxes.shape[0])
    found = int(match.gt_found.sum())
    m = st.columns(6)
    m[0].metric(_("Proposals"), props.counts()["kept"])
    m[1].metric(_("Candidates"), f"{n_all:,}", help=_("(proposal, class) pairs"))
    m[2].metric(_("Above threshold"), f"{n_scored:,}")
    m[3].metric(_("Detections"), n_det, help=_("{n} after per-class NMS").format(n=n_nms))
    m[4].metric(_("True positives"), tp, help=_("{n} false positives").format(n=n_det - tp))
    m[5].metric(_("GT found"), f"{found} / {n_gt}")
    if n_det:
        st.caption(
            _("Precision {p:.2f} · recall {r:.2f}").format(p=tp / n_det, r=found / n_gt)
            if n_gt
            else _("No ground truth to grade against.")
        )
    if n_scored == 0:
        st.warning(_("No class score reaches the threshold: lower it to see detections."))
    names = run.classes.class_names
    # A click on a detection's centre dot picks it once; the selectbox may change it afterwards.
    take_click(st.session_state, (FIGURE,), PICK)
    if st.session_state.get(PICK) not in range(n_det):
        st.session_state.pop(PICK, None)  # none yet, or a shared link's pick that is not here
    pick = st.session_state.get(PICK)
    verdict = source = None
    if pick is not None:
        match_iou = run.params.match.match_iou
        verdict = explain_match(dets, match, gt.boxes, run.classes.gt_labels, match_iou, pick)
        if dets.roi_index is not None:
            source = props.rois[int(dets.roi_index[pick])]
    left, right = st.columns([3, 2])
    with left:
        st.plotly_chart(
            detections_figure(
                run.image.pixels,
                dets,
                match,
                names,
                gt.boxes,
                gt.labels,
                picked=pick,
                source_roi=source,
                partner_gt=verdict.gt if verdict else -1,
            ),
            width="stretch",
            key=FIGURE,
            on_select="rerun",
            selection_mode="points",
        )
    with right:
        st.subheader(_("Inspect a detection"))
        if n_det == 0:
            st.caption(_("No detection to inspect."))
        else:
            labels = detection_names(dets, match, names)
            st.selectbox(
                _("Detection (or click its centre dot on the image)"),
                list(labels),
                index=None,
                format_func=labels.__getitem__,
                key=PICK,
                placeholder=_("Click a detection, or choose one here"),
            )
        if pick is None and n_det:
            st.caption(
                _(
                    "Click a detection's centre dot to see the proposal it came from, its class "
                    "probabilities, and the ground-truth box it matched or why it is a false "
                    "positive."
                )
            )
        if pick is not None and verdict is not None:
            label = int(dets.labels[pick])
            for line in source_lines(
                dets, pick, props, run.params.anchors, run.anchors.feature_size
            ):
                st.markdown(line)
            for line in verdict_lines(
                verdict, pick, match, gt.labels, names, run.params.match.match_iou, label
            ):
                st.markdown(line)
            if dets.roi_index is not None:
                r = int(dets.roi_index[pick])
                st.plotly_chart(
                    class_probs_figure(
                        run.test_head.probs[r].float().cpu().tolist(),
                        class_names_with_background(names, run.test_head.probs.shape[1]),
                        label,
                        title=_(
                            "Its RoI's class probabilities (green: the detected class {label})"
                        ).format(label=label),
                    ),
                    width="stretch",
                    key="detect:probs",
                )
    if n_det:
        st.dataframe(
            detection_rows(dets, match, names, gt.labels),
            hide_index=True,
            width="stretch",
            column_config={k: st.column_config.Column(_(v)) for k, v in ROW_LABELS.items()},
        )
    timing_caption(run, ["test_proposals", "test_roi_pool", "test_head", "detections"])
