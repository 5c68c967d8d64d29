"""Stages 3 and 4: the anchor grid and the inside (cross-boundary) filter.

Shape letters: Hf, Wf feature-map height and width; A = len(ratios) * len(scales) anchors per
cell; N = Hf * Wf * A anchors in all.

Anchor order is row-major over the feature map, the order of the RPN head's output after
``x.permute(0, 2, 3, 1).reshape(1, -1, 4)``::

    index = (iy * Wf + ix) * A + a,    a = ratio_index * n_scales + scale_index

The tutorial built them x-outer, ``(ix * Hf + iy) * A + a``, which pairs every anchor with the
prediction of the mirrored cell (bug B1); ``AnchorParams(bug_b1_x_outer=True)`` reproduces it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class AnchorParams:
    """Anchor settings. ``h = stride * s * sqrt(r)``, ``w = stride * s / sqrt(r)`` with the
    ratio ``r = h / w``: at stride 16, scale 8 and ratio 1 is a 128 x 128 box.

    The stride is not a setting: it is the backbone's (see
    :class:`frcnn_core.backbone.BackboneSpec`), so anchors and feature cells always line up.
    """

    scales: tuple[float, ...] = (8.0, 16.0, 32.0)
    ratios: tuple[float, ...] = (0.5, 1.0, 2.0)
    bug_b1_x_outer: bool = False

    @property
    def per_cell(self) -> int:
        return len(self.scales) * len(self.ratios)


@dataclass(frozen=True)
class AnchorResult:
    """All anchors and the ones that lie inside the image.

    Attributes:
        anchors (Tensor[N, 4]): float64, (x1, y1, x2, y2), in the order of the module docstring.
        centres (Tensor[Hf * Wf, 2]): float64 (x, y) cell centres, ``stride * i + stride / 2``.
        base_anchors (Tensor[A, 4]): the A anchors of a cell centred at (0, 0).
        inside_index (Tensor[K]): int64 indices of anchors with x1, y1 >= 0, x2 <= W, y2 <= H.
        feature_size: (Hf, Wf).
        image_size: (H, W) of the input frame.
        stride: input-frame pixels per feature cell (the backbone's).
    """

    anchors: torch.Tensor
    centres: torch.Tensor
    base_anchors: torch.Tensor
    inside_index: torch.Tensor
    feature_size: tuple[int, int]
    image_size: tuple[int, int]
    stride: int

    @property
    def total(self) -> int:
        return int(self.anchors.shape[0])

    @property
    def inside(self) -> int:
        return int(self.inside_index.numel())

    @property
    def inside_anchors(self) -> torch.Tensor:
        return self.anchors[self.inside_index]


def base_anchors(params: AnchorParams, stride: int) -> torch.Tensor:
    """The A anchors of one cell centred at the origin, float64 [A, 4], ``a = ratio_index *
    n_scales + scale_index`` (ratio outer, as the tutorial's loops)."""
    # math.sqrt, like the tutorial's numpy: torch's float64 sqrt(0.5) differs by one ulp.
    root = torch.tensor([math.sqrt(r) for r in params.ratios], dtype=torch.float64)
    scales = torch.tensor(params.scales, dtype=torch.float64)
    h = (stride * scales[None, :] * root[:, None]).reshape(-1)  # [R, S] -> [A]
    w = (stride * scales[None, :] / root[:, None]).reshape(-1)
    return torch.stack((-w / 2, -h / 2, w / 2, h / 2), dim=1)


def cell_centres(feature_size: tuple[int, int], stride: int) -> torch.Tensor:
    """Centres of the feature-map cells in the input frame, float64 [Hf * Wf, 2] as (x, y),
    row-major (y outer): cell (iy, ix) is centred at ``(stride * ix + stride / 2, ...)``."""
    hf, wf = feature_size
    ys = torch.arange(hf, dtype=torch.float64) * stride + stride / 2
    xs = torch.arange(wf, dtype=torch.float64) * stride + stride / 2
    cy, cx = torch.meshgrid(ys, xs, indexing="ij")  # [Hf, Wf] each
    return torch.stack((cx.reshape(-1), cy.reshape(-1)), dim=1)


def inside_index(anchors: torch.Tensor, image_size: tuple[int, int]) -> torch.Tensor:
    """Indices of the anchors that lie wholly inside an image of ``image_size = (H, W)``."""
    height, width = image_size
    keep = (
        (anchors[:, 0] >= 0)
        & (anchors[:, 1] >= 0)
        & (anchors[:, 2] <= width)
        & (anchors[:, 3] <= height)
    )
    return torch.nonzero(keep).squeeze(1)


def generate_anchors(
    feature_size: tuple[int, int], image_size: tuple[int, int], params: AnchorParams, stride: int
) -> AnchorResult:
    """Stage 3 and 4: every anchor of the feature map, and which of them lie inside the image.

    Anchors are float64 on purpose: the tutorial computed them in float64 and the best-IoU ties
    of stage 5 depend on it (SPEC section 3).

    Args:
        feature_size: (Hf, Wf), e.g. (50, 50) for an 800 x 800 input at stride 16.
        image_size: (H, W) of the input frame.
        params: anchor settings.
        stride: the backbone's stride, e.g. 16 for VGG16 to conv5_3.
    """
    hf, wf = feature_size
    base = base_anchors(params, stride)  # [A, 4]
    centres = cell_centres(feature_size, stride)  # [Hf*Wf, 2]
    grid_centres = centres
    if params.bug_b1_x_outer:
        # The tutorial's loops visit x in the outer loop: (ix, iy) order.
        grid_centres = centres.reshape(hf, wf, 2).transpose(0, 1).reshape(-1, 2)
    shifts = grid_centres.repeat(1, 2)  # [Hf*Wf, 4] as (x, y, x, y)
    anchors = (shifts[:, None, :] + base[None, :, :]).reshape(-1, 4)  # [Hf*Wf, A, 4] -> [N, 4]
    return AnchorResult(
        anchors=anchors,
        centres=centres,
        base_anchors=base,
        inside_index=inside_index(anchors, image_size),
        feature_size=(hf, wf),
        image_size=image_size,
        stride=stride,
    )


def anchor_position(
    index: int, feature_size: tuple[int, int], params: AnchorParams
) -> tuple[int, int, int]:
    """The cell and shape of anchor ``index``: ``(iy, ix, a)``, the inverse of
    ``index = (iy * Wf + ix) * A + a`` (or of the tutorial's x-outer
    ``(ix * Hf + iy) * A + a`` with ``bug_b1_x_outer``); ``a = ratio_index * n_scales +
    scale_index``.
    """
    hf, wf = feature_size
    cell, a = divmod(index, params.per_cell)
    if not 0 <= cell < hf * wf:
        raise ValueError(f"anchor {index} is not in 0..{hf * wf * params.per_cell - 1}")
    if params.bug_b1_x_outer:
        ix, iy = divmod(cell, hf)
    else:
        iy, ix = divmod(cell, wf)
    return iy, ix, a
