"""The Detect page's computation: stage 14 with the head's test-time outputs cached.

The expensive part of detection is the head on the 300 test proposals (RoI pooling, fc6, fc7:
about half a second on a CPU). Its outputs depend on the image, the weights and the proposal
settings, not on stage 14's own settings, so the score threshold, per-class NMS, max detections
and match IoU sliders re-run only the cheap tail (softmax, decode, threshold, NMS, matching).

The cache is keyed on the heads' token: ``init:...`` for the seeded initial heads (the same
weights in every session, so their results are shared), ``trained:<uuid4>`` for a session's
trained or uploaded model (a new token for every model, so no two sessions, and no two models
of one session, ever share an entry).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from explorer import compute
from explorer.compute import Stages
from frcnn_core.detect import Detections, Match, detect, match_detections
from frcnn_core.head import HeadOutput
from frcnn_core.proposals import ProposalResult


@dataclass(frozen=True)
class DetectionResult:
    """Stage 14 for the current session: test proposals, the head's outputs on them, the
    detections and how they match the ground truth."""

    proposals: ProposalResult
    head: HeadOutput
    detections: Detections
    match: Match


def test_head_key(stages: Stages) -> tuple:
    """What identifies the head's outputs on the test proposals: the features, the weights and
    every setting upstream of the head (none of stage 14's)."""
    p = stages.params
    return (
        "test",
        stages.features_key,
        stages.heads.token,
        compute.forward_params(p.rpn),
        p.anchors,
        p.proposals,
    )


def detection(stages: Stages) -> DetectionResult:
    """Stage 14 on the current image with the session's heads; records ``"detection"`` in
    ``stages.timings``."""
    started = time.perf_counter()
    p = stages.params
    props = stages.proposals_for(training=False)
    key = test_head_key(stages)
    # Stages' device fallback: a head that runs out of GPU memory is computed on the CPU.
    head = stages.on_device(
        "Fast R-CNN head",
        lambda: compute.head_outputs(
            key,
            stages.features,
            props.rois,
            stages.heads.heads,
            p.roi_pool,
            p.head.bug_b11_no_relu,
        ),
    )
    dets = detect(props.rois, head, stages.prepared.image.size, p.detect)
    match = match_detections(dets, stages.gt_boxes, stages.gt_labels, p.detect.match_iou)
    stages.timings["detection"] = time.perf_counter() - started
    return DetectionResult(props, head, dets, match)
