"""The production detector's user-facing settings (two groups of
:class:`frcnn_core.params.PipelineParams`), kept apart so that the forward pass and the cheap
steps after it read different groups: moving the score threshold never re-runs the network.

- ``production_input`` (:class:`ProductionInputParams`): the transform's resize, read by the
  forward pass (:data:`frcnn_core.production_graph.PRODUCTION`'s ``staged_run``).
- ``production`` (:class:`ProductionParams`): the score threshold, read by the detections.
"""

from __future__ import annotations

from dataclasses import dataclass

from frcnn_core.production import DISPLAY_SCORE_THRESHOLD


@dataclass(frozen=True)
class ProductionInputParams:
    """torchvision's ``GeneralizedRCNNTransform`` resize: the image is scaled by
    ``min(shorter_side / its shorter side, longer_side / its longer side)``, aspect kept.

    torchvision's defaults (and the tutorial's MMDetection config): 800 and 1333. A smaller
    frame is faster on a CPU (the forward's cost grows with the pixel count) and finds fewer
    small objects.
    """

    shorter_side: int = 800
    longer_side: int = 1333


@dataclass(frozen=True)
class ProductionParams:
    """Which detections are shown: those whose class probability is above ``box_score_thresh``
    (the tutorial's MMDetection demo: 0.3; torchvision's model itself keeps those above 0.05)."""

    box_score_thresh: float = DISPLAY_SCORE_THRESHOLD
