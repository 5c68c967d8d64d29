"""Stage 11: RoI pooling, every RoI's region of the feature map pooled to a fixed 7 x 7.

``spatial_scale`` maps input-frame pixels to feature cells: an 800 x 800 input and a 50 x 50
feature map give 50 / 800 = 1/16, so a RoI from x = 160 to x = 320 covers cells 10 to 20.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torchvision.ops import roi_align, roi_pool

POOL_METHODS = ("pool", "align")


@dataclass(frozen=True)
class RoIPoolParams:
    """``method="pool"`` is the paper's RoI max pooling (quantised bins); ``"align"`` is RoI Align
    (bilinear samples, ``sampling_ratio`` per bin side, no quantisation)."""

    output_size: int = 7
    spatial_scale: float = 1.0 / 16
    method: str = "pool"
    sampling_ratio: int = 2

    def __post_init__(self) -> None:
        if self.method not in POOL_METHODS:
            raise ValueError(f"method must be one of {POOL_METHODS}, not {self.method!r}")


@dataclass(frozen=True)
class RoIPoolResult:
    """Attributes:
    pooled (Tensor[S, C, 7, 7]): the pooled features.
    """

    pooled: torch.Tensor


def pool_rois(features: torch.Tensor, rois: torch.Tensor, params: RoIPoolParams) -> RoIPoolResult:
    """Stage 11 with ``torchvision.ops.roi_pool`` or ``roi_align``.

    Args:
        features (Tensor[1, C, Hf, Wf]): the backbone's feature map.
        rois (Tensor[S, 4]): (x1, y1, x2, y2) in the input frame.
    """
    boxes = [rois.to(features.device, features.dtype)]
    size = (params.output_size, params.output_size)
    if params.method == "align":
        pooled = roi_align(
            features, boxes, size, params.spatial_scale, params.sampling_ratio, aligned=True
        )
    else:
        pooled = roi_pool(features, boxes, size, params.spatial_scale)
    return RoIPoolResult(pooled=pooled)
