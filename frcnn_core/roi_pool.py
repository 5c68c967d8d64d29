"""Stage 11: RoI pooling, every RoI's region of the feature map pooled to a fixed 7 x 7.

``spatial_scale`` maps input-frame pixels to feature cells: an 800 x 800 input and a 50 x 50
feature map give 50 / 800 = 1/16, so a RoI from x = 160 to x = 320 covers cells 10 to 20. It is
not a setting: it is one over the backbone's stride.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import cache

import torch
from torchvision.ops import roi_align, roi_pool

POOL_METHODS = ("pool", "align")
# torchvision's CPU RoI kernels run on one thread; above this many RoIs the work is split across
# torch's intra-op threads (each RoI is pooled independently, so the result is identical).
SPLIT_MIN_ROIS = 32


@dataclass(frozen=True)
class RoIPoolParams:
    """``method="pool"`` is the paper's RoI max pooling (quantised bins); ``"align"`` is RoI Align
    (bilinear samples, ``sampling_ratio`` per bin side, no quantisation)."""

    output_size: int = 7
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


def pool_rois(
    features: torch.Tensor, rois: torch.Tensor, params: RoIPoolParams, spatial_scale: float
) -> RoIPoolResult:
    """Stage 11 with ``torchvision.ops.roi_pool`` or ``roi_align``.

    Args:
        features (Tensor[1, C, Hf, Wf]): the backbone's feature map.
        rois (Tensor[S, 4]): (x1, y1, x2, y2) in the input frame.
        spatial_scale: feature cells per input pixel, 1 / the backbone's stride (1/16).
    """
    rois = rois.to(features.device, features.dtype)
    threads = torch.get_num_threads()
    if features.device.type != "cpu" or threads < 2 or rois.shape[0] < SPLIT_MIN_ROIS:
        return RoIPoolResult(pooled=_pool(features, rois, params, spatial_scale))
    # Grad mode is per thread: the workers take the caller's (no graph under no_grad).
    grad = torch.is_grad_enabled()

    def pool_part(part: torch.Tensor) -> torch.Tensor:
        with torch.set_grad_enabled(grad):
            return _pool(features, part, params, spatial_scale)

    parts = _executor(threads).map(pool_part, rois.chunk(threads))
    return RoIPoolResult(pooled=torch.cat(list(parts)))


def _pool(
    features: torch.Tensor, rois: torch.Tensor, params: RoIPoolParams, spatial_scale: float
) -> torch.Tensor:
    """``rois`` (Tensor[S, 4]) pooled to Tensor[S, C, size, size] on the calling thread."""
    size = (params.output_size, params.output_size)
    if params.method == "align":
        return roi_align(features, [rois], size, spatial_scale, params.sampling_ratio, aligned=True)
    return roi_pool(features, [rois], size, spatial_scale)


@cache
def _executor(threads: int) -> ThreadPoolExecutor:
    """One pool per thread count, shared by every caller (the ops release the GIL)."""
    return ThreadPoolExecutor(max_workers=threads, thread_name_prefix="roi-pool")
