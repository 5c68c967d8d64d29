"""Box conventions and the box coder shared by every stage.

Conventions (SPEC section 1), stated once here and relied on everywhere:

- A box is ``(x1, y1, x2, y2)`` in pixels of the **input frame** (the resized image), ``x1 < x2``.
- Box deltas are ``(dx, dy, dw, dh)`` on centres and sizes::

      dx = (gx - ax) / aw    dy = (gy - ay) / ah    dw = log(gw / aw)    dh = log(gh / ah)

  where ``a`` is the reference box (anchor or RoI) and ``g`` the target box.
- IoU never uses the "+1 pixel" convention (``torchvision.ops.box_iou`` does not either).

Shape letters: N boxes, M reference boxes.
"""

from __future__ import annotations

import math

import torch

# Widest growth a predicted dw / dh may apply: exp(SCALE_CLAMP) = 1000 / 16, so one 16-pixel
# cell can at most grow into a 1000-pixel box. Without it, exp() of an untrained head's output
# can overflow to inf.
SCALE_CLAMP = math.log(1000.0 / 16)


def box_centres_sizes(boxes: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Split boxes into centres and sizes.

    Args:
        boxes (Tensor[N, 4]): in (x1, y1, x2, y2) format.

    Returns:
        (cx, cy, w, h), each Tensor[N].
    """
    w = boxes[:, 2] - boxes[:, 0]
    h = boxes[:, 3] - boxes[:, 1]
    return boxes[:, 0] + 0.5 * w, boxes[:, 1] + 0.5 * h, w, h


def encode(reference: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Regression targets that move ``reference`` boxes onto ``target`` boxes.

    Args:
        reference (Tensor[N, 4]): anchors or RoIs, (x1, y1, x2, y2).
        target (Tensor[N, 4]): the matched ground-truth boxes, (x1, y1, x2, y2).

    Returns:
        Tensor[N, 4]: (dx, dy, dw, dh), in the dtype of the inputs.
    """
    ax, ay, aw, ah = box_centres_sizes(reference)
    gx, gy, gw, gh = box_centres_sizes(target)
    # A degenerate reference box would divide by zero; eps keeps the targets finite.
    eps = torch.finfo(reference.dtype).eps
    aw = aw.clamp(min=eps)
    ah = ah.clamp(min=eps)
    gw = gw.clamp(min=eps)
    gh = gh.clamp(min=eps)
    return torch.stack(
        ((gx - ax) / aw, (gy - ay) / ah, torch.log(gw / aw), torch.log(gh / ah)), dim=1
    )


def decode(
    reference: torch.Tensor, deltas: torch.Tensor, scale_clamp: float = SCALE_CLAMP
) -> torch.Tensor:
    """Apply predicted deltas to reference boxes: the inverse of :func:`encode`.

    Args:
        reference (Tensor[N, 4]): anchors or RoIs, (x1, y1, x2, y2).
        deltas (Tensor[N, 4]): (dx, dy, dw, dh).
        scale_clamp: upper bound on dw and dh before exp().

    Returns:
        Tensor[N, 4]: decoded boxes, (x1, y1, x2, y2).
    """
    ax, ay, aw, ah = box_centres_sizes(reference)
    dx, dy, dw, dh = deltas.to(reference.dtype).unbind(dim=1)
    dw = dw.clamp(max=scale_clamp)
    dh = dh.clamp(max=scale_clamp)
    cx = dx * aw + ax
    cy = dy * ah + ay
    w = torch.exp(dw) * aw
    h = torch.exp(dh) * ah
    return torch.stack((cx - 0.5 * w, cy - 0.5 * h, cx + 0.5 * w, cy + 0.5 * h), dim=1)


def smooth_l1_sum(pred: torch.Tensor, target: torch.Tensor, beta: float = 1.0) -> torch.Tensor:
    """Sum of smooth-L1 (Huber) over all elements: ``0.5 x^2 / beta`` if ``|x| < beta``, else
    ``|x| - 0.5 beta``. Returns a 0-d tensor (0 when the inputs are empty)."""
    return torch.nn.functional.smooth_l1_loss(
        pred, target.to(pred.dtype), beta=beta, reduction="sum"
    )
